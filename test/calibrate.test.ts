import { calibrateThreshold, recallAt, sampleFromSaliency } from '../cheapmodel/calibrate.ts';
import { coverLabels } from '../cheapmodel/labels.ts';

// a 6×8 frame with two objects; the server's saliency is concentrated on them
const rows = 6, cols = 8;
const sal = { rows, cols, data: new Float32Array(rows * cols).fill(0.01) };
for (const i of [9, 10, 17, 18, 29, 30]) sal.data[i] = 1;
const rule = { smooth: false, minFraction: 0, dilate: 0 };

test('cover labels mark the smallest set of macroblocks holding the share of saliency, none on an empty frame', () => {
  const l = coverLabels(sal, 0.5);
  expect([...l].filter((v) => v).length).toBe(4); // half of 6.42 needs four of the six 1.0 MBs (three hold 3.0)
  expect([...l].every((v, i) => !v || sal.data[i] === 1)).toBe(true);
  expect([...coverLabels({ rows, cols, data: new Float32Array(rows * cols) }, 0.5)].some((v) => v)).toBe(false);
});

test('α rises on a camera where the model over-scores and falls where it under-scores the objects', () => {
  const objects = new Set([9, 10, 17, 18, 29, 30]);
  // model A: objects at 0.9, background at 0.6 (over-scores): α must rise above 0.6 to drop the background
  const a = { rows, cols, data: Float32Array.from({ length: rows * cols }, (_, i) => (objects.has(i) ? 0.9 : 0.6)) };
  // model B: objects at only 0.2, background 0.05 (under-scores): α must fall below 0.2 to keep them
  const b = { rows, cols, data: Float32Array.from({ length: rows * cols }, (_, i) => (objects.has(i) ? 0.2 : 0.05)) };
  const labels = { rows, cols, data: sal.data };
  const alphaA = calibrateThreshold([sampleFromSaliency(a, labels, 0.9)], rule, 0.9)!;
  const alphaB = calibrateThreshold([sampleFromSaliency(b, labels, 0.9)], rule, 0.9)!;
  expect(alphaA).toBeGreaterThanOrEqual(0.6);
  expect(alphaA).toBeLessThan(0.9);
  expect(alphaB).toBeLessThanOrEqual(0.2); // below the shipped α (0.5), which would mark nothing here
  expect(alphaB).toBeGreaterThanOrEqual(0.05);
  expect(recallAt([sampleFromSaliency(b, labels, 0.9)], rule, 0.5)).toBe(0);
  expect(recallAt([sampleFromSaliency(a, labels, 0.9)], rule, alphaA)).toBeGreaterThanOrEqual(0.9);
  // with no labelled macroblock there is nothing to calibrate on
  expect(calibrateThreshold([{ p: a, label: new Uint8Array(rows * cols) }], rule, 0.9)).toBeNull();
  expect(() => sampleFromSaliency(a, { rows: 1, cols: 1, data: new Float32Array(1) })).toThrow(/grid mismatch/);
});
