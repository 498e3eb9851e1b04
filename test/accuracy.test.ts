/**
 * @jest-environment ./test/helpers/ort-env.cjs
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { frameF1, segmentF1, f1FromCounts, type ScoredBox } from '../detector/accuracy.ts';
import { Detector } from '../detector/detector.ts';
import { ROAD_CLASSES } from '../detector/postprocess.ts';
import type { YuvFrame } from '../encoder/frame.ts';
import { loadFrames, VIDEOS, DETECTOR_MODEL, requireFile } from '../testdata/fixtures.ts';

const b = (x1: number, y1: number, x2: number, y2: number, classId = 0, score = 0.9): ScoredBox => ({ x1, y1, x2, y2, classId, score });

describe('F1 with hand-made boxes', () => {
  const ref = [b(0, 0, 10, 10), b(20, 20, 30, 30), b(50, 50, 60, 60, 2)];
  test('identical sets → 1; empty vs empty → 1', () => {
    expect(frameF1(ref, ref)).toMatchObject({ tp: 3, fp: 0, fn: 0, f1: 1 });
    expect(frameF1([], [])).toMatchObject({ tp: 0, fp: 0, fn: 0, f1: 1 });
  });
  test('miss, false positive, wrong class, low IoU', () => {
    const test_ = [
      b(1, 0, 11, 10), // IoU 0.82 with ref0 → TP
      b(25, 20, 35, 30), // IoU 1/3 with ref1 → FP (and ref1 FN)
      b(50, 50, 60, 60, 7), // right place, wrong class → FP (ref2 FN)
    ];
    const r = frameF1(test_, ref);
    expect(r).toMatchObject({ tp: 1, fp: 2, fn: 2 });
    expect(r.f1).toBeCloseTo(2 / (2 + 4));
    expect(r.precision).toBeCloseTo(1 / 3);
    expect(r.recall).toBeCloseTo(1 / 3);
    expect(frameF1([], ref)).toMatchObject({ tp: 0, fn: 3, f1: 0 });
    expect(frameF1(ref, [])).toMatchObject({ tp: 0, fp: 3, f1: 0 });
  });
  test('IoU threshold is inclusive at 0.5 and greedy by score: one reference matches only one detection', () => {
    // IoU exactly 0.5: [0,10]x[0,10] vs [0,10]x[0,5]... area 50/100
    expect(frameF1([b(0, 0, 10, 5)], [b(0, 0, 10, 10)]).tp).toBe(1);
    const dup = frameF1([b(0, 0, 10, 10, 0, 0.6), b(0, 0, 10, 11, 0, 0.9)], [b(0, 0, 10, 10)]);
    expect(dup).toMatchObject({ tp: 1, fp: 1, fn: 0 });
    // greedy: the higher-scoring detection takes the best reference; the other still finds the second
    const two = frameF1([b(0, 0, 10, 10, 0, 0.5), b(2, 0, 12, 10, 0, 0.9)], [b(0, 0, 10, 10), b(3, 0, 13, 10)]);
    expect(two).toMatchObject({ tp: 2, fp: 0, fn: 0 });
  });
  test('class filter and score threshold apply to both sides', () => {
    const ref2 = [b(0, 0, 10, 10, 0), b(20, 20, 30, 30, 16)]; // person, dog
    const t = [b(0, 0, 10, 10, 0, 0.9), b(40, 40, 50, 50, 16, 0.9), b(60, 60, 70, 70, 0, 0.2)];
    expect(frameF1(t, ref2)).toMatchObject({ tp: 1, fp: 2, fn: 1 });
    expect(frameF1(t, ref2, { classes: [0] })).toMatchObject({ tp: 1, fp: 1, fn: 0 });
    expect(frameF1(t, ref2, { classes: [0], scoreThreshold: 0.5 })).toMatchObject({ tp: 1, fp: 0, fn: 0, f1: 1 });
  });
  test('aggregate F1 (sum of counts) differs from mean per-frame F1', () => {
    const refs = [[b(0, 0, 10, 10)], [], [b(0, 0, 10, 10), b(20, 20, 30, 30), b(40, 40, 50, 50)]];
    const tests = [[b(0, 0, 10, 10)], [], [b(0, 0, 10, 10)]];
    const a = segmentF1(tests, refs);
    expect(a.frames.map((f) => f.f1)).toEqual([1, 1, 0.5]);
    expect(a.meanF1).toBeCloseTo(2.5 / 3);
    expect(a).toMatchObject({ tp: 2, fp: 0, fn: 2 });
    expect(a.aggregateF1).toBeCloseTo(f1FromCounts(2, 0, 2));
    expect(a.aggregateF1).toBeCloseTo(4 / 6);
    expect(() => segmentF1(tests, refs.slice(1))).toThrow(RangeError);
  });
});

/** Encode frames with x264 at a fixed QP and decode them back (ffmpeg CLI). */
function degrade(frames: YuvFrame[], qp: number): YuvFrame[] {
  const { width: w, height: h } = frames[0];
  const dir = mkdtempSync(path.join(tmpdir(), 'qp-'));
  try {
    const raw = path.join(dir, 'in.yuv');
    const mkv = path.join(dir, `qp${qp}.mkv`);
    writeFileSync(raw, Buffer.concat(frames.map((f) => Buffer.from(f.data))));
    const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${w}x${h}`, '-r', '10', '-i', raw,
      '-c:v', 'libx264', '-preset', 'ultrafast', '-qp', String(qp), mkv]);
    if (r.status !== 0) throw new Error(r.stderr.toString());
    return loadFrames(mkv, frames.length);
  } finally { rmSync(dir, { recursive: true, force: true }); }
}

describe('F1 of the real detector under compression (campus clip)', () => {
  test('F1 vs original-frame reference is 1 on the originals and lower at high QP', async () => {
    const det = await Detector.load(requireFile(DETECTOR_MODEL), { device: 'cpu' });
    try {
      const orig = loadFrames(VIDEOS.campus, 4, { startS: 20, fps: 2 });
      const run = async (fs: YuvFrame[]) => { const out = []; for (const f of fs) out.push((await det.detect(f)).detections); return out; };
      const ref = await run(orig);
      expect(ref.flat().filter((d) => d.classId === 0).length).toBeGreaterThan(8); // pedestrians found
      const opts = { classes: ROAD_CLASSES, scoreThreshold: 0.3 };
      const self = segmentF1(ref, ref, opts);
      const low = segmentF1(await run(degrade(orig, 18)), ref, opts);
      const high = segmentF1(await run(degrade(orig, 48)), ref, opts);
      if (process.env.F1_VERBOSE) console.log({ low: [low.aggregateF1, low.meanF1], high: [high.aggregateF1, high.meanF1] });
      expect(self.aggregateF1).toBe(1);
      expect(low.aggregateF1).toBeLessThanOrEqual(self.aggregateF1);
      expect(high.aggregateF1).toBeLessThan(low.aggregateF1);
      expect(high.meanF1).toBeLessThan(low.meanF1);
      expect(low.aggregateF1).toBeGreaterThan(0.7);
    } finally { await det.release(); }
  });
});
