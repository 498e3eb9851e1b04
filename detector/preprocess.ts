/**
 * YOLOX input preprocessing: YUV420p frame → letterboxed BGR float32 CHW [1,3,S,S], values 0–255.
 *
 * - Colour: media/colour.ts (BT.601 limited range), RGB clamped to 0–255.
 * - Resize: keep aspect ratio, r = min(S/w, S/h), new size = floor(w·r) × floor(h·r) (as YOLOX's
 *   `preproc`), bilinear with half-pixel centres (cv2.INTER_LINEAR mapping: src = (dst+0.5)·w/newW − 0.5,
 *   edges clamped). Interpolation is done on the Y, U, V planes, then converted to RGB.
 * - Chroma siting: MPEG-2/H.264 default ("left"): chroma samples co-sited with even luma columns
 *   horizontally and centred between luma rows vertically.
 * - Pad: bottom/right with 114 in all three channels.
 * Pure and allocation-light: one Float32Array output (optionally reused) and small per-row/column tables.
 */
import type { YuvFrame } from '../encoder/frame.ts';
import { nativeKernels } from '../encoder/kernels.ts';
import { yuvToRgb } from '../media/colour.ts';

export const INPUT_SIZE = 416;
export const PAD_VALUE = 114;

export interface Letterbox {
  /** side of the square network input (416) */
  inputSize: number;
  /** original frame size */
  srcW: number;
  srcH: number;
  /** r = min(S/srcW, S/srcH) */
  scale: number;
  /** resized image size inside the input (top-left aligned); the rest is padding */
  newW: number;
  newH: number;
  /** exact per-axis factors input-pixel → original-pixel: x_orig = x_in · srcW/newW */
  invScaleX: number;
  invScaleY: number;
}

export function letterboxFor(srcW: number, srcH: number, inputSize = INPUT_SIZE): Letterbox {
  if (!(srcW > 0 && srcH > 0)) throw new RangeError(`bad frame size ${srcW}x${srcH}`);
  const scale = Math.min(inputSize / srcW, inputSize / srcH);
  const newW = Math.max(1, Math.min(inputSize, Math.floor(srcW * scale + 1e-9)));
  const newH = Math.max(1, Math.min(inputSize, Math.floor(srcH * scale + 1e-9)));
  return { inputSize, srcW, srcH, scale, newW, newH, invScaleX: srcW / newW, invScaleY: srcH / newH };
}

/** Bilinear tap table: for each destination index, the two source indices and the weight of the second. */
function taps(dstN: number, srcN: number, ratio: number, offset: number): { i0: Int32Array; i1: Int32Array; w: Float32Array } {
  const i0 = new Int32Array(dstN);
  const i1 = new Int32Array(dstN);
  const w = new Float32Array(dstN);
  for (let d = 0; d < dstN; d++) {
    let s = (d + 0.5) * ratio - 0.5 + offset;
    if (s < 0) s = 0;
    if (s > srcN - 1) s = srcN - 1;
    const f = Math.floor(s);
    i0[d] = f;
    i1[d] = Math.min(f + 1, srcN - 1);
    w[d] = s - f;
  }
  return { i0, i1, w };
}

/**
 * Letterbox a YUV420p frame into the detector input (the C++ kernel when the addon has it, bit-identical
 * to preprocessTs).
 * @param out optional reusable buffer of 3·S·S floats
 */
export function preprocess(frame: YuvFrame, out?: Float32Array, inputSize = INPUT_SIZE): { input: Float32Array; letterbox: Letterbox } {
  const k = nativeKernels();
  const { width: w, height: h, data } = frame;
  if (!k || (w | h) & 1) return preprocessTs(frame, out, inputSize);
  if (data.length < w * h + 2 * ((w >> 1) * (h >> 1))) throw new RangeError(`frame data too short for ${w}x${h} yuv420p`);
  const input = out ?? new Float32Array(3 * inputSize * inputSize);
  if (input.length !== 3 * inputSize * inputSize) throw new RangeError(`output buffer must hold ${3 * inputSize * inputSize} floats`);
  k.letterbox(data, w, h, inputSize, true, input);
  return { input, letterbox: letterboxFor(w, h, inputSize) };
}

