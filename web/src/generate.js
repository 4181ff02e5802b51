// Generation and audio, ported from voxport/runtime/stream.py (the fused path): the prompt graph turns the
// prompt into backbone inputs once, then one `frame` graph call per 80 ms frame gives the frame's K
// codes, the next frame's input embedding and the backbone KV (the 31 depth-decoder steps and the
// sampling happen inside the graph). Audio comes from the stateful `mimi_decoder_stream`, one call
// per chunk of frames, its state fed back from call to call (voxport/runtime/codec_stream.py).
import { samplingFeeds } from './sampling.js';
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

// The manifest's generation contract (voxport/runtime/contract.py, kv.py): KV cache names from
// templates; the cache is static, buffers [1, kv_heads, capacity, head_dim] whose present.* outputs
// come back as the next call's past inputs, with each row's cached length in `lengths`.
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

function staticCache(frame, ort, capacity) {
  const c = frame.cache;
  if (c.layout !== 'static') throw new Error("this artifact's frame graph grows its KV cache; re-export it");
  const { inputs } = cacheNames(frame);
  const n = c.kv_heads * capacity * c.head_dim;
  return Object.fromEntries(inputs.map((name) => [name, new ort.Tensor('float32', new Float32Array(n),
    [1, c.kv_heads, capacity, c.head_dim])]));
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
const PROMPT_INPUTS = { chat_template: (p) => [p.ids, p.codes], dual_track: (p) => [p.text, p.codes] };

/** ids [S] and codes [S][K] through the prompt graph -> its embeddings [1, S, H]. */
async function embedPrompt(g, ids, codes) {
  const { ort, rt } = g, p = rt.generation.prompt, n = ids.length;
  const [a, b] = PROMPT_INPUTS[p.format](p);
  const out = await g.run(p.graph, { [a]: i64(ids, [1, n], ort), [b]: i64(codes.flat(), [1, n, codes[0].length], ort) });
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
  // the prompt and every frame but the last enter the cache (the Python runtime sizes it the same way)
  let past = staticCache(fr, ort, Math.min(prompt.ids.length + maxFrames, fr.cache.capacity));
  let pos = 0;
  try {
    for (let f = 1; ; f++) {
      const seq = embeds.dims[1];
      // Every present.* has its past input's fixed shape and comes back as the next call's past (on
      // WebGPU it stays a GPU buffer). Not bound as a preallocated output: on onnxruntime-web 1.30
      // wasm, presents written into preallocated tensors (the past's own, or a second set swapped
      // each frame) gave other codes than Python's from the second frame on.
      const out = await g.run(fr.graph, {
        [fr.embeds.input]: embeds, [fr.cache.lengths]: i64([pos], [1], ort),
        ...s.feeds, [fr.noise]: s.noise(), ...past,
        ...perFrame[Math.min(f - 1, perFrame.length - 1)], ...logits?.feeds(),
      });
      dispose(past);
      dispose([embeds]);
      past = nextCache(fr, out);
      embeds = out[fr.embeds.output];
      pos += seq;
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
  constructor(g) {
    const { ort, rt } = g;
    const spec = rt.codec_stream;
    this.g = g; this.graph = spec.graph; this.calls = 0;
    this.state = Object.fromEntries(spec.state.map((e) => [e.input, zeros(ort, e.dtype, [1, ...e.shape])]));
    this.inputOf = Object.fromEntries(spec.state.map((e) => [e.output, e.input]));
  }

  /** codes [n][K] -> Float32Array of n * frame_size samples. */
  async decode(frames) {
    const { ort, rt } = this.g;
    const k = rt.num_codebooks, n = frames.length;
    const flat = new Array(k * n);
    frames.forEach((f, t) => f.forEach((c, j) => { flat[j * n + t] = c; }));  // [1, K, n]
    const out = await this.g.run(this.graph, { audio_codes: i64(flat, [1, k, n], ort), ...this.state });
    dispose(this.state);
    this.state = {};
    for (const [name, input] of Object.entries(this.inputOf)) this.state[input] = out[name];
    this.calls += 1;
    return out.audio_values.data;
  }

  close() { dispose(this.state); }
}
