/**
 * Detection accuracy as F1 against reference detections (the detector's output on the ORIGINAL frames),
 * as in AccMPEG/OneAdapt: greedy matching, highest-scoring test detection first, to the unmatched
 * reference box of the same class with the largest IoU ≥ iouThreshold.
 */
import { iou, ROAD_CLASSES, type Box } from './postprocess.ts';
import { f1FromCounts } from '../numeric/stats.ts';

export interface ScoredBox extends Box {
  score: number;
  classId: number;
}

export interface F1Options {
  /** IoU needed for a match (default 0.5) */
  iouThreshold?: number;
  /** keep only these classes, in both reference and test (e.g. ROAD_CLASSES or PERSON_CLASSES) */
  classes?: readonly number[];
  /** drop boxes below this score, in both reference and test (default 0: keep all given) */
  scoreThreshold?: number;
  /** separate threshold for the reference (defaults to scoreThreshold) */
  refScoreThreshold?: number;
}

/**
 * The one accuracy definition used everywhere (the server's F1, every benchmark, OneAdapt's proxy):
 * road classes (person, bicycle, car, motorcycle, bus, train, truck), score ≥ 0.3, IoU ≥ 0.5, same class.
 */
export const ACCURACY = { scoreThreshold: 0.3, iouThreshold: 0.5, classes: ROAD_CLASSES } as const satisfies F1Options;

export interface FrameF1 {
  tp: number;
  fp: number;
  fn: number;
  /** 2tp/(2tp+fp+fn); 1 when both sides are empty */
  f1: number;
  precision: number;
  recall: number;
}

export interface AggregateF1 {
  frames: FrameF1[];
  tp: number;
  fp: number;
  fn: number;
  /** F1 of the summed counts over all frames */
  aggregateF1: number;
  /** mean of the per-frame F1s (empty-vs-empty frames count as 1) */
  meanF1: number;
}

export { f1FromCounts };

function keep<T extends ScoredBox>(dets: readonly T[], classes: Set<number> | null, thr: number): T[] {
  return dets.filter((d) => d.score >= thr && (!classes || classes.has(d.classId)));
}

/** Per-frame TP/FP/FN and F1. */
export function frameF1(test: readonly ScoredBox[], reference: readonly ScoredBox[], opts: F1Options = {}): FrameF1 {
  const iouThr = opts.iouThreshold ?? 0.5;
  const classes = opts.classes ? new Set(opts.classes) : null;
  const thr = opts.scoreThreshold ?? 0;
  const t = keep(test, classes, thr).sort((a, b) => b.score - a.score);
  const r = keep(reference, classes, opts.refScoreThreshold ?? thr);
  const used = new Uint8Array(r.length);
  let tp = 0;
  for (const d of t) {
    let best = -1;
    let bestIou = iouThr;
    for (let j = 0; j < r.length; j++) {
      if (used[j] || r[j].classId !== d.classId) continue;
      const v = iou(d, r[j]);
      if (v >= bestIou) { bestIou = v; best = j; }
    }
    if (best >= 0) { used[best] = 1; tp++; }
  }
  const fp = t.length - tp;
  const fn = r.length - tp;
  return {
    tp, fp, fn,
    f1: f1FromCounts(tp, fp, fn),
    precision: t.length === 0 ? (r.length === 0 ? 1 : 0) : tp / t.length,
    recall: r.length === 0 ? 1 : tp / r.length,
  };
}

/** F1 over a segment/video: test[i] is compared with reference[i]. */
export function segmentF1(test: readonly (readonly ScoredBox[])[], reference: readonly (readonly ScoredBox[])[], opts: F1Options = {}): AggregateF1 {
  if (test.length !== reference.length) throw new RangeError(`frame count mismatch: ${test.length} test vs ${reference.length} reference`);
  const frames = test.map((t, i) => frameF1(t, reference[i], opts));
  let tp = 0, fp = 0, fn = 0, sum = 0;
  for (const f of frames) { tp += f.tp; fp += f.fp; fn += f.fn; sum += f.f1; }
  return { frames, tp, fp, fn, aggregateF1: f1FromCounts(tp, fp, fn), meanF1: frames.length ? sum / frames.length : 1 };
}
