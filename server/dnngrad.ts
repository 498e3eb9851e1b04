/**
 * DNNGrad plumbing (pure): accuracy proxies on the raw YOLOX output and their gradients ("seeds") for a
 * vector–Jacobian-product gradient model, reduction of the input gradient to per-macroblock saliency in
 * ORIGINAL-frame coordinates, AccMPEG's pixel-difference weighting, and a compact wire format for MB maps.
 *
 * Shapes: raw / seed = [1, 3549, 85] (row = x,y,w,h,obj,cls0…cls79; obj/cls are post-sigmoid
 * probabilities, so the seed is the derivative w.r.t. those output values); gradInput = [1,3,416,416]
 * (BGR CHW, the gradient of the proxy w.r.t. the letterboxed detector input).
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { MB, mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import type { Letterbox } from './detector/preprocess.ts';
import { NUM_CLASSES, ROW, decodeCellBox, makeGrid, type Detection } from './detector/postprocess.ts';

export interface ProxyResult {
  /** proxy value (computed in float64) */
  value: number;
  /** d value / d raw, same layout as raw */
  seed: Float32Array;
}

export interface OneAdaptProxyOptions {
  /** classes counted (default all 80) */
  classes?: readonly number[];
  /** sigmoid sharpness k in sigmoid(k·(score − centre)) (default 20) */
  sharpness?: number;
  /** default 0.5 */
  centre?: number;
  /** size filter: cells whose decoded box (network-input pixels) is smaller than this area are not counted.
   * It is a hard gate: no gradient flows into the box coordinates. Default 0 (no filter). */
  minBoxArea?: number;
  inputSize?: number;
}

/**
 * OneAdapt's proxy: O = Σ_cells Σ_classes sigmoid(k·(obj·cls_c − 0.5)), a soft count of confident detections.
 * dO/dobj = Σ_c k·σ(1−σ)·cls_c ; dO/dcls_c = k·σ(1−σ)·obj.
 */
export function oneAdaptProxy(raw: Float32Array, opts: OneAdaptProxyOptions = {}): ProxyResult {
  const k = opts.sharpness ?? 20;
  const centre = opts.centre ?? 0.5;
  const grid = makeGrid(opts.inputSize ?? 416);
  if (raw.length < grid.count * ROW) throw new RangeError(`raw has ${raw.length} values, expected ${grid.count * ROW}`);
  const classes = opts.classes ? Int32Array.from(opts.classes) : Int32Array.from({ length: NUM_CLASSES }, (_, i) => i);
  const minArea = opts.minBoxArea ?? 0;
  const seed = new Float32Array(raw.length);
  let value = 0;
  for (let cell = 0; cell < grid.count; cell++) {
    const o = cell * ROW;
    if (minArea > 0) {
      const b = decodeCellBox(raw, cell, grid);
      if ((b.x2 - b.x1) * (b.y2 - b.y1) < minArea) continue;
    }
    const obj = raw[o + 4];
    let dObj = 0;
    for (let i = 0; i < classes.length; i++) {
      const c = classes[i];
      const cls = raw[o + 5 + c];
      const sg = 1 / (1 + Math.exp(-k * (obj * cls - centre)));
      value += sg;
      const d = k * sg * (1 - sg);
      dObj += d * cls;
      seed[o + 5 + c] = d * obj;
    }
    seed[o + 4] = dObj;
  }
  return { value, seed };
}

export interface AccMpegProxyOptions {
  /** keep detections with score > minScore (default 0.3, as AccMPEG's code) */
  minScore?: number;
}

/**
 * AccMPEG's label proxy: S = Σ obj[cell]·cls[cell][classId] over the given (post-NMS) detections with
 * score > minScore, any class. The detection set is held fixed; dS/dobj = cls, dS/dcls = obj at those cells.
 * Pass detections decoded at a confidence threshold ≤ minScore (e.g. postprocess with confThreshold 0.3).
 */
