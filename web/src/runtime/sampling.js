// Sampling settings and the noise the frame graph samples with (voxport/runtime/sampling.py).
//
// The graph samples by Gumbel-max from the uniforms it is given, so the codes depend only on the
// uniforms. The Python runtime draws them with numpy's default_rng(seed) (PCG64 seeded through
// SeedSequence) as `rng.random((1, K, vocab), dtype=float32)`; NumpyRng reproduces that generator bit
// for bit, so a seed gives the same codes here and in `voxport speak --seed`. 128-bit arithmetic is
// done on eight 16-bit limbs in plain numbers (every partial sum stays below 2^53), not BigInt, which
// allocates per operation: a frame draws K * vocab (65k for CSM) uniforms.
import { InputError } from './errors.js';

/** One request's settings; a null field takes each sampling group's default from the manifest
 * (FrameContract.samplingFeeds). temperature 0 is greedy. */
export class Sampling {
  constructor({ temperature = null, topK = null, topP = null, repetitionPenalty = null } = {}) {
    Object.assign(this, { temperature, topK, topP, repetitionPenalty });
  }

  /** Python's Sampling.validate with its messages, for the values in force on a group of `vocab` ids. */
  static validate({ temperature, topK, topP, repetitionPenalty }, vocab) {
    if (!Number.isFinite(temperature) || temperature < 0) throw new InputError(`temperature must be >= 0 (0 = greedy), got ${temperature}`);
    if (!Number.isInteger(topK) || topK < 1 || topK > vocab) {
      throw new InputError(`top-k must be between 1 and the codebook vocabulary ${vocab}, got ${topK}`);
    }
    if (repetitionPenalty != null && !(Number.isFinite(repetitionPenalty) && repetitionPenalty > 0)) {
      throw new InputError(`repetition penalty must be > 0 (1 = none), got ${repetitionPenalty}`);
    }
    if (topP != null && !(topP > 0 && topP <= 1)) throw new InputError(`top-p must be in (0, 1] (1 = none), got ${topP}`);
  }
}

// numpy/random/bit_generator.pyx: SeedSequence constants
const INIT_A = 0x43b0d7e5, MULT_A = 0x931e8875, INIT_B = 0x8b51f9dd, MULT_B = 0x58f38ded;
const MIX_MULT_L = 0xca01f9dd, MIX_MULT_R = 0x4973f715, XSHIFT = 16, POOL = 4;

/** SeedSequence(seed).generate_state(words) for a non-negative integer seed (below 2^53), or a list of
 * them (numpy concatenates each one's 32-bit words: [seed, 1] is codec_rng's entropy). */
export function seedSequenceState(seed, words) {
  const entropy = [];
  for (const part of Array.isArray(seed) ? seed : [seed]) {
    const start = entropy.length;
    for (let n = part; entropy.length === start || n > 0; n = Math.floor(n / 2 ** 32)) entropy.push(n % 2 ** 32 >>> 0);
  }
  let hashConst = INIT_A;
  const hashmix = (value) => {
    value = (value ^ hashConst) >>> 0;
    hashConst = Math.imul(hashConst, MULT_A) >>> 0;
    value = Math.imul(value, hashConst) >>> 0;
    return (value ^ (value >>> XSHIFT)) >>> 0;
  };
  const mix = (x, y) => {
    const r = (Math.imul(MIX_MULT_L, x) - Math.imul(MIX_MULT_R, y)) >>> 0;
    return (r ^ (r >>> XSHIFT)) >>> 0;
  };
  const pool = Array.from({ length: POOL }, (_, i) => hashmix(i < entropy.length ? entropy[i] : 0));
  for (let src = 0; src < POOL; src++) {
    for (let dst = 0; dst < POOL; dst++) if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
  }
  for (let src = POOL; src < entropy.length; src++) {
    for (let dst = 0; dst < POOL; dst++) pool[dst] = mix(pool[dst], hashmix(entropy[src]));
  }
  const out = [];
  let h = INIT_B;
  for (let i = 0; i < words; i++) {
    let v = (pool[i % POOL] ^ h) >>> 0;
    h = Math.imul(h, MULT_B) >>> 0;
    v = Math.imul(v, h) >>> 0;
    out.push((v ^ (v >>> XSHIFT)) >>> 0);
  }
  return out;
}

