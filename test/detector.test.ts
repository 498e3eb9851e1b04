/**
 * @jest-environment ./test/helpers/ort-env.cjs
 */
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Detector, ModelLoadError, ExecutionProviderError } from '../detector/detector.ts';
import { preprocess, letterboxFor, PAD_VALUE } from '../detector/preprocess.ts';
import { nms, iou, postprocess, makeGrid, ROW, COCO_CLASSES, type Detection, type Box } from '../detector/postprocess.ts';
import type { YuvFrame } from '../encoder/frame.ts';
import { loadFrames, IMAGES, DETECTOR_MODEL, requireFile } from '../testdata/fixtures.ts';

/** Solid-colour YUV420p frame (BT.601 limited) with an optional rectangle (even coordinates). */
function synthFrame(w: number, h: number, bg: [number, number, number], rect?: { x: number; y: number; w: number; h: number; yuv: [number, number, number] }): YuvFrame {
  const data = new Uint8Array(w * h * 1.5);
  const cw = w / 2, ch = h / 2, uOff = w * h, vOff = uOff + cw * ch;
  data.fill(bg[0], 0, uOff); data.fill(bg[1], uOff, vOff); data.fill(bg[2], vOff);
  if (rect) {
    for (let y = rect.y; y < rect.y + rect.h; y++) data.fill(rect.yuv[0], y * w + rect.x, y * w + rect.x + rect.w);
    for (let y = rect.y / 2; y < (rect.y + rect.h) / 2; y++) {
      data.fill(rect.yuv[1], uOff + y * cw + rect.x / 2, uOff + y * cw + (rect.x + rect.w) / 2);
      data.fill(rect.yuv[2], vOff + y * cw + rect.x / 2, vOff + y * cw + (rect.x + rect.w) / 2);
    }
  }
  return { width: w, height: h, ptsMs: 0, data };
}
const S = 416, P = S * S;
const bgrAt = (t: Float32Array, x: number, y: number) => [t[y * S + x], t[P + y * S + x], t[2 * P + y * S + x]];

describe('preprocess (letterbox)', () => {
  // pure red in BT.601 limited range: Y=81 U=90 V=240 → RGB ≈ (254, 0, 0); grey Y=128 → ≈130
  const red: [number, number, number] = [81, 90, 240];
  test('landscape: colours, rectangle position, bottom padding', () => {
    const f = synthFrame(640, 480, [128, 128, 128], { x: 160, y: 120, w: 160, h: 120, yuv: red });
    const { input, letterbox } = preprocess(f);
    expect(letterbox).toMatchObject({ srcW: 640, srcH: 480, newW: 416, newH: 312, scale: 0.65 });
    // rectangle [160,320)×[120,240) → input [104,208)×[78,156)
    const inside = bgrAt(input, 156, 117);
    expect(inside[0]).toBeLessThan(2); // B
    expect(inside[1]).toBeLessThan(2); // G
    expect(inside[2]).toBeGreaterThan(252); // R
    for (const [x, y] of [[102, 117], [210, 117], [156, 76], [156, 158], [5, 5], [415, 300]]) {
      for (const v of bgrAt(input, x, y)) expect(v).toBeCloseTo(1.164383 * 112, 0);
    }
    for (const [x, y] of [[106, 80], [205, 80], [106, 153], [205, 153]]) expect(bgrAt(input, x, y)[2]).toBeGreaterThan(250);
    // padding rows 312..415 are 114 in all channels
    for (const [x, y] of [[0, 312], [200, 400], [415, 415]]) expect(bgrAt(input, x, y)).toEqual([PAD_VALUE, PAD_VALUE, PAD_VALUE]);
    // channel order is B,G,R: a blue rectangle must land in channel 0
    const blue = preprocess(synthFrame(640, 480, [16, 128, 128], { x: 0, y: 0, w: 64, h: 64, yuv: [41, 240, 110] })).input;
    const b = bgrAt(blue, 10, 10);
    expect(b[0]).toBeGreaterThan(250);
    expect(b[2]).toBeLessThan(3);
    expect(bgrAt(blue, 300, 200)).toEqual([0, 0, 0]); // Y=16 → black
  });
  test('portrait: right padding', () => {
    const { input, letterbox } = preprocess(synthFrame(480, 640, [235, 128, 128]));
    expect(letterbox).toMatchObject({ newW: 312, newH: 416 });
    expect(bgrAt(input, 311, 415).every((v) => v > 254)).toBe(true);
    expect(bgrAt(input, 312, 0)).toEqual([PAD_VALUE, PAD_VALUE, PAD_VALUE]);
  });
  test('letterboxFor rejects empty frames', () => {
    expect(() => letterboxFor(0, 10)).toThrow(RangeError);
  });
});