export function accmpegProxy(raw: Float32Array, detections: readonly Pick<Detection, 'cell' | 'classId' | 'score'>[], opts: AccMpegProxyOptions = {}): ProxyResult {
  const minScore = opts.minScore ?? 0.3;
  const seed = new Float32Array(raw.length);
  let value = 0;
  for (const d of detections) {
    if (!(d.score > minScore)) continue;
    const o = d.cell * ROW;
    if (o + ROW > raw.length) throw new RangeError(`detection cell ${d.cell} outside raw output`);
    const obj = raw[o + 4];
    const cls = raw[o + 5 + d.classId];
    value += obj * cls;
    seed[o + 4] += cls;
    seed[o + 5 + d.classId] += obj;
  }
  return { value, seed };
}

export type MbReduce = 'mean' | 'sum';

function checkGrad(gradInput: Float32Array, lb: Letterbox, frameW: number, frameH: number): void {
  const S = lb.inputSize;
  if (gradInput.length !== 3 * S * S) throw new RangeError(`gradInput must be [1,3,${S},${S}] (${3 * S * S} floats), got ${gradInput.length}`);
  if (frameW !== lb.srcW || frameH !== lb.srcH) throw new RangeError(`frame ${frameW}x${frameH} does not match letterbox source ${lb.srcW}x${lb.srcH}`);
}

/** Per-pixel saliency in the network input: Σ over B,G,R of |grad|, [S·S]; padding included (caller ignores it). */
export function inputSaliency(gradInput: Float32Array, inputSize = 416): Float32Array {
  const plane = inputSize * inputSize;
  const s = new Float32Array(plane);
  for (let i = 0; i < plane; i++) s[i] = Math.abs(gradInput[i]) + Math.abs(gradInput[i + plane]) + Math.abs(gradInput[i + 2 * plane]);
  return s;
}

/**
 * Reduce an input gradient to a per-MB map of the ORIGINAL frame (ceil(h/16) × ceil(w/16)).
 * Per-pixel saliency = Σ_BGR |grad| over the un-padded part of the input (padding is ignored). Each input
 * pixel (xi, yi) belongs to one original location ((xi+0.5)·srcW/newW, (yi+0.5)·srcH/newH), and its saliency
 * is added to that location's MB ("push"; the total over MBs equals the total over the un-padded input).
 * - reduce 'sum' (AccMPEG: per-MB sum): that per-MB total.
 * - reduce 'mean' (OneAdapt, default): the total divided by the MB's pixel area in the original frame
 *   (clipped at the right/bottom edge), i.e. the MB's average saliency density per original pixel.
 */
export function reduceToMacroblocks(gradInput: Float32Array, lb: Letterbox, frameW: number, frameH: number, opts: { reduce?: MbReduce } = {}): MbMap {
  checkGrad(gradInput, lb, frameW, frameH);
  const S = lb.inputSize;
  const plane = S * S;
  const { rows, cols } = mbGrid(frameW, frameH);
  const out = new Float32Array(rows * cols);
  const colMb = new Int32Array(lb.newW);
  for (let x = 0; x < lb.newW; x++) colMb[x] = Math.min(frameW - 1, Math.floor((x + 0.5) * lb.invScaleX)) >> 4;
  for (let y = 0; y < lb.newH; y++) {
    const r = Math.min(frameH - 1, Math.floor((y + 0.5) * lb.invScaleY)) >> 4;
    const rowOut = r * cols;
    const base = y * S;
    for (let x = 0; x < lb.newW; x++) {
      const i = base + x;
      out[rowOut + colMb[x]] += Math.abs(gradInput[i]) + Math.abs(gradInput[i + plane]) + Math.abs(gradInput[i + 2 * plane]);
    }
  }
  if ((opts.reduce ?? 'mean') === 'mean') {
    for (let r = 0; r < rows; r++) {
      const h = Math.min(MB, frameH - r * MB);
      for (let c = 0; c < cols; c++) out[r * cols + c] /= h * Math.min(MB, frameW - c * MB);
    }
  }
  return { rows, cols, data: out };
}

