/**
 * The Grace++ P-frame codec models (ONNX, trained by training/train_grace.py) run with
 * onnxruntime-node, one intra-op thread by default so that decoding is deterministic: the sender's
 * re-decode of a frame from the received packet subset must equal the receiver's bit for bit.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import { parseCdfTables, type CdfTables, type QLatent } from './packet.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const GRACE_MODEL_DIR = path.resolve(here, 'models');

const RungMeta = z.object({ name: z.string(), params: z.number().int(), latent_channels: z.number().int().min(1).max(255), stride: z.number().int() });
const Ladder = z.object({
  /** masked-latent models, lowest rate first; index = the packet's `model` byte */
  rungs: z.array(z.string().regex(/^[\w-]+$/)).min(1),
  /** the same codec trained without masking (benchmark ablation only) */
  ablation: z.string().regex(/^[\w-]+$/).optional(),
  /** profiled bits per pixel of each rung (bench:grace, zero loss): the rate selector's prior */
  bpp: z.array(z.number().positive()).optional(),
});
export type LadderSpec = z.infer<typeof Ladder>;

export class GraceModelError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GraceModelError';
  }
}

export function loadLadder(dir = GRACE_MODEL_DIR): LadderSpec {
  const f = path.join(dir, 'ladder.json');
  if (!existsSync(f)) throw new GraceModelError(`no Grace++ ladder at ${f}`);
  return Ladder.parse(JSON.parse(readFileSync(f, 'utf8')));
}

export function loadTables(dir = GRACE_MODEL_DIR): CdfTables {
  return parseCdfTables(JSON.parse(readFileSync(path.join(dir, 'cdf_tables.json'), 'utf8')));
}

/** One encoder/decoder pair (one rung of the ladder). */
export class GraceModel {
  private constructor(
    readonly name: string,
    readonly channels: number,
    readonly stride: number,
    readonly params: number,
    private readonly enc: ort.InferenceSession,
    private readonly dec: ort.InferenceSession,
  ) {}

  static async load(name: string, opts: { dir?: string; threads?: number } = {}): Promise<GraceModel> {
    const dir = opts.dir ?? GRACE_MODEL_DIR;
    const metaFile = path.join(dir, `${name}.json`);
    if (!existsSync(metaFile)) throw new GraceModelError(`Grace++ model ${name}: ${metaFile} missing`);
    const meta = RungMeta.parse(JSON.parse(readFileSync(metaFile, 'utf8')));
    const so: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      executionProviders: ['cpu'],
      intraOpNumThreads: opts.threads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
    };
    try {
      const enc = await ort.InferenceSession.create(path.join(dir, `${name}_enc.onnx`), so);
      const dec = await ort.InferenceSession.create(path.join(dir, `${name}_dec.onnx`), so);
      return new GraceModel(name, meta.latent_channels, meta.stride, meta.params, enc, dec);
    } catch (err) {
      throw new GraceModelError(`Grace++ model ${name}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`, { cause: err });
    }
  }

  checkSize(width: number, height: number): void {
    if (width % this.stride || height % this.stride || width < this.stride || height < this.stride) {
      throw new GraceModelError(`frame ${width}x${height}: Grace++ needs both sides to be positive multiples of ${this.stride}`);
    }
  }

  /** Unquantised latent of frame x given the reference (both planar RGB in [0,1]). */
  async encode(x: Float32Array, ref: Float32Array, width: number, height: number): Promise<{ y: Float32Array; c: number; h: number; w: number }> {
    this.checkSize(width, height);
    const dims = [1, 3, height, width];
    const out = await this.enc.run({ x: new ort.Tensor('float32', x, dims), ref: new ort.Tensor('float32', ref, dims) });
    const y = out.y;
    return { y: y.data as Float32Array, c: y.dims[1], h: y.dims[2], w: y.dims[3] };
  }

  /** Reconstruction from a (possibly partly zeroed) quantised latent and the reference. */
  async decode(q: QLatent, ref: Float32Array, width: number, height: number): Promise<Float32Array> {
    this.checkSize(width, height);
    if (q.c !== this.channels || q.h !== height / this.stride || q.w !== width / this.stride) {
      throw new GraceModelError(`latent ${q.c}×${q.h}×${q.w} does not fit model ${this.name} at ${width}x${height}`);
    }
    const y = Float32Array.from(q.data);
    const out = await this.dec.run({ y: new ort.Tensor('float32', y, [1, q.c, q.h, q.w]), ref: new ort.Tensor('float32', ref, [1, 3, height, width]) });
    return Float32Array.from(out.xhat.data as Float32Array);
  }

  async release(): Promise<void> {
    await this.enc.release();
    await this.dec.release();
  }
}
