/**
 * AccMPEG's quality assignment (pure): per-macroblock P(important) → binary mask → two QP levels.
 * AccMPEG's code: binarise at α, 3×3 morphological opening (remove specks) then closing (fill holes),
 * important macroblocks at the high-quality QP, the rest at the low one.
 * Two additions so that a model unsure of a new scene cannot collapse to "nothing is important":
 *   - a floor (minFraction): the highest-P macroblocks are important up to that share of the frame;
 *   - dilation by `dilate` macroblocks (the detector needs the object's surroundings, and objects
 *     move between the chunk's scored frames).
 * With smoothing off, a single-MB object (a distant car) survives (the opening would delete it).
 */
import { type MbMap } from '../encoder/frame.ts';
import { nativeKernels } from '../encoder/kernels.ts';
import { indicesByValueDesc } from '../numeric/stats.ts';

export interface QpAssignment {
  threshold: number; // α on P(important)
  highQp: number; // QP for important macroblocks
  lowQp: number; // QP for the rest
  smooth?: boolean; // opening + closing (default true)
  minFraction?: number; // floor: at least this share of MBs (highest P first) important (default 0)
  dilate?: number; // dilate the mask by this many MBs (3×3 max per step; default 0)
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

type MaskRule = Pick<QpAssignment, 'threshold' | 'smooth' | 'minFraction' | 'dilate'>;

/** The binary importance mask: threshold and smoothing (C++ kernel when built; = importanceMaskTs), then floor and dilation. */
export function importanceMask(p: MbMap, a: MaskRule): Uint8Array {
  const k = nativeKernels();
  if (!k || p.data.length !== p.rows * p.cols) return importanceMaskTs(p, a);
  const m = new Uint8Array(p.data.length);
  k.importanceMask(p.data, p.rows, p.cols, a.threshold, a.smooth !== false, m);
  return floorAndDilate(m, p, a);
}

/** The TypeScript reference of importanceMask(). */
export function importanceMaskTs(p: MbMap, a: MaskRule): Uint8Array {
  let m = binarize(p, a.threshold);
  if (a.smooth !== false) m = closing(opening(m, p.rows, p.cols), p.rows, p.cols);
  return floorAndDilate(m, p, a);
}

function floorAndDilate(m: Uint8Array, p: MbMap, a: MaskRule): Uint8Array {
  const want = Math.ceil((a.minFraction ?? 0) * m.length);
  let have = 0;
  for (const v of m) have += v;
  if (have < want) {
    // the highest-P macroblocks not yet marked (ties: lower index first), until the floor is reached
    const order = indicesByValueDesc(p.data);
    for (let k = 0; k < order.length && have < want; k++) if (!m[order[k]]) { m[order[k]] = 1; have++; }
  }
  for (let d = 0; d < (a.dilate ?? 0); d++) m = morph(m, p.rows, p.cols, 'max');
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
