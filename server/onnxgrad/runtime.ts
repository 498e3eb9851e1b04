/**
 * Runtime wrapper: loads a forward model, builds (or loads a cached) VJP model and runs both
 * with onnxruntime-node. Also a finite-difference gradient check for tests and the benchmark.
 */
import { rng } from '../../numeric/random.ts';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import ort from 'onnxruntime-node';
import { buildVjpModel, type VjpOptions } from './vjp.ts';
import { decodeModel, encodeModel, num, type Proto } from './proto.ts';
import { OnnxGradError } from './errors.ts';

export interface GradientModelOptions extends VjpOptions {
  executionProviders?: string[];
  intraOpNumThreads?: number;
  /** Optional file to cache the built VJP model in (rebuilt when the forward model changes). */
  cachePath?: string;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Build the VJP model, or read it from `cachePath` when it was built from the same forward bytes. */
export function buildVjpModelCached(forwardBytes: Uint8Array, opts: GradientModelOptions = {}): Uint8Array {
  const tag = `onnxgrad-vjp-of:sha256:${sha256(forwardBytes)}:${JSON.stringify({ i: opts.input, o: opts.output, s: opts.inputShape, c: opts.convAdjoint })}`;
  if (opts.cachePath && existsSync(opts.cachePath)) {
    const cached = new Uint8Array(readFileSync(opts.cachePath));
    try { if (decodeModel(cached).docString === tag) return cached; } catch { /* rebuild */ }
  }
  const built = buildVjpModel(forwardBytes, opts);
  if (!opts.cachePath) return built;
  const m: Proto = decodeModel(built);
  m.docString = tag;
  const tagged = encodeModel(m);
  writeFileSync(opts.cachePath, tagged);
  return tagged;
}

export class GradientModel {
  private constructor(
    private readonly fwd: ort.InferenceSession,
    private readonly vjpSession: ort.InferenceSession,
    readonly inputName: string,
    readonly outputName: string,
    readonly inputDims: number[],
    readonly outputDims: number[],
    readonly seedName: string,
    readonly gradName: string,
  ) {}

  static async load(modelPath: string, opts: GradientModelOptions = {}): Promise<GradientModel> {
    return GradientModel.fromBytes(new Uint8Array(readFileSync(modelPath)), opts);
  }

  static async fromBytes(bytes: Uint8Array, opts: GradientModelOptions = {}): Promise<GradientModel> {
    const vjpBytes = buildVjpModelCached(bytes, opts);
    const vm = decodeModel(vjpBytes).graph;
    const dims = (vi: Proto): number[] => vi.type.tensorType.shape.dim.map((d: Proto) => num(d.dimValue));
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: opts.executionProviders ?? ['cpu'],
      ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
    };
    const [fwd, vjp] = await Promise.all([ort.InferenceSession.create(bytes, so), ort.InferenceSession.create(vjpBytes, so)]);
    const seedVi = vm.input[vm.input.length - 1];
    return new GradientModel(fwd, vjp, vm.input[0].name, vm.output[0].name, dims(vm.input[0]), dims(seedVi), seedVi.name, vm.output[1].name);
  }

  private check(input: Float32Array, dims: readonly number[]): void {
    if (input.length !== dims.reduce((a, b) => a * b, 1)) throw new OnnxGradError(`input length ${input.length} does not match dims [${dims}]`);
    if (dims.some((d, i) => d !== this.inputDims[i])) throw new OnnxGradError(`input dims [${dims}] differ from the model's static [${this.inputDims}]`);
  }

  async forward(input: Float32Array, dims: readonly number[] = this.inputDims): Promise<Float32Array> {
    this.check(input, dims);
    const r = await this.fwd.run({ [this.inputName]: new ort.Tensor('float32', input, dims as number[]) }, [this.outputName]);
    return r[this.outputName].data as Float32Array;
  }

  /** Forward output and d<seed, output>/d input. */
  async vjp(input: Float32Array, dims: readonly number[], seed: Float32Array): Promise<{ output: Float32Array; gradInput: Float32Array }> {
    this.check(input, dims);
    if (seed.length !== this.outputDims.reduce((a, b) => a * b, 1)) throw new OnnxGradError(`seed length ${seed.length} does not match output dims [${this.outputDims}]`);
    const r = await this.vjpSession.run({
      [this.inputName]: new ort.Tensor('float32', input, dims as number[]),
      [this.seedName]: new ort.Tensor('float32', seed, this.outputDims),
    });
    return { output: r[this.outputName].data as Float32Array, gradInput: r[this.gradName].data as Float32Array };
  }

