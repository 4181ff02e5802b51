// The streaming codec decoder from the runtime's side (voxport/runtime/codec_stream.py): the state
// tensors the manifest lists (runtime.codec_stream: input name, output name, shape without batch,
// dtype) start as zeros and each call's outputs are the next call's state; consecutive chunks decode
// to exactly the samples one call would give for the same frames.
import { i64 } from './contract.js';
import { ArtifactError } from './errors.js';
import { dispose } from './kv.js';

const ARRAYS = { float32: Float32Array, int64: BigInt64Array };

export class CodecStream {
  constructor(graphs) {
    const { ort, rt } = graphs, spec = rt.codec_stream;
    this.graphs = graphs; this.graph = spec.graph; this.calls = 0; this.k = rt.num_codebooks;
    this.state = Object.fromEntries(spec.state.map((e) => {
      if (!ARRAYS[e.dtype]) throw new ArtifactError(`codec state of dtype ${e.dtype} is not supported`);
      const dims = [1, ...e.shape];
      return [e.input, new ort.Tensor(e.dtype, new ARRAYS[e.dtype](dims.reduce((a, b) => a * b, 1)), dims)];
    }));
    this.inputOf = Object.fromEntries(spec.state.map((e) => [e.output, e.input]));
  }

  /** codes [frames][K] (consecutive frames of one stream) -> Float32Array of frames * frame_size samples. */
  async decode(frames) {
    const n = frames.length, flat = new Array(this.k * n);
    frames.forEach((f, t) => f.forEach((c, j) => { flat[j * n + t] = c; }));  // [1, K, n]
    const out = await this.graphs.run(this.graph, { audio_codes: i64(this.graphs.ort, flat, [1, this.k, n]), ...this.state });
    dispose(Object.values(this.state));
    this.state = Object.fromEntries(Object.entries(this.inputOf).map(([o, i]) => [i, out[o]]));
    this.calls += 1;
    return out.audio_values.data.slice();  // its own buffer: callers may transfer it
  }

  close() { dispose(Object.values(this.state)); }
}
