// The generation contract a family writes into the manifest (`runtime.generation`), read once; a port
// of voxport/runtime/contract.py (and kv.py's cache names). The frame graph's roles by input/output
// name, the KV cache as name templates, which outputs feed back into which inputs, the stop rule, the
// sampling groups and their defaults (the model's settings): the runtime holds no model knowledge or
// settings of its own. Every frame input has a row per stream on axis 0 (one row here); the cache is
// static (kv.js): buffers [1, kv_heads, capacity, head_dim] with the row's cached length in
// `cache.lengths`.
import { Sampling } from './sampling.js';
import { InputError } from './errors.js';
import { pyRepr } from './chunking.js';
import { StaticCache, cacheNames, dispose } from './kv.js';

export function i64(ort, values, dims) {
  return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

export const f32 = (ort, data, dims) => new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);

export class FrameContract {
  constructor(rt) {
    const g = rt.generation, f = g.frame, c = f.cache;
    Object.assign(this, { graph: f.graph, codes: f.codes, noise: f.noise, embedsIn: f.embeds.input,
      embedsOut: f.embeds.output, cache: c, capacity: c.capacity });
    [this.cacheIn, this.cacheOut] = cacheNames(c);
    // the frame graph's twin in the form WebGPU graph capture takes (same inputs and outputs), or null
    this.capture = f.capture ?? null;
    this.perFrame = f.per_frame ?? [];
    this.steps = f.steps ?? 1;  // LM steps inside one call
    this.logits = f.logits ?? null;
    this.codebooks = g.codebooks; this.noiseVocab = g.noise_vocab;
    this.sampling = g.sampling; this.stop = g.stop;
    this.defaults = { max_frames: 125, ...(g.defaults ?? {}) };  // 125: artifacts exported before it was written
    this.outputs = [this.codes, this.embedsOut, ...this.cacheOut];
  }

  /** The outputs that go straight back in as the next call's inputs (kept on the GPU on WebGPU). */
  get fedBack() { return [this.embedsOut, ...this.cacheOut]; }

  /** Buffers for `slots` streams of `capacity` positions (kv.py's StaticCache); device: the
   * environment's buffers bound in place (graphs.deviceBuffers), or null. */
  newCache(ort, slots, capacity, device = null) { return new StaticCache(ort, this.cache, slots, capacity, device); }

  /** One call's inputs but the cache buffers: embeds [rows, seq, H], each row's cached length, the
   * settings, noise and extras. */
  feeds(ort, embeds, lengths, sampling, noise, extra = {}) {
    return { [this.embedsIn]: embeds, [this.cache.lengths]: i64(ort, lengths, [lengths.length]), ...sampling,
      [this.noise]: noise, ...extra };
  }

  /** One frame call, the cache's new positions written (in place where it is bound so): {codes, embeds}
   * (codes a CPU tensor [rows, K]; the next embeds stay on the GPU on WebGPU). */
  async run(graphs, feeds, cache) {
    const all = { ...feeds, ...cache.feeds() };
    // bound in place: every output named, the presents to the pasts' own buffers
    const out = cache.inPlace ? await graphs.run(this.graph, all, { [this.codes]: null, [this.embedsOut]: null, ...cache.fetches() })
      : await graphs.run(this.graph, all);
    cache.update(out);
    return { codes: out[this.codes], embeds: out[this.embedsOut] };
  }

  /** The settings in force for one sampling group (FrameContract.resolve): the request's, else the
   * model's default from the manifest (top-p: else 1, none); checked against the group's vocabulary. */
  settings(s, group) {
    const d = group.defaults ?? {};
    const missing = [['temperature', 'temperature'], ['topK', 'top_k']].filter(([k, m]) => s[k] == null && d[m] == null).map(([, m]) => m);
    if (missing.length) {
      throw new InputError(`this artifact's manifest has no default ${missing.join(' or ')} for sampling group `
        + `${pyRepr(group.name)} (exported before voxport wrote them); give them or re-export it`);
    }
    const r = { temperature: s.temperature ?? d.temperature, topK: s.topK ?? d.top_k, topP: s.topP ?? d.top_p ?? 1,
      repetitionPenalty: s.repetitionPenalty };
    Sampling.validate(r, group.vocab);
    return r;
  }

  /** Frames per utterance: the request's, else the model's default (generation.defaults). */
  maxFrames(requested) { return requested ?? this.defaults.max_frames; }

