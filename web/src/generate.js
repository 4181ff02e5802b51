// Generation and audio, ported from voxport/runtime/stream.py (the fused path): the prompt graph turns the
// prompt into backbone inputs once, then one `frame` graph call per 80 ms frame gives the frame's K
// codes, the next frame's input embedding and the backbone KV (the 31 depth-decoder steps and the
// sampling happen inside the graph). Audio comes from the stateful `mimi_decoder_stream`, one call
// per chunk of frames, its state fed back from call to call (voxport/runtime/codec_stream.py).
import { codecNoise, codecRng, samplingFeeds } from './sampling.js';
import { LogitsState } from './logits.js';

export function i64(values, dims, ort) {
  return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

function zeros(ort, dtype, dims) {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = dtype === 'int64' ? new BigInt64Array(n) : dtype === 'float32' ? new Float32Array(n) : null;
  if (!data) throw new Error(`codec state of dtype ${dtype} is not supported here`);
  return new ort.Tensor(dtype, data, dims);
}

// The manifest's generation contract (voxport/runtime/contract.py): KV cache names from templates,
// each present.* output fed back into its past input on the next call.
function cacheNames(frame) {
  const c = frame.cache, inputs = [], outputs = [];
  for (let layer = 0; layer < c.layers; layer++) {
    for (const kv of c.kv) {
      inputs.push(c.input.replace('{layer}', layer).replace('{kv}', kv));
      outputs.push(c.output.replace('{layer}', layer).replace('{kv}', kv));
    }
  }
  return { inputs, outputs };
}

function emptyCache(frame, ort) {
  const { inputs } = cacheNames(frame);
  return Object.fromEntries(inputs.map((name) => [name, new ort.Tensor('float32', new Float32Array(0),
    [1, frame.cache.kv_heads, 0, frame.cache.head_dim])]));
}

function nextCache(frame, out) {
  const { inputs, outputs } = cacheNames(frame);
  return Object.fromEntries(outputs.map((name, i) => [inputs[i], out[name]]));
}

// tensors may live on the GPU ('gpu-buffer'); release them when replaced, or the allocator fragments
export function dispose(tensors) {
  for (const t of Object.values(tensors)) if (t?.location === 'gpu-buffer') t.dispose();
}

/** The manifest's stop rule: codes[a:b] all equal to its token end the utterance; that frame is not audio. */
export function isEos(frame, rt) {
  const { codebooks: [a, b], token } = rt.generation.stop;
  return frame.slice(a, b).every((c) => c === token);
}

// The prompt graph's two inputs by the contract's names, per prompt format (prompt.py's feeds()).
const PROMPT_INPUTS = { chat_template: (p) => [p.ids, p.codes], dual_track: (p) => [p.text, p.codes],
  token_ids: (p) => [p.ids] };

/** ids [S] and codes [S][K] (null where the format has no codes track) through the prompt graph ->
 * its embeddings [1, S, H]. */
async function embedPrompt(g, ids, codes) {
  const { ort, rt } = g, p = rt.generation.prompt, n = ids.length;
  const [a, b] = PROMPT_INPUTS[p.format](p);
  const feeds = { [a]: i64(ids, [1, n], ort) };
  if (b) feeds[b] = i64(codes.flat(), [1, n, codes[0].length], ort);
  const out = await g.run(p.graph, feeds);
  return Object.values(out)[0];
}

/** Adds each speaker vector to its row of the prompt's embeddings [1, S, H] (Runtime.embed); the
 * prompt graph's output is on the CPU (worker.js keeps only fed-back outputs on the GPU). */
function addVectors(embeds, vectors) {
  const h = embeds.dims[2];
  for (const [row, vector] of vectors) vector.forEach((v, j) => { embeds.data[row * h + j] += v; });
}

/** Each frame's extra inputs where the contract feeds text per frame (Runtime.embed): the trailing
 * text ids embedded through the prompt graph with the codec track all `none`, one [1, 1, H] row per
 * frame, the last repeating. [{}] where it feeds none. */
async function perFrameText(g, trailing) {
  const { ort, rt } = g, p = rt.generation.prompt;
  if (!trailing) return [{}];
  const [entry] = rt.generation.frame.per_frame;  // one source, "trailing_text"
  const text = await embedPrompt(g, trailing, trailing.map(() => new Array(p.groups).fill(p.none)));
  const h = text.dims[2];
  return trailing.map((_, i) => ({ [entry.input]: new ort.Tensor('float32', text.data.slice(i * h, (i + 1) * h), [1, 1, h]) }));
}

/**
 * Frames of K codes, one `frame` call each, until the eos frame (yielded, as Python keeps it in
 * `codes`) or maxFrames or shouldStop().
 * g: {ort, rt, run(name, feeds) -> outputs by name}; prompt: {ids, codes, trailing, vectors} from a prompt
 * builder (tokenize.js); sampling: {temperature, topK, repetitionPenalty?}; seed: the noise
 * generator's seed (voxport/runtime/sampling.py draw_noise).
 */
export async function* generateFrames(g, prompt, { maxFrames, sampling, seed, shouldStop = () => false }) {
  const { ort, rt } = g;
  const gen = rt.generation, fr = gen.frame;
  const s = samplingFeeds(ort, sampling, seed, gen);
  const logits = LogitsState.of(ort, gen, sampling);
  let embeds = await embedPrompt(g, prompt.ids, prompt.codes);
  addVectors(embeds, prompt.vectors);
  const perFrame = await perFrameText(g, prompt.trailing);
  let past = emptyCache(fr, ort);
  let pos = 0;
  try {
    for (let f = 1; ; f++) {
      const seq = embeds.dims[1];
      const out = await g.run(fr.graph, {
        [fr.embeds.input]: embeds,
        [fr.attention_mask]: i64(new Array(pos + seq).fill(1), [1, pos + seq], ort),
        [fr.position_ids]: i64(Array.from({ length: seq }, (_, i) => pos + i), [1, seq], ort),
        ...s.feeds, [fr.noise]: s.noise(), ...past,
        ...perFrame[Math.min(f - 1, perFrame.length - 1)], ...logits?.feeds(),
      });
      dispose(past);
      dispose([embeds]);
      past = nextCache(fr, out);
      embeds = out[fr.embeds.output];
      pos += seq + (fr.steps ?? 1) - 1;  // a call may run several LM steps (contract frame.steps)
      const frame = Array.from(out[fr.codes].data, Number);  // codes [1, K]
      logits?.update(frame);
      yield frame;
      if (isEos(frame, rt) || f >= maxFrames || shouldStop()) return;
    }
  } finally {
    dispose(past);
    dispose([embeds]);
  }
}

/**
 * The streaming Mimi decoder: the state tensors the manifest lists (runtime.codec_stream: input
 * name, output name, shape without batch, dtype) start as zeros and each call's state_out is the
 * next call's state_in. Consecutive chunks of one stream decode to exactly the samples a single
 * call would give for the same chunks (Python's CodecStream does the same).
 */
export class CodecStream {
  /** seed: the request's (a codec with noise draws it per frame, as Python's codec_rng(seed)). */
  constructor(g, seed = 0) {
    const { ort, rt } = g;
    const spec = rt.codec_stream;
    this.g = g; this.graph = spec.graph; this.calls = 0;
    this.state = Object.fromEntries(spec.state.map((e) => [e.input, zeros(ort, e.dtype, [1, ...e.shape])]));
    this.inputOf = Object.fromEntries(spec.state.map((e) => [e.output, e.input]));
    this.noise = spec.noise ?? null;
    this.rng = this.noise ? codecRng(seed) : null;
    // a graph that looks ahead: its first delay frames of audio are skipped, flush() ends the stream
    this.delay = spec.delay_frames ?? 0;
    this.flushCode = spec.flush_code;
    this.skip = this.delay * rt.frame_size;
  }

  /** codes [n][K] -> Float32Array of n * frame_size samples (fewer at the start of a look-ahead stream). */
  async decode(frames) {
    const { ort, rt } = this.g;
    const k = rt.num_codebooks, n = frames.length;
    const flat = new Array(k * n);
    frames.forEach((f, t) => f.forEach((c, j) => { flat[j * n + t] = c; }));  // [1, K, n]
    const feeds = { audio_codes: i64(flat, [1, k, n], ort), ...this.state };
    if (this.noise) {
      feeds[this.noise.input] = new ort.Tensor('float32', codecNoise(this.rng, n, this.noise.per_frame),
        [1, n, this.noise.per_frame]);
    }
    const out = await this.g.run(this.graph, feeds);
    dispose(this.state);
    this.state = {};
    for (const [name, input] of Object.entries(this.inputOf)) this.state[input] = out[name];
    this.calls += 1;
    const audio = out.audio_values.data;
    const cut = Math.min(this.skip, audio.length);
    this.skip -= cut;
    return cut ? audio.slice(cut) : audio;
  }

  /** The audio a look-ahead graph still holds (none for one without). */
  async flush() {
    if (!this.delay) return new Float32Array(0);
    const k = this.g.rt.num_codebooks;
    return this.decode(Array.from({ length: this.delay }, () => new Array(k).fill(this.flushCode)));
  }

  close() { dispose(this.state); }
}
