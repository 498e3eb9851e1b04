/** Small statistics helpers shared by benches and tests. */
import { rng } from './random.ts';

/** Median (the upper one for an even count); does not modify its input. NaN for an empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  return [...xs].sort((a, b) => a - b)[xs.length >> 1];
}

/** max |a[i] − b[i]| (Infinity if any difference is NaN); the lengths must match. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** Linear-interpolated q-quantile (NaN for an empty list); does not modify its input. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** F1 from true positives, false positives and false negatives; 1 when there is nothing to find and nothing found. */
export function f1FromCounts(tp: number, fp: number, fn: number): number {
  const d = 2 * tp + fp + fn;
  return d === 0 ? 1 : (2 * tp) / d;
}

/** 95% bootstrap interval of stat(sample) over resampled indices 0..n−1. */
export function bootstrap(n: number, stat: (idx: number[]) => number, reps = 2000, seed = 1): [number, number] {
  const r = rng(seed);
  const vals: number[] = [];
  for (let b = 0; b < reps; b++) {
    const idx = Array.from({ length: n }, () => Math.floor(r() * n));
    vals.push(stat(idx));
  }
  return [quantile(vals, 0.025), quantile(vals, 0.975)];
}

/** Indices of `xs` from the largest value to the smallest (ties: lower index first). */
export function indicesByValueDesc(xs: ArrayLike<number>): number[] {
  return Array.from({ length: xs.length }, (_, i) => i).sort((i, j) => xs[j] - xs[i] || i - j);
}
