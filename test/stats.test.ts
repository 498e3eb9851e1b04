/**
 * numeric/stats.ts, the helpers the benchmarks report with: quantile interpolation, the bootstrap interval's
 * coverage of a known statistic, its determinism by seed and its narrowing with the sample size.
 */
import { describe, expect, test } from '@jest/globals';
import { bootstrap, indicesByValueDesc, mean, median, quantile } from '../numeric/stats.ts';
import { rng } from '../numeric/random.ts';

describe('quantile / median / mean', () => {
  test('linear interpolation between order statistics, input untouched', () => {
    const xs = [4, 1, 3, 2];
    expect(quantile(xs, 0)).toBe(1);
    expect(quantile(xs, 1)).toBe(4);
    expect(quantile(xs, 0.5)).toBeCloseTo(2.5, 12);
    expect(quantile(xs, 0.25)).toBeCloseTo(1.75, 12);
    expect(xs).toEqual([4, 1, 3, 2]);
    expect(quantile([], 0.5)).toBeNaN();
    expect(median([5, 1, 3])).toBe(3);
    expect(mean([1, 2, 6])).toBe(3);
  });
});

describe('bootstrap', () => {
  const r = rng(42);
  // 400 draws of Uniform(0, 1): the mean's standard error is 1/√(12·400) ≈ 0.0144
  const sample = Array.from({ length: 400 }, () => r());
  const meanOf = (idx: number[]): number => idx.reduce((a, i) => a + sample[i], 0) / idx.length;

  test('the 95% interval of the mean holds the sample mean and has about ±1.96 standard errors', () => {
    const m = mean(sample);
    const [lo, hi] = bootstrap(sample.length, meanOf, 2000, 1);
    expect(lo).toBeLessThan(m);
    expect(hi).toBeGreaterThan(m);
    const se = Math.sqrt(sample.reduce((a, x) => a + (x - m) ** 2, 0) / (sample.length - 1) / sample.length);
    expect((hi - lo) / (2 * 1.96 * se)).toBeGreaterThan(0.85);
    expect((hi - lo) / (2 * 1.96 * se)).toBeLessThan(1.15);
  });

  test('deterministic by seed; another seed moves the ends a little', () => {
    expect(bootstrap(sample.length, meanOf, 500, 3)).toEqual(bootstrap(sample.length, meanOf, 500, 3));
    const a = bootstrap(sample.length, meanOf, 500, 3);
    const b = bootstrap(sample.length, meanOf, 500, 4);
    expect(a).not.toEqual(b);
    expect(Math.abs(a[0] - b[0])).toBeLessThan(0.01);
  });

  test('a quarter of the sample gives about a twice wider interval', () => {
    const small = sample.slice(0, 100);
    const [lo, hi] = bootstrap(small.length, (idx) => idx.reduce((a, i) => a + small[i], 0) / idx.length, 2000, 1);
    const [LO, HI] = bootstrap(sample.length, meanOf, 2000, 1);
    const ratio = (hi - lo) / (HI - LO);
    expect(ratio).toBeGreaterThan(1.6);
    expect(ratio).toBeLessThan(2.5);
  });
});

test('indicesByValueDesc orders from the largest value, ties by the lower index', () => {
  expect(indicesByValueDesc(Float32Array.from([0.2, 0.9, 0.2, 0.5, 0.9]))).toEqual([1, 4, 3, 0, 2]);
  expect(indicesByValueDesc([])).toEqual([]);
});
