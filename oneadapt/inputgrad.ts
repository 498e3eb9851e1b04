/**
 * InputGrad and AccGrad (pure). InputGrad e is how far the frame the DNN sees moves away from the
 * highest-quality reference under a knob value: e = Σ_RGB |x − x_ref| per pixel, averaged per
 * 16×16 macroblock. AccGrad couples it with the server's per-macroblock DNNGrad g:
 *   R = Σ_mb g_mb · e_mb · (pixels per MB)
 * a first-order bound on how much the accuracy proxy moves (|ΔO| ≤ Σ_px |∂O/∂x|·|Δx|).
 */
import { mbGrid, MB, type MbMap, type YuvFrame } from '../encoder/frame.ts';

// BT.601 limited-range YUV→RGB is linear up to clamping, so RGB differences follow from YUV ones.
const KY = 1.164;
const RV = 1.596;
const GU = 0.392;
const GV = 0.813;
const BU = 2.017;

/** Mean over each macroblock of Σ_RGB |x − ref| (both frames the same size). */
export function rgbErrorPerMb(x: YuvFrame, ref: YuvFrame): MbMap {
  if (x.width !== ref.width || x.height !== ref.height) throw new RangeError(`frame sizes differ: ${x.width}x${x.height} vs ${ref.width}x${ref.height}`);
  const { width: w, height: h } = x;
  const { rows, cols } = mbGrid(w, h);
  const sum = new Float64Array(rows * cols);
  const cnt = new Float64Array(rows * cols);
  const cw = w >> 1;
  const uOff = w * h;
  const vOff = uOff + cw * (h >> 1);
  const a = x.data;
  const b = ref.data;
  for (let yy = 0; yy < h; yy++) {
    const mbRow = ((yy / MB) | 0) * cols;
    const crow = (yy >> 1) * cw;
    for (let xx = 0; xx < w; xx++) {
      const dy = KY * (a[yy * w + xx] - b[yy * w + xx]);
      const ci = crow + (xx >> 1);
      const du = a[uOff + ci] - b[uOff + ci];
      const dv = a[vOff + ci] - b[vOff + ci];
      const e = Math.abs(dy + RV * dv) + Math.abs(dy - GU * du - GV * dv) + Math.abs(dy + BU * du);
      const m = mbRow + ((xx / MB) | 0);
      sum[m] += e;
      cnt[m] += 1;
    }
  }
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = cnt[i] ? sum[i] / cnt[i] : 0;
  return { rows, cols, data };
}

/** R = Σ_mb g·e·256 for a DNNGrad map g and an InputGrad map e on the same grid. */
export function accGrad(g: MbMap, e: MbMap): number {
  if (g.rows !== e.rows || g.cols !== e.cols) throw new RangeError(`map grids differ: ${g.rows}x${g.cols} vs ${e.rows}x${e.cols}`);
  let r = 0;
  for (let i = 0; i < g.data.length; i++) r += g.data[i] * e.data[i];
  return r * MB * MB;
}

/**
 * Frame sampling: which source frame the DNN sees at each position when only `fps` of `srcFps`
 * frames are sent (a skipped frame is answered with the last sent one).
 */
export function sampledIndices(count: number, srcFps: number, fps: number): number[] {
  const out: number[] = [];
  if (fps >= srcFps) return [...Array(count).keys()];
  let last = 0;
  let prevSlot = -1;
  for (let i = 0; i < count; i++) {
    const slot = Math.floor((i * fps) / srcFps);
    if (slot !== prevSlot) {
      last = i;
      prevSlot = slot;
    }
    out.push(last);
  }
  return out;
}

/** Indices of the frames actually encoded and sent at a frame rate. */
export function keptFrames(count: number, srcFps: number, fps: number): number[] {
  return [...new Set(sampledIndices(count, srcFps, fps))];
}
