/**
 * Per-macroblock reductions of per-pixel quantities on a frame's 16×16 MB grid (ceil(h/16)×ceil(w/16)):
 * the one place that maps pixels to macroblocks for InputGrad, AccMPEG's pixel-difference weighting and
 * the labelling CLI's saliency sums.
 */
import { MB, mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { nativeKernels } from '../encoder/kernels.ts';
import { rgbAbsDiff } from './colour.ts';

export type MbReduce = 'mean' | 'sum';

/** Divide each MB's value by its pixel area in a w×h frame (MBs are clipped at the right/bottom edge). In place. */
export function divideByMbArea(map: MbMap, w: number, h: number): MbMap {
  const { rows, cols, data } = map;
  for (let r = 0; r < rows; r++) {
    const mh = Math.min(MB, h - r * MB);
    for (let c = 0; c < cols; c++) data[r * cols + c] /= mh * Math.min(MB, w - c * MB);
  }
  return map;
}

/** Sum (or mean) of a row-major w×h per-pixel plane over each macroblock (C++ kernel for Float32Array planes). */
export function planePerMb(plane: ArrayLike<number>, w: number, h: number, reduce: MbReduce = 'sum'): MbMap {
  const k = nativeKernels();
  if (!k || !(plane instanceof Float32Array)) return planePerMbTs(plane, w, h, reduce);
  if (plane.length !== w * h) throw new RangeError(`plane must have ${w * h} values, got ${plane.length}`);
  const { rows, cols } = mbGrid(w, h);
  const data = new Float32Array(rows * cols);
  k.planePerMb(plane, w, h, reduce === 'mean', data);
  return { rows, cols, data };
}

/** The TypeScript reference of planePerMb(). */
export function planePerMbTs(plane: ArrayLike<number>, w: number, h: number, reduce: MbReduce = 'sum'): MbMap {
  if (plane.length !== w * h) throw new RangeError(`plane must have ${w * h} values, got ${plane.length}`);
  const { rows, cols } = mbGrid(w, h);
  const acc = new Float64Array(rows * cols);
  for (let y = 0; y < h; y++) {
    const rowOut = (y >> 4) * cols;
    const base = y * w;
    for (let x = 0; x < w; x++) acc[rowOut + (x >> 4)] += plane[base + x];
  }
  const map = { rows, cols, data: Float32Array.from(acc) };
  return reduce === 'mean' ? divideByMbArea(map, w, h) : map;
}

export interface FrameDiffOptions {
  /**
   * Per-pixel distance between the two frames:
   * - 'rgb': Σ_RGB |Δ| after BT.601 conversion (OneAdapt's InputGrad);
   * - 'yuv': |ΔY| + |ΔU| + |ΔV| (AccMPEG's pixel difference).
   * Chroma is that of the 2×2 block the pixel belongs to.
   */
  metric: 'rgb' | 'yuv';
  /** optional per-pixel weight (w·h values, row-major), e.g. a saliency map */
  weight?: Float32Array;
  /** 'sum' over the MB's pixels, or 'mean' (divided by the MB's pixel area) */
  reduce: MbReduce;
}

/** Per-MB reduction of a per-pixel distance between two YUV420p frames of the same size (C++ kernel when built). */
export function frameDiffPerMb(a: YuvFrame, b: YuvFrame, opts: FrameDiffOptions): MbMap {
  const k = nativeKernels();
  const { width: w, height: h } = a;
  if (!k || (w | h) & 1) return frameDiffPerMbTs(a, b, opts);
  if (b.width !== w || b.height !== h) throw new RangeError(`frame sizes differ: ${w}x${h} vs ${b.width}x${b.height}`);
  if (opts.weight && opts.weight.length !== w * h) throw new RangeError(`weight must have ${w * h} values (one per pixel)`);
  const { rows, cols } = mbGrid(w, h);
  const data = new Float32Array(rows * cols);
  k.frameDiffPerMb(a.data, b.data, w, h, opts.metric === 'rgb', opts.weight ?? null, opts.reduce === 'mean', data);
  return { rows, cols, data };
}

/** The TypeScript reference of frameDiffPerMb(). */
export function frameDiffPerMbTs(a: YuvFrame, b: YuvFrame, opts: FrameDiffOptions): MbMap {
  const { width: w, height: h } = a;
  if (b.width !== w || b.height !== h) throw new RangeError(`frame sizes differ: ${w}x${h} vs ${b.width}x${b.height}`);
  const wt = opts.weight;
  if (wt && wt.length !== w * h) throw new RangeError(`weight must have ${w * h} values (one per pixel)`);
  const { rows, cols } = mbGrid(w, h);
  const acc = new Float64Array(rows * cols);
  const cw = w >> 1;
  const uOff = w * h;
  const vOff = uOff + cw * (h >> 1);
  const pa = a.data;
  const pb = b.data;
  const rgb = opts.metric === 'rgb';
  for (let y = 0; y < h; y++) {
    const rowOut = (y >> 4) * cols;
    const cRow = (y >> 1) * cw;
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const ci = cRow + (x >> 1);
      const dY = pa[p] - pb[p];
      const dU = pa[uOff + ci] - pb[uOff + ci];
      const dV = pa[vOff + ci] - pb[vOff + ci];
      const d = rgb ? rgbAbsDiff(dY, dU, dV) : Math.abs(dY) + Math.abs(dU) + Math.abs(dV);
      acc[rowOut + (x >> 4)] += wt ? wt[p] * d : d;
    }
  }
  const map = { rows, cols, data: Float32Array.from(acc) };
  return opts.reduce === 'mean' ? divideByMbArea(map, w, h) : map;
}
