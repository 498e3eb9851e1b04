import { agg, compare, dominating, savingOn, uniformBytesAt, type Stats } from '../numeric/equal-f1.ts';

// per-chunk stats: bytes and detection counts (encodeMs/important unused here)
const chunk = (bytes: number, tp: number, fp: number, fn: number) => ({ bytes, tp, fp, fn, encodeMs: 0, important: 0 });
const scheme = (bytes: number, tp: number, fp: number, fn: number, n = 4): Stats => Array.from({ length: n }, () => chunk(bytes, tp, fp, fn));

test('the uniform frontier drops points a cheaper QP beats and interpolates linearly in (F1, bytes)', () => {
  const u = [{ bytes: 100, f1: 0.8 }, { bytes: 200, f1: 0.9 }, { bytes: 150, f1: 0.7 }, { bytes: 400, f1: 1 }];
  // (150, 0.7) is beaten by (100, 0.8): not on the frontier
  expect(uniformBytesAt(u, 0.85)).toMatchObject({ above: false, below: false });
  expect(uniformBytesAt(u, 0.85).bytes).toBeCloseTo(150, 9);
  expect(uniformBytesAt(u, 0.95).bytes).toBeCloseTo(300, 9);
  expect(uniformBytesAt(u, 0.8)).toEqual({ bytes: 100, above: false, below: false });
  expect(uniformBytesAt(u, 0.5)).toEqual({ bytes: 100, above: false, below: true });
  expect(uniformBytesAt([{ bytes: 100, f1: 0.8 }, { bytes: 200, f1: 0.9 }], 0.95)).toEqual({ bytes: 200, above: true, below: false });
});

test('saving at equal F1 aggregates counts over chunks, and its bootstrap interval holds the point estimate', () => {
  // uniform: QP a = 10 B/chunk at F1 0.8 (tp 8, fp 2, fn 2), QP b = 30 B/chunk at F1 1
  const uniform = [scheme(10, 8, 2, 2), scheme(30, 10, 0, 0)];
  // AccMPEG: F1 0.9 (tp 9, fp 1, fn 1) for 14 B: uniform needs 20 B there → 30 % saved
  const acc = scheme(14, 9, 1, 1);
  expect(agg(acc, [0, 1, 2, 3])).toEqual({ bytes: 56, f1: 0.9 });
  expect(savingOn(uniform, acc, [0, 1, 2, 3])).toBeCloseTo(0.3, 12);
  const c = compare(uniform, acc);
  expect(c.saving).toBeCloseTo(0.3, 12);
  expect(c.ci_low).toBeCloseTo(0.3, 12); // identical chunks: every resample gives the same saving
  expect(c.ci_high).toBeCloseTo(0.3, 12);
  // chunks that differ widen the interval around the estimate
  const mixed: Stats = [chunk(8, 9, 1, 1), chunk(20, 9, 1, 1), chunk(12, 9, 1, 1), chunk(16, 9, 1, 1)];
  const m = compare(uniform, mixed);
  expect(m.ci_low).toBeLessThan(m.saving);
  expect(m.ci_high).toBeGreaterThan(m.saving);
  // a scheme more expensive than uniform at its F1 saves a negative amount
  expect(compare(uniform, scheme(25, 9, 1, 1)).saving).toBeCloseTo(1 - 25 / 20, 12);
  // on a subset of chunks only those chunks count, and the bootstrap resamples within them
  const sub = compare(uniform, mixed, [2, 3]);
  expect(sub.saving).toBeCloseTo(1 - 28 / 40, 12);
  const same = compare(uniform, [chunk(99, 0, 9, 9), chunk(99, 0, 9, 9), chunk(14, 9, 1, 1), chunk(14, 9, 1, 1)], [2, 3]);
  expect([same.saving, same.ci_low, same.ci_high].map((v) => v.toFixed(9))).toEqual(Array(3).fill((0.3).toFixed(9)));
  // below the cheapest uniform point's F1 with fewer bytes: no positive saving is claimed
  expect(savingOn(uniform, scheme(5, 1, 5, 5), [0, 1, 2, 3])).toBe(0);
});

test('dominating points beat a uniform point in bytes and F1 both', () => {
  const u = [{ qp: 30, pt: { bytes: 200, f1: 0.95 } }, { qp: 40, pt: { bytes: 100, f1: 0.85 } }];
  expect(dominating(u, [{ name: 'a', pt: { bytes: 90, f1: 0.9 } }, { name: 'b', pt: { bytes: 90, f1: 0.8 } }, { name: 'c', pt: { bytes: 90, f1: 0.96 } }])).toEqual([
    { point: 'a', dominates_uniform_qp: [40] },
    { point: 'c', dominates_uniform_qp: [30, 40] },
  ]);
});