  async release(): Promise<void> {
    await Promise.all([this.fwd.release(), this.vjpSession.release()]);
  }
}

export interface GradCheckOptions {
  dims?: number[];
  /** Number of random directions (default 4). */
  directions?: number;
  /** Finite-difference step along each ±1 direction (default max(1e-3, 1e-4·RMS(input)); 0.01 suits 0–255 images in float32). */
  eps?: number;
  /** Extra single-coordinate checks at the largest-|grad| coordinates (default 0). */
  coordinates?: number;
  /** Step for the single-coordinate checks (default 10·eps: one coordinate moves f far less than a full direction). */
  coordEps?: number;
  rngSeed?: number;
}

export interface GradCheckResult {
  relErr: number;
  eps: number;
  checks: { kind: 'direction' | 'coordinate'; fd: number; analytic: number }[];
  vjpMs: number;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * b[i]; return s; };

/**
 * Compare <grad, v> with the central difference (<seed, f(x+εv)> − <seed, f(x−εv)>)/2ε for random
 * ±1 directions v (and optionally a few coordinates). relErr = ‖fd − analytic‖ / ‖fd‖ over all checks.
 */
export async function gradCheck(model: GradientModel, input: Float32Array, seed: Float32Array, opts: GradCheckOptions = {}): Promise<GradCheckResult> {
  const dims = opts.dims ?? model.inputDims;
  const t0 = performance.now();
  const { gradInput } = await model.vjp(input, dims, seed);
  const vjpMs = performance.now() - t0;
  let rms = Math.sqrt(dot(input, input) / input.length);
  if (!(rms > 0)) rms = 1;
  const eps = opts.eps ?? Math.max(1e-3, 1e-4 * rms);
  const rand = rng(opts.rngSeed ?? 1234);
  const dirs: Float32Array[] = [];
  for (let k = 0; k < (opts.directions ?? 4); k++) dirs.push(Float32Array.from(input, () => (rand() < 0.5 ? -1 : 1)));
  const coords = Array.from(gradInput, (g, i) => [Math.abs(g), i]).sort((a, b) => b[0] - a[0]).slice(0, opts.coordinates ?? 0).map(([, i]) => i);
  for (const i of coords) { const v = new Float32Array(input.length); v[i] = 1; dirs.push(v); }
  const checks: GradCheckResult['checks'] = [];
  const coordEps = opts.coordEps ?? 10 * eps;
  const xp = new Float32Array(input.length);
  const xm = new Float32Array(input.length);
  for (let k = 0; k < dirs.length; k++) {
    const v = dirs[k];
    const isCoord = k >= dirs.length - coords.length;
    const h = isCoord ? coordEps : eps;
    for (let i = 0; i < input.length; i++) { xp[i] = input[i] + h * v[i]; xm[i] = input[i] - h * v[i]; }
    // use the actually representable step (float32 rounding of x±εv)
    const fp = await model.forward(xp, dims);
    const fm = await model.forward(xm, dims);
    let num2 = 0;
    for (let i = 0; i < seed.length; i++) num2 += seed[i] * (fp[i] - fm[i]);
    let an = 0;
    for (let i = 0; i < input.length; i++) an += gradInput[i] * (xp[i] - xm[i]);
    // both are for the actual float32 step xp − xm (≈ 2hv); normalise to a unit step along v
    checks.push({ kind: isCoord ? 'coordinate' : 'direction', fd: num2 / (2 * h), analytic: an / (2 * h) });
  }
  let e2 = 0; let f2 = 0;
  for (const c of checks) { e2 += (c.fd - c.analytic) ** 2; f2 += c.fd ** 2; }
  return { relErr: Math.sqrt(e2) / Math.max(Math.sqrt(f2), 1e-30), eps, checks, vjpMs };
}

/** For the benchmark: relative error of the backprop gradient vs finite differences on one frame. */
export async function measureGradError(modelPath: string, input: Float32Array, seed: Float32Array, opts: GradCheckOptions & GradientModelOptions = {}): Promise<number> {
  const model = await GradientModel.load(modelPath, opts);
  try {
    return (await gradCheck(model, input, seed, opts)).relErr;
  } finally {
    await model.release();
  }
}
