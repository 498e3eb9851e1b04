/**
 * AccMPEG's quality assignment (pure): per-macroblock P(important) → binary mask → two QP levels.
 * As in AccMPEG's code: binarise at α, 3×3 morphological opening (remove specks) then closing
 * (fill holes), important macroblocks at the high-quality QP (30), the rest at the low one (40).
 */
import { type MbMap } from '../encoder/frame.ts';
import { nativeKernels } from '../encoder/kernels.ts';

export interface QpAssignment {
  threshold: number; // α on P(important)
  highQp: number; // QP for important macroblocks
  lowQp: number; // QP for the rest
  smooth?: boolean; // opening + closing (default true)
}

export function binarize(p: MbMap, threshold: number): Uint8Array {
  const m = new Uint8Array(p.data.length);
  for (let i = 0; i < m.length; i++) m[i] = p.data[i] > threshold ? 1 : 0;
  return m;
}

/** 3×3 erosion (op='min') or dilation (op='max'); outside the frame counts as neutral. */
function morph(m: Uint8Array, rows: number, cols: number, op: 'min' | 'max'): Uint8Array {
  const out = new Uint8Array(m.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      let v = op === 'min' ? 1 : 0;
      for (let dr = -1; dr <= 1; dr++) {
        const rr = r + dr;
        if (rr < 0 || rr >= rows) continue;
        for (let dc = -1; dc <= 1; dc++) {
          const cc = c + dc;
          if (cc < 0 || cc >= cols) continue;
          const x = m[rr * cols + cc];
          v = op === 'min' ? Math.min(v, x) : Math.max(v, x);
        }
      }
      out[r * cols + c] = v;
    }
  }
  return out;
}

export const opening = (m: Uint8Array, rows: number, cols: number): Uint8Array => morph(morph(m, rows, cols, 'min'), rows, cols, 'max');
export const closing = (m: Uint8Array, rows: number, cols: number): Uint8Array => morph(morph(m, rows, cols, 'max'), rows, cols, 'min');

/** The binary importance mask after thresholding and smoothing (C++ kernel when built; = importanceMaskTs). */
export function importanceMask(p: MbMap, a: Pick<QpAssignment, 'threshold' | 'smooth'>): Uint8Array {
  const k = nativeKernels();
  if (!k || p.data.length !== p.rows * p.cols) return importanceMaskTs(p, a);
  const m = new Uint8Array(p.data.length);
  k.importanceMask(p.data, p.rows, p.cols, a.threshold, a.smooth !== false, m);
  return m;
}

/** The TypeScript reference of importanceMask(). */
export function importanceMaskTs(p: MbMap, a: Pick<QpAssignment, 'threshold' | 'smooth'>): Uint8Array {
  let m = binarize(p, a.threshold);
  if (a.smooth !== false) m = closing(opening(m, p.rows, p.cols), p.rows, p.cols);
  return m;
}

/** Absolute per-MB QPs for an importance map. */
export function qpMapFromImportance(p: MbMap, a: QpAssignment): MbMap {
  const m = importanceMask(p, a);
  const data = new Float32Array(m.length);
  for (let i = 0; i < m.length; i++) data[i] = m[i] ? a.highQp : a.lowQp;
  return { rows: p.rows, cols: p.cols, data };
}

/** Element-wise mean of maps on the same grid (AccMPEG: mean of a chunk's first and last maps). */
export function meanMap(maps: MbMap[]): MbMap {
  if (maps.length === 0) throw new RangeError('meanMap of no maps');
  const { rows, cols } = maps[0];
  const data = new Float32Array(rows * cols);
  for (const m of maps) {
    if (m.rows !== rows || m.cols !== cols) throw new RangeError(`grid mismatch ${m.rows}x${m.cols} vs ${rows}x${cols}`);
    for (let i = 0; i < data.length; i++) data[i] += m.data[i] / maps.length;
  }
  return { rows, cols, data };
}

export function fractionImportant(mask: Uint8Array): number {
  let n = 0;
  for (const v of mask) n += v;
  return mask.length ? n / mask.length : 0;
}
