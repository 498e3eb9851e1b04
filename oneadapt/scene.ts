/**
 * Scene-change detection for OneAdapt (pure). A new scene (camera moved, lights, a different kind of traffic)
 * makes the optimiser's state stale: the knob positions it converged to, the measured F1 it remembers. We
 * flag a change when any of three signals jumps between consecutive segments:
 *  - content: the mean absolute difference of a coarse luma thumbnail (cells × cells means of the first frame);
 *  - proxy: the server's accuracy proxy O (a soft count of detections), on a log scale with +1 smoothing;
 *  - bytes: the bytes of the segment at unchanged knobs (texture/motion changed), on a log scale.
 */
import type { YuvFrame } from '../encoder/frame.ts';

export interface SceneOptions {
  /** content: mean |Δ| of the thumbnail, in [0, 1] of the luma range (default 0.08) */
  contentThreshold?: number;
  /** proxy: (O + 1) changes by more than this factor (default 2.5) */
  proxyRatio?: number;
  /** bytes at unchanged knobs change by more than this factor (default 1.8) */
  bytesRatio?: number;
}

export const DEFAULT_SCENE: Required<SceneOptions> = { contentThreshold: 0.08, proxyRatio: 2.5, bytesRatio: 1.8 };

/** Mean luma of a cells×cells grid over the frame, scaled to [0, 1]. */
export function contentSignature(frame: YuvFrame, cells = 8): Float32Array {
  const { width: w, height: h, data } = frame;
  const sum = new Float64Array(cells * cells);
  const cnt = new Float64Array(cells * cells);
  // every 2nd pixel in both directions is plenty for a thumbnail
  for (let y = 0; y < h; y += 2) {
    const row = Math.min(cells - 1, Math.floor((y * cells) / h)) * cells;
    for (let x = 0; x < w; x += 2) {
      const i = row + Math.min(cells - 1, Math.floor((x * cells) / w));
      sum[i] += data[y * w + x];
      cnt[i]++;
    }
  }
  const out = new Float32Array(cells * cells);
  for (let i = 0; i < out.length; i++) out[i] = cnt[i] ? sum[i] / cnt[i] / 255 : 0;
  return out;
}

export function signatureDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return 1;
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i] - b[i]);
  return d / Math.max(1, a.length);
}

export interface SceneSample {
  signature?: Float32Array;
  proxy: number;
  bytes: number;
  /** identifies the knob values the bytes were measured at */
  knobsKey: string;
}

export type SceneSignal = 'content' | 'proxy' | 'bytes';

export class SceneDetector {
  private prev: SceneSample | null = null;
  private readonly o: Required<SceneOptions>;

  constructor(opts: SceneOptions = {}) {
    this.o = { ...DEFAULT_SCENE, ...opts };
  }

  /** Feed one segment; returns the signals that jumped since the previous one (empty: same scene). */
  update(s: SceneSample): SceneSignal[] {
    const p = this.prev;
    this.prev = s;
    if (!p) return [];
    const out: SceneSignal[] = [];
    if (s.signature && p.signature && signatureDistance(s.signature, p.signature) > this.o.contentThreshold) out.push('content');
    if (Math.abs(Math.log((s.proxy + 1) / (p.proxy + 1))) > Math.log(this.o.proxyRatio)) out.push('proxy');
    if (s.knobsKey === p.knobsKey && s.bytes > 0 && p.bytes > 0 && Math.abs(Math.log(s.bytes / p.bytes)) > Math.log(this.o.bytesRatio)) out.push('bytes');
    return out;
  }
}
