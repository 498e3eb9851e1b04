/**
 * The C++ hot loops (encoder/native/kernels.cc) against their TypeScript references (the `…Ts` functions),
 * on real frames and on noise: bit-identical outputs (max |Δ| = 0) at sizes that are and are not multiples
 * of 16 — both called directly and through the product's functions, which use them — for each set of loops
 * this CPU can run (the AVX2 ones in kernels_x86.cc and the portable ones).
 */
import { nativeKernels, nativeKernelsStatus, type NativeKernels } from '../encoder/kernels.ts';
import { mbGrid, type YuvFrame } from '../encoder/frame.ts';
import { preprocess, preprocessTs, letterboxFor } from '../detector/preprocess.ts';
import { halfResRgb, halfResRgbTs } from '../cheapmodel/model.ts';
import { reduceToMacroblocks, reduceToMacroblocksTs, saliencyToFrame, saliencyToFrameTs, weightByPixelDiff } from '../server/dnngrad.ts';
import { frameDiffPerMb, frameDiffPerMbTs, planePerMb, planePerMbTs } from '../media/mb.ts';
import { rgbErrorPerMb } from '../oneadapt/inputgrad.ts';
import { importanceMask, importanceMaskTs } from '../cheapmodel/qpmap.ts';
import { loadFrames, VIDEOS } from '../testdata/fixtures.ts';
import { maxAbsDiff } from '../numeric/stats.ts';
import { rng } from '../numeric/random.ts';

const k: NativeKernels = (() => {
  const n = nativeKernels();
  if (!n) throw new Error(`native kernels unavailable: ${nativeKernelsStatus()}`);
  return n;
})();

/** Deterministic gradient-like input: signed values spanning six decades, as a detector's input gradient does. */
function fakeGradient(n: number, seed: number): Float32Array {
  const rnd = rng(seed);
  return Float32Array.from({ length: n }, () => (rnd() - 0.5) * Math.exp(rnd() * 14 - 16));
}

/** Two frames of uniform noise: every value occurs, and a size that leaves every vector loop a scalar tail. */
function noiseFrames(w: number, h: number, seed: number): YuvFrame[] {
  const rnd = rng(seed);
  return [0, 1].map(() => ({ width: w, height: h, ptsMs: 0, data: Uint8Array.from({ length: (w * h * 3) / 2 }, () => Math.floor(rnd() * 256)) }));
}

// [label, frames]: real footage at its own size, one size that is not a multiple of 16 and a portrait one
const cases: [string, YuvFrame[]][] = [
  ['campus 768x576', loadFrames(VIDEOS.campus, 2, { startS: 3 })],
  ['highway 650x362', loadFrames(VIDEOS.highway, 2, { startS: 5, width: 650, height: 362 })],
  ['people portrait 242x430', loadFrames(VIDEOS.people, 2, { startS: 20, width: 242, height: 430 })],
  ['noise 38x26', noiseFrames(38, 26, 5)],
];

// Each implementation this CPU can run: the AVX2 loops (x86-64 with AVX2) and the portable ones.
const paths = [...new Set([k.useSimd(true), k.useSimd(false)])];
k.useSimd(true);

