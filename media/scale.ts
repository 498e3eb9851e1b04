/** Frame and macroblock-map sizes under scaling (pixel scaling itself is the native addon's scaleFrame). */
import type { MbMap } from '../encoder/frame.ts';

const even = (v: number): number => Math.max(16, Math.round(v / 2) * 2);

/** Size of a w×h frame scaled by `scale` ≤ 1, rounded to even dimensions (at least 16). */
export function scaledSize(w: number, h: number, scale: number): { width: number; height: number } {
  return scale >= 1 ? { width: w, height: h } : { width: even(w * scale), height: even(h * scale) };
}

/** Nearest-neighbour resampling of a macroblock map to another grid. */
export function resampleMap(m: MbMap, rows: number, cols: number): MbMap {
  if (m.rows === rows && m.cols === cols) return m;
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const sr = Math.min(m.rows - 1, Math.floor(((r + 0.5) * m.rows) / rows));
    for (let c = 0; c < cols; c++) data[r * cols + c] = m.data[sr * m.cols + Math.min(m.cols - 1, Math.floor(((c + 0.5) * m.cols) / cols))];
  }
  return { rows, cols, data };
}
