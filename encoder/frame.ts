/**
 * Raw video frames as they move through the agent and the server.
 * One contiguous YUV420p buffer per frame (Y plane, then U, then V; no padding),
 * so frames can cross the native addon boundary without copies.
 */
export interface YuvFrame {
  width: number; // luma width in pixels (even)
  height: number; // luma height in pixels (even)
  /** presentation timestamp in milliseconds from the start of the source */
  ptsMs: number;
  /** width*height*3/2 bytes: Y (w*h), U (w/2*h/2), V (w/2*h/2) */
  data: Uint8Array;
}

/** A per-macroblock map (e.g. QP offsets, gradients): rows×cols float32, row-major. */
export interface MbMap {
  rows: number;
  cols: number;
  data: Float32Array;
}

export const MB = 16;

export function yuvFrameSize(width: number, height: number): number {
  return width * height + 2 * ((width >> 1) * (height >> 1));
}

/** Macroblock grid of a frame: ceil(w/16) × ceil(h/16). */
export function mbGrid(width: number, height: number): { rows: number; cols: number } {
  return { rows: Math.ceil(height / MB), cols: Math.ceil(width / MB) };
}

export function makeMbMap(rows: number, cols: number, fill = 0): MbMap {
  return { rows, cols, data: new Float32Array(rows * cols).fill(fill) };
}
