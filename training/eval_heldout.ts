/**
 * Held-out evaluation of the committed cheap model through the product path (cheapmodel/model.ts,
 * onnxruntime-node), against labelling-CLI labels binarised with the training threshold.
 *
 *   npx tsx training/eval_heldout.ts data/labels/campus-heldout [cheapmodel/models/accmpeg_cheap.onnx]
 *
 * Prints pooled ROC AUC, mean P on positives/negatives, per-frame precision@k (k = the frame's number
 * of positive MBs) and the share of total saliency inside the top 10/20/30 % of MBs ranked by P
 * (and, for reference, by the oracle ranking = the labels' own saliency).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CheapModel, DEFAULT_CHEAP_MODEL } from '../cheapmodel/model.ts';
import { readLabelDir, rocAuc } from '../cheapmodel/labels.ts';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: npx tsx training/eval_heldout.ts <label dir> [model.onnx]');
  process.exit(2);
}
const modelPath = process.argv[3] ?? DEFAULT_CHEAP_MODEL;
const T = (JSON.parse(readFileSync(path.resolve('training', 'train_log.json'), 'utf8')) as { threshold: number }).threshold;
const ls = readLabelDir(dir);
const model = await CheapModel.load(modelPath);
const scores: number[] = [];
const labels: number[] = [];
const precs: number[] = [];
const fracs = [0.1, 0.2, 0.3];
const got = fracs.map(() => 0);
const gotOracle = fracs.map(() => 0);
let total = 0;
for (let i = 0; i < ls.frames.length; i++) {
  const p = (await model.importance(ls.frames[i])).data;
  const s = ls.sal[i].data;
  const byP = Array.from(p.keys()).sort((a, b) => p[b] - p[a]);
  const byS = Array.from(s.keys()).sort((a, b) => s[b] - s[a]);
  let kpos = 0;
  for (let k = 0; k < p.length; k++) { scores.push(p[k]); labels.push(s[k] > T ? 1 : 0); kpos += s[k] > T ? 1 : 0; total += s[k]; }
  if (kpos > 0) precs.push(byP.slice(0, kpos).filter((k) => s[k] > T).length / kpos);
  fracs.forEach((f, j) => {
    const n = Math.round(f * p.length);
    for (let q = 0; q < n; q++) { got[j] += s[byP[q]]; gotOracle[j] += s[byS[q]]; }
  });
}
const mean = (v: number[]): number => v.reduce((a, b) => a + b, 0) / v.length;
const pos = scores.filter((_, k) => labels[k]);
const neg = scores.filter((_, k) => !labels[k]);
const out = {
  labels: dir,
  model: path.relative(process.cwd(), modelPath),
  frames: ls.frames.length,
  span_s: [ls.meta.startS, ls.meta.startS + ls.frames.length / ls.meta.fps],
  threshold_sal: T,
  pos_frac: pos.length / scores.length,
  auc: rocAuc(scores, labels),
  mean_p_pos: mean(pos),
  mean_p_neg: mean(neg),
  precision_at_k: mean(precs),
  saliency_captured: Object.fromEntries(fracs.map((f, j) => [`top${f * 100}pct`, { model: got[j] / total, oracle: gotOracle[j] / total }])),
};
console.log(JSON.stringify(out, null, 1));
await model.release();
