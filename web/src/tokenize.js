// Text -> prompt token ids with the checkpoint's own tokenizer.json and chat template, exactly as
// voxport/runtime/prompt.py (and transformers' CsmProcessor) build them; promptBuilder picks the
// builder of the manifest's prompt format (the dual_track one is web/src/dual_track.js). @huggingface/tokenizers and
// @huggingface/jinja are the tokenizer and template engines of transformers.js, used directly.
import { Tokenizer } from '../node_modules/@huggingface/tokenizers/dist/tokenizers.mjs';
import { Environment, Template } from '../node_modules/@huggingface/jinja/dist/index.js';
import { DualTrackPrompt } from './dual_track.js';


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
  /** files: {tokenizer: object, template: string, special: object}; rt: manifest.runtime */
  constructor(files, rt) {
    this.rt = rt;
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
      throw new Error(`chat template produced ${parts.length - 1} audio slots for ${frames.length} audio clips`);
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

  /** The chat template feeds no text per frame. */
  trailing() { return null; }

  /** Nor speaker vectors: a voice prompt is its codes in context. */
  vectors() { return []; }
}

/** The token_ids format (voxport/runtime/prompt.py TokenIdsPrompt): fixed ids around the tokenized
 * template, named speakers only, no context audio. */
export class TokenIdsPrompt {
  constructor(files, rt) {
    this.spec = rt.generation.prompt;
    this.speakers = rt.generation.speakers.names;
    this.tokenizer = new Tokenizer(files.tokenizer, {});
  }

  check(u) {
    if (u.language != null && u.language !== 'auto') throw new Error('this model takes no language option; it speaks the language of the text');
    if (u.instruct) throw new Error('this model takes no instruction (--instruct)');
    if (u.speaker != null && !this.speakers.includes(String(u.speaker))) {
      throw new Error(`speaker '${u.speaker}' is not one of this model's speakers: ${this.speakers.join(', ')}`);
    }
  }

  build(turns) {
    const u = turns[turns.length - 1];
    if (turns.length > 1) throw new Error('this model does not clone voices (it takes no reference clip)');
    this.check(u);
    const s = this.spec;
    const text = u.speaker != null ? s.template.replace('{speaker}', u.speaker).replace('{text}', u.text) : u.text;
    const ids = this.tokenizer.encode(text, { add_special_tokens: s.add_special_tokens }).ids;
    return { ids: [...s.prefix, ...ids, ...s.suffix], codes: null };
  }

  trailing() { return null; }

  vectors() { return []; }
}

const FORMATS = { chat_template: ChatTemplatePrompt, dual_track: DualTrackPrompt, token_ids: TokenIdsPrompt };

/** The builder of the manifest's generation.prompt.format (checkManifest refused any other). */
export function promptBuilder(files, rt) {
  return new FORMATS[rt.generation.prompt.format](files, rt);
}
