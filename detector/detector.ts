/**
 * Thin onnxruntime-node shell around the YOLOX-Nano detector. All numeric work lives in the pure
 * preprocess/postprocess modules; this file only owns the session.
 */
import { existsSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import type { YuvFrame } from '../encoder/frame.ts';
import { INPUT_SIZE, preprocess, type Letterbox } from './preprocess.ts';
import { postprocess, ROW, type Detection, type PostprocessOptions } from './postprocess.ts';

export type DetectorDevice = 'cpu' | 'cuda';

export interface DetectorOptions {
  device: DetectorDevice;
  /** when device is 'cuda' and the CUDA EP cannot be loaded: fall back to CPU (default true) or throw */
  fallbackToCpu?: boolean;
  /** intra-op threads for the CPU EP (default: onnxruntime's choice) */
  threads?: number;
  /**
   * Whether idle intra-op threads spin-wait for the next operator (onnxruntime's default, true). Set false
   * where several sessions share the cores (the server: detector + DNNGrad), or the spinning threads of one
   * session slow the others.
   */
  spinning?: boolean;
  /** default postprocessing options for detect() */
  postprocess?: PostprocessOptions;
  /** called once if a CUDA request fell back to CPU */
  onFallback?: (reason: string) => void;
}

export interface DetectResult {
  detections: Detection[];
  /** the raw [1,3549,85] output, row-major */
  raw: Float32Array;
  letterbox: Letterbox;
}

/** The model file is missing or onnxruntime could not load it. */
export class ModelLoadError extends Error {
  readonly modelPath: string;
  constructor(modelPath: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot load detector model ${modelPath}: ${reason}`, options);
    this.name = 'ModelLoadError';
    this.modelPath = modelPath;
  }
}

/** The requested execution provider is not available in this onnxruntime build/host. */
export class ExecutionProviderError extends Error {
  readonly provider: string;
  constructor(provider: string, reason: string, options?: { cause?: unknown }) {
    super(`execution provider '${provider}' unavailable: ${reason}`, options);
    this.name = 'ExecutionProviderError';
    this.provider = provider;
  }
}

export class Detector {
  readonly modelPath: string;
  /** the device actually in use (may be 'cpu' after a CUDA fallback) */
  readonly device: DetectorDevice;
  private readonly session: ort.InferenceSession;
  private readonly inputName: string;
  private readonly outputName: string;
  private readonly defaults: PostprocessOptions;
  private readonly inputBuf = new Float32Array(3 * INPUT_SIZE * INPUT_SIZE);
  private busy = false;

  private constructor(modelPath: string, device: DetectorDevice, session: ort.InferenceSession, defaults: PostprocessOptions) {
    this.modelPath = modelPath;
    this.device = device;
    this.session = session;
    this.inputName = session.inputNames[0];
    this.outputName = session.outputNames[0];
    this.defaults = defaults;
  }

  static async load(modelPath: string, opts: DetectorOptions = { device: 'cpu' }): Promise<Detector> {
    if (!existsSync(modelPath)) throw new ModelLoadError(modelPath, 'file does not exist');
    const base: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
    if (opts.threads) base.intraOpNumThreads = opts.threads;
    if (opts.spinning === false) base.extra = { session: { 'intra_op.allow_spinning': '0' } };
    let session: ort.InferenceSession | undefined;
    let device: DetectorDevice = 'cpu';
    if (opts.device === 'cuda') {
      try {
        session = await ort.InferenceSession.create(modelPath, { ...base, executionProviders: ['cuda'] });
        device = 'cuda';
      } catch (err) {
        const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
        if (/load model|protobuf|invalid model|no such file/i.test(reason) && !/provider|cuda|shared library/i.test(reason)) {
          throw new ModelLoadError(modelPath, reason, { cause: err });
        }
        if (opts.fallbackToCpu === false) throw new ExecutionProviderError('cuda', reason, { cause: err });
        opts.onFallback?.(reason);
      }
    }
    if (!session) {
      try {
        session = await ort.InferenceSession.create(modelPath, { ...base, executionProviders: ['cpu'] });
      } catch (err) {
        throw new ModelLoadError(modelPath, err instanceof Error ? err.message.split('\n')[0] : String(err), { cause: err });
      }
    }
    const det = new Detector(modelPath, device, session, opts.postprocess ?? {});
    det.checkShapes();
    return det;
  }

  private checkShapes(): void {
    const meta = (this.session as unknown as { inputMetadata?: Array<{ shape?: readonly unknown[] }> }).inputMetadata;
    const shape = Array.isArray(meta) ? meta[0]?.shape : undefined;
    if (shape && shape.length === 4 && (shape[2] !== INPUT_SIZE || shape[3] !== INPUT_SIZE)) {
      throw new ModelLoadError(this.modelPath, `expected input [1,3,${INPUT_SIZE},${INPUT_SIZE}], model has [${shape.join(',')}]`);
    }
  }

  /** Run the network on an already-letterboxed input (used by gradient code that needs the same tensor). */
  async runRaw(input: Float32Array): Promise<Float32Array> {
    const tensor = new ort.Tensor('float32', input, [1, 3, INPUT_SIZE, INPUT_SIZE]);
    const out = await this.session.run({ [this.inputName]: tensor });
    const t = out[this.outputName];
    const raw = t.data as Float32Array;
    if (raw.length % ROW !== 0) throw new Error(`unexpected detector output shape [${t.dims.join(',')}]`);
    return raw;
  }

  async detect(frame: YuvFrame, opts?: PostprocessOptions): Promise<DetectResult> {
    // the shared input buffer must not be overwritten while a run is in flight
    const buf = this.busy ? undefined : this.inputBuf;
    this.busy = true;
    try {
      const { input, letterbox } = preprocess(frame, buf);
      const raw = await this.runRaw(input);
      const detections = postprocess(raw, letterbox, { ...this.defaults, ...opts });
      return { detections, raw, letterbox };
    } finally {
      if (buf) this.busy = false;
    }
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
