// The CSM / Marvis generation loop, ported from runtime/csm.py (which mirrors transformers'
// CsmGenerationMixin._sample): prefill -> codebook 0 from the backbone -> 31 depth-decoder steps
// (fresh depth KV per frame) -> the frame's summed embeddings are the next backbone input.
// This is the step loop (33 session.run per frame); a fused per-frame graph goes beside it.
import { choose } from './sampling.js';

function i64(values, dims, ort) {
  return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

function emptyPast(spec, ort) {
  const feeds = {};
  for (let i = 0; i < spec.layers; i++) {
    for (const kind of ['key', 'value']) {
      feeds[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0),
        [1, spec.kv_heads, 0, spec.head_dim]);
    }
  }
  return feeds;
}

// present.{i}.key -> past_key_values.{i}.key: the outputs of one step are the next step's inputs
function nextPast(out) {
  const past = {};
  for (const [name, t] of Object.entries(out)) {
    if (name.startsWith('present.')) past[`past_key_values.${name.slice(8)}`] = t;
  }
  return past;
}

// KV tensors may live on the GPU ('gpu-buffer'); release them when replaced, or the allocator fragments
function dispose(feeds) {
  for (const t of Object.values(feeds)) if (t.location === 'gpu-buffer') t.dispose();
}

// [1, seq, N] float32 -> the last position as [1, N]
function lastRow(t, ort) {
  const n = t.dims[t.dims.length - 1];
  return new ort.Tensor('float32', t.data.subarray(t.data.length - n), [1, n]);
}

/** The K codes of one frame: codebook 0 from the backbone logits, the rest from the depth decoder. */
async function depthFrame(g, hidden, logits, sampler) {
  const { ort, rt } = g;
  const codes = [sampler(logits.data)];
  let ids = i64([0, codes[0]], [1, 2], ort);  // position 0 is replaced by the backbone hidden state
  let past = emptyPast(rt.depth, ort);
  for (let k = 1; k < rt.num_codebooks; k++) {
    const out = await g.run('depth', { input_ids: ids, backbone_last_hidden_state: hidden, ...past });
    dispose(past);
    past = nextPast(out);
    codes.push(sampler(out.logits.data));
    ids = i64([codes[k]], [1, 1], ort);
  }
  dispose(past);
  return codes;
}

/**
 * Frames of K codes, one per iteration, until the eos frame (kept, as transformers does) or maxFrames.
 * g: {ort, rt, run(name, feeds) -> outputs by name}; prompt: {ids, codes} from PromptBuilder.build.
 */
export async function* generateFrames(g, prompt, { maxFrames, sampling, rng, shouldStop = () => false }) {
  const { ort, rt } = g;
  const k = rt.num_codebooks;
  const eos = rt.codebook_eos_token_id;
  const sampler = (logits) => choose(logits, sampling, rng);
  const s = prompt.ids.length;
  let embeds = (await g.run('embed', {
    input_ids: i64(prompt.ids, [1, s], ort), audio_codes: i64(prompt.codes.flat(), [1, s, k], ort),
  })).inputs_embeds;
  let past = emptyPast(rt.backbone, ort);
  let pos = 0;
  try {
    for (let n = 1; ; n++) {
      const seq = embeds.dims[1];
      const out = await g.run('backbone', {
        inputs_embeds: embeds,
        attention_mask: i64(new Array(pos + seq).fill(1), [1, pos + seq], ort),
        position_ids: i64(Array.from({ length: seq }, (_, i) => pos + i), [1, seq], ort),
        ...past,
      });
      dispose(past);
      past = nextPast(out);
      pos += seq;
      const frame = await depthFrame(g, lastRow(out.last_hidden_state, ort), lastRow(out.logits, ort), sampler);
      yield frame;
      // transformers stops when every codebook but the last is eos
      if (frame.slice(0, -1).every((c) => c === eos) || n >= maxFrames || shouldStop()) return;
      embeds = (await g.run('embed', {
        input_ids: i64([rt.audio_token_id], [1, 1], ort), audio_codes: i64(frame, [1, 1, k], ort),
      })).inputs_embeds;
    }
  } finally {
    dispose(past);
  }
}

/** Frames before the first all-eos frame (the audio transformers' generate returns). */
export function audibleFrames(frames, rt) {
  const end = frames.findIndex((f) => f.every((c) => c === rt.codebook_eos_token_id));
  return end < 0 ? frames : frames.slice(0, end);
}

/** codes [n][K] -> waveform (Float32Array, n * frame_size samples) with the whole-utterance decoder. */
export async function decode(g, frames) {
  const { ort, rt } = g;
  if (!frames.length) return new Float32Array(0);
  const k = rt.num_codebooks;
  const flat = new Array(k * frames.length);
  frames.forEach((f, t) => f.forEach((c, j) => { flat[j * frames.length + t] = c; }));  // [1, K, n]
  const out = await g.run('mimi_decoder', { audio_codes: i64(flat, [1, k, frames.length], ort) });
  return Object.values(out)[0].data;
}

/**
 * Streaming without a stateful decoder: decode the growing prefix and hand out only new samples.
 * The decoder is causal, so a prefix's samples are final (measured on Mimi: prefix == whole decode
 * to 1e-6, hence hold 0). Chunks grow (2, 4, 8, ... frames, at most `maxChunk`): the first audio
 * comes early and the total decode work stays a small multiple of one decode.
 * A streaming decoder graph (mimi_decoder_stream) replaces this with one step per frame.
 */
export class PrefixStreamer {
  constructor(g, { hold = 0, maxChunk = 25 } = {}) {
    this.g = g; this.hold = hold; this.maxChunk = maxChunk;
    this.emitted = 0;  // samples handed out
    this.decodedAt = 0;  // frames in the last decode
  }

  /** New final samples for frames so far (Float32Array, maybe empty); `final` flushes everything. */
  async push(frames, final = false) {
    const size = this.g.rt.frame_size;
    const n = frames.length;
    const chunk = Math.min(this.maxChunk, Math.max(2, this.decodedAt));
    if (!final && (n < this.hold + 1 || n - this.decodedAt < chunk)) return new Float32Array(0);
    const audio = await decode(this.g, frames);
    this.decodedAt = n;
    const end = final ? audio.length : Math.max(0, (n - this.hold) * size);
    if (end <= this.emitted) return new Float32Array(0);
    const out = audio.slice(this.emitted, end);
    this.emitted = end;
    return out;
  }
}
