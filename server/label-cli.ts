/**
 * Labelling CLI: runs the server detector + DNNGrad over a video and writes, per frame and per
 * 16×16 macroblock, AccMPEG's accuracy-gradient labels, for training the cheap model.
 *
 *   npm run label -- --video ../shared/videos/campus-576p.avi --out data/labels/campus --fps 5 [--start 0] [--duration 60]
 *
 * For each frame: S = Σ scores of the detector's detections with score > 0.3 (any class);
 * backpropagate S to the input pixels (VJP model); per-pixel saliency = Σ_BGR |∂S/∂x| mapped to the
 * frame; then two labels per macroblock:
 *   sal      — Σ saliency over the MB (AccMPEG's code)
 *   saldiff  — Σ saliency·|x_HQ − x_LQ| over the MB (the paper's definition; LQ = x264 at --lq-qp)
 * Output: <out>/meta.json, <out>/sal.f32, <out>/saldiff.f32 (frames × rows × cols, float32 LE),
 * <out>/frames.yuv (the exact YUV420p frames labelled, so training sees the same pixels).
 */
import { createWriteStream, mkdirSync, writeFileSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { FfmpegSource } from '../media/capture.ts';
import { decodeSegment, encodeSegment } from '../encoder/index.ts';
import { mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { planePerMb } from '../media/mb.ts';
import { postprocess } from '../detector/postprocess.ts';
import { preprocess, INPUT_SIZE } from '../detector/preprocess.ts';
import { accmpegProxy, saliencyToFrame, weightByPixelDiff } from './dnngrad.ts';
import { GradientModel } from './onnxgrad/index.ts';
import { isMainModule } from '../proc/main-module.ts';

export interface LabelOptions {
  video: string;
  out: string;
  modelPath: string;
  fps: number;
  startS?: number;
  durationS?: number;
  lqQp?: number;
  scoreThreshold?: number;
  onFrame?: (i: number, ms: number) => void;
}

const write = (s: WriteStream, buf: Uint8Array): Promise<void> => new Promise((res, rej) => s.write(buf, (e) => (e ? rej(e) : res())));

/** Labelling settings unless given: the detections S sums, and the low-quality encode behind |HQ − LQ|. */
export const LABEL_DEFAULTS = { lqQp: 40, scoreThreshold: 0.3 } as const;

/** A label folder's meta.json: what readLabelDir and training/train_cheap.py read, and how the labels were made. */
export function labelSetMeta(
  o: { video: string; width: number; height: number; fps: number | null; startS: number; lqQp?: number; scoreThreshold?: number; modelPath: string },
  frames: object[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  const { rows, cols } = mbGrid(o.width, o.height);
  return {
    video: o.video, width: o.width, height: o.height, rows, cols, fps: o.fps, startS: o.startS, ...extra,
    lqQp: o.lqQp ?? LABEL_DEFAULTS.lqQp, scoreThreshold: o.scoreThreshold ?? LABEL_DEFAULTS.scoreThreshold, detector: path.basename(o.modelPath),
    files: { sal: 'sal.f32', saldiff: 'saldiff.f32', frames: 'frames.yuv (YUV420p, width×height)' },
    frames,
  };
}

/** AccMPEG's labels of one frame (see the header): per-MB saliency and saliency·|HQ − LQ|, the proxy, the detections. */
export async function labelFrame(grad: GradientModel, f: YuvFrame, o: { lqQp?: number; scoreThreshold?: number } = {}): Promise<{ sal: MbMap; saldiff: MbMap; proxy: number; detections: number }> {
  const { input, letterbox } = preprocess(f);
  const raw = await grad.forward(input, [1, 3, INPUT_SIZE, INPUT_SIZE]);
  // detections from the same forward pass the gradient uses (no second detector run)
  const dets = postprocess(raw, letterbox, { confThreshold: o.scoreThreshold ?? LABEL_DEFAULTS.scoreThreshold });
  const { value, seed } = accmpegProxy(raw, dets, { minScore: o.scoreThreshold ?? LABEL_DEFAULTS.scoreThreshold });
  const { gradInput } = await grad.vjp(input, [1, 3, INPUT_SIZE, INPUT_SIZE], seed);
  const s = saliencyToFrame(gradInput, letterbox, f.width, f.height);
  const lq = (await decodeSegment((await encodeSegment([f], [null], { baseQp: o.lqQp ?? LABEL_DEFAULTS.lqQp, gop: 1 })).data)).frames[0];
  return { sal: planePerMb(s, f.width, f.height), saldiff: weightByPixelDiff(s, f, lq, { reduce: 'sum' }), proxy: value, detections: dets.length };
}

export async function labelVideo(o: LabelOptions): Promise<{ frames: number; rows: number; cols: number; msPerFrame: number }> {
  mkdirSync(o.out, { recursive: true });
  const grad = await GradientModel.load(o.modelPath);
  const src = new FfmpegSource({ kind: 'file', uri: o.video, fps: o.fps, startS: o.startS, durationS: o.durationS });
  const { rows, cols } = mbGrid(src.width, src.height);
  const sal = createWriteStream(path.join(o.out, 'sal.f32'));
  const saldiff = createWriteStream(path.join(o.out, 'saldiff.f32'));
  const yuv = createWriteStream(path.join(o.out, 'frames.yuv'));
  const frames: { index: number; ptsMs: number; proxy: number; detections: number }[] = [];
  const t0 = performance.now();
  for await (const f of src) {
    const t = performance.now();
    const l = await labelFrame(grad, f, o);
    await write(sal, new Uint8Array(l.sal.data.buffer));
    await write(saldiff, new Uint8Array(l.saldiff.data.buffer));
    await write(yuv, f.data);
    frames.push({ index: frames.length, ptsMs: f.ptsMs + Math.round((o.startS ?? 0) * 1000), proxy: l.proxy, detections: l.detections });
    o.onFrame?.(frames.length - 1, performance.now() - t);
  }
  await Promise.all([sal, saldiff, yuv].map((s) => new Promise((r) => s.end(r))));
  const meta = labelSetMeta({ ...o, video: path.basename(o.video), width: src.width, height: src.height, startS: o.startS ?? 0 }, frames, { durationS: o.durationS ?? null });
  writeFileSync(path.join(o.out, 'meta.json'), JSON.stringify(meta, null, 1));
  await grad.release();
  return { frames: frames.length, rows, cols, msPerFrame: (performance.now() - t0) / Math.max(1, frames.length) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      video: { type: 'string' },
      out: { type: 'string' },
      model: { type: 'string', default: path.resolve('..', 'shared', 'models', 'yolox_nano.onnx') },
      fps: { type: 'string', default: '5' },
      start: { type: 'string' },
      duration: { type: 'string' },
      'lq-qp': { type: 'string', default: '40' },
    },
  });
  if (!values.video || !values.out) {
    console.error('usage: npm run label -- --video <file> --out <dir> [--fps 5] [--start s] [--duration s] [--model yolox_nano.onnx] [--lq-qp 40]');
    process.exit(2);
  }
  const r = await labelVideo({
    video: values.video,
    out: values.out,
    modelPath: values.model!,
    fps: Number(values.fps),
    startS: values.start ? Number(values.start) : undefined,
    durationS: values.duration ? Number(values.duration) : undefined,
    lqQp: Number(values['lq-qp']),
    onFrame: (i, ms) => { if (i % 10 === 0) console.error(`frame ${i}: ${ms.toFixed(0)} ms`); },
  });
  console.log(JSON.stringify(r));
}

if (isMainModule(import.meta.url)) {
  main().catch((e) => {
    console.error(String(e?.stack ?? e));
    process.exit(1);
  });
}
