/**
 * Reading a directory written by the labelling CLI (server/label-cli.ts): meta.json, sal.f32,
 * saldiff.f32 (frames × rows × cols float32 LE) and frames.yuv (the exact YUV420p frames labelled).
 * Used by the AccMPEG benchmark (oracle maps) and the cheap-model tests.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { yuvFrameSize, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { indicesByValueDesc } from '../numeric/stats.ts';

export interface LabelSet {
  meta: { video: string; width: number; height: number; rows: number; cols: number; fps: number; startS: number; frames: { ptsMs: number }[] };
  frames: YuvFrame[];
  /** Σ saliency per MB (AccMPEG's code) */
  sal: MbMap[];
  /** Σ saliency·|HQ−LQ| per MB (the paper's definition) */
  saldiff: MbMap[];
}

function maps(file: string, n: number, rows: number, cols: number): MbMap[] {
  const buf = readFileSync(file);
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  if (all.length !== n * rows * cols) throw new RangeError(`${file}: ${all.length} floats, expected ${n}×${rows}×${cols}`);
  return Array.from({ length: n }, (_, i) => ({ rows, cols, data: all.slice(i * rows * cols, (i + 1) * rows * cols) }));
}

export function readLabelDir(dir: string): LabelSet {
  const meta = JSON.parse(readFileSync(path.join(dir, 'meta.json'), 'utf8')) as LabelSet['meta'];
  const n = meta.frames.length;
  const { width, height, rows, cols } = meta;
  const size = yuvFrameSize(width, height);
  const yuv = readFileSync(path.join(dir, 'frames.yuv'));
  if (yuv.length !== n * size) throw new RangeError(`${dir}/frames.yuv: ${yuv.length} bytes, expected ${n}×${size}`);
  const frames = meta.frames.map((f, i) => ({ width, height, ptsMs: f.ptsMs, data: new Uint8Array(yuv.subarray(i * size, (i + 1) * size)) }));
  return { meta, frames, sal: maps(path.join(dir, 'sal.f32'), n, rows, cols), saldiff: maps(path.join(dir, 'saldiff.f32'), n, rows, cols) };
}

/** ROC AUC of `scores` against binary `labels` (rank statistic, ties averaged). NaN if one class is empty. */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number | boolean>): number {
  const n = scores.length;
  const idx = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  const ranks = new Float64Array(n);
  for (let i = 0; i < n;) {
    let j = i;
    while (j + 1 < n && scores[idx[j + 1]] === scores[idx[i]]) j++;
    const r = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[idx[k]] = r;
    i = j + 1;
  }
  let npos = 0, sum = 0;
  for (let i = 0; i < n; i++) if (labels[i]) { npos++; sum += ranks[i]; }
  const nneg = n - npos;
  return npos === 0 || nneg === 0 ? NaN : (sum - (npos * (npos + 1)) / 2) / (npos * nneg);
}

/**
 * AccMPEG labels with a per-frame threshold: 1 on the smallest set of macroblocks that holds `cover` of the
 * frame's total label mass (ties: lower index first), 0 elsewhere; all 0 on a frame without any (no detection).
 * Scale-free across cameras, resolutions and contrast. Mirrors cover_labels() in training/train_cheap.py.
 */
export function coverLabels(m: MbMap, cover: number): Uint8Array {
  const out = new Uint8Array(m.data.length);
  const order = indicesByValueDesc(m.data);
  let total = 0;
  for (const i of order) total += m.data[i]; // summed in the running sum's order, so cover = 1 stops at the last MB
  if (!(total > 0)) return out;
  let acc = 0;
  for (const i of order) {
    out[i] = 1;
    acc += m.data[i];
    if (acc >= cover * total) break;
  }
  return out;
}
