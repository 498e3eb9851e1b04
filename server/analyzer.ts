/**
 * The server's work on one segment: decode, detect on every frame, then
 *  (a) DNNGrad, as in OneAdapt: the gradient of the accuracy proxy with respect to the pixels of the
 *      segment's last DECODED frame (what the server really receives), by backpropagation through the
 *      detector, reduced to one value per 16×16 macroblock of that frame. That frame's detections and
 *      its DNNGrad come from ONE run of one graph (forward, proxy and backward from seed 1, generated
 *      from the detector's ONNX graph by onnxgrad and cached on disk);
 *  (b) when the segment carries a high-quality reference frame (the agent's sampled accuracy monitor,
 *      `monitor.referenceEvery`), the F1 of the streamed frame against the detector's output on it.
 */
import { decodeSegment, EncoderError, InvalidInputError } from '../encoder/index.ts';
import { GraceSegmentCodec, GraceSegmentError } from '../grace/segment.ts';
import type { YuvFrame } from '../encoder/frame.ts';
import { ACCURACY, frameF1, type F1Options } from '../detector/accuracy.ts';
import { Detector, ExecutionProviderError, type DetectorDevice } from '../detector/detector.ts';
import { postprocess, type Detection } from '../detector/postprocess.ts';
import { preprocess } from '../detector/preprocess.ts';
import { oneAdaptProxyGraph, ONEADAPT_PROXY, reduceToMacroblocks, type OneAdaptProxyOptions } from './dnngrad.ts';
import { encodeMbMap } from '../wire/mbmap.ts';
import type { SegmentProcessor } from './ingest.ts';
import { ProxyGradModel, type GradientModelOptions } from './onnxgrad/index.ts';
import { InvalidSegmentError, type Reply, type SegmentHeader } from '../wire/protocol.ts';
import type { LabelStore } from './label-store.ts';

export interface AnalyzerOptions {
  modelPath: string;
  device?: DetectorDevice;
  /** compute DNNGrad on the last decoded frame of each segment (default true) */
  dnngrad?: boolean;
  /** accuracy definition (default ACCURACY: the one every benchmark uses) */
  f1?: F1Options;
  /** DNNGrad's proxy (default ONEADAPT_PROXY: the same classes and score threshold as the F1) */
  proxy?: OneAdaptProxyOptions;
  threads?: number;
  /**
   * Intra-op threads spin-wait between operators (default false): the detector and DNNGrad sessions share the
   * cores, and one session's spinning threads slowed the other's runs (bench:server).
   */
  spinning?: boolean;
  /** device 'cuda' without a usable CUDA execution provider: run on CPU (default true) or throw ExecutionProviderError */
  fallbackToCpu?: boolean;
  /** called once per model (detector, DNNGrad) that fell back from CUDA to CPU, with onnxruntime's reason */
  onFallback?: (model: 'detector' | 'dnngrad', reason: string) => void;
  /** folder for the generated DNNGrad graph (keyed by the detector's hash); none: rebuilt in memory */
  cacheDir?: string;
  /** the graph could not be written to cacheDir (full disk…): it runs from memory; this reports why */
  onCacheError?: (err: Error) => void;
  /** AccMPEG training labels from the uploads: offered each segment's last decoded frame (off: none) */
  labels?: Pick<LabelStore, 'offer'>;
  /**
   * Largest decoded size a segment may declare (frames × width × height × 1.5 bytes of YUV420p, its reference
   * frame included; default 1 GiB: a 300-frame 1080p segment, the agent's largest at that size, is 933 MB): a
   * header may claim up to 1000 frames of 8192×8192, ~100 GB decoded. Over it the segment is refused as
   * RETRYABLE (it is a server setting, not the segment's fault: the camera keeps it until the limit is raised).
   */
  maxDecodedBytes?: number;
  /** segments decoded and analysed at once, over all connections (default 2): bounds memory and shares the cores */
  maxConcurrent?: number;
}

export const ANALYZER_DEFAULTS = { maxDecodedBytes: 2 ** 30, maxConcurrent: 2 } as const;

/** At most n tasks at a time, the rest wait in arrival order (written here: a dozen lines, no dependency needed). */
class Slots {
  private busy = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly n: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.busy >= this.n) await new Promise<void>((r) => this.waiting.push(r));
    else this.busy++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next(); // the slot passes straight to the next task
      else this.busy--;
    }
  }
}

/**
 * The GPU profile's DNNGrad: the gradient model on onnxruntime's CUDA provider, or on CPU when the provider
 * libraries are absent (the npm package ships CPU only; see deploy/jetson/README.md) — with the reason
 * reported, or ExecutionProviderError when fallbackToCpu is false.
 */
