// Text -> the prompt graph's inputs, in the format the manifest names (generation.prompt.format), with
// the checkpoint's own tokenizer.json and chat template: a port of voxport/runtime/prompt.py.
//
// "chat_template": the checkpoint's Jinja chat template renders the turns; each context clip's audio is
// one audio token per codec frame, its codes on a parallel [S, K] track (CSM's processor layout).
// "dual_track": a text track and a codec track per position (Qwen3-TTS's talker), summed by the prompt
// graph; control ids (think, language, speaker) ride the codec track; the text after the first token is
// fed one token per frame (`trailing`), then the pad token; a cloned voice adds its speaker vector at
// the speaker position and its reference text and codes in context.
//
// "token_ids": fixed ids around the tokenized template, one input (ids); named speakers, no context audio.
//
// Every builder gives: build(turns) -> {ids, codes} (the prompt graph's inputs, named by inputs(); codes
// null where the format has one input),
// trailing(turns) -> text ids fed per frame (null: none), vectors(turns) -> [row, vector] pairs added to
// the embeddings. @huggingface/tokenizers and @huggingface/jinja are transformers.js's engines.
import { Tokenizer } from '@huggingface/tokenizers';
import { Environment, Template } from '@huggingface/jinja';
import { ArtifactError, InputError } from './errors.js';
import { pyRepr } from './chunking.js';

// CSM's template checks `message['role'].isdigit()`, a Python str method @huggingface/jinja 0.5.11
// lacks. Its value classes are not exported; reach them through Environment.set and add the
// method to every string value (Python: non-empty and every character a decimal digit).
function addStringIsdigit() {
  const env = new Environment();
  const StringValue = env.set('s', '').constructor;
  const BooleanValue = env.set('b', true).constructor;
  const FunctionValue = env.set('f', () => 0).constructor;
  const base = Object.getOwnPropertyDescriptor(StringValue.prototype, 'builtins');
  if (!base?.get || base.get.patched) return;
  const get = function () {
    const m = base.get.call(this);
    if (!m.has('isdigit')) m.set('isdigit', new FunctionValue(() => new BooleanValue(/^\p{Nd}+$/u.test(this.value))));
    return m;
  };
  get.patched = true;
  Object.defineProperty(StringValue.prototype, 'builtins', { ...base, get });
}
addStringIsdigit();

export class ChatTemplatePrompt {
  static carriesContext = true;  // each utterance of a long text is the next one's context (CSM's turns)

  /** files: {tokenizer: object, template: string, special: object}; rt: manifest.runtime */
  constructor(files, rt) {
    this.rt = rt;
    this.spec = rt.generation.prompt;
    this.graph = this.spec.graph;
    this.tokenizer = new Tokenizer(files.tokenizer, {});
    this.template = new Template(files.template);  // trim_blocks + lstrip_blocks, as Python's
    this.special = files.special;
  }

  /** turns: [{text, speaker, codes?: number[][] (frames x K)}] -> the rendered prompt string */
  render(turns) {
    const messages = turns.map((u) => ({
      role: String(u.speaker),
      content: [{ type: 'text', text: u.text }, ...(u.codes ? [{ type: 'audio' }] : [])],
    }));
    // @huggingface/jinja provides raise_exception itself
    const text = this.template.render({ messages, add_generation_prompt: false, ...this.special });
    // one audio token per codec frame, in order (as CsmProcessor expands them)
    const audioToken = this.rt.generation.prompt.audio_token;
    const parts = text.split(audioToken);
    const frames = turns.filter((u) => u.codes).map((u) => u.codes.length);
    if (parts.length - 1 !== frames.length) {
      throw new InputError(`chat template produced ${parts.length - 1} audio slots for ${frames.length} audio clips`);
    }
    return parts[0] + frames.map((n, i) => audioToken.repeat(n) + parts[i + 1]).join('');
  }

  /** -> {ids: number[], codes: number[][] (one K-vector per position)} for the embed graph */
  build(turns) {
    const ids = this.tokenizer.encode(this.render(turns), { add_special_tokens: false }).ids;
    // the manifest's generation.prompt (chat_template format), as voxport/runtime/prompt.py reads it
    const { codebooks: k, audio_token_id, audio_eos_token_id, audio_eos_frame_token: codebook_eos_token_id } = this.rt.generation.prompt;
    const clips = turns.filter((u) => u.codes).flatMap((u) => u.codes);
    let next = 0;
    const codes = ids.map((id) => {
      if (id === audio_token_id && next < clips.length) return clips[next++];
      // the audio-eos position carries an all-eos frame (transformers embeds it the same way)
      if (id === audio_eos_token_id) return new Array(k).fill(codebook_eos_token_id);
      return new Array(k).fill(0);
    });
    return { ids, codes };
  }

