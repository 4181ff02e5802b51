// The streaming codec decoder from the runtime's side (voxport/runtime/codec_stream.py): the state
// tensors the manifest lists (runtime.codec_stream: input name, output name, shape without batch,
// dtype) start as zeros and each call's outputs are the next call's state; consecutive chunks decode
// to exactly the samples one call would give for the same frames.
// Optional, for a codec whose decoder is not deterministic or not causal: `noise` (standard normal
// noise per frame, an input drawn from the request's seed) and `delay_frames` / `flush_code` (a graph
// that looks ahead: its first delay frames of audio are skipped, flush() ends the stream).
import { i64 } from './contract.js';
import { ArtifactError } from './errors.js';
import { NumpyRng } from './sampling.js';
import { dispose } from './kv.js';

const ARRAYS = { float32: Float32Array, int64: BigInt64Array };

/** codec_rng: the codec's noise generator for a request's seed, default_rng([seed, 1]). */
export function codecRng(seed) { return new NumpyRng([seed, 1]); }

/** codec_noise's values for `frames` frames: per frame 2 x perFrame float64 uniforms u, v, then
 * sqrt(-2 ln(1 - u)) cos(2 pi v) cast to float32, [frames * perFrame]. */
export function codecNoise(rng, frames, perFrame) {
  const out = new Float32Array(frames * perFrame), u = new Float64Array(perFrame);
  for (let f = 0; f < frames; f++) {
    for (let i = 0; i < perFrame; i++) u[i] = rng.random();
    for (let i = 0; i < perFrame; i++) {
      out[f * perFrame + i] = Math.sqrt(-2.0 * Math.log1p(-u[i])) * Math.cos(2.0 * Math.PI * rng.random());
    }
  }
  return out;
}

export class CodecStream {
  /** seed: the request's (a codec with noise draws it frame by frame from codecRng(seed)). */
  constructor(graphs, seed = 0) {
    const { ort, rt } = graphs, spec = rt.codec_stream;
    this.graphs = graphs; this.graph = spec.graph; this.calls = 0; this.k = rt.num_codebooks;
    this.state = Object.fromEntries(spec.state.map((e) => {
      if (!ARRAYS[e.dtype]) throw new ArtifactError(`codec state of dtype ${e.dtype} is not supported`);
      const dims = [1, ...e.shape];
      return [e.input, new ort.Tensor(e.dtype, new ARRAYS[e.dtype](dims.reduce((a, b) => a * b, 1)), dims)];
    }));
    this.inputOf = Object.fromEntries(spec.state.map((e) => [e.output, e.input]));
    this.noise = spec.noise ?? null;
    if (this.noise && (this.noise.distribution ?? 'normal') !== 'normal') {
      throw new ArtifactError(`codec noise distribution '${this.noise.distribution}' is not known to this runtime`);
    }
    this.rng = this.noise ? codecRng(seed) : null;
    this.delay = spec.delay_frames ?? 0; this.flushCode = spec.flush_code;
    this.skip = this.delay * rt.frame_size;  // samples still to drop (the look-ahead's start)
  }

  /** codes [frames][K] (consecutive frames of one stream) -> Float32Array of frames * frame_size samples
   * (fewer at the start of a stream whose graph looks ahead). */
  async decode(frames) {
    const n = frames.length, flat = new Array(this.k * n), ort = this.graphs.ort;
    frames.forEach((f, t) => f.forEach((c, j) => { flat[j * n + t] = c; }));  // [1, K, n]
    const feeds = { audio_codes: i64(ort, flat, [1, this.k, n]), ...this.state };
    if (this.noise) {
      const m = this.noise.per_frame;
      feeds[this.noise.input] = new ort.Tensor('float32', codecNoise(this.rng, n, m), [1, n, m]);
    }
    const out = await this.graphs.run(this.graph, feeds);
    dispose(Object.values(this.state));
    this.state = Object.fromEntries(Object.entries(this.inputOf).map(([o, i]) => [i, out[o]]));
    this.calls += 1;
    const audio = out.audio_values.data, cut = Math.min(this.skip, audio.length);
    this.skip -= cut;
    return audio.slice(cut);  // its own buffer: callers may transfer it
  }

  /** The audio a look-ahead graph still holds (none for one without). */
  async flush() {
    if (!this.delay) return new Float32Array(0);
    return this.decode(Array.from({ length: this.delay }, () => new Array(this.k).fill(this.flushCode)));
  }

  close() { dispose(Object.values(this.state)); }
}
