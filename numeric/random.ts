/** The project's one seeded PRNG (mulberry32): reproducible test textures, gradient checks and benches. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The identity permutation of [0, n) shuffled in place by Fisher–Yates driven by `rnd` (mulberry32's floats
 * are k/2^32, so floor(r·(i+1)) is exact and the order is identical on every machine).
 */
export function shuffledIndices<T extends Uint32Array | Int32Array>(out: T, rnd: () => number): T {
  for (let i = 0; i < out.length; i++) out[i] = i;
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}
