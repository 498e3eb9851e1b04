/**
 * "Bytes saved at equal accuracy" against a uniform-QP curve, per chunk and with a bootstrap interval over chunks
 * (pure; used by bench:accmpeg). Each scheme is a list of per-chunk stats (bytes and detection counts); F1 is aggregated
 * over the chunks a statistic looks at, so a bootstrap resample re-aggregates instead of averaging per-chunk F1s.
 */
import { bootstrap, f1FromCounts } from './stats.ts';

export interface ChunkStat { bytes: number; tp: number; fp: number; fn: number; encodeMs: number; important: number }
export type Stats = ChunkStat[];
export interface Pt { bytes: number; f1: number }

export function agg(s: Stats, idx: number[]): Pt {
  let bytes = 0, tp = 0, fp = 0, fn = 0;
  for (const i of idx) { bytes += s[i].bytes; tp += s[i].tp; fp += s[i].fp; fn += s[i].fn; }
  return { bytes, f1: f1FromCounts(tp, fp, fn) };
}

/**
 * Uniform bytes needed for `f1` on the uniform Pareto frontier. `above`: f1 beyond the best uniform point (its
 * bytes: the saving is then a lower bound); `below`: f1 under the cheapest uniform point's, which already reaches
 * more (its bytes; savingOn() then counts no positive saving, since uniform at that lower F1 could cost even less).
 */
export function uniformBytesAt(uniform: Pt[], f1: number): { bytes: number; above: boolean; below: boolean } {
  const front: Pt[] = [];
  for (const u of [...uniform].sort((a, b) => a.bytes - b.bytes)) if (front.length === 0 || u.f1 > front[front.length - 1].f1) front.push(u);
  if (f1 <= front[0].f1) return { bytes: front[0].bytes, above: false, below: f1 < front[0].f1 };
  for (let i = 1; i < front.length; i++) {
    const a = front[i - 1], b = front[i];
    if (b.f1 >= f1) return { bytes: a.bytes + ((f1 - a.f1) / (b.f1 - a.f1)) * (b.bytes - a.bytes), above: false, below: false };
  }
  return { bytes: front[front.length - 1].bytes, above: true, below: false };
}

export function savingOn(uniform: Stats[], point: Stats, idx: number[]): number {
  const p = agg(point, idx);
  const u = uniformBytesAt(uniform.map((s) => agg(s, idx)), p.f1);
  const saving = 1 - p.bytes / u.bytes;
  return u.below ? Math.min(0, saving) : saving;
}

export function compare(uniform: Stats[], point: Stats, subset?: number[]): { saving: number; ci_low: number; ci_high: number; above_uniform_range: boolean; below_uniform_range: boolean; bytes: number; f1: number; uniform_bytes_at_f1: number } {
  const all = subset ?? point.map((_, i) => i);
  const p = agg(point, all);
  const u = uniformBytesAt(uniform.map((s) => agg(s, all)), p.f1);
  const [lo, hi] = bootstrap(all.length, (idx) => savingOn(uniform, point, idx.map((i) => all[i])), 2000, 1);
  return { saving: savingOn(uniform, point, all), ci_low: lo, ci_high: hi, above_uniform_range: u.above, below_uniform_range: u.below, bytes: p.bytes, f1: p.f1, uniform_bytes_at_f1: u.bytes };
}

/** AccMPEG points that beat some uniform point in both bytes (fewer) and F1 (higher or equal). */
export function dominating(uniform: { qp: number; pt: Pt }[], points: { name: string; pt: Pt }[]): { point: string; dominates_uniform_qp: number[] }[] {
  return points
    .map((p) => ({ point: p.name, dominates_uniform_qp: uniform.filter((u) => p.pt.bytes < u.pt.bytes && p.pt.f1 >= u.pt.f1).map((u) => u.qp) }))
    .filter((d) => d.dominates_uniform_qp.length > 0);
}