// 128-bit values as 8 little-endian 16-bit limbs
const limbs = (hi64Words, lo64Words) => {  // [lo32, hi32] of each 64-bit half
  const w = [lo64Words[0], lo64Words[1], hi64Words[0], hi64Words[1]];
  return w.flatMap((x) => [x & 0xffff, x >>> 16]);
};
// PCG_DEFAULT_MULTIPLIER_128 = 0x2360ED051FC65DA4_4385DF649FCCF645
const MULT = limbs([0x1fc65da4, 0x2360ed05], [0x9fccf645, 0x4385df64]);

/** numpy.random.default_rng(seed) restricted to what the page needs: float32 uniforms (and float64 ones). */
export class NumpyRng {
  constructor(seed = 0) {
    const parts = Array.isArray(seed) ? seed : [seed];
    if (!parts.length || parts.some((n) => !Number.isSafeInteger(n) || n < 0)) {
      throw new InputError(`seed must be a non-negative integer, got ${seed}`);
    }
    const w = seedSequenceState(seed, 8);  // generate_state(4, uint64), viewed as uint32 pairs
    const initstate = limbs([w[0], w[1]], [w[2], w[3]]);  // PCG_128BIT_CONSTANT(val[0], val[1])
    const initseq = limbs([w[4], w[5]], [w[6], w[7]]);
    // inc = (initseq << 1) | 1
    this.inc = initseq.map((x, i) => ((x << 1) & 0xffff) | (i ? initseq[i - 1] >>> 15 : 1));
    this.s = new Float64Array(8);
    this.t = new Float64Array(8);  // scratch for step()
    this.m = Float64Array.from(MULT);
    this.inc = Float64Array.from(this.inc);
    this.step();
    this.add(initstate);
    this.step();
    this.spare = null;  // numpy hands out a 64-bit output as two 32-bit halves, low first
  }

  add(b) {
    let carry = 0;
    for (let i = 0; i < 8; i++) { const r = this.s[i] + b[i] + carry; this.s[i] = r & 0xffff; carry = r >>> 16; }
  }

  step() {  // state = state * MULT + inc (mod 2^128); typed arrays, no allocation: the hot loop
    const s = this.s, m = this.m, inc = this.inc, out = this.t;
    let carry = 0;
    for (let k = 0; k < 8; k++) {
      let r = carry + inc[k];
      for (let i = 0; i <= k; i++) r += s[i] * m[k - i];
      const c = Math.floor(r / 65536);
      out[k] = r - c * 65536;
      carry = c;
    }
    this.t = s;
    this.s = out;
  }

  nextUint32() {
    if (this.spare !== null) { const v = this.spare; this.spare = null; return v; }
    this.step();
    const s = this.s;  // XSL-RR output: rotr64(high ^ low, high >> 58)
    let lo = ((s[0] | (s[1] << 16)) ^ (s[4] | (s[5] << 16))) >>> 0;
    let hi = ((s[2] | (s[3] << 16)) ^ (s[6] | (s[7] << 16))) >>> 0;
    let rot = s[7] >>> 10;
    if (rot >= 32) { [lo, hi] = [hi, lo]; rot -= 32; }
    if (rot) { [lo, hi] = [((lo >>> rot) | (hi << (32 - rot))) >>> 0, ((hi >>> rot) | (lo << (32 - rot))) >>> 0]; }
    this.spare = hi;
    return lo;
  }

  /** rng.random() (float64): (uint64 >> 11) * 2^-53, the 64-bit output's halves low first. */
  random() {
    const lo = this.nextUint32(), hi = this.nextUint32();
    return (hi * 2097152 + (lo >>> 11)) * 1.1102230246251565e-16;
  }

  /** rng.random(n, dtype=float32) into `out`: (uint32 >> 8) * 2^-24, exact in float32. */
  fillFloat32(out) {
    for (let i = 0; i < out.length; i++) out[i] = (this.nextUint32() >>> 8) * 5.9604644775390625e-8;
    return out;
  }
}

/** draw_noise: the next frame's [1, K, vocab] uniforms from the request's generator. */
export function drawNoise(rng, codebooks, vocab) {
  return rng.fillFloat32(new Float32Array(codebooks * vocab));
}