  /** Whether every group draws greedily (then the noise cannot change a code). */
  greedy(s) { return this.sampling.every((g) => this.settings(s, g).temperature === 0); }

  /** One request's settings on every group's inputs, checked against each group's vocabulary. */
  samplingFeeds(ort, s) {
    const feeds = {};
    for (const group of this.sampling) {
      const v = this.settings(s, group), names = group.inputs;
      feeds[names.temperature] = new ort.Tensor('float32', new Float32Array([v.temperature]), [1]);  // one row
      feeds[names.top_k] = new ort.Tensor('int64', new BigInt64Array([BigInt(v.topK)]), [1]);
      if (names.top_p) feeds[names.top_p] = new ort.Tensor('float32', new Float32Array([v.topP]), [1]);
      else if (v.topP < 1) {
        throw new InputError("this artifact's frame graph samples without top-p (exported before voxport had it); "
          + 're-export it to use top-p');
      }
    }
    return feeds;
  }

  /** device: the environment's buffers (graphs.deviceBuffers) the feeds are written into, or null */
  logitsState(ort, s, device = null) {
    if (!this.logits) return null;
    const group = this.sampling.find((g) => g.defaults?.repetition_penalty != null);
    const penalty = s.repetitionPenalty ?? group?.defaults.repetition_penalty ?? 1.0;
    return new LogitsState(ort, this.logits, this.noiseVocab, penalty, device);
  }

  /** Cache positions one frame call adds for an input of `seq` positions. */
  advance(seq) { return seq + this.steps - 1; }

  isStop(frame) {
    const [a, b] = this.stop.codebooks;
    return frame.slice(a, b).every((c) => c === this.stop.token);
  }
}

/** The manifest's logits processors for one utterance, as frame-graph inputs (the reference's generate
 * applies them when greedy too): a repetition penalty over the ids one codebook has generated so far
 * (`seen`), and an additive bias that removes suppressed ids and, before `min_frames` frames, the stop
 * token. With `codebooks` [a, b] instead of `codebook`, each codebook of the range has its own row of
 * `seen` [1, b - a, vocab] and there is no bias. */
export class LogitsState {
  constructor(ort, spec, vocab, penalty, device = null) {
    this.ort = ort; this.spec = spec; this.vocab = vocab; this.frames = 0; this.device = device;
    this.rows = spec.codebooks ? spec.codebooks[1] - spec.codebooks[0] : null;
    this.dims = this.rows === null ? [1, vocab] : [1, this.rows, vocab];
    // written every frame into the same buffers where the environment has them
    this.tensors = device ? { seen: device.zeros(this.dims), ...(spec.bias ? { bias: device.zeros([1, vocab]) } : {}) } : null;
    this.seen = new Float32Array((this.rows ?? 1) * vocab);
    this.penalty = new ort.Tensor('float32', new Float32Array([penalty]), [1]);  // one row
    this.bias = null;
    if (spec.bias) {
      this.bias = new Float32Array(vocab);
      this.bias.fill(-Infinity, spec.suppress[0], spec.suppress[1]);
      for (const id of spec.allow) this.bias[id] = 0;
    }
  }

  feeds() {
    const { spec, ort, vocab } = this;
    let bias = this.bias;
    if (bias && this.frames < spec.min_frames) {
      bias = bias.slice();
      bias[spec.min_frames_token] = -Infinity;
    }
    if (this.tensors) {
      this.device.write(this.tensors.seen, this.seen);
      if (bias) this.device.write(this.tensors.bias, bias);
      return { [spec.repetition_penalty]: this.penalty, ...Object.fromEntries(Object.entries(this.tensors).map(([k, t]) => [spec[k], t])) };
    }
    const out = { [spec.repetition_penalty]: this.penalty, [spec.seen]: new ort.Tensor('float32', this.seen.slice(), this.dims) };
    return bias ? { ...out, [spec.bias]: new ort.Tensor('float32', bias, [1, vocab]) } : out;
  }

  dispose() { if (this.tensors) dispose(Object.values(this.tensors)); }

  /** After each frame: its codes in the penalised codebook(s) count as seen. */
  update(frame) {
    if (this.rows === null) this.seen[frame[this.spec.codebook]] = 1;
    else for (let r = 0; r < this.rows; r++) this.seen[r * this.vocab + frame[this.spec.codebooks[0] + r]] = 1;
    this.frames += 1;
  }
}
