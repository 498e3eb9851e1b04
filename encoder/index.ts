/**
 * Typed API over the native encoder addon (encoder/native, built by `npm run build:native`).
 *
 * - encodeSegment: YUV420p frames → H.264 (or H.265) Annex B bytestream, each frame with its own
 *   per-macroblock QP offset map (AccMPEG's quality map).
 * - decodeSegment: bytestream → frames plus the per-macroblock QPs the encoder really used.
 * - scaleFrame / scaleFrameAsync: libswscale resize of one frame (the resolution knob); the async one runs on
 *   the libuv thread pool.
 *
 * Inputs are validated here, before they reach native code; libav failures come back as
 * EncoderError with the failing step.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { type MbMap, type YuvFrame, mbGrid, yuvFrameSize } from './frame.ts';
import { fromRoot } from './root.ts';

export type Codec = 'h264' | 'h265';
export type FrameType = 'I' | 'P' | 'B';
export type ScaleAlgorithm = 'bilinear' | 'area' | 'bicubic';

export const X264_PRESETS = ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow', 'placebo'] as const;
export type Preset = (typeof X264_PRESETS)[number];

export interface EncoderSettings {
  /** default 'h264' (libx264); 'h265' needs libx265 in libavcodec */
  codec?: Codec;
  /** base QP, passed to x264 as crf with qcomp=1 so it stays near-constant; 0..51, default 30 */
  baseQp?: number;
  /** x264 preset, default 'veryfast' */
  preset?: Preset;
  /** x264 tune, e.g. 'zerolatency'; default none */
  tune?: 'zerolatency' | null;
  /** frames per GOP (closed, starting with an I frame); default = segment length */
  gop?: number;
  /** frame rate written into the stream's timing; default 25 */
  fps?: number;
  /** max consecutive B frames; default 0 (low latency) */
  bframes?: number;
  /** encoder threads; 0 = libav decides; default 0 */
  threads?: number;
}

export interface EncodedSegment {
  codec: Codec;
  width: number;
  height: number;
  fps: number;
  /** Annex B elementary stream (SPS/PPS in-band) */
  data: Buffer;
  /** bytes of each coded frame, in bitstream (decode) order; equals display order when bframes = 0 */
  frameBytes: number[];
  /** picture type of each coded frame, same order as frameBytes */
  frameTypes: FrameType[];
}

export interface DecodedSegment {
  frames: YuvFrame[];
  /** per frame, the absolute QP of each macroblock (rows=ceil(h/16), cols=ceil(w/16)); NaN where the stream carried none */
  qps: MbMap[];
  /** non-fatal decoder complaints (corrupt packets that were skipped or concealed) */
  warnings: string[];
}

// ---------------------------------------------------------------- errors

/** The native addon is not built (or fails to load). */
export class EncoderUnavailableError extends Error {
  constructor(public readonly addonPath: string, cause?: unknown) {
    super(`camstream encoder addon not available at ${addonPath}: run npm run build:native${cause instanceof Error ? ` (${cause.message})` : ''}`);
    this.name = 'EncoderUnavailableError';
  }
}

/** Frames, maps or settings that cannot be encoded (caught before native code runs). */
export class InvalidInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidInputError';
  }
}

/** libavcodec/libswscale reported a failure; `step` names what was being done. */
export class EncoderError extends Error {
  constructor(public readonly step: string, message: string) {
    super(message);
    this.name = 'EncoderError';
  }
}

// ---------------------------------------------------------------- addon loading

interface NativeEncodeResult { data: Buffer; frameBytes: number[]; frameTypes: string[] }
interface NativeDecodeResult { width: number; height: number; fps: number; frames: Buffer[]; qps: Float32Array[]; warnings: string[] }
interface NativeAddon {
  encode(frames: Uint8Array[], maps: (Float32Array | null)[], width: number, height: number, settings: Record<string, unknown>): Promise<NativeEncodeResult>;
  decode(data: Uint8Array, codec: Codec, threads: number, maxFrames?: number, maxPixels?: number): Promise<NativeDecodeResult>;
  scale(src: Uint8Array, width: number, height: number, dstWidth: number, dstHeight: number, algo: ScaleAlgorithm): Buffer;
  scaleAsync(src: Uint8Array, width: number, height: number, dstWidth: number, dstHeight: number, algo: ScaleAlgorithm): Promise<Buffer>;
  versions(): { avcodec: string; avutil: string; swscale: string; h264: boolean; h265: boolean };
}

export const ADDON_PATH = process.env.CAMSTREAM_ENCODER_ADDON ?? fromRoot('build', 'encoder', 'Release', 'camstream_encoder.node');

let addon: NativeAddon | undefined;

function native(): NativeAddon {
  if (addon) return addon;
  if (!existsSync(ADDON_PATH)) throw new EncoderUnavailableError(ADDON_PATH);
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as NativeAddon;
  } catch (err) {
    throw new EncoderUnavailableError(ADDON_PATH, err);
  }
  return addon;
}

