/**
 * Runtime wrapper: loads a forward model, builds (or loads a cached) VJP model and runs both
 * with onnxruntime-node. Also a finite-difference gradient check for tests and the benchmark.
 */
import { rng } from '../../numeric/random.ts';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../config/atomic-file.ts';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { buildVjpModel, TRANSFORM_VERSION, type ProxyGraph, type VjpOptions } from './vjp.ts';
import { decodeModel, encodeModel, num, type Proto } from './proto.ts';
import { OnnxGradError } from './errors.ts';

export interface GradientModelOptions extends VjpOptions {
  executionProviders?: string[];
  intraOpNumThreads?: number;
  /** Whether idle intra-op threads spin-wait (onnxruntime's default true); false beside other sessions on the same cores. */
  spinning?: boolean;
  /**
   * Folder to keep built gradient models in, keyed by the forward model's sha256, the transform version
   * and the options (proxy included); a later load with the same key reads the file instead of rebuilding.
   */
  cacheDir?: string;
  /** the built model could not be written to `cacheDir` (full disk…): it is used from memory, this says why */
  onCacheError?: (err: Error) => void;
}

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** The cache key of a built gradient model (also stored as the model's doc_string). */
export function gradientModelKey(forwardBytes: Uint8Array, opts: VjpOptions): string {
  const o = { i: opts.input, o: opts.output, s: opts.inputShape, seed: opts.seedName, grad: opts.gradName, c: opts.convAdjoint, f: opts.fuseSilu, pat: opts.patterns, lay: opts.layoutFriendly, proxy: opts.proxy?.key };
  return `onnxgrad v${TRANSFORM_VERSION} of sha256:${sha256(forwardBytes)} ${JSON.stringify(o)}`;
}

/**
 * Build the gradient model, or read it from `cacheDir` when one with the same key is there. The file is
 * written to a temporary name and renamed, so a crash mid-write never leaves a truncated model under the key.
 */
export function buildVjpModelCached(forwardBytes: Uint8Array, opts: GradientModelOptions = {}): { bytes: Uint8Array; fromCache: boolean; path?: string } {
  const key = gradientModelKey(forwardBytes, opts);
  const file = opts.cacheDir ? join(opts.cacheDir, `onnxgrad-${sha256(key).slice(0, 32)}.onnx`) : undefined;
  if (file && existsSync(file)) {
    const cached = new Uint8Array(readFileSync(file));
    try { if (decodeModel(cached).docString === key) return { bytes: cached, fromCache: true, path: file }; } catch { /* unreadable: rebuild */ }
  }
  const built = buildVjpModel(forwardBytes, opts);
  if (!file) return { bytes: built, fromCache: false };
  const m: Proto = decodeModel(built);
  m.docString = key;
  const tagged = encodeModel(m);
  // the cache is an optimisation: a full disk or read-only folder costs the next start a rebuild, not this one
  try {
    mkdirSync(opts.cacheDir!, { recursive: true });
    writeFileAtomic(file, tagged);
  } catch (e) {
    opts.onCacheError?.(new OnnxGradError(`cannot write the gradient model cache ${file}: ${(e as Error).message}`));
    return { bytes: tagged, fromCache: false };
  }
  return { bytes: tagged, fromCache: false, path: file };
}

const sessionOptions = (opts: GradientModelOptions): ort.InferenceSession.SessionOptions => ({
  executionProviders: opts.executionProviders ?? ['cpu'],
  graphOptimizationLevel: 'all',
  ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
  ...(opts.spinning === false ? { extra: { session: { 'intra_op.allow_spinning': '0' } } } : {}),
});

const dimsOf = (vi: Proto): number[] => vi.type.tensorType.shape.dim.map((d: Proto) => num(d.dimValue));

/**
 * Forward pass, in-graph proxy and its input gradient (backward from seed 1) in ONE onnxruntime session:
 * one run per frame gives the detector's raw output, the proxy value and d proxy / d input.
 */
export class ProxyGradModel {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly inputName: string,
    readonly inputDims: number[],
    readonly outputName: string,
    readonly proxyName: string,
    readonly gradName: string,
    /** true when the graph was read from the cache folder instead of being built */
    readonly fromCache: boolean,
  ) {}

  static async load(modelPath: string, opts: GradientModelOptions & { proxy: ProxyGraph }): Promise<ProxyGradModel> {
    return ProxyGradModel.fromBytes(new Uint8Array(readFileSync(modelPath)), opts);
  }

  static async fromBytes(forwardBytes: Uint8Array, opts: GradientModelOptions & { proxy: ProxyGraph }): Promise<ProxyGradModel> {
    if (!opts.proxy) throw new OnnxGradError('ProxyGradModel needs a proxy graph');
    const { bytes, fromCache } = buildVjpModelCached(forwardBytes, opts);
    const g = decodeModel(bytes).graph;
    const session = await ort.InferenceSession.create(bytes, sessionOptions(opts));
    return new ProxyGradModel(session, g.input[0].name, dimsOf(g.input[0]), g.output[0].name, g.output[1].name, g.output[2].name, fromCache);
  }

  async run(input: Float32Array): Promise<{ output: Float32Array; proxy: number; gradInput: Float32Array }> {
    if (input.length !== this.inputDims.reduce((a, b) => a * b, 1)) throw new OnnxGradError(`input length ${input.length} does not match the model's [${this.inputDims}]`);
    const r = await this.session.run({ [this.inputName]: new ort.Tensor('float32', input, this.inputDims) });
    return { output: r[this.outputName].data as Float32Array, proxy: (r[this.proxyName].data as Float32Array)[0], gradInput: r[this.gradName].data as Float32Array };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
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
    if (opts.proxy) throw new OnnxGradError('GradientModel takes a seed input; use ProxyGradModel for an in-graph proxy');
    const vjpBytes = buildVjpModelCached(bytes, opts).bytes;
    const vm = decodeModel(vjpBytes).graph;
    const so = sessionOptions(opts);
    const [fwd, vjp] = await Promise.all([ort.InferenceSession.create(bytes, so), ort.InferenceSession.create(vjpBytes, so)]);
    const seedVi = vm.input[vm.input.length - 1];
    return new GradientModel(fwd, vjp, vm.input[0].name, vm.output[0].name, dimsOf(vm.input[0]), dimsOf(seedVi), seedVi.name, vm.output[1].name);
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
 * Check an input gradient against central finite differences of a scalar function f: for random ±1
 * directions v (and optionally the largest-|grad| coordinates), compare ⟨grad, v⟩ with
 * (f(x+εv) − f(x−εv)) / 2ε, both taken for the float32-rounded step actually applied.
 * relErr = ‖fd − analytic‖ / ‖fd‖ over all checks. `grad` may be anything: a wrong one must fail.
 */
export async function finiteDifferenceCheck(f: (x: Float32Array) => Promise<number>, input: Float32Array, grad: Float32Array, opts: Omit<GradCheckOptions, 'dims'> = {}): Promise<Omit<GradCheckResult, 'vjpMs'>> {
  if (grad.length !== input.length) throw new OnnxGradError(`gradient length ${grad.length} differs from input length ${input.length}`);
  let rms = Math.sqrt(dot(input, input) / input.length);
  if (!(rms > 0)) rms = 1;
  const eps = opts.eps ?? Math.max(1e-3, 1e-4 * rms);
  const rand = rng(opts.rngSeed ?? 1234);
  const dirs: Float32Array[] = [];
  for (let k = 0; k < (opts.directions ?? 4); k++) dirs.push(Float32Array.from(input, () => (rand() < 0.5 ? -1 : 1)));
  const coords = Array.from(grad, (g, i) => [Math.abs(g), i]).sort((a, b) => b[0] - a[0]).slice(0, opts.coordinates ?? 0).map(([, i]) => i);
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
    const diff = (await f(xp)) - (await f(xm));
    let an = 0;
    for (let i = 0; i < input.length; i++) an += grad[i] * (xp[i] - xm[i]);
    // both are for the actual float32 step xp − xm (≈ 2hv); normalise to a unit step along v
    checks.push({ kind: isCoord ? 'coordinate' : 'direction', fd: diff / (2 * h), analytic: an / (2 * h) });
  }
  let e2 = 0; let f2 = 0;
  for (const c of checks) { e2 += (c.fd - c.analytic) ** 2; f2 += c.fd ** 2; }
  return { relErr: Math.sqrt(e2) / Math.max(Math.sqrt(f2), 1e-30), eps, checks };
}

/** gradCheck for a seeded VJP model: f(x) = ⟨seed, forward(x)⟩ against the model's own VJP. */
export async function gradCheck(model: GradientModel, input: Float32Array, seed: Float32Array, opts: GradCheckOptions = {}): Promise<GradCheckResult> {
  const dims = opts.dims ?? model.inputDims;
  const t0 = performance.now();
  const { gradInput } = await model.vjp(input, dims, seed);
  const vjpMs = performance.now() - t0;
  const f = async (x: Float32Array): Promise<number> => dot(seed, await model.forward(x, dims));
  return { ...(await finiteDifferenceCheck(f, input, gradInput, opts)), vjpMs };
}
