// Token choice from logits: greedy (argmax, first maximum as numpy) or temperature + top-k with a
// seeded generator. Sampled codes are reproducible from the seed in the page, but not equal to the
// Python runtime's (numpy's generator is not reproduced here); greedy codes are equal.

export function argmax(x) {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** mulberry32: a small seeded uniform generator in [0, 1). */
export function seededRng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** sampling: {temperature, topK}; temperature 0 or topK 1 is greedy. */
export function choose(logits, sampling, rng) {
  const { temperature = 0, topK = 0 } = sampling;
  if (temperature === 0 || topK === 1) return argmax(logits);
  const x = Array.from(logits, (v) => v / temperature);
  if (topK && topK < x.length) {
    const kth = [...x].sort((a, b) => b - a)[topK - 1];
    for (let i = 0; i < x.length; i++) if (x[i] < kth) x[i] = -Infinity;
  }
  const max = Math.max(...x);
  const p = x.map((v) => Math.exp(v - max));
  let r = rng() * p.reduce((a, b) => a + b, 0);
  for (let i = 0; i < p.length; i++) { r -= p[i]; if (r <= 0) return i; }
  return argmax(x);
}