/** True when the addon is built and loads. */
export function encoderAvailable(): boolean {
  try {
    native();
    return true;
  } catch {
    return false;
  }
}

/** libav versions linked into the addon and which encoders it found. */
export function encoderVersions(): ReturnType<NativeAddon['versions']> {
  return native().versions();
}

function rethrow(err: unknown): never {
  // Duck-typed: errors made by the addon may come from another realm (e.g. jest's vm contexts).
  const e = err as { step?: unknown; name?: unknown; message?: unknown } | null;
  if (e && typeof e === 'object' && typeof e.message === 'string') {
    if (typeof e.step === 'string') throw new EncoderError(e.step, e.message);
    if (e.name === 'RangeError' || e.name === 'TypeError') throw new InvalidInputError(e.message);
  }
  throw err;
}

// ---------------------------------------------------------------- validation

/** largest frame side accepted (the native scaler's limit; the wire protocol's is 8192) */
const MAX_DIM = 16384;

function checkDims(width: number, height: number, what: string): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new InvalidInputError(`${what}: width and height must be positive integers, got ${width}x${height}`);
  }
  if (width % 2 !== 0 || height % 2 !== 0) throw new InvalidInputError(`${what}: YUV420p needs even dimensions, got ${width}x${height}`);
  if (width > MAX_DIM || height > MAX_DIM) throw new InvalidInputError(`${what}: at most ${MAX_DIM} pixels a side, got ${width}x${height}`);
}

function checkFrame(f: YuvFrame, what: string): void {
  checkDims(f.width, f.height, what);
  if (!(f.data instanceof Uint8Array)) throw new InvalidInputError(`${what}: data must be a Uint8Array`);
  const want = yuvFrameSize(f.width, f.height);
  if (f.data.length !== want) {
    throw new InvalidInputError(`${what}: data has ${f.data.length} bytes, a ${f.width}x${f.height} YUV420p frame has ${want}`);
  }
}

function checkInt(name: string, v: number | undefined, min: number, max: number): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < min || v > max) throw new InvalidInputError(`settings.${name} must be an integer in [${min}, ${max}], got ${v}`);
}

// ---------------------------------------------------------------- API

/**
 * Encode one segment. qpMaps[i] holds QP OFFSETS (relative to settings.baseQp) per macroblock of
 * frame i, shape ceil(h/16) × ceil(w/16); null = uniform base QP. Offsets are clamped to ±51.
 */
export async function encodeSegment(frames: YuvFrame[], qpMaps: (MbMap | null)[], settings: EncoderSettings = {}): Promise<EncodedSegment> {
  if (!Array.isArray(frames) || frames.length === 0) throw new InvalidInputError('empty segment: no frames to encode');
  if (!Array.isArray(qpMaps) || qpMaps.length !== frames.length) {
    throw new InvalidInputError(`qpMaps must have one entry (map or null) per frame: ${frames.length} frames, ${qpMaps?.length} maps`);
  }
  const { width, height } = frames[0];
  const grid = mbGrid(width, height);
  frames.forEach((f, i) => {
    checkFrame(f, `frame ${i}`);
    if (f.width !== width || f.height !== height) throw new InvalidInputError(`frame ${i} is ${f.width}x${f.height}, frame 0 is ${width}x${height}`);
  });
  qpMaps.forEach((m, i) => {
    if (m === null || m === undefined) return;
    if (m.rows !== grid.rows || m.cols !== grid.cols) {
      throw new InvalidInputError(`qpMaps[${i}] is ${m.rows}x${m.cols} macroblocks, a ${width}x${height} frame needs ${grid.rows}x${grid.cols}`);
    }
    if (!(m.data instanceof Float32Array) || m.data.length !== m.rows * m.cols) {
      throw new InvalidInputError(`qpMaps[${i}].data must be a Float32Array of ${m.rows * m.cols} values`);
    }
    for (let k = 0; k < m.data.length; k++) {
      if (!Number.isFinite(m.data[k])) throw new InvalidInputError(`qpMaps[${i}] has a non-finite value at index ${k}`);
    }
  });

  const codec: Codec = settings.codec ?? 'h264';
  if (codec !== 'h264' && codec !== 'h265') throw new InvalidInputError(`settings.codec must be h264 or h265, got ${codec}`);
  const baseQp = settings.baseQp ?? 30;
  if (!Number.isFinite(baseQp) || baseQp < 0 || baseQp > 51) throw new InvalidInputError(`settings.baseQp must be in [0, 51], got ${baseQp}`);
  const preset = settings.preset ?? 'veryfast';
  if (!X264_PRESETS.includes(preset)) throw new InvalidInputError(`settings.preset must be one of ${X264_PRESETS.join(', ')}, got ${preset}`);
  if (settings.tune != null && settings.tune !== 'zerolatency') throw new InvalidInputError(`settings.tune must be zerolatency or null, got ${settings.tune}`);
  const fps = settings.fps ?? 25;
  checkInt('fps', fps, 1, 1000);
  checkInt('gop', settings.gop, 1, 100000);
  checkInt('bframes', settings.bframes, 0, 16);
  checkInt('threads', settings.threads, 0, 64);

  let out: NativeEncodeResult;
  try {
    out = await native().encode(
      frames.map((f) => f.data),
      qpMaps.map((m) => m?.data ?? null),
      width,
      height,
      { codec, baseQp, preset, tune: settings.tune ?? '', gop: settings.gop ?? frames.length, fps, bframes: settings.bframes ?? 0, threads: settings.threads ?? 0 },
    );
  } catch (err) {
    rethrow(err);
  }
  return { codec, width, height, fps, data: out.data, frameBytes: out.frameBytes, frameTypes: out.frameTypes as FrameType[] };
}

