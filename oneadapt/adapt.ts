/**
 * OneAdapt's update (pure). Per segment, for every knob we have two measurements taken on the
 * camera by re-encoding the segment at the knob's current value (HQ) and at its next cheaper
 * value (LQ), all other knobs held:
 *   R = Σ_mb g_mb · e_mb   — AccGrad: DNNGrad g (server) · InputGrad e (|x − x_ref|, camera)
 *   B = bytes on the wire
 * The loss L = w_rec·R/O + λ·B/B_ref (O: the server's accuracy proxy, so R/O is a relative accuracy
 * drop) has, per unit of the knob's state s,
 *   ∂L/∂s = [w_rec·(R_HQ − R_LQ)/O + λ·(B_HQ − B_LQ)/B_ref] / interval width
 * and s takes one Adam step down that gradient (betas 0.5/0.5 as in OneAdapt's code), clipped to
 * (0, 1]. λ follows a bandwidth target (or an F1 target) by a multiplicative dual update.
 */
import { applyState, initialKnob, intervalWidth, knobValue, DEFAULT_KNOBS, type KnobName, type KnobSpec, type KnobState } from './knobs.ts';

export interface KnobProbe {
  knob: KnobName;
  /** saliency-weighted input error at the current (HQ) and next cheaper (LQ) value */
  r: { hq: number; lq: number };
  bytes: { hq: number; lq: number };
  /** how many list intervals separate the two measured values (default 1: adjacent) */
  span?: number;
}

export interface AdaptOptions {
  knobs?: Partial<Record<KnobName, KnobSpec>>;
  enabled?: KnobName[];
  start?: Partial<Record<KnobName, number>>;
  wRec?: number;
  /** bandwidth weight λ (initial value when a target is set) */
  lambda?: number;
  lr?: number;
  betas?: [number, number];
  hysteresis?: number;
  /** bandwidth target: λ adapts so the measured rate approaches it */
  targetKbps?: number;
  /** accuracy target: λ grows while F1 is above it, shrinks below */
  targetF1?: number;
  /** dual step size for λ */
  lambdaLr?: number;
  /** bytes normaliser; defaults to the target's bytes per segment, else the first HQ measurement */
  bytesRef?: number;
}

export interface Observation {
  /** bytes actually sent for the segment and its duration */
  bytes: number;
  durationS: number;
  /** the server's proxy O for normalising R (≥ small epsilon) */
  proxy: number;
  /** F1 reported by the server for this segment, if any */
  f1?: number | null;
}

export interface Decision {
  before: Record<string, number>;
  after: Record<string, number>;
  grads: Record<string, number>;
  lambda: number;
  rateKbps: number;
}

interface Moments {
  m: number;
  v: number;
  t: number;
}

export class OneAdaptController {
  readonly knobs: Map<KnobName, KnobState> = new Map();
  private moments = new Map<KnobName, Moments>();
  lambda: number;
  private bytesRef: number | undefined;
  private readonly o: Required<Pick<AdaptOptions, 'wRec' | 'lr' | 'betas' | 'hysteresis' | 'lambdaLr'>> & AdaptOptions;

  constructor(opts: AdaptOptions = {}) {
    this.o = { wRec: 1, lr: 0.1, betas: [0.5, 0.5], hysteresis: 0.25, lambdaLr: 0.2, ...opts };
    this.lambda = opts.lambda ?? 1;
    const enabled = opts.enabled ?? (['resolution', 'fps', 'qp', 'threshold'] as KnobName[]);
    for (const name of enabled) {
      const spec = opts.knobs?.[name] ?? DEFAULT_KNOBS[name];
      this.knobs.set(name, initialKnob(spec, opts.start?.[name]));
      this.moments.set(name, { m: 0, v: 0, t: 0 });
    }
    this.bytesRef = opts.bytesRef;
  }

  values(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [n, k] of this.knobs) out[n] = knobValue(k);
    return out;
  }

  /** ∂L/∂s for one knob from its probe (positive: making it more expensive costs more than it gains). */
  gradient(p: KnobProbe, proxy: number): number {
    const k = this.knobs.get(p.knob);
    if (!k) throw new Error(`unknown knob ${p.knob}`);
    const bRef = this.bytesRef ?? Math.max(1, p.bytes.hq);
    const acc = (this.o.wRec * (p.r.hq - p.r.lq)) / Math.max(proxy, 1e-6);
    const bw = (this.lambda * (p.bytes.hq - p.bytes.lq)) / bRef;
    return (acc + bw) / (intervalWidth(k.spec) * (p.span ?? 1));
  }

  /**
   * One OneAdapt step. `probes` holds a probe for each knob that has a cheaper value (knobs at
   * the cheap end get none; their gradient is then taken as the pull back towards HQ only if
   * their accuracy term says so, which requires a probe: without one they hold).
   */
  step(probes: KnobProbe[], obs: Observation): Decision {
    const before = this.values();
    const rateKbps = (obs.bytes * 8) / 1000 / Math.max(obs.durationS, 1e-3);
    if (this.bytesRef === undefined) {
      if (this.o.targetKbps) this.bytesRef = (this.o.targetKbps * 1000 * obs.durationS) / 8;
      else if (probes.length) this.bytesRef = Math.max(1, Math.max(...probes.map((p) => p.bytes.hq)));
    }
    // dual update of λ towards the target (multiplicative keeps it positive)
    if (this.o.targetKbps) this.lambda *= Math.exp(this.o.lambdaLr * (rateKbps / this.o.targetKbps - 1));
    else if (this.o.targetF1 !== undefined && obs.f1 != null) this.lambda *= Math.exp(this.o.lambdaLr * (obs.f1 - this.o.targetF1) * 5);
    this.lambda = Math.min(1e3, Math.max(1e-3, this.lambda));

    const grads: Record<string, number> = {};
    const [b1, b2] = this.o.betas;
    const overBudget = this.o.targetKbps !== undefined && rateKbps > this.o.targetKbps;
    const underAccuracy = this.o.targetF1 !== undefined && obs.f1 != null && obs.f1 < this.o.targetF1;
    for (const p of probes) {
      const k = this.knobs.get(p.knob);
      if (!k) continue;
      const g = this.gradient(p, obs.proxy);
      grads[p.knob] = g;
      const mo = this.moments.get(p.knob)!;
      mo.t += 1;
      mo.m = b1 * mo.m + (1 - b1) * g;
      mo.v = b2 * mo.v + (1 - b2) * g * g;
      const mHat = mo.m / (1 - b1 ** mo.t);
      const vHat = mo.v / (1 - b2 ** mo.t);
      let s = k.s - (this.o.lr * mHat) / (Math.sqrt(vHat) + 1e-8);
      // Targets as constraints (our addition to the paper's soft penalty): while over the bandwidth
      // target no knob moves towards expensive, while under the F1 target none moves towards cheap.
      // λ's dual update alone converges, but slowly enough that an operator sees the target ignored.
      if (overBudget && s > k.s) s = k.s;
      if (underAccuracy && s < k.s) s = k.s;
      this.knobs.set(p.knob, applyState(k, s, this.o.hysteresis));
    }
    return { before, after: this.values(), grads, lambda: this.lambda, rateKbps };
  }
}
