/** Answer and distribution metrics for the CacheBlend benchmark (pure). */

/** SQuAD-style token F1 between a predicted and a gold answer (bags of words). */
export function tokenF1(pred: string, gold: string): number {
  const p = pred.split(/\s+/).filter(Boolean);
  const g = gold.split(/\s+/).filter(Boolean);
  if (p.length === 0 || g.length === 0) return p.length === g.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const w of g) counts.set(w, (counts.get(w) ?? 0) + 1);
  let common = 0;
  for (const w of p) {
    const c = counts.get(w) ?? 0;
    if (c > 0) {
      common++;
      counts.set(w, c - 1);
    }
  }
  if (common === 0) return 0;
  const prec = common / p.length;
  const rec = common / g.length;
  return (2 * prec * rec) / (prec + rec);
}

export function exactMatch(pred: string, gold: string): number {
  return pred.trim().split(/\s+/).join(' ') === gold.trim().split(/\s+/).join(' ') ? 1 : 0;
}

function logSoftmax(z: Float32Array): Float64Array {
  let m = -Infinity;
  for (const v of z) m = Math.max(m, v);
  let s = 0;
  for (const v of z) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return Float64Array.from(z, (v) => v - lse);
}

/** KL(P‖Q) of the softmax distributions of two logit vectors (P = the reference). */
export function klDivergence(pLogits: Float32Array, qLogits: Float32Array): number {
  const lp = logSoftmax(pLogits);
  const lq = logSoftmax(qLogits);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]) * (lp[i] - lq[i]);
  return Math.max(0, kl);
}

export { bootstrap, mean, quantile } from '../numeric/stats.ts';