describe('NMS and IoU', () => {
  const d = (x1: number, y1: number, x2: number, y2: number, score: number, classId = 0) => ({ x1, y1, x2, y2, score, classId });
  test('iou', () => {
    expect(iou(d(0, 0, 10, 10, 1), d(0, 0, 10, 10, 1))).toBe(1);
    expect(iou(d(0, 0, 10, 10, 1), d(5, 0, 15, 10, 1))).toBeCloseTo(1 / 3);
    expect(iou(d(0, 0, 10, 10, 1), d(10, 0, 20, 10, 1))).toBe(0);
  });
  test('suppresses same-class overlaps above the threshold, keeps other classes and low-overlap boxes', () => {
    const dets = [d(0, 0, 10, 10, 0.8), d(1, 0, 11, 10, 0.9), d(0, 0, 10, 10, 0.7, 2), d(6, 0, 16, 10, 0.6), d(50, 50, 60, 60, 0.5)];
    const kept = nms(dets, 0.45);
    expect(kept.map((k) => k.score)).toEqual([0.9, 0.7, 0.6, 0.5]); // 0.8 (IoU .82 with .9) suppressed; .6 has IoU .25 with .9
    expect(nms(dets, 0.45, true).map((k) => k.score)).toEqual([0.9, 0.6, 0.5]);
    // at threshold 0.9 nothing overlapping that much → all kept
    expect(nms(dets, 0.9)).toHaveLength(5);
  });
  test('postprocess decodes grid cells and undoes the letterbox', () => {
    const grid = makeGrid(416);
    expect(grid.count).toBe(3549);
    const raw = new Float32Array(3549 * ROW);
    // one box in the stride-16 level: cell (gx=10, gy=5) → row 52*52 + 5*26 + 10
    const cell = 2704 + 5 * 26 + 10;
    const o = cell * ROW;
    raw.set([0.5, 0.5, Math.log(4), Math.log(2)], o); // centre (168, 88), size 64×32 in input px
    raw[o + 4] = 0.9; raw[o + 5 + 16] = 0.8; // dog, score .72
    // a duplicate (lower score, same place) in the neighbouring cell, must be suppressed
    raw.set([-0.5, 0.5, Math.log(4), Math.log(2), 0.9, 0], o + ROW); raw[o + ROW + 5 + 16] = 0.5;
    // a below-threshold cell
    raw[10 * ROW + 4] = 0.2; raw[10 * ROW + 5] = 1;
    const lb = letterboxFor(832, 624); // scale 0.5, newH 312
    const dets = postprocess(raw, lb, { confThreshold: 0.25 });
    expect(dets).toHaveLength(1);
    const r = dets[0];
    expect(r).toMatchObject({ classId: 16, className: 'dog', cell });
    expect(r.score).toBeCloseTo(0.72, 5);
    expect([r.x1, r.y1, r.x2, r.y2].map((v) => Math.round(v * 1000) / 1000)).toEqual([272, 144, 400, 208]);
    // clipping at the frame border
    raw.set([-10, -5, Math.log(10), Math.log(10)], o); // centre (0,0) in input px
    const c = postprocess(raw, lb)[0];
    expect(c.x1).toBe(0); expect(c.y1).toBe(0);
    expect(postprocess(raw, lb, { classes: [0] })).toHaveLength(0);
    expect(COCO_CLASSES).toHaveLength(80);
  });
});