/** The TypeScript reference of preprocess(). */
export function preprocessTs(frame: YuvFrame, out?: Float32Array, inputSize = INPUT_SIZE): { input: Float32Array; letterbox: Letterbox } {
  const { width: w, height: h, data } = frame;
  if (data.length < w * h + 2 * ((w >> 1) * (h >> 1))) throw new RangeError(`frame data too short for ${w}x${h} yuv420p`);
  const lb = letterboxFor(w, h, inputSize);
  const S = inputSize;
  const plane = S * S;
  const input = out ?? new Float32Array(3 * plane);
  if (input.length !== 3 * plane) throw new RangeError(`output buffer must hold ${3 * plane} floats`);
  input.fill(PAD_VALUE);

  const cw = w >> 1;
  const ch = h >> 1;
  const uOff = w * h;
  const vOff = uOff + cw * ch;
  const rx = w / lb.newW;
  const ry = h / lb.newH;
  // luma taps
  const lx = taps(lb.newW, w, rx, 0);
  const ly = taps(lb.newH, h, ry, 0);
  // chroma taps. Luma source coordinate s = (d+0.5)·r − 0.5.
  // Horizontal, co-sited (chroma j sits at luma 2j): c = s/2 = (d+0.5)·r/2 − 0.25 → offset +0.25 in taps().
  // Vertical, centred (chroma j sits at luma 2j+0.5): c = (s−0.5)/2 = (d+0.5)·r/2 − 0.5 → offset 0.
  const cx = taps(lb.newW, cw, rx / 2, 0.25);
  const cy = taps(lb.newH, ch, ry / 2, 0);
  const bOff = 0;
  const gOff = plane;
  const rOff = 2 * plane;
  const rgb = new Float64Array(3);
  for (let y = 0; y < lb.newH; y++) {
    const yr0 = ly.i0[y] * w;
    const yr1 = ly.i1[y] * w;
    const wy = ly.w[y];
    const cr0 = cy.i0[y] * cw;
    const cr1 = cy.i1[y] * cw;
    const wcy = cy.w[y];
    const rowBase = y * S;
    for (let x = 0; x < lb.newW; x++) {
      const a0 = lx.i0[x];
      const a1 = lx.i1[x];
      const wx = lx.w[x];
      const top = data[yr0 + a0] + (data[yr0 + a1] - data[yr0 + a0]) * wx;
      const bot = data[yr1 + a0] + (data[yr1 + a1] - data[yr1 + a0]) * wx;
      const Y = top + (bot - top) * wy;
      const c0 = cx.i0[x];
      const c1 = cx.i1[x];
      const wcx = cx.w[x];
      let t = data[uOff + cr0 + c0] + (data[uOff + cr0 + c1] - data[uOff + cr0 + c0]) * wcx;
      let b = data[uOff + cr1 + c0] + (data[uOff + cr1 + c1] - data[uOff + cr1 + c0]) * wcx;
      const U = t + (b - t) * wcy;
      t = data[vOff + cr0 + c0] + (data[vOff + cr0 + c1] - data[vOff + cr0 + c0]) * wcx;
      b = data[vOff + cr1 + c0] + (data[vOff + cr1 + c1] - data[vOff + cr1 + c0]) * wcx;
      const V = t + (b - t) * wcy;
      yuvToRgb(Y, U, V, rgb);
      const o = rowBase + x;
      input[bOff + o] = rgb[2];
      input[gOff + o] = rgb[1];
      input[rOff + o] = rgb[0];
    }
  }
  return { input, letterbox: lb };
}

/** Map a point in network-input coordinates back to the original frame (no clipping). */
export function inputToFrame(lb: Letterbox, x: number, y: number): [number, number] {
  return [x * lb.invScaleX, y * lb.invScaleY];
}