/**
 * Per-pixel saliency in ORIGINAL-frame coordinates, [frameH·frameW] row-major. Each original pixel takes
 * the Σ_BGR |grad| of the input pixel it falls in ("pull", nearest), times the area ratio
 * (newW·newH)/(srcW·srcH), so it is a density whose sum over the frame ≈ the sum over the un-padded input
 * (and whose per-MB sums ≈ reduceToMacroblocks(…, 'sum')).
 */
export function saliencyToFrame(gradInput: Float32Array, lb: Letterbox, frameW: number, frameH: number): Float32Array {
  checkGrad(gradInput, lb, frameW, frameH);
  const S = lb.inputSize;
  const plane = S * S;
  const k = 1 / (lb.invScaleX * lb.invScaleY);
  const xs = new Int32Array(frameW);
  for (let x = 0; x < frameW; x++) xs[x] = Math.min(lb.newW - 1, Math.floor((x + 0.5) / lb.invScaleX));
  const out = new Float32Array(frameW * frameH);
  for (let y = 0; y < frameH; y++) {
    const yi = Math.min(lb.newH - 1, Math.floor((y + 0.5) / lb.invScaleY));
    const base = yi * S;
    const o = y * frameW;
    for (let x = 0; x < frameW; x++) {
      const i = base + xs[x];
      out[o + x] = k * (Math.abs(gradInput[i]) + Math.abs(gradInput[i + plane]) + Math.abs(gradInput[i + 2 * plane]));
    }
  }
  return out;
}

/**
 * AccMPEG's paper definition: per-MB Σ_pixels saliency · |HQ − LQ|, with the pixel difference taken as
 * |ΔY| + |ΔU| + |ΔV| (chroma of the 2×2 block the pixel belongs to), on the original-resolution frames.
 * Without a saliency map it is the plain per-MB pixel difference (OneAdapt's InputGrad-style error).
 * reduce: 'sum' (default, the paper's definition) or 'mean' (divided by the MB's pixel area).
 */
export function weightByPixelDiff(saliency: Float32Array | undefined, hq: YuvFrame, lq: YuvFrame, opts: { reduce?: MbReduce } = {}): MbMap {
  const w = hq.width;
  const h = hq.height;
  if (lq.width !== w || lq.height !== h) throw new RangeError(`HQ ${w}x${h} and LQ ${lq.width}x${lq.height} differ`);
  if (saliency && saliency.length !== w * h) throw new RangeError(`saliency must have ${w * h} values (original-frame pixels)`);
  const { rows, cols } = mbGrid(w, h);
  const out = new Float32Array(rows * cols);
  const cw = w >> 1;
  const uOff = w * h;
  const vOff = uOff + cw * (h >> 1);
  const a = hq.data;
  const b = lq.data;
  for (let y = 0; y < h; y++) {
    const rowOut = (y >> 4) * cols;
    const cRow = (y >> 1) * cw;
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const ci = cRow + (x >> 1);
      const d = Math.abs(a[p] - b[p]) + Math.abs(a[uOff + ci] - b[uOff + ci]) + Math.abs(a[vOff + ci] - b[vOff + ci]);
      out[rowOut + (x >> 4)] += saliency ? saliency[p] * d : d;
    }
  }
  if (opts.reduce === 'mean') {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] /= Math.min(MB, h - r * MB) * Math.min(MB, w - c * MB);
  }
  return { rows, cols, data: out };
}

// ---------------------------------------------------------------------------------------------
// Wire format for MB maps
//
//   offset size
//   0      2   magic "MB"
//   2      1   version (1)
//   3      1   flags: bit0 = signed
//   4      2   rows (uint16 LE)
//   6      2   cols (uint16 LE)
//   8      4   max |v| (float32 LE)
//   12     4   floor ratio ρ (float32 LE): |v| < ρ·max decodes as 0
//   16     …   raw-deflate of rows·cols uint8 codes
//
// Unsigned codes: 0 → 0; 1…255 → ρ·max·exp((code−1)·Δ), Δ = ln(1/ρ)/254.
// Signed codes: 0 → 0; 1…127 → +ρ·max·exp((code−1)·Δ), 129…255 → −(same with code−128), Δ = ln(1/ρ)/126.
// Error bound (mbMapErrorBound): |v̂ − v| ≤ max(ρ·max, |v|·(e^{Δ/2} − 1)).
// ---------------------------------------------------------------------------------------------