describe('Detector on real images', () => {
  let det: Detector;
  beforeAll(async () => { det = await Detector.load(requireFile(DETECTOR_MODEL), { device: 'cpu' }); });
  afterAll(async () => { await det?.release(); });

  // reference boxes drawn by eye on the images (original pixels)
  function expectFound(dets: Detection[], names: string[], ref: Box) {
    const hits = dets.filter((d) => names.includes(d.className) && iou(d, ref) >= 0.5);
    expect(hits.length).toBeGreaterThan(0);
  }
  test('dog.jpg: bicycle, dog, car or truck', async () => {
    const [f] = loadFrames(IMAGES.dog, 1);
    const r = await det.detect(f);
    expect(r.raw.length).toBe(3549 * 85);
    expect(r.letterbox).toMatchObject({ srcW: 768, srcH: 576, newW: 416, newH: 312 });
    expectFound(r.detections, ['dog'], { x1: 133, y1: 220, x2: 310, y2: 540 });
    expectFound(r.detections, ['bicycle'], { x1: 125, y1: 140, x2: 566, y2: 420 });
    expectFound(r.detections, ['car', 'truck'], { x1: 467, y1: 74, x2: 686, y2: 170 });
    for (const d of r.detections) {
      expect(d.score).toBeGreaterThanOrEqual(0.25);
      expect(d.x1).toBeGreaterThanOrEqual(0); expect(d.x2).toBeLessThanOrEqual(768);
      // cell is the row the detection came from
      expect(r.raw[d.cell * 85 + 4] * r.raw[d.cell * 85 + 5 + d.classId]).toBeCloseTo(d.score, 5);
    }
  });
  test('person.jpg: person, horse, dog', async () => {
    const [f] = loadFrames(IMAGES.person, 1);
    const r = await det.detect(f);
    expectFound(r.detections, ['person'], { x1: 190, y1: 98, x2: 275, y2: 374 });
    expectFound(r.detections, ['horse'], { x1: 405, y1: 140, x2: 602, y2: 345 });
    expectFound(r.detections, ['dog'], { x1: 65, y1: 263, x2: 205, y2: 343 });
  });
  test('model load failures are typed and name the file', async () => {
    const missing = '/nonexistent/yolox.onnx';
    await expect(Detector.load(missing, { device: 'cpu' })).rejects.toThrow(ModelLoadError);
    await expect(Detector.load(missing, { device: 'cpu' })).rejects.toThrow(missing);
    const dir = mkdtempSync(path.join(tmpdir(), 'det-'));
    const bad = path.join(dir, 'garbage.onnx');
    writeFileSync(bad, 'not a model');
    try {
      const err = await Detector.load(bad, { device: 'cpu' }).catch((e) => e);
      expect(err).toBeInstanceOf(ModelLoadError);
      expect((err as ModelLoadError).modelPath).toBe(bad);
    } finally { rmSync(dir, { recursive: true }); }
  });
  test('cuda request: runs on CUDA, or falls back to CPU / throws ExecutionProviderError when unavailable', async () => {
    const reasons: string[] = [];
    const d = await Detector.load(DETECTOR_MODEL, { device: 'cuda', onFallback: (r) => reasons.push(r) });
    try {
      if (d.device === 'cpu') {
        expect(reasons).toHaveLength(1);
        await expect(Detector.load(DETECTOR_MODEL, { device: 'cuda', fallbackToCpu: false })).rejects.toThrow(ExecutionProviderError);
      } else {
        expect(reasons).toHaveLength(0);
      }
      const [f] = loadFrames(IMAGES.person, 1);
      const a = await d.detect(f);
      const b = await det.detect(f);
      expect(a.detections.map((x) => x.className).sort()).toEqual(b.detections.map((x) => x.className).sort());
    } finally { await d.release(); }
  });
});
