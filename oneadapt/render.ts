/**
 * Turning one segment of camera frames into bytes on the wire under a knob configuration, and
 * (for OneAdapt's InputGrad) into the frames the server's DNN would see: encode → decode →
 * upsample to source size → repeat dropped frames.
 */
import { decodeSegment, encodeSegment, scaleFrameAsync, type EncodedSegment, type EncoderSettings } from '../encoder/index.ts';
import { mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { qpMapFromImportance, type QpAssignment } from '../cheapmodel/qpmap.ts';
import { resampleMap, scaledSize } from '../media/scale.ts';
import { accGrad, keptFrames, rgbErrorPerMb, sampledIndices } from './inputgrad.ts';

export interface RenderKnobs {
  /** scale of the source size, (0, 1] */
  resolution: number;
  /** frames per second sent */
  fps: number;
  /** base QP (quality QP for important macroblocks when AccMPEG is on) */
  qp: number;
  /** AccMPEG threshold on P(important); ignored without an importance map */
  threshold: number;
}

export interface RenderOptions {
  srcFps: number;
  /** QP added to macroblocks the cheap model does not mark important (AccMPEG: 40 − 30) */
  lowQpDelta: number;
  /** AccMPEG's mask rule beyond the threshold (floor, dilation, smoothing); default: opening + closing only */
  assignment?: Pick<QpAssignment, 'smooth' | 'minFraction' | 'dilate'>;
  encoder?: EncoderSettings;
}

export interface Rendered {
  encoded: EncodedSegment;
  /** indices (into the segment) of the frames that were encoded */
  sent: number[];
  /** absolute QP map used for the sent frames (null = uniform) */
  qpMap: MbMap | null;
}

/**
 * DNNGrad computed on a streamed frame of streamW×streamH, carried to the source frame's macroblock grid:
 * nearest resampling, and ×(streamed pixels / source pixels) since a streamed pixel averages that many source
 * pixels (∂O/∂x_src = ∂O/∂x_stream · ∂x_stream/∂x_src). Identity when the sizes match.
 */
export function gradToSourceGrid(g: MbMap, streamW: number, streamH: number, srcW: number, srcH: number): MbMap {
  const { rows, cols } = mbGrid(srcW, srcH);
  if (streamW === srcW && streamH === srcH && g.rows === rows && g.cols === cols) return g;
  const m = resampleMap(g, rows, cols);
  const k = (streamW * streamH) / (srcW * srcH);
  return { rows, cols, data: m.data.map((v) => v * k) };
}

/**
 * Encode a segment under knobs. `importance` is the cheap model's P(important) per macroblock of
 * the source frame (null: uniform QP).
 */
export async function renderSegment(frames: YuvFrame[], knobs: RenderKnobs, importance: MbMap | null, opts: RenderOptions): Promise<Rendered> {
  const sent = keptFrames(frames.length, opts.srcFps, knobs.fps);
  const { width, height } = scaledSize(frames[0].width, frames[0].height, knobs.resolution);
  // off the event loop: the agent renders on its main thread (the probes' worker thread does not mind)
  const toSend = await Promise.all(sent.map((i) => (width === frames[i].width && height === frames[i].height ? frames[i] : scaleFrameAsync(frames[i], width, height, 'area'))));
  let qpMap: MbMap | null = null;
  let offsets: MbMap | null = null;
  if (importance) {
    const g = mbGrid(width, height);
    qpMap = qpMapFromImportance(resampleMap(importance, g.rows, g.cols), { ...opts.assignment, threshold: knobs.threshold, highQp: knobs.qp, lowQp: Math.min(51, knobs.qp + opts.lowQpDelta) });
    offsets = { ...qpMap, data: qpMap.data.map((q) => q - knobs.qp) };
  }
  const encoded = await encodeSegment(toSend, toSend.map(() => offsets), {
    ...opts.encoder,
    baseQp: knobs.qp,
    fps: Math.max(1, Math.round(knobs.fps)),
    gop: toSend.length,
  });
  return { encoded, sent, qpMap };
}

/** The frames the DNN sees for each segment position: decoded, upsampled to source size, repeated where dropped. */
export async function dnnView(r: Rendered, frames: YuvFrame[], srcFps: number, fps: number): Promise<YuvFrame[]> {
  const decoded = (await decodeSegment(r.encoded.data, r.encoded.codec)).frames;
  const { width, height } = frames[0];
  const up = await Promise.all(decoded.map((f) => (f.width === width && f.height === height ? f : scaleFrameAsync(f, width, height, 'bilinear'))));
  const byIndex = new Map(r.sent.map((src, k) => [src, up[Math.min(k, up.length - 1)]]));
  return sampledIndices(frames.length, srcFps, fps).map((src) => byIndex.get(src)!);
}

/**
 * AccGrad of a rendering: R = Σ over the chosen positions of Σ_mb g·e (DNNGrad g on the source
 * MB grid, e = InputGrad vs the original frame), averaged over positions.
 */
export async function renderAccGrad(r: Rendered, frames: YuvFrame[], g: MbMap, srcFps: number, fps: number, positions?: number[]): Promise<number> {
  const view = await dnnView(r, frames, srcFps, fps);
  const pos = positions ?? [...frames.keys()];
  let sum = 0;
  for (const i of pos) sum += accGrad(g, rgbErrorPerMb(view[i], frames[i]));
  return sum / pos.length;
}