/**
 * Decode an Annex B bytestream. A corrupt or truncated stream yields the frames that could be
 * decoded (with `warnings`), or EncoderError when none could.
 */
/**
 * Decode a bytestream to yuv420p frames. `maxFrames` / `maxPixels` bound what an untrusted stream may expand to
 * (a few kB of skip frames decode to thousands of full frames): past either, the decode fails with an
 * EncoderError instead of allocating.
 */
export async function decodeSegment(data: Uint8Array, codec: Codec = 'h264', opts: { threads?: number; maxFrames?: number; maxPixels?: number } = {}): Promise<DecodedSegment> {
  if (!(data instanceof Uint8Array)) throw new InvalidInputError('data must be a Uint8Array');
  if (data.length === 0) throw new InvalidInputError('empty bytestream');
  if (codec !== 'h264' && codec !== 'h265') throw new InvalidInputError(`codec must be h264 or h265, got ${codec}`);
  checkInt('threads', opts.threads, 0, 64);
  checkInt('maxFrames', opts.maxFrames, 0, 2 ** 31 - 1);
  checkInt('maxPixels', opts.maxPixels, 0, 2 ** 40);
  let out: NativeDecodeResult;
  try {
    out = await native().decode(data, codec, opts.threads ?? 1, opts.maxFrames ?? 0, opts.maxPixels ?? 0);
  } catch (err) {
    rethrow(err);
  }
  const { rows, cols } = mbGrid(out.width, out.height);
  const fps = out.fps > 0 ? out.fps : 25;
  return {
    frames: out.frames.map((buf, i) => ({ width: out.width, height: out.height, ptsMs: Math.round((i * 1000) / fps), data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) })),
    qps: out.qps.map((q) => ({ rows, cols, data: q })),
    warnings: out.warnings,
  };
}

function checkScale(frame: YuvFrame, width: number, height: number, algo: ScaleAlgorithm, what: string): void {
  checkFrame(frame, `${what} source`);
  checkDims(width, height, `${what} target`);
  if (algo !== 'bilinear' && algo !== 'area' && algo !== 'bicubic') throw new InvalidInputError(`unknown scale algorithm ${algo}`);
}

const scaled = (frame: YuvFrame, width: number, height: number, buf: Buffer): YuvFrame => ({
  width,
  height,
  ptsMs: frame.ptsMs,
  data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength),
});

/**
 * Resize one YUV420p frame with libswscale, synchronously (milliseconds at 720p): for worker threads
 * (OneAdapt's probes) and tests. On the event loop use scaleFrameAsync. Keeps ptsMs.
 */
export function scaleFrame(frame: YuvFrame, width: number, height: number, algo: ScaleAlgorithm = 'bilinear'): YuvFrame {
  checkScale(frame, width, height, algo, 'scaleFrame');
  let buf: Buffer;
  try {
    buf = native().scale(frame.data, frame.width, frame.height, width, height, algo);
  } catch (err) {
    rethrow(err);
  }
  return scaled(frame, width, height, buf);
}

/** scaleFrame on the libuv thread pool: the event loop stays free while libswscale works. Same output. */
export async function scaleFrameAsync(frame: YuvFrame, width: number, height: number, algo: ScaleAlgorithm = 'bilinear'): Promise<YuvFrame> {
  checkScale(frame, width, height, algo, 'scaleFrame');
  let buf: Buffer;
  try {
    buf = await native().scaleAsync(frame.data, frame.width, frame.height, width, height, algo);
  } catch (err) {
    rethrow(err);
  }
  return scaled(frame, width, height, buf);
}

/**
 * For callers who think in absolute QPs (AccMPEG: important MBs at 30, the rest at 40):
 * offsets = absQp − baseQp, clamped to ±51.
 */
export function absoluteQpToOffsets(absQp: MbMap, baseQp: number): MbMap {
  if (!Number.isFinite(baseQp)) throw new InvalidInputError(`baseQp must be finite, got ${baseQp}`);
  if (absQp.data.length !== absQp.rows * absQp.cols) throw new InvalidInputError(`map data has ${absQp.data.length} values for ${absQp.rows}x${absQp.cols}`);
  const data = new Float32Array(absQp.data.length);
  for (let i = 0; i < data.length; i++) data[i] = Math.max(-51, Math.min(51, absQp.data[i] - baseQp));
  return { rows: absQp.rows, cols: absQp.cols, data };
}

export type { MbMap, YuvFrame } from './frame.ts';
