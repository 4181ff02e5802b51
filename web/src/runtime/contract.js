// The generation contract a family writes into the manifest (`runtime.generation`), read once; a port
// of voxport/runtime/contract.py (and kv.py's cache names). The frame graph's roles by input/output
// name, the KV cache as name templates, which outputs feed back into which inputs, the stop rule, the
// sampling groups and their defaults (the model's settings): the runtime holds no model knowledge or
// settings of its own. Every frame input has a row per stream on axis 0 (one row here); the cache is
// static: buffers [1, kv_heads, capacity, head_dim] whose present outputs come back as the next call's
// past inputs, with the row's cached length in `cache.lengths`.
import { Sampling } from './sampling.js';
import { ArtifactError, InputError } from './errors.js';
import { pyRepr } from './chunking.js';

const fill = (template, layer, kv) => template.replace('{layer}', layer).replace('{kv}', kv);

export function i64(ort, values, dims) {
  return new ort.Tensor('int64', BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

export const f32 = (ort, data, dims) => new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);

export class FrameContract {
  constructor(rt) {
    const g = rt.generation, f = g.frame, c = f.cache;
    Object.assign(this, { graph: f.graph, codes: f.codes, noise: f.noise, embedsIn: f.embeds.input,
      embedsOut: f.embeds.output, cache: c, capacity: c.capacity });
    const names = [];
    for (let i = 0; i < c.layers; i++) for (const kv of c.kv) names.push([i, kv]);
    this.cacheIn = names.map(([i, kv]) => fill(c.input, i, kv));
    this.cacheOut = names.map(([i, kv]) => fill(c.output, i, kv));
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

  /** Zeroed past buffers for one stream of `capacity` positions (kv.py's StaticCache, one slot). */
  staticCache(ort, capacity) {
    const c = this.cache;
    if (c.layout !== 'static') {
      throw new ArtifactError("this artifact's frame graph grows its KV cache (exported before voxport kept it "
        + 'in static buffers); re-export it');
    }
    if (!(capacity >= 1 && capacity <= c.capacity)) throw new InputError(`capacity ${capacity} outside 1..${c.capacity}`);
    const dims = [1, c.kv_heads, capacity, c.head_dim];
    return this.cacheIn.map(() => new ort.Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims));
  }

  /** One call's inputs: embeds [1, seq, H], the row's cached length, the cache, settings, noise, extras. */
  feeds(ort, embeds, length, cache, sampling, noise, extra = {}) {
    return { [this.embedsIn]: embeds, [this.cache.lengths]: i64(ort, [length], [1]), ...sampling, [this.noise]: noise,
      ...Object.fromEntries(this.cacheIn.map((n, i) => [n, cache[i]])), ...extra };
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

  logitsState(ort, s) {
    if (!this.logits) return null;
    const group = this.sampling.find((g) => g.defaults?.repetition_penalty != null);
    const penalty = s.repetitionPenalty ?? group?.defaults.repetition_penalty ?? 1.0;
    return new LogitsState(ort, this.logits, this.noiseVocab, penalty);
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
  constructor(ort, spec, vocab, penalty) {
    this.ort = ort; this.spec = spec; this.vocab = vocab; this.frames = 0;
    this.rows = spec.codebooks ? spec.codebooks[1] - spec.codebooks[0] : null;
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
    const dims = this.rows === null ? [1, vocab] : [1, this.rows, vocab];
    const out = { [spec.repetition_penalty]: this.penalty, [spec.seen]: new ort.Tensor('float32', this.seen.slice(), dims) };
    if (!this.bias) return out;
    let bias = this.bias;
    if (this.frames < spec.min_frames) {
      bias = bias.slice();
      bias[spec.min_frames_token] = -Infinity;
    }
    return { ...out, [spec.bias]: new ort.Tensor('float32', bias, [1, vocab]) };
  }

  /** After each frame: its codes in the penalised codebook(s) count as seen. */
  update(frame) {
    if (this.rows === null) this.seen[frame[this.spec.codebook]] = 1;
    else for (let r = 0; r < this.rows; r++) this.seen[r * this.vocab + frame[this.spec.codebooks[0] + r]] = 1;
    this.frames += 1;
  }
}
