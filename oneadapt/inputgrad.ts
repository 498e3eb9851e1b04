/**
 * InputGrad and AccGrad (pure). InputGrad e is how far the frame the DNN sees moves away from the
 * highest-quality reference under a knob value: e = Σ_RGB |x − x_ref| per pixel, averaged per
 * 16×16 macroblock. AccGrad couples it with the server's per-macroblock DNNGrad g:
 *   R = Σ_mb g_mb · e_mb · (pixels per MB)
 * a first-order bound on how much the accuracy proxy moves (|ΔO| ≤ Σ_px |∂O/∂x|·|Δx|).
 */
import { MB, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { frameDiffPerMb } from '../media/mb.ts';

/** Mean over each macroblock of Σ_RGB |x − ref| (both frames the same size). */
export function rgbErrorPerMb(x: YuvFrame, ref: YuvFrame): MbMap {
  return frameDiffPerMb(x, ref, { metric: 'rgb', reduce: 'mean' });
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
