/**
 * AccMPEG's cheap model on the camera: one P(important) per 16×16 macroblock of a frame.
 *
 * The model (cheapmodel/models/accmpeg_cheap.onnx, trained by training/train_cheap.py) is YOLOX-Nano's frozen
 * COCO backbone (stride 8 and 16) with a small head trained on our labelling CLI's accuracy-gradient labels; the
 * graph converts its input back to YOLOX's BGR 0–255 itself. Its input is the frame at half resolution in RGB,
 * built here from YUV420p exactly as the training script builds it:
 *   - luma averaged over each 2×2 block, chroma taken as-is (the U/V planes are already half-res);
 *   - BT.601 limited range → RGB, clamped to 0–255 (media/colour.ts);
 *   - normalised (rgb/255 − 0.5)/0.25, CHW float32;
 *   - edge-replicated on the bottom/right up to (rows·8)×(cols·8), rows×cols = the frame's MB grid
 *     (ceil(h/16)×ceil(w/16)), so any even frame size works.
 * Output: [1,1,rows,cols] P(important), returned as an MbMap on the frame's MB grid.
 *
 * Running it on every k-th frame only (AccMPEG: first and last frame of each 10-frame chunk, then
 * cheapmodel/qpmap.ts meanMap) is the caller's choice; this class scores whatever frame it is given.
 */
import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { yuvToRgb } from '../media/colour.ts';
import { fromRoot } from '../encoder/root.ts';
import { nativeKernels } from '../encoder/kernels.ts';

/** The committed model, resolved from the package root (works in any checkout, from sources or dist/). */
export const DEFAULT_CHEAP_MODEL = fromRoot('cheapmodel', 'models', 'accmpeg_cheap.onnx');

