import { nativeKernels } from '../encoder/kernels.ts';
import { binarize, closing, importanceMask, importanceMaskTs, meanMap, opening, qpMapFromImportance } from '../cheapmodel/qpmap.ts';

const grid = (rows: string[]) => ({ rows: rows.length, cols: rows[0].length, data: Float32Array.from(rows.join('').split('').map((c) => (c === '#' ? 0.9 : 0.05))) });
const show = (m: Uint8Array, cols: number) => [...m].map((v, i) => (v ? '#' : '.') + ((i + 1) % cols === 0 ? '|' : '')).join('');

test('opening removes an isolated speck, closing fills a one-MB hole', () => {
  const p = grid(['.......', '.#.....', '.......', '..#####', '..#####', '..#####']);
  const m = importanceMask(p, { threshold: 0.2 });
  expect(show(m, 7)).toBe('.......|.......|.......|..#####|..#####|..#####|');
  const raw = binarize(p, 0.2);
  expect(show(opening(raw, 6, 7), 7)).not.toContain('.#.....|');
  expect(closing(Uint8Array.from([1, 1, 1, 1, 0, 1, 1, 1, 1]), 3, 3)[4]).toBe(1);
  // a hole inside a large region survives opening and is filled by closing
  const holed = grid(['#######', '#######', '###.###', '#######', '#######']);
  expect([...importanceMask(holed, { threshold: 0.2 })].every((v) => v === 1)).toBe(true);
  expect([...importanceMask(holed, { threshold: 0.2, smooth: false })].filter((v) => v === 0).length).toBe(1);
});

test('two QP levels follow the mask; threshold trades area for quality', () => {
  const p = { rows: 4, cols: 4, data: new Float32Array(16).fill(0.3) };
  expect([...qpMapFromImportance(p, { threshold: 0.2, highQp: 30, lowQp: 40 }).data].every((q) => q === 30)).toBe(true);
  expect([...qpMapFromImportance(p, { threshold: 0.5, highQp: 30, lowQp: 40 }).data].every((q) => q === 40)).toBe(true);
});

test('meanMap averages and rejects mismatched grids', () => {
  const a = { rows: 1, cols: 2, data: Float32Array.from([0, 1]) };
  const b = { rows: 1, cols: 2, data: Float32Array.from([1, 1]) };
  expect([...meanMap([a, b]).data]).toEqual([0.5, 1]);
  expect(() => meanMap([a, { rows: 2, cols: 1, data: new Float32Array(2) }])).toThrow(/grid mismatch/);
});

test('the floor marks the highest-P macroblocks when the threshold marks too few, and dilation grows the mask by one MB', () => {
  // nothing above α = 0.5: without a floor the mask is empty (the collapse seen on unseen scenes)
  const p = { rows: 4, cols: 5, data: Float32Array.from({ length: 20 }, (_, i) => (i === 7 ? 0.3 : i === 13 ? 0.2 : 0.01 * (i % 3))) };
  expect([...importanceMask(p, { threshold: 0.5, smooth: false })].some((v) => v)).toBe(false);
  const floored = importanceMask(p, { threshold: 0.5, smooth: false, minFraction: 0.1 }); // ceil(2) MBs
  expect(show(floored, 5)).toBe('.....|..#..|...#.|.....|');
  // a floor below what the threshold already marks changes nothing
  expect(show(importanceMask(p, { threshold: 0.1, smooth: false, minFraction: 0.05 }), 5)).toBe('.....|..#..|...#.|.....|');
  // dilation by one MB: each mark's 3×3 neighbourhood, clipped at the border
  expect(show(importanceMask(p, { threshold: 0.5, smooth: false, minFraction: 0.1, dilate: 1 }), 5)).toBe('.###.|.####|.####|..###|');
  // the native kernel (threshold + smoothing) and the TS reference agree with floor and dilation too (without a
  // native build both are the TS code and this compares nothing: test/native-kernels.test.ts covers the build)
  const r = { rows: 9, cols: 11, data: Float32Array.from({ length: 99 }, (_, i) => ((i * 37) % 101) / 101) };
  if (nativeKernels()) {
    for (const rule of [{ threshold: 0.9, minFraction: 0.2, dilate: 1 }, { threshold: 0.7, smooth: false, minFraction: 0.05, dilate: 2 }]) {
      expect([...importanceMask(r, rule)]).toEqual([...importanceMaskTs(r, rule)]);
    }
  }
  expect([...qpMapFromImportance(p, { threshold: 0.5, highQp: 30, lowQp: 46, smooth: false, minFraction: 0.1 }).data].filter((q) => q === 30).length).toBe(2);
});
