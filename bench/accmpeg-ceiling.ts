/**
 * bench:accmpeg-ceiling — how much ANY importance map could save on each scene with AccMPEG's encoding, given
 * perfect knowledge of where the detected objects are.
 *
 *   npm run bench:accmpeg-ceiling [-- --span eval|dev --scenes highway,campus,…]
 *
 * For every ten-frame chunk of the scene's span (testdata/scenes.ts; default the evaluation spans of all nine
 * scenes, the spans bench:accmpeg reports), the important region is the macroblocks under the reference
 * detections' boxes (road classes, score ≥ 0.3, union over the chunk's 10 frames, dilated by one MB, no floor):
 * exactly where every object the F1 counts is, which no cheap model can beat at locating. Every QP pair of
 * bench:accmpeg's grid (important 30/34/38 × rest 44/50) plus important QP 26 is measured, and the best pair
 * in hindsight is reported per scene (a further oracle choice), with the saving at equal F1 against the same
 * uniform-QP curve and the same bootstrap over chunks as bench:accmpeg (numeric/equal-f1.ts).
 *
 * Nothing is tuned, so running it on evaluation spans leaks nothing: it bounds what #14's rule could reach there.
 * The ceiling is for this encoding (two QPs, boxes dilated by one MB); a map that marks context outside the
 * boxes is not covered, and bench:accmpeg's `oracle` (the frames' true accuracy-gradient labels) is the other
 * perfect-knowledge row.
 */
import { parseArgs } from 'node:util';
import { mbGrid, type MbMap } from '../encoder/frame.ts';
import { Detector } from '../detector/detector.ts';
import type { Detection } from '../detector/postprocess.ts';
import { ACCURACY } from '../detector/accuracy.ts';
import { DETECTOR_MODEL } from '../testdata/fixtures.ts';
import { SCENES } from '../testdata/scenes.ts';
import { median } from '../numeric/stats.ts';
import { agg, compare, type Stats } from '../numeric/equal-f1.ts';
import { DILATE, Evaluator, UNIFORM_QPS, spanFrames, type Setting } from './accmpeg-eval.ts';
import { printTable, writeResult } from './report.ts';

const { values } = parseArgs({
  options: {
    span: { type: 'string', default: 'eval' },
    scenes: { type: 'string', default: SCENES.map((s) => s.name).join(',') },
  },
});
const span = values.span as 'eval' | 'dev';
if (span !== 'eval' && span !== 'dev') throw new Error(`--span must be eval or dev, not ${values.span}`);
const PAIRS: [number, number][] = [[26, 44], [26, 50], [30, 44], [30, 50], [34, 44], [34, 50], [38, 44], [38, 50]];
const BAR = 0.3;

/** The macroblocks under a chunk's reference boxes (all frames), as a 0/1 importance map. */
export function boxMap(width: number, height: number, chunkRef: Detection[][]): MbMap {
  const { rows, cols } = mbGrid(width, height);
  const d = new Float32Array(rows * cols);
  for (const b of chunkRef.flat()) {
    if (!ACCURACY.classes.includes(b.classId) || b.score < ACCURACY.scoreThreshold) continue;
    for (let y = Math.max(0, Math.floor(b.y1 / 16)); y <= Math.min(rows - 1, Math.floor(b.y2 / 16)); y++) {
      for (let x = Math.max(0, Math.floor(b.x1 / 16)); x <= Math.min(cols - 1, Math.floor(b.x2 / 16)); x++) d[y * cols + x] = 1;
    }
  }
  return { rows, cols, data: d };
}

