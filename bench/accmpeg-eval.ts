/**
 * Measuring AccMPEG on a span of real frames (bench:accmpeg and bench/accmpeg-ceiling.ts): ten-frame closed-GOP
 * chunks at 10 fps, each encoded under uniform QP or an AccMPEG rule over a per-chunk importance map, decoded and
 * detected; per chunk the bytes and the F1 counts against the detector on the original frames (ACCURACY).
 */
import { renderSegment } from '../oneadapt/render.ts';
import { decodeSegment } from '../encoder/index.ts';
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import type { CheapModel } from '../cheapmodel/model.ts';
import { meanMap } from '../cheapmodel/qpmap.ts';
import type { Detector } from '../detector/detector.ts';
import type { Detection } from '../detector/postprocess.ts';
import { ACCURACY, segmentF1 } from '../detector/accuracy.ts';
import { loadFrames } from '../testdata/fixtures.ts';
import type { Span } from '../testdata/scenes.ts';
import type { Stats } from '../numeric/equal-f1.ts';

export const CHUNK = 10;
export const FPS = 10;
/** every rule dilates by one MB and has no opening/closing */
export const DILATE = 1;
/** the uniform-QP curve every AccMPEG point is compared with (bench:accmpeg, bench:accmpeg-ceiling) */
export const UNIFORM_QPS = [24, 26, 28, 30, 32, 34, 36, 38, 40, 43, 46, 50];

/** An AccMPEG rule: α, floor, QP of the important macroblocks and of the rest. */
export interface Setting { rule: string; threshold: number; minFraction: number; highQp: number; lowQp: number }
export const key = (s: Setting): string => `${s.rule}/${s.highQp}/${s.lowQp}`;

export interface SpanChunks { chunks: YuvFrame[][]; ref: Detection[][][] }

export class Evaluator {
  constructor(private readonly det: Detector) {}

  private async detect(fs: YuvFrame[]): Promise<Detection[][]> {
    const out: Detection[][] = [];
    for (const f of fs) out.push((await this.det.detect(f, { confThreshold: ACCURACY.scoreThreshold })).detections);
    return out;
  }

  /** One span: its chunks, the reference detections on the original frames. */
  async span(frames: YuvFrame[]): Promise<SpanChunks> {
    const n = Math.floor(frames.length / CHUNK);
    if (n === 0) throw new Error(`span has ${frames.length} frames, fewer than one chunk of ${CHUNK}`);
    const chunks = Array.from({ length: n }, (_, c) => frames.slice(c * CHUNK, (c + 1) * CHUNK));
    const ref: Detection[][][] = [];
    for (const ch of chunks) ref.push(await this.detect(ch));
    return { chunks, ref };
  }

  /** Per-chunk bytes and F1 counts under uniform QP (maps null) or an AccMPEG rule over per-chunk importance maps. */
  async run(sp: SpanChunks, maps: MbMap[] | null, s: Setting | { qp: number }): Promise<Stats> {
    const out: Stats = [];
    for (let c = 0; c < sp.chunks.length; c++) {
      const t = performance.now();
      const acc = 'highQp' in s;
      const r = await renderSegment(
        sp.chunks[c],
        { resolution: 1, fps: FPS, qp: acc ? s.highQp : s.qp, threshold: acc ? s.threshold : 0 },
        acc && maps ? maps[c] : null,
        { srcFps: FPS, lowQpDelta: acc ? s.lowQp - s.highQp : 0, assignment: acc ? { smooth: false, minFraction: s.minFraction, dilate: DILATE } : undefined },
      );
      const encodeMs = performance.now() - t;
      const decoded = (await decodeSegment(r.encoded.data, r.encoded.codec)).frames;
      const f = segmentF1(await this.detect(decoded), sp.ref[c], ACCURACY);
      // the share of macroblocks the rule gave the important QP (the rule's QPs always differ)
      const important = acc && r.qpMap ? r.qpMap.data.filter((q) => q === s.highQp).length / r.qpMap.data.length : 0;
      out.push({ bytes: r.encoded.data.length, tp: f.tp, fp: f.fp, fn: f.fn, encodeMs, important });
    }
    return out;
  }

  async uniform(sp: SpanChunks, qps: readonly number[]): Promise<Stats[]> {
    const out: Stats[] = [];
    for (const qp of qps) out.push(await this.run(sp, null, { qp }));
    return out;
  }
}

/** AccMPEG's chunk map: the mean of the cheap model's maps on the chunk's first and last frames. */
export async function cheapMaps(model: CheapModel, chunks: YuvFrame[][]): Promise<{ maps: MbMap[]; msPerFrame: number }> {
  const maps: MbMap[] = [];
  const t = performance.now();
  for (const ch of chunks) maps.push(meanMap([await model.importance(ch[0]), await model.importance(ch[ch.length - 1])]));
  return { maps, msPerFrame: (performance.now() - t) / (2 * chunks.length) };
}

export const spanFrames = (video: string, sp: Span): YuvFrame[] => loadFrames(video, Math.round(sp.durationS * sp.fps), { startS: sp.startS, fps: sp.fps });