const MAGIC0 = 0x4d; // 'M'
const MAGIC1 = 0x42; // 'B'
const VERSION = 1;
const HEADER = 16;

export interface MbWireOptions {
  /** dynamic range: values below floorRatio·max are sent as 0 (default 1e-4, i.e. 80 dB) */
  floorRatio?: number;
  /** deflate level (default 9) */
  level?: number;
}

export function mbMapErrorBound(max: number, floorRatio = 1e-4, signed = false): { absFloor: number; relative: number } {
  const levels = signed ? 127 : 255;
  const delta = Math.log(1 / floorRatio) / (levels - 1);
  return { absFloor: floorRatio * max, relative: Math.expm1(delta / 2) };
}

export function encodeMbMap(map: MbMap, opts: MbWireOptions = {}): Buffer {
  const { rows, cols, data } = map;
  if (rows < 0 || cols < 0 || rows > 0xffff || cols > 0xffff || data.length !== rows * cols) throw new RangeError(`bad MbMap ${rows}x${cols} with ${data.length} values`);
  const rho = opts.floorRatio ?? 1e-4;
  if (!(rho > 0 && rho < 1)) throw new RangeError('floorRatio must be in (0,1)');
  let max = 0;
  let signed = false;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) throw new RangeError(`MbMap value ${v} at ${i} is not finite`);
    if (v < 0) signed = true;
    const a = Math.abs(v);
    if (a > max) max = a;
  }
  max = Math.fround(max);
  const rho32 = Math.fround(rho);
  const levels = signed ? 127 : 255;
  const delta = Math.log(1 / rho32) / (levels - 1);
  const lo = rho32 * max;
  const lnLo = Math.log(lo);
  const codes = new Uint8Array(data.length);
  if (max > 0) {
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      const a = Math.abs(v);
      if (a < lo) continue;
      let q = Math.round((Math.log(a) - lnLo) / delta);
      if (q > levels - 1) q = levels - 1;
      codes[i] = 1 + q + (v < 0 ? 128 : 0);
    }
  }
  const body = deflateRawSync(codes, { level: opts.level ?? 9 });
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = VERSION;
  out[3] = signed ? 1 : 0;
  out.writeUInt16LE(rows, 4);
  out.writeUInt16LE(cols, 6);
  out.writeFloatLE(max, 8);
  out.writeFloatLE(rho32, 12);
  body.copy(out, HEADER);
  return out;
}

export function decodeMbMap(buf: Uint8Array): MbMap {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < HEADER || b[0] !== MAGIC0 || b[1] !== MAGIC1) throw new Error('not an MB map (bad magic)');
  if (b[2] !== VERSION) throw new Error(`unsupported MB map version ${b[2]}`);
  const signed = (b[3] & 1) === 1;
  const rows = b.readUInt16LE(4);
  const cols = b.readUInt16LE(6);
  const max = b.readFloatLE(8);
  const rho = b.readFloatLE(12);
  const codes = inflateRawSync(b.subarray(HEADER));
  if (codes.length !== rows * cols) throw new Error(`MB map body has ${codes.length} codes, header says ${rows}x${cols}`);
  const levels = signed ? 127 : 255;
  const delta = Math.log(1 / rho) / (levels - 1);
  const lo = rho * max;
  const table = new Float32Array(256);
  for (let c = 1; c < 256; c++) {
    if (signed) {
      if (c === 128) continue;
      const m = c > 128 ? c - 128 : c;
      table[c] = (c > 128 ? -1 : 1) * lo * Math.exp((m - 1) * delta);
    } else {
      table[c] = lo * Math.exp((c - 1) * delta);
    }
  }
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = table[codes[i]];
  return { rows, cols, data };
}

/** Bytes one frame's MB map costs on the wire (for benchmarks). */
export function mbMapWireBytes(map: MbMap, opts?: MbWireOptions): number {
  return encodeMbMap(map, opts).length;
}