const t0 = performance.now();
const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu' });
const ev = new Evaluator(det);
const rows: Record<string, unknown>[] = [];
for (const name of values.scenes!.split(',')) {
  const s = SCENES.find((x) => x.name === name);
  if (!s) throw new Error(`unknown scene ${name} (known: ${SCENES.map((x) => x.name).join(', ')})`);
  const t = performance.now();
  const sp = await ev.span(spanFrames(s.video, s[span]));
  const maps = sp.ref.map((r) => boxMap(sp.chunks[0][0].width, sp.chunks[0][0].height, r));
  const uniform: Stats[] = await ev.uniform(sp, UNIFORM_QPS);
  const all = uniform[0].map((_, i) => i);
  const pairs = [];
  for (const [h, l] of PAIRS) {
    const st = await ev.run(sp, maps, { rule: 'boxes', threshold: 0.5, minFraction: 0, highQp: h, lowQp: l } satisfies Setting);
    const c = compare(uniform, st);
    pairs.push({ qp: `${h}/${l}`, bytes: c.bytes, f1: c.f1, saving: c.saving, ci_low: c.ci_low, ci_high: c.ci_high, above_uniform_range: c.above_uniform_range, below_uniform_range: c.below_uniform_range, important_frac: st.reduce((a, x) => a + x.important, 0) / st.length });
  }
  const best = [...pairs].sort((a, b) => b.saving - a.saving)[0];
  const detections = sp.ref.flat().flat().filter((d) => ACCURACY.classes.includes(d.classId) && d.score >= ACCURACY.scoreThreshold).length;
  rows.push({ scene: name, span: s[span], reference_detections: detections, best_pair: best.qp, ceiling_saving: best.saving, ci_low: best.ci_low, ci_high: best.ci_high, bytes: best.bytes, f1: best.f1, important_frac: best.important_frac, pairs, uniform: UNIFORM_QPS.map((qp, i) => ({ qp, ...agg(uniform[i], all) })) });
  console.error(`${name}: best ${best.qp} ${(100 * best.saving).toFixed(1)}% [${(100 * best.ci_low).toFixed(1)}, ${(100 * best.ci_high).toFixed(1)}] (${((performance.now() - t) / 1000).toFixed(0)} s)`);
}
await det.release();

type Row = { scene: string; best_pair: string; ceiling_saving: number; ci_low: number; ci_high: number; bytes: number; f1: number; important_frac: number; reference_detections: number };
const rs = rows as Row[];
const pct = (v: number): string => (Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : String(v));
printTable(`AccMPEG ceiling with the detector's own boxes (${span} spans; best QP pair in hindsight)`, rs.map((r) => ({ scene: r.scene, detections: r.reference_detections, qp: r.best_pair, kB: r.bytes / 1000, f1: r.f1, marked_pct: 100 * r.important_frac, saving: pct(r.ceiling_saving), ci: `[${pct(r.ci_low)}, ${pct(r.ci_high)}]` })));
const med = median(rs.map((r) => r.ceiling_saving));
const above = rs.filter((r) => r.ci_low > 0).length;
console.log(`median ceiling saving ${pct(med)}; scenes whose interval lies above 0: ${above}/${rs.length}; #14's bar: median >= ${pct(BAR)} and every lower bound > 0`);
writeResult(span === 'eval' ? 'accmpeg-ceiling' : 'accmpeg-ceiling-dev', {
  span,
  method: 'important MBs = the reference detections\' boxes (road classes, score >= 0.3, union over each 10-frame chunk, dilated by 1 MB, no floor); rest at the low QP; best of the QP pairs in hindsight; saving at equal F1 against the uniform-QP curve, bootstrap 95% over chunks (numeric/equal-f1.ts, as bench:accmpeg)',
  qp_pairs: PAIRS.map(([h, l]) => `${h}/${l}`),
  uniform_qps: UNIFORM_QPS,
  accuracy: ACCURACY,
  scenes: rows,
  median_ceiling_saving: med,
  scenes_with_ci_above_zero: above,
  bar: { median: BAR, every_ci_low_above: 0, reachable_by_this_ceiling: med >= BAR && above === rs.length },
  runtime_s: (performance.now() - t0) / 1000,
});
