// The manifest's logits processors (generation.frame.logits) as frame-graph inputs, ported from
// voxport/runtime/contract.py's LogitsState: the reference's generate applies them when greedy too, so
// they are fed on every frame: a repetition penalty over the ids one codebook has generated so far
// (`seen`), and an additive bias that removes suppressed ids and, before `min_frames` frames, the
// stop token.

/** The penalty a request gets: its own, else the first sampling group's default, else 1 (none). */
function penaltyOf(generation, requested) {
  if (requested != null) {
    if (!(Number.isFinite(requested) && requested > 0)) throw new Error(`repetition penalty must be > 0 (1 = none), got ${requested}`);
    return requested;
  }
  const group = generation.sampling.find((gr) => gr.defaults?.repetition_penalty != null);
  return group ? group.defaults.repetition_penalty : 1.0;
}

export class LogitsState {
  /** null where the contract declares no logits processors. */
  static of(ort, generation, sampling) {
    const spec = generation.frame.logits;
    return spec ? new LogitsState(ort, spec, generation.noise_vocab, penaltyOf(generation, sampling.repetitionPenalty)) : null;
  }

  // `codebook`: one row of seen ids and a bias; `codebooks` [a, b]: a row per codebook, no bias
  constructor(ort, spec, vocab, penalty) {
    this.ort = ort; this.spec = spec; this.vocab = vocab; this.frames = 0;
    this.rows = spec.codebooks ? spec.codebooks[1] - spec.codebooks[0] : null;
    this.seen = new Float32Array((this.rows ?? 1) * vocab);
    this.penalty = new ort.Tensor('float32', new Float32Array([penalty]), []);
    this.bias = null;
    if (spec.bias) {
      this.bias = new Float32Array(vocab);
      this.bias.fill(-Infinity, spec.suppress[0], spec.suppress[1]);
      for (const id of spec.allow) this.bias[id] = 0;
    }
  }

  feeds() {
    const { spec, ort, vocab } = this;
    const seen = new ort.Tensor('float32', this.seen, this.rows === null ? [1, vocab] : [1, this.rows, vocab]);
    const out = { [spec.repetition_penalty]: this.penalty, [spec.seen]: seen };
    if (!this.bias) return out;
    const bias = this.frames < spec.min_frames ? this.bias.slice() : this.bias;
    if (this.frames < spec.min_frames) bias[spec.min_frames_token] = -Infinity;
    return { ...out, [spec.bias]: new ort.Tensor('float32', bias, [1, vocab]) };
  }

  /** After each frame (its run done with `seen`): its codes in the penalised codebooks count as seen. */
  update(frame) {
    if (this.rows === null) this.seen[frame[this.spec.codebook]] = 1;
    else for (let r = 0; r < this.rows; r++) this.seen[r * this.vocab + frame[this.spec.codebooks[0] + r]] = 1;
    this.frames += 1;
  }
}