describe.each(paths)('%s loops', (path) => {
  beforeAll(() => expect(k.useSimd(path === 'avx2')).toBe(path));
  afterAll(() => k.useSimd(true));

  describe.each(cases)('C++ kernels = TypeScript references (%s)', (_label, [f, g]) => {
    const S = 416;
    const lb = letterboxFor(f.width, f.height, S);
    const grad = fakeGradient(3 * S * S, f.width * 7 + f.height);
    const { rows, cols } = mbGrid(f.width, f.height);

    test('letterbox, BGR (detector input) and RGB; preprocess() uses it', () => {
      const ref = preprocessTs(f).input;
      const bgr = new Float32Array(3 * S * S).fill(NaN);
      k.letterbox(f.data, f.width, f.height, S, true, bgr);
      expect(maxAbsDiff(bgr, ref)).toBe(0);
      expect(maxAbsDiff(preprocess(f).input, ref)).toBe(0);
      const rgb = new Float32Array(3 * S * S);
      k.letterbox(f.data, f.width, f.height, S, false, rgb);
      const P = S * S;
      expect(maxAbsDiff(rgb.subarray(0, P), ref.subarray(2 * P))).toBe(0);
      expect(maxAbsDiff(rgb.subarray(P, 2 * P), ref.subarray(P, 2 * P))).toBe(0);
      expect(maxAbsDiff(rgb.subarray(2 * P), ref.subarray(0, P))).toBe(0);
    });

    test('letterbox at other input sizes (320; 96: a steep downscale), into a reused buffer', () => {
      for (const size of [320, 96]) {
        const out = new Float32Array(3 * size * size).fill(-1);
        expect(preprocess(f, out, size).input).toBe(out);
        expect(maxAbsDiff(out, preprocessTs(f, undefined, size).input)).toBe(0);
      }
    });

    test('cheap-model input (half-resolution RGB, edge-replicated)', () => {
      const ref = halfResRgbTs(f);
      const out = new Float32Array(ref.data.length).fill(NaN);
      k.halfResRgb(f.data, f.width, f.height, out);
      expect(maxAbsDiff(out, ref.data)).toBe(0);
      const reused = new Float32Array(ref.data.length).fill(NaN);
      expect(halfResRgb(f, reused).data).toBe(reused);
      expect(maxAbsDiff(reused, ref.data)).toBe(0);
      expect(() => halfResRgb(f, new Float32Array(10))).toThrow(/output buffer must hold/);
      const viaProduct = halfResRgb(f);
      expect({ ...viaProduct, data: null }).toEqual({ ...ref, data: null });
      expect(maxAbsDiff(viaProduct.data, ref.data)).toBe(0);
    });

    test('DNNGrad per-MB reduction, mean and sum', () => {
      for (const reduce of ['mean', 'sum'] as const) {
        const ref = reduceToMacroblocksTs(grad, lb, f.width, f.height, { reduce });
        const out = new Float32Array(ref.data.length).fill(NaN);
        k.reduceToMacroblocks(grad, S, f.width, f.height, reduce === 'mean', out);
        expect(maxAbsDiff(out, ref.data)).toBe(0);
        expect(maxAbsDiff(reduceToMacroblocks(grad, lb, f.width, f.height, { reduce }).data, ref.data)).toBe(0);
      }
    });

    test('label maps: saliency in frame coordinates, its per-MB sums, Σ saliency·|HQ−LQ| per MB', () => {
      const sal = saliencyToFrameTs(grad, lb, f.width, f.height);
      const out = new Float32Array(sal.length);
      k.saliencyToFrame(grad, S, f.width, f.height, out);
      expect(maxAbsDiff(out, sal)).toBe(0);
      expect(maxAbsDiff(saliencyToFrame(grad, lb, f.width, f.height), sal)).toBe(0);
      for (const reduce of ['sum', 'mean'] as const) {
        const o = new Float32Array(rows * cols).fill(NaN);
        k.planePerMb(sal, f.width, f.height, reduce === 'mean', o);
        expect(maxAbsDiff(o, planePerMbTs(sal, f.width, f.height, reduce).data)).toBe(0);
        expect(maxAbsDiff(planePerMb(sal, f.width, f.height, reduce).data, o)).toBe(0);
      }
      for (const [weight, reduce] of [[sal, 'sum'], [undefined, 'sum'], [sal, 'mean']] as const) {
        const ref = frameDiffPerMbTs(f, g, { metric: 'yuv', weight, reduce });
        const o = new Float32Array(rows * cols).fill(NaN);
        k.frameDiffPerMb(f.data, g.data, f.width, f.height, false, weight ?? null, reduce === 'mean', o);
        expect(maxAbsDiff(o, ref.data)).toBe(0);
        expect(maxAbsDiff(weightByPixelDiff(weight, f, g, { reduce }).data, ref.data)).toBe(0);
      }
    });

    test('AccGrad InputGrad: per-MB RGB error', () => {
      const ref = frameDiffPerMbTs(f, g, { metric: 'rgb', reduce: 'mean' });
      expect(ref.data.some((v) => v > 0)).toBe(true);
      const out = new Float32Array(ref.data.length).fill(NaN);
      k.frameDiffPerMb(f.data, g.data, f.width, f.height, true, null, true, out);
      expect(maxAbsDiff(out, ref.data)).toBe(0);
      expect(maxAbsDiff(rgbErrorPerMb(f, g).data, ref.data)).toBe(0);
      expect(maxAbsDiff(frameDiffPerMb(f, g, { metric: 'rgb', reduce: 'sum' }).data, frameDiffPerMbTs(f, g, { metric: 'rgb', reduce: 'sum' }).data)).toBe(0);
    });

    test('QP-map morphology (binarise, opening, closing) on a real-looking importance map', () => {
      // importance ∝ the frame's per-MB motion: a map with blobs, specks and holes
      const e = frameDiffPerMbTs(f, g, { metric: 'rgb', reduce: 'mean' });
      let max = 0;
      for (const v of e.data) max = Math.max(max, v);
      const p = { ...e, data: e.data.map((v) => v / max) };
      for (const threshold of [0.05, 0.2, 0.5]) {
        for (const smooth of [true, false]) {
          const ref = importanceMaskTs(p, { threshold, smooth });
          const out = new Uint8Array(ref.length).fill(7);
          k.importanceMask(p.data, p.rows, p.cols, threshold, smooth, out);
          expect(maxAbsDiff(out, ref)).toBe(0);
          expect(maxAbsDiff(importanceMask(p, { threshold, smooth }), ref)).toBe(0);
        }
      }
    });
  });
});

