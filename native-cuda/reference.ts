/**
 * TypeScript references of the GPU-server-only kernels (the frame kernels' references are the product's own
 * TypeScript functions). Same arithmetic as twins.cc: doubles inside, float32 at the stores. They define
 * what the CPU twins and the CUDA kernels must compute (test/native-cuda.test.ts) and are the "ts" column
 * of `npm run bench:native`.
 */
import { rng, shuffledIndices } from '../numeric/random.ts';

/** Rotate-half RoPE by delta[t] positions: pairs (j, j+D/2), angle delta·base^(−2j/D). keys [T,H,D], in place. */
export function ropeDeltaRef(keys: Float32Array, delta: Int32Array, heads: number, headDim: number, base = 10000): void {
  const half = headDim / 2;
  for (let t = 0; t < delta.length; t++) {
    for (let j = 0; j < half; j++) {
      const ang = delta[t] * Math.pow(base, (-2 * j) / headDim);
      const c = Math.cos(ang);
      const s = Math.sin(ang);
      for (let h = 0; h < heads; h++) {
        const o = (t * heads + h) * headDim;
        const x0 = keys[o + j];
        const x1 = keys[o + j + half];
        keys[o + j] = x0 * c - x1 * s;
        keys[o + j + half] = x0 * s + x1 * c;
      }
    }
  }
}

/** dev[t] = Σ_i (a−b)² over token t's row of hd values. */
export function tokenDeviationRef(a: Float32Array, b: Float32Array, tokens: number): Float32Array {
  const hd = a.length / tokens;
  const dev = new Float32Array(tokens);
  for (let t = 0; t < tokens; t++) {
    let s = 0;
    for (let i = t * hd; i < (t + 1) * hd; i++) {
      const d = a[i] - b[i];
      s += d * d;
    }
    dev[t] = s;
  }
  return dev;
}

/** Indices of the k largest values, descending; ties: lower index first. */
export function topKRef(v: ArrayLike<number>, k: number): Int32Array {
  const idx = Array.from({ length: v.length }, (_, i) => i).sort((x, y) => v[y] - v[x] || x - y);
  return Int32Array.from(idx.slice(0, Math.min(k, v.length)));
}

/** Round half to even (C's rint in the default rounding mode). */
function rint(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Grace sender: symbols[i] = clamp(rint(f32(latent[perm[i]] / step)), ±32767). */
export function quantiseGatherRef(latent: Float32Array, perm: Int32Array, step: number): Int16Array {
  const s32 = Math.fround(step);
  const out = new Int16Array(latent.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.max(-32767, Math.min(32767, rint(Math.fround(latent[perm[i]] / s32))));
  return out;
}

/** Grace receiver: latent[perm[i]] = received[⌊i/packetSize⌋] ? symbols[i]·step : 0. */
export function scatterDequantiseRef(symbols: Int16Array, perm: Int32Array, packetSize: number, received: Uint8Array, step: number): Float32Array {
  const s32 = Math.fround(step);
  const out = new Float32Array(symbols.length);
  for (let i = 0; i < out.length; i++) out[perm[i]] = received[Math.floor(i / packetSize)] ? symbols[i] * s32 : 0;
  return out;
}

/** A seeded permutation of [0, n) (Fisher–Yates), as Grace spreads latent elements over packets. */
export function seededPermutation(n: number, seed: number): Int32Array {
  return shuffledIndices(new Int32Array(n), rng(seed));
}