async function loadGradientModel(opts: AnalyzerOptions): Promise<{ model: ProxyGradModel; device: DetectorDevice }> {
  const base: GradientModelOptions & Parameters<typeof ProxyGradModel.load>[1] = {
    proxy: oneAdaptProxyGraph(opts.proxy ?? ONEADAPT_PROXY), intraOpNumThreads: opts.threads, spinning: opts.spinning ?? false, cacheDir: opts.cacheDir, onCacheError: opts.onCacheError,
  };
  if ((opts.device ?? 'cpu') === 'cuda') {
    try {
      return { model: await ProxyGradModel.load(opts.modelPath, { ...base, executionProviders: ['cuda'] }), device: 'cuda' };
    } catch (err) {
      const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
      if (!/provider|cuda|shared library/i.test(reason)) throw err;
      if (opts.fallbackToCpu === false) throw new ExecutionProviderError('cuda', `DNNGrad: ${reason}`, { cause: err });
      opts.onFallback?.('dnngrad', reason);
    }
  }
  return { model: await ProxyGradModel.load(opts.modelPath, { ...base, executionProviders: ['cpu'] }), device: 'cpu' };
}

/** Undecodable video: the segment's own fault, so final (ingest keeps its bytes and does not ask for a resend). */
export class SegmentDecodeError extends InvalidSegmentError {
  constructor(segmentId: string, detail: string) {
    super(`cannot decode segment ${segmentId}: ${detail}`, segmentId);
    this.name = 'SegmentDecodeError';
  }
}

/**
 * Whether a decode failure is the segment's own fault (final) or the server's (the agent keeps the segment and
 * retries): only what the bytes themselves cause — libavcodec's bitstream steps, the declared-size limits, a
 * malformed Grace++ container, a size that disagrees with the header — is final. A codec library or model that
 * does not load, an allocation failure or an onnxruntime error must not make the agent delete its video.
 */
const BITSTREAM_STEPS = new Set(['decode', 'decode limit', 'parse bytestream', 'send packet to decoder', 'receive frame from decoder', 'flush decoder', 'convert decoded frame']);
export function isSegmentFault(e: unknown): boolean {
  if (e instanceof EncoderError) return BITSTREAM_STEPS.has(e.step);
  return e instanceof InvalidInputError || e instanceof GraceSegmentError || e instanceof SegmentDecodeError;
}

const now = (): number => performance.now();

function toWire(dets: Detection[], sx = 1, sy = 1): [number, number, number, number, number, number][] {
  const r = (v: number): number => Math.round(v * 10) / 10;
  return dets.map((d) => [r(d.x1 * sx), r(d.y1 * sy), r(d.x2 * sx), r(d.y2 * sy), Math.round(d.score * 1000) / 1000, d.classId]);
}

export class SegmentAnalyzer implements SegmentProcessor {
  private constructor(
    readonly detector: Detector,
    private readonly grad: ProxyGradModel | null,
    /** where DNNGrad runs (null when disabled); may be 'cpu' after a CUDA fallback */
    readonly gradDevice: DetectorDevice | null,
    private readonly opts: AnalyzerOptions,
  ) {
    this.slots = new Slots(opts.maxConcurrent ?? ANALYZER_DEFAULTS.maxConcurrent);
  }

  static async create(opts: AnalyzerOptions): Promise<SegmentAnalyzer> {
    const detector = await Detector.load(opts.modelPath, {
      device: opts.device ?? 'cpu', threads: opts.threads, spinning: opts.spinning ?? false, fallbackToCpu: opts.fallbackToCpu, onFallback: (r) => opts.onFallback?.('detector', r),
    });
    let grad: { model: ProxyGradModel; device: DetectorDevice } | null = null;
    try {
      if (opts.dnngrad !== false) grad = await loadGradientModel(opts);
    } catch (e) {
      await detector.release(); // no session left behind when the gradient model fails to load
      throw e;
    }
    return new SegmentAnalyzer(detector, grad?.model ?? null, grad?.device ?? null, opts);
  }

  /** whether the DNNGrad graph was read from the cache folder rather than built at start */
  get gradFromCache(): boolean { return this.grad?.fromCache ?? false; }

  /**
   * Detection and DNNGrad of one frame from one run of the combined graph: proxy value, per-MB mean
   * saliency (frame geometry), the raw detector output and its detections.
   */
  async dnnGrad(frame: YuvFrame): Promise<{ proxy: number; map: ReturnType<typeof reduceToMacroblocks>; raw: Float32Array; detections: Detection[] }> {
    if (!this.grad) throw new Error('DNNGrad disabled');
    const { input, letterbox } = preprocess(frame);
    const r = await this.grad.run(input);
    return {
      proxy: r.proxy,
      map: reduceToMacroblocks(r.gradInput, letterbox, frame.width, frame.height, { reduce: 'mean' }),
      raw: r.output,
      detections: postprocess(r.output, letterbox),
    };
  }

  private grace: Promise<GraceSegmentCodec> | undefined;

  /** The Grace++ decoder, loaded on the first Grace++ segment. */
  private graceCodec(): Promise<GraceSegmentCodec> {
    // a failed load is not kept: the next Grace++ segment tries again (the models may be fixed meanwhile)
    this.grace ??= GraceSegmentCodec.load().catch((e: unknown) => {
      this.grace = undefined;
      throw e;
    });
    return this.grace;
  }

  private readonly slots: Slots;