describe('C++ kernels: degenerate maps and bad input', () => {
  test('morphology on 1×n, n×1 and 1×1 grids', () => {
    for (const [rows, cols] of [[1, 9], [9, 1], [1, 1], [2, 3]]) {
      const data = Float32Array.from({ length: rows * cols }, (_, i) => ((i * 37) % 11) / 10);
      const ref = importanceMaskTs({ rows, cols, data }, { threshold: 0.3 });
      const out = new Uint8Array(rows * cols);
      k.importanceMask(data, rows, cols, 0.3, true, out);
      expect(Array.from(out)).toEqual(Array.from(ref));
    }
  });

  // errors made by the addon come from the main realm (not jest's), so compare names, not constructors
  function thrown(fn: () => void): { name: string; message: string } {
    try {
      fn();
    } catch (e) {
      return e as Error;
    }
    throw new Error('did not throw');
  }
  test('short buffers and wrong types throw instead of reading past the end', () => {
    const yuv = new Uint8Array(64 * 48 * 1.5 - 1);
    expect(thrown(() => k.letterbox(yuv, 64, 48, 416, true, new Float32Array(3 * 416 * 416)))).toMatchObject({ name: 'RangeError', message: 'yuv: 4607 elements, need 4608' });
    const ok = new Uint8Array(64 * 48 * 1.5);
    expect(thrown(() => k.letterbox(ok, 64, 48, 416, true, new Float32Array(10)))).toMatchObject({ name: 'RangeError', message: expect.stringMatching(/^out: 10 elements/) });
    expect(thrown(() => k.letterbox(ok, 63, 48, 416, true, new Float32Array(3 * 416 * 416)))).toMatchObject({ name: 'RangeError', message: 'frame size must be even' });
    const { rows, cols } = mbGrid(64, 48);
    expect(thrown(() => k.frameDiffPerMb(ok, ok, 64, 48, true, null, true, new Float32Array(rows * cols - 1)))).toMatchObject({ name: 'RangeError' });
    expect(thrown(() => k.frameDiffPerMb(ok, ok, 64, 48, true, new Float32Array(64 * 48 - 1), true, new Float32Array(rows * cols)))).toMatchObject({ name: 'RangeError', message: expect.stringMatching(/^weight: /) });
    expect(thrown(() => k.halfResRgb(ok, 64, 48, new Uint8Array(10) as unknown as Float32Array))).toMatchObject({ name: 'TypeError', message: 'out: wrong array type' });
    expect(thrown(() => k.reduceToMacroblocks(new Float32Array(5), 416, 64, 48, true, new Float32Array(rows * cols)))).toMatchObject({ name: 'RangeError' });
    expect(thrown(() => k.importanceMask(new Float32Array(4), 2, 2, Number.NaN, true, new Uint8Array(3)))).toMatchObject({ name: 'RangeError' });
  });
});
