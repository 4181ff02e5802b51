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

  constructor(ort, spec, vocab, penalty) {
    this.ort = ort; this.spec = spec; this.vocab = vocab; this.frames = 0;
    this.seen = new Float32Array(vocab);
    this.penalty = new ort.Tensor('float32', new Float32Array([penalty]), [1]);  // one row
    this.bias = new Float32Array(vocab);
    this.bias.fill(-Infinity, spec.suppress[0], spec.suppress[1]);
    for (const id of spec.allow) this.bias[id] = 0;
  }

  feeds() {
    const { spec, ort, vocab } = this;
    const bias = this.frames < spec.min_frames ? this.bias.slice() : this.bias;
    if (this.frames < spec.min_frames) bias[spec.min_frames_token] = -Infinity;
    return { [spec.repetition_penalty]: this.penalty, [spec.seen]: new ort.Tensor('float32', this.seen, [1, vocab]),
      [spec.bias]: new ort.Tensor('float32', bias, [1, vocab]) };
  }

  /** After each frame (its run done with `seen`): its code in the penalised codebook counts as seen. */
  update(frame) {
    this.seen[frame[this.spec.codebook]] = 1;
    this.frames += 1;
  }
}