  check(u) {
    if (u.language != null && u.language !== 'auto') throw new InputError('this model takes no language option; it speaks the language of the text');
    if (u.instruct) throw new InputError('this model takes no instruction (--instruct)');
  }

  /** The prompt graph's input names for build()'s ids and codes. */
  inputs() { return [this.spec.ids, this.spec.codes]; }

  /** The chat template feeds no text per frame. */
  trailing() { return null; }

  /** Nor speaker vectors: a voice prompt is its codes in context. */
  vectors() { return []; }
}

// Python's repr of a speaker or language, as the Python runtime's messages quote them
const repr = (v) => (typeof v === 'string' ? pyRepr(v) : String(v));

export class DualTrackPrompt {
  static carriesContext = false;  // the context is the caller's cloned voice, the same for every utterance

  /** files: {tokenizer: object}; rt: manifest.runtime */
  constructor(files, rt) {
    this.spec = rt.generation.prompt;
    this.graph = this.spec.graph;
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
      throw new InputError(`language ${repr(u.language)} is not one this model speaks; languages: `
        + `auto, ${Object.keys(s.languages).sort().join(', ')}`);
    }
    if (u.speaker != null && !Object.hasOwn(s.speakers, String(u.speaker))) {
      const named = Object.keys(s.speakers).sort().join(', ') || 'none (it clones a voice from a reference clip)';
      throw new InputError(`speaker ${repr(u.speaker)} is not one of this model's speakers: ${named}`);
    }
    if (u.instruct && !s.instruct) {
      throw new InputError('this model takes no instruction (--instruct); voxport follows the reference, '
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
    if (ref && !s.voice_clone) throw new InputError('this model does not clone voices (a reference clip needs a Base model)');
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

  inputs() { return [this.spec.text, this.spec.codes]; }

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

/** "token_ids" (prompt.py's TokenIdsPrompt): fixed ids around the tokenized template ("{speaker}: {text}",
 * the tokenizer's own special tokens added), one prompt graph input; named speakers only, no context audio. */
export class TokenIdsPrompt {
  static carriesContext = false;  // each utterance stands alone

  /** files: {tokenizer: object}; rt: manifest.runtime */
  constructor(files, rt) {
    this.spec = rt.generation.prompt;
    this.speakers = rt.generation.speakers.names;
    this.graph = this.spec.graph;
    this.tokenizer = new Tokenizer(files.tokenizer, {});
  }

  check(u) {
    if (u.language != null && u.language !== 'auto') throw new InputError('this model takes no language option; it speaks the language of the text');
    if (u.instruct) throw new InputError('this model takes no instruction (--instruct)');
    if (u.speaker != null && !this.speakers.includes(String(u.speaker))) {
      throw new InputError(`speaker ${repr(u.speaker)} is not one of this model's speakers: ${this.speakers.join(', ')}`);
    }
  }

  /** -> {ids: prefix + tokens + suffix, codes: null} of the last turn (the format takes no context) */
  build(turns) {
    const u = turns[turns.length - 1];
    if (turns.length > 1) throw new InputError('this model does not clone voices (it takes no reference clip)');
    this.check(u);
    const s = this.spec;
    // replacer functions: a replacement string would expand $& and $' in the user's text
    const text = u.speaker != null ? s.template.replace('{speaker}', () => String(u.speaker)).replace('{text}', () => u.text) : u.text;
    const ids = this.tokenizer.encode(text, { add_special_tokens: s.add_special_tokens }).ids;
    return { ids: [...s.prefix, ...ids, ...s.suffix], codes: null };
  }

  /** One input: the ids. */
  inputs() { return [this.spec.ids]; }

  trailing() { return null; }

  vectors() { return []; }
}

const FORMATS = { chat_template: ChatTemplatePrompt, dual_track: DualTrackPrompt, token_ids: TokenIdsPrompt };
export const PROMPT_FORMATS = Object.keys(FORMATS);

/** The builder of the manifest's prompt format. files: {tokenizer: object, template?: string, special?: object} */
export function promptBuilder(files, rt, where = 'artifact') {
  const format = rt.generation.prompt.format;
  if (!FORMATS[format]) {
    throw new ArtifactError(`${where}: prompt format ${format} is not known to this runtime (known: ${PROMPT_FORMATS.join(', ')})`);
  }
  return new FORMATS[format](files, rt);
}