/** The cheap-model file is missing, unreadable, not an ONNX model, or has the wrong interface. */
export class CheapModelLoadError extends Error {
  readonly modelPath: string;
  constructor(modelPath: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot load cheap model ${modelPath}: ${reason}`, options);
    this.name = 'CheapModelLoadError';
    this.modelPath = modelPath;
  }
}

/**
 * YUV420p → half-resolution normalised RGB, CHW, padded to (rows·8)×(cols·8) by edge replication.
 * Mirrors half_rgb() in training/train_cheap.py. `out` (3·rows·8·cols·8 floats) is reused when given
 * (a fresh 1–3 MB buffer per frame costs page faults comparable to the conversion itself).
 */
export function halfResRgb(frame: YuvFrame, out?: Float32Array): { data: Float32Array; width: number; height: number; rows: number; cols: number } {
  const k = nativeKernels();
  if (!k) return halfResRgbTs(frame, out);
  const { width: w, height: h, data: src } = frame;
  if (w % 2 || h % 2) throw new RangeError(`frame size must be even, got ${w}x${h}`);
  if (src.length < w * h + 2 * ((w >> 1) * (h >> 1))) throw new RangeError(`frame data too short for ${w}x${h} yuv420p`);
  const { rows, cols } = mbGrid(w, h);
  const data = outBuffer(out, 3 * rows * 8 * cols * 8);
  k.halfResRgb(src, w, h, data);
  return { data, width: cols * 8, height: rows * 8, rows, cols };
}

function outBuffer(out: Float32Array | undefined, n: number): Float32Array {
  if (out && out.length !== n) throw new RangeError(`output buffer must hold ${n} floats, has ${out.length}`);
  return out ?? new Float32Array(n);
}

/** The TypeScript reference of halfResRgb() (the C++ kernel is bit-identical). */
export function halfResRgbTs(frame: YuvFrame, outBuf?: Float32Array): { data: Float32Array; width: number; height: number; rows: number; cols: number } {
  const { width: w, height: h, data: src } = frame;
  if (w % 2 || h % 2) throw new RangeError(`frame size must be even, got ${w}x${h}`);
  if (src.length < w * h + 2 * ((w >> 1) * (h >> 1))) throw new RangeError(`frame data too short for ${w}x${h} yuv420p`);
  const { rows, cols } = mbGrid(w, h);
  const cw = w >> 1;
  const ch = h >> 1;
  const W = cols * 8;
  const H = rows * 8;
  const plane = W * H;
  const out = outBuffer(outBuf, 3 * plane);
  const uOff = w * h;
  const vOff = uOff + cw * ch;
  const norm = (v: number): number => (v / 255 - 0.5) / 0.25;
  const rgb = new Float64Array(3);
  for (let y = 0; y < H; y++) {
    const sy = y < ch ? y : ch - 1;
    const l0 = 2 * sy * w;
    const l1 = l0 + w;
    for (let x = 0; x < W; x++) {
      const sx = x < cw ? x : cw - 1;
      const Y = (src[l0 + 2 * sx] + src[l1 + 2 * sx] + src[l0 + 2 * sx + 1] + src[l1 + 2 * sx + 1]) * 0.25;
      yuvToRgb(Y, src[uOff + sy * cw + sx], src[vOff + sy * cw + sx], rgb);
      const i = y * W + x;
      out[i] = norm(rgb[0]);
      out[plane + i] = norm(rgb[1]);
      out[2 * plane + i] = norm(rgb[2]);
    }
  }
  return { data: out, width: W, height: H, rows, cols };
}

/** The frame load() runs the model on once: 48×32 mid-grey (2×3 macroblocks, so rows and cols differ). */
const DRY_RUN_FRAME: YuvFrame = { width: 48, height: 32, ptsMs: 0, data: new Uint8Array(48 * 32 * 3 / 2).fill(128) };

export class CheapModel {
  readonly modelPath: string;
  private readonly session: ort.InferenceSession;
  private readonly inputName: string;
  private readonly outputName: string;
  private inputBuf?: Float32Array;
  private busy = false;

  private constructor(modelPath: string, session: ort.InferenceSession) {
    this.modelPath = modelPath;
    this.session = session;
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
  }

  /**
   * Load the ONNX cheap model (default: the committed one) and check that it runs: one dry inference on a small
   * grey frame (DRY_RUN_FRAME, 2×3 macroblocks) must give [1,1,rows,cols] float32. A model that loads but
   * cannot run (wrong input rank, wrong output shape) is rejected here, before anyone swaps it in.
   * Throws CheapModelLoadError on any failure.
   */
  static async load(onnxPath: string = DEFAULT_CHEAP_MODEL, opts: { threads?: number } = {}): Promise<CheapModel> {
    if (!existsSync(onnxPath)) throw new CheapModelLoadError(onnxPath, 'file does not exist');
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(onnxPath, {
        graphOptimizationLevel: 'all',
        executionProviders: ['cpu'],
        ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}),
      });
    } catch (err) {
      throw new CheapModelLoadError(onnxPath, err instanceof Error ? err.message.split('\n')[0] : String(err), { cause: err });
    }
    if (session.inputNames.length !== 1 || session.outputNames.length !== 1) {
      await session.release();
      throw new CheapModelLoadError(onnxPath, `expected 1 input and 1 output, model has ${session.inputNames.length} and ${session.outputNames.length}`);
    }
    const model = new CheapModel(onnxPath, session);
    try {
      await model.importance(DRY_RUN_FRAME);
      // a model that runs but answers NaN or ±Infinity (a bad retrain) would give an arbitrary QP map, silently
      if (model.nonFinite > 0) throw new Error('its output is not finite (NaN or Infinity)');
    } catch (err) {
      await session.release();
      const msg = err instanceof Error ? err.message.split('\n')[0] : String(err);
      const { width: w, height: h } = DRY_RUN_FRAME;
      throw new CheapModelLoadError(onnxPath, `dry run on a ${w}x${h} frame (input [1,3,${h / 2},${w / 2}]) failed: ${msg}`, { cause: err });
    }
    return model;
  }

  /** P(important) per macroblock of the frame's MB grid (ceil(h/16)×ceil(w/16)). */
  /** macroblock values the model answered NaN/Infinity for (taken as important) since load */
  nonFinite = 0;

  async importance(frame: YuvFrame): Promise<MbMap> {
    // one input buffer per frame size, reused unless a previous call is still running on it
    const { rows, cols } = mbGrid(frame.width, frame.height);
    const n = 3 * rows * 8 * cols * 8;
    const reuse = !this.busy && this.inputBuf?.length === n;
    const x = halfResRgb(frame, reuse ? this.inputBuf : undefined);
    if (!this.busy) this.inputBuf = x.data;
    const mine = !this.busy;
    this.busy = true;
    let out: ort.InferenceSession.ReturnType;
    try {
      out = await this.session.run({ [this.inputName]: new ort.Tensor('float32', x.data, [1, 3, x.height, x.width]) });
    } finally {
      if (mine) this.busy = false;
    }
    const t = out[this.outputName];
    if (t.dims.length !== 4 || t.dims[0] !== 1 || t.dims[1] !== 1 || t.dims[2] !== x.rows || t.dims[3] !== x.cols) {
      throw new Error(`cheap model output [${t.dims.join(',')}] does not match [1,1,${x.rows},${x.cols}] (the MB grid)`);
    }
    if (t.type !== 'float32') throw new Error(`cheap model output is ${t.type}, expected float32`);
    // a value that is not finite on some frame counts as important (high quality: never a silent loss), counted
    const data = Float32Array.from(t.data as Float32Array);
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) {
        data[i] = 1;
        this.nonFinite++;
      }
    }
    return { rows: x.rows, cols: x.cols, data };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
