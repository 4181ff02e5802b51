// The "dual_track" prompt format (Qwen3-TTS's talker), ported from voxport/runtime/prompt.py's
// DualTrackPrompt: a text track and a codec track per position, summed by the prompt graph; control
// ids (think, language, speaker) ride the codec track; the text after the first token is fed one
// token per frame (`trailing`), then the pad token. A cloned voice (a model with voice_clone) puts the
// reference clip's text and codes in context and its speaker vector (the speaker encoder's, worker.js)
// is added to the embedding row at the speaker position (`vectors`). Every id comes from the
// manifest's generation.prompt.
import { Tokenizer } from '../node_modules/@huggingface/tokenizers/dist/tokenizers.mjs';

// Python's repr of a str, as the Python runtime's messages quote names (plain names: single quotes)
const repr = (s) => `'${s}'`;

export class DualTrackPrompt {
  /** files: {tokenizer: object}; rt: manifest.runtime */
  constructor(files, rt) {
    this.spec = rt.generation.prompt;
    this.tokenizer = new Tokenizer(files.tokenizer, {});
  }

  ids(template, text) {
    // a replacer function: a replacement string would expand $& and $' in the user's text
    return this.tokenizer.encode(template.replace('{text}', () => text), { add_special_tokens: false }).ids;
  }

  /** The Python runtime's voice checks, with its messages. u: {speaker, language, instruct} */
  check(u) {
    const s = this.spec;
    const auto = u.language == null || u.language === 'auto';
    if (!auto && !Object.hasOwn(s.languages, u.language)) {
      throw new Error(`language ${repr(u.language)} is not one this model speaks; languages: `
        + `auto, ${Object.keys(s.languages).sort().join(', ')}`);
    }
    if (u.speaker != null && !Object.hasOwn(s.speakers, String(u.speaker))) {
      const named = Object.keys(s.speakers).sort().join(', ') || 'none (it clones a voice from a reference clip)';
      throw new Error(`speaker ${repr(u.speaker)} is not one of this model's speakers: ${named}`);
    }
    if (u.instruct && !s.instruct) {
      throw new Error('this model takes no instruction (--instruct); voxport follows the reference, '
        + 'which ignores it for this model type and size');
    }
  }

  /** [text id, codec ids] per position, the trailing text ids and the speaker-vector rows [row,
   * vector] (prompt.py's _rows). turns: context first; the last context turn is the reference
   * {text, codes [frames][G], vector?}. */
  rows(turns) {
    const s = this.spec, none = s.none, g = s.groups, t = s.text_ids, c = s.codec_ids;
    const u = turns[turns.length - 1];
    this.check(u);
    const ref = turns.length > 1 ? turns[turns.length - 2] : null;
    if (ref && !s.voice_clone) throw new Error('this model does not clone voices (a reference clip needs a Base model)');
    const codec = (x) => [x, ...new Array(g - 1).fill(none)];
    const ids = this.ids(s.template, u.text);
    const rows = (u.instruct ? this.ids(s.instruct_template, u.instruct) : []).map((i) => [i, new Array(g).fill(none)]);
    rows.push(...ids.slice(0, s.head).map((i) => [i, new Array(g).fill(none)]));
    const speaker = u.speaker == null ? null : String(u.speaker);
    const auto = u.language == null || u.language === 'auto';
    let lang = auto ? null : s.languages[u.language];
    if (speaker != null && Object.hasOwn(s.dialects, speaker) && (auto || u.language === 'chinese')) lang = s.languages[s.dialects[speaker]];
    const think = lang == null ? [c.nothink, c.think_bos, c.think_eos] : [c.think, c.think_bos, lang, c.think_eos];
    // a cloned voice without a named speaker still has a speaker position: its vector goes there
    const specials = [...think, ...(speaker ? [s.speakers[speaker]] : ref ? [none] : [])];
    for (const x of specials) rows.push([t.pad, codec(x)]);
    const vectors = ref?.vector != null ? [[rows.length - 1, ref.vector]] : [];
    rows.push([t.bos, codec(c.pad)]);
    if (!ref) {
      rows.push([ids[s.head], codec(c.bos)]);
      return { rows, trailing: [...ids.slice(s.head + 1, ids.length - s.tail), t.eos], vectors };
    }
    // the reference's text then the new text run beside the reference's codes; whichever is longer
    // decides: more text is fed per frame after the prompt, more codes get the pad text id
    const refIds = this.ids(s.ref_template, ref.text);
    const text = [...refIds.slice(s.ref_head, refIds.length - s.ref_tail), ...ids.slice(s.head, ids.length - s.tail), t.eos];
    const codes = [codec(c.bos), ...ref.codes];
    codes.forEach((x, i) => rows.push([i < text.length ? text[i] : t.pad, x]));
    return { rows, trailing: text.slice(codes.length), vectors };
  }

  /** -> {ids: text ids [S], codes: codec ids [S][G]} for the prompt graph */
  build(turns) {
    const { rows } = this.rows(turns);
    return { ids: rows.map((r) => r[0]), codes: rows.map((r) => r[1]) };
  }

  /** Text ids fed one per frame: the rest of the text, its end, then the pad id (repeated once
   * these run out). */
  trailing(turns) {
    return [...this.rows(turns).trailing, this.spec.text_ids.pad];
  }

  /** [row, speaker vector] pairs the generator adds to the prompt's embeddings (Runtime.embed). */
  vectors(turns) {
    return this.rows(turns).vectors;
  }
}