  /** `cancelled`: checked when the segment's turn comes (its connection closed while it waited: skip the work) */
  process(header: SegmentHeader, video: Buffer, ref: Buffer | null, cancelled?: () => boolean): Promise<Omit<Reply, 'type' | 'duplicate'>> {
    const declared = header.frameCount * header.width * header.height * 1.5 + (header.ref ? header.ref.width * header.ref.height * 1.5 : 0);
    const max = this.opts.maxDecodedBytes ?? ANALYZER_DEFAULTS.maxDecodedBytes;
    if (declared > max) {
      return Promise.reject(new Error(`segment ${header.segmentId} declares ${(declared / 2 ** 20).toFixed(0)} MiB of decoded frames, more than this server's limit of ${(max / 2 ** 20).toFixed(0)} MiB: raise ingest.maxDecodedBytes (the camera keeps the segment and resends it)`));
    }
    return this.slots.run(async () => {
      if (cancelled?.()) throw new Error(`segment ${header.segmentId} not processed: its connection closed while it waited (the camera resends it)`);
      return this.processOne(header, video, ref);
    });
  }

  private async processOne(header: SegmentHeader, video: Buffer, ref: Buffer | null): Promise<Omit<Reply, 'type' | 'duplicate'>> {
    let t = now();
    let frames: YuvFrame[];
    let refFrame: YuvFrame | null = null;
    try {
      // the header's size and frame count bound the decode: a few kB of skip frames must not expand without limit
      const expect = { frames: header.frameCount, width: header.width, height: header.height };
      frames = header.codec === 'grace'
        ? await (await this.graceCodec()).decode(video, expect)
        : (await decodeSegment(video, header.codec, { maxFrames: header.frameCount, maxPixels: header.width * header.height })).frames;
      const off = frames.find((f) => f.width !== header.width || f.height !== header.height);
      if (off) throw new SegmentDecodeError(header.segmentId, `decoded ${off.width}x${off.height}, the header says ${header.width}x${header.height}`);
      if (ref && header.ref) {
        refFrame = (await decodeSegment(ref, header.ref.codec, { maxFrames: 1, maxPixels: header.ref.width * header.ref.height })).frames[0] ?? null;
        if (refFrame && (refFrame.width !== header.ref.width || refFrame.height !== header.ref.height)) throw new SegmentDecodeError(header.segmentId, `reference is ${refFrame.width}x${refFrame.height}, the header says ${header.ref.width}x${header.ref.height}`);
      }
    } catch (e) {
      if (e instanceof SegmentDecodeError) throw e;
      if (isSegmentFault(e)) throw new SegmentDecodeError(header.segmentId, (e as Error).message);
      throw new Error(`server could not decode segment ${header.segmentId}: ${(e as Error).message}`, { cause: e });
    }
    if (frames.length === 0) throw new SegmentDecodeError(header.segmentId, 'no frames decoded');
    const decodeMs = now() - t;
    // queued per camera, off the reply's path; offer() never rejects
    void this.opts.labels?.offer(header.cameraId, header.seq, frames[frames.length - 1]);

    // every frame but the last: the detector; the last: one run of the DNNGrad graph gives its detections too
    t = now();
    const last = frames.length - 1;
    const perFrame: Detection[][] = [];
    for (let i = 0; i < (this.grad ? last : frames.length); i++) perFrame.push((await this.detector.detect(frames[i])).detections);
    const detectMs = now() - t;

    let f1: Reply['f1'] = null;
    let dnngrad: Reply['dnngrad'] = null;
    t = now();
    if (this.grad) {
      const g = await this.dnnGrad(frames[last]);
      perFrame.push(g.detections);
      dnngrad = { frameIndex: last, rows: g.map.rows, cols: g.map.cols, width: frames[last].width, height: frames[last].height, proxy: g.proxy, data: encodeMbMap(g.map).toString('base64') };
    }
    const gradMs = now() - t;
    if (refFrame && header.ref) {
      const idx = Math.min(header.ref.frameIndex, last);
      const refDet = await this.detector.detect(refFrame);
      // streamed frames may be downscaled (resolution knob): compare in reference coordinates
      const sx = refFrame.width / frames[idx].width;
      const sy = refFrame.height / frames[idx].height;
      const test = perFrame[idx].map((d) => ({ ...d, x1: d.x1 * sx, x2: d.x2 * sx, y1: d.y1 * sy, y2: d.y2 * sy }));
      const r = frameF1(test, refDet.detections, this.opts.f1 ?? ACCURACY);
      f1 = { frameIndex: idx, f1: r.f1, tp: r.tp, fp: r.fp, fn: r.fn };
    }
    return {
      segmentId: header.segmentId,
      seq: header.seq,
      detections: perFrame.map((d) => toWire(d)),
      f1,
      dnngrad,
      timings: { decodeMs, detectMs, gradMs },
    };
  }

  /** Release every onnxruntime session (the detector's, the DNNGrad graph's, Grace++'s when loaded). */
  async close(): Promise<void> {
    if (this.grace) await (await this.grace).release();
    await Promise.all([this.detector.release(), this.grad?.release()]);
  }
}
