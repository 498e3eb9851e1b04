/**
 * Per-camera re-calibration of AccMPEG's α from the server's labels (pure).
 *
 * The cheap model ships with one α for every camera (bench:accmpeg's development phase). On a given camera its
 * P(important) may run high or low. The server already returns, for the last frame of each segment, the
 * per-macroblock gradient of its detector's output (DNNGrad of OneAdapt's proxy, on the frame it decoded): a
 * saliency label for that frame. It is not the label the model was trained on (saliency × |HQ − LQ| on the
 * original frame), and since the decoded frame was encoded under the current mask, it follows α somewhat. The agent keeps the cheap model's map of the same frame beside it, and picks the LARGEST α
 * (fewest important macroblocks, fewest bytes) whose mask, under the configured floor and dilation, still
 * covers `targetRecall` of the label's macroblocks, pooled over the last samples. Where the model under-marks
 * this camera's objects α falls; where it over-marks, α rises.
 */
import type { MbMap } from '../encoder/frame.ts';
import { coverLabels } from './labels.ts';
import { importanceMask, type QpAssignment } from './qpmap.ts';

export interface CalibrationSample { p: MbMap; label: Uint8Array }

export const ALPHA_GRID: readonly number[] = Array.from({ length: 19 }, (_, i) => Math.round((0.05 + 0.05 * i) * 100) / 100);

/** A label from the server's saliency map: the macroblocks holding `cover` of the frame's saliency (cheapmodel/labels.ts). */
export function sampleFromSaliency(p: MbMap, saliency: MbMap, cover = 0.5): CalibrationSample {
  if (p.rows !== saliency.rows || p.cols !== saliency.cols) throw new RangeError(`grid mismatch ${p.rows}x${p.cols} vs ${saliency.rows}x${saliency.cols}`);
  return { p, label: coverLabels({ ...saliency, data: saliency.data.map(Math.abs) }, cover) };
}

/** Share of labelled macroblocks inside the rule's mask at α, pooled over samples (NaN: no labelled MB). */
export function recallAt(samples: readonly CalibrationSample[], rule: Pick<QpAssignment, 'smooth' | 'minFraction' | 'dilate'>, threshold: number): number {
  let hit = 0, all = 0;
  for (const s of samples) {
    const m = importanceMask(s.p, { ...rule, threshold });
    for (let i = 0; i < m.length; i++) if (s.label[i]) { all++; hit += m[i]; }
  }
  return all ? hit / all : NaN;
}

/**
 * The largest α on the (ascending) grid whose pooled recall reaches `targetRecall`; the smallest α when none does;
 * null without any labelled macroblock (nothing to calibrate on: keep the configured α). Binary search: without
 * smoothing the mask only shrinks as α rises (threshold set ∪ floor = the top max(|set|, floor) by P, then
 * dilation), so recall does not rise with α; with smoothing that is not guaranteed and the search is approximate.
 */
export function calibrateThreshold(samples: readonly CalibrationSample[], rule: Pick<QpAssignment, 'smooth' | 'minFraction' | 'dilate'>, targetRecall: number, grid: readonly number[] = ALPHA_GRID): number | null {
  if (!samples.some((s) => s.label.some((v) => v))) return null;
  let lo = 0, hi = grid.length - 1, best = -1; // best: the largest index known to reach the target
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (recallAt(samples, rule, grid[mid]) >= targetRecall) { best = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return grid[Math.max(0, best)];
}
