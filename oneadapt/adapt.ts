/**
 * OneAdapt's controller (pure). Once per segment, for every knob, the camera has measured the segment at the
 * knob's current value and at both neighbours (the next dearer and the next cheaper value, all other knobs
 * held; probe.ts):
 *   R = Σ_mb g_mb · e_mb   — AccGrad: DNNGrad g (server) · InputGrad e (|x − x_orig|, camera)
 *   B = bytes on the wire  — the video plus everything else the camera uploads (headers, sampled reference)
 * Each measured value v gets a loss
 *   L(v) = w_rec · R(v) / max(O, 1) + λ · ln B(v)
 * (O: the server's proxy, so R/O is a relative accuracy drop; ln B makes λ a price per relative byte change,
 * the same on a 20 kB and a 200 kB scene). Per knob, the loss change per list interval towards each neighbour
 * decides: if neither neighbour is better by more than the deadband the knob holds (at a minimum: no cycling
 * between the best value and its dearer neighbour); else it moves towards the better one by
 * lr × (loss gain per interval) intervals, at most `maxStep` (more for a few segments after a scene change).
 * Steps are in units of the knob's own interval width, so a 5-value resolution list moves as readily as an
 * 11-value QP list. The continuous state s accumulates fractional steps; the value follows with hysteresis.
 *
 * Targets are constraints: over `targetKbps` no knob moves towards expensive (λ also follows a dual update);
 * under `targetF1` (measured by the sampled accuracy monitor) no knob moves towards cheap, and the knob with the
 * best accuracy gain per byte moves one value dearer. A scene change (scene.ts) forgets the measured F1 and
 * either allows multi-interval moves for a few segments ('burst') or restarts from the start values ('restart').
 * `reconfigure` changes settings without losing knob positions.
 */
import { applyState, initialKnob, intervalWidth, knobValue, stateForIndex, DEFAULT_KNOBS, S_MIN, type KnobName, type KnobSpec, type KnobState } from './knobs.ts';
import { SceneDetector, type SceneOptions, type SceneSignal } from './scene.ts';

export interface ProbePoint {
  /** AccGrad R of the rendering */
  r: number;
  /** video bytes of the rendering */
  bytes: number;
}

export interface KnobProbe {
  knob: KnobName;
  current: ProbePoint;
  /** the nearest dearer value that renders differently, `span` list intervals away (absent at the dear end) */
  dearer?: ProbePoint & { span: number };
  /** the nearest cheaper value that renders differently (absent at the cheap end) */
  cheaper?: ProbePoint & { span: number };
}

export interface AdaptOptions {
  knobs?: Partial<Record<KnobName, KnobSpec>>;
  enabled?: KnobName[];
  start?: Partial<Record<KnobName, number>>;
  wRec?: number;
  /** price λ of a relative byte change (ln B) against the relative accuracy drop R/O; initial value with a target */
  lambda?: number;
  /** intervals moved per unit of loss gain per interval */
  lr?: number;
  /** a neighbour must lower the loss by more than this per interval for the knob to move */
  deadband?: number;
  /** most intervals one step may move (normal operation) */
  maxStep?: number;
  /** most intervals per step during the first `sceneSteps` steps after a scene change */
  sceneMaxStep?: number;
  sceneSteps?: number;
  /** 'burst': keep the knobs, allow sceneMaxStep; 'restart': also go back to the start values */
  onSceneChange?: 'burst' | 'restart';
  scene?: SceneOptions;
  hysteresis?: number;
  /** bandwidth target (kbps of every uploaded byte): λ follows it, and over it no knob moves dearer */
  targetKbps?: number;
  /** accuracy target on the monitor's measured F1: λ follows it, and under it no knob moves cheaper */
  targetF1?: number;
  /** dual step size for λ */
  lambdaLr?: number;
  /** weight of a new F1 measurement in the running estimate (per scene) */
  f1Smoothing?: number;
  /**
   * With `targetF1` and a measured F1: 'walk' lets the measurement decide WHEN to move and AccGrad WHICH knob —
   * under the target one value dearer on the knob whose dearer neighbour lowers R most per relative byte, above
   * target + f1Margin one value cheaper on the knob whose cheaper neighbour raises R least per relative byte saved,
   * in between hold; without a new measurement (between samples, after a scene change) hold. 'loss' (default): the λ loss with
   * the target as a constraint and λ's dual update.
   */
  f1Mode?: 'loss' | 'walk';
  /** the band above targetF1 in which 'walk' holds */
  f1Margin?: number;
}

export interface Observation {
  /** every byte uploaded for the segment just sent (video, headers, reference frame) and its duration */
  bytes: number;
  durationS: number;
  /** the server's proxy O of the latest DNNGrad */
  proxy: number;
  /** F1 newly measured by the accuracy monitor since the last step, if any */
  f1?: number | null;
  /** bytes added to every probe's video bytes in the resource term (headers, the amortised reference frame) */
  overheadBytes?: number;
  /** content signature of the segment being probed (scene.ts), for scene-change detection */
  signature?: Float32Array;
}

export interface Decision {
  before: Record<string, number>;
  after: Record<string, number>;
  /** per knob: loss gain per interval of the chosen direction, + towards cheap, − towards dear, 0 hold */
  grads: Record<string, number>;
  lambda: number;
  rateKbps: number;
  /** signals that flagged a scene change at this step (empty: none) */
  sceneChange: SceneSignal[];
  /** running F1 estimate from the monitor in this scene (null: none yet) */
  f1Estimate: number | null;
}

const PROXY_FLOOR = 1;

type Opts = Required<Omit<AdaptOptions, 'knobs' | 'enabled' | 'start' | 'scene' | 'targetKbps' | 'targetF1'>> & AdaptOptions;

export const ADAPT_DEFAULTS = {
  wRec: 1,
  lambda: 1,
  lr: 2,
  deadband: 0.01,
  maxStep: 1,
  sceneMaxStep: 3,
  sceneSteps: 3,
  onSceneChange: 'burst',
  hysteresis: 0.25,
  lambdaLr: 0.2,
  f1Smoothing: 0.5,
  f1Mode: 'loss',
  f1Margin: 0.01,
} as const satisfies AdaptOptions;

export class OneAdaptController {
  readonly knobs: Map<KnobName, KnobState> = new Map();
  lambda: number;
  private o: Opts;
  private scene: SceneDetector;
  private burst = 0;
  private f1Est: number | null = null;

  constructor(opts: AdaptOptions = {}) {
    this.o = { ...ADAPT_DEFAULTS, ...opts };
    this.lambda = this.o.lambda;
    this.scene = new SceneDetector(opts.scene);
    this.setKnobs(opts);
  }

  private setKnobs(opts: AdaptOptions): void {
    const enabled = opts.enabled ?? (['resolution', 'fps', 'qp', 'threshold'] as KnobName[]);
    for (const name of [...this.knobs.keys()]) if (!enabled.includes(name)) this.knobs.delete(name);
    for (const name of enabled) {
      const spec = opts.knobs?.[name] ?? DEFAULT_KNOBS[name];
      const had = this.knobs.get(name);
      // keep a knob's position across reconfiguration when its value list is unchanged
      if (had && had.spec.values.join() === spec.values.join()) continue;
      this.knobs.set(name, initialKnob(spec, opts.start?.[name]));
    }
  }

  /** New settings (a config reload): knob positions, scene state and the F1 estimate are kept. */
  reconfigure(opts: AdaptOptions): void {
    const prev = this.o;
    this.o = { ...ADAPT_DEFAULTS, ...opts };
    // λ restarts from its setting when it or the target that drives its dual update changes (a removed target
    // would otherwise leave λ at its extreme for good, pinning every knob at its cheapest)
    if (this.o.lambda !== prev.lambda || this.o.targetKbps !== prev.targetKbps || this.o.targetF1 !== prev.targetF1) this.lambda = this.o.lambda;
    if (opts.scene) this.scene = new SceneDetector(opts.scene);
    this.setKnobs(opts);
  }

  values(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [n, k] of this.knobs) out[n] = knobValue(k);
    return out;
  }

  /** The loss of one measured value. */
  loss(p: ProbePoint, proxy: number, overheadBytes = 0): number {
    return (this.o.wRec * p.r) / Math.max(proxy, PROXY_FLOOR) + this.lambda * Math.log(Math.max(1, p.bytes + overheadBytes));
  }

  /**
   * Loss gain per interval of the better direction: > 0 towards cheap, < 0 towards dear, 0 when neither
   * neighbour improves on the current value by more than the deadband.
   */
  gradient(p: KnobProbe, proxy: number, overheadBytes = 0): number {
    const l0 = this.loss(p.current, proxy, overheadBytes);
    const towardsDear = p.dearer ? (l0 - this.loss(p.dearer, proxy, overheadBytes)) / p.dearer.span : -Infinity;
    const towardsCheap = p.cheaper ? (l0 - this.loss(p.cheaper, proxy, overheadBytes)) / p.cheaper.span : -Infinity;
    const best = Math.max(towardsDear, towardsCheap);
    if (!(best > this.o.deadband)) return 0;
    return towardsCheap >= towardsDear ? towardsCheap : -towardsDear;
  }

  private knobsKey(): string {
    return JSON.stringify(this.values());
  }

  /** One OneAdapt step on the probes of the current segment. */
  step(probes: KnobProbe[], obs: Observation): Decision {
    const before = this.values();
    const rateKbps = (obs.bytes * 8) / 1000 / Math.max(obs.durationS, 1e-3);
    const overhead = obs.overheadBytes ?? 0;

    // scene change: the bytes signal compares the current rendering at unchanged knobs
    const cur = probes[0]?.current;
    const key = this.knobsKey();
    const sceneChange = this.scene.update({ signature: obs.signature, proxy: obs.proxy, bytes: cur ? cur.bytes : 0, knobsKey: key });
    if (sceneChange.length) {
      this.f1Est = null;
      this.burst = this.o.sceneSteps;
      if (this.o.onSceneChange === 'restart') {
        for (const [n, k] of this.knobs) this.knobs.set(n, initialKnob(k.spec, this.o.start?.[n]));
      }
    }
    // an F1 handed in at a scene change was measured on a segment before it: it says nothing about the new scene
    const f1Now = sceneChange.length ? null : (obs.f1 ?? null);
    if (f1Now != null) this.f1Est = this.f1Est === null ? f1Now : (1 - this.o.f1Smoothing) * this.f1Est + this.o.f1Smoothing * f1Now;

    // dual update of λ towards the target (multiplicative keeps it positive)
    if (this.o.targetKbps) this.lambda *= Math.exp(this.o.lambdaLr * (rateKbps / this.o.targetKbps - 1));
    else if (this.o.targetF1 !== undefined && f1Now != null) this.lambda *= Math.exp(this.o.lambdaLr * (f1Now - this.o.targetF1) * 5);
    this.lambda = Math.min(1e3, Math.max(1e-3, this.lambda));

    const overBudget = this.o.targetKbps !== undefined && rateKbps > this.o.targetKbps;
    const underAccuracy = this.o.targetF1 !== undefined && this.f1Est !== null && this.f1Est < this.o.targetF1;
    const maxStep = this.burst > 0 ? this.o.sceneMaxStep : this.o.maxStep;
    if (this.burst > 0) this.burst--;

    const grads: Record<string, number> = {};
    const restarted = sceneChange.length > 0 && this.o.onSceneChange === 'restart';
    if (this.o.f1Mode === 'walk' && this.o.targetF1 !== undefined && !restarted) {
      // one move per measurement: between sampled measurements (referenceEvery > 1), and after a scene change
      // until the new scene's first one, the knobs hold
      // over a bandwidth target it steps cheaper even without a reading
      if ((f1Now != null && this.f1Est !== null) || overBudget) this.walk(probes, overhead, grads, overBudget);
      return { before, after: this.values(), grads, lambda: this.lambda, rateKbps, sceneChange, f1Estimate: this.f1Est };
    }
    for (const p of probes) {
      const k = this.knobs.get(p.knob);
      if (!k) continue;
      let g = this.gradient(p, obs.proxy, overhead);
      // constraints: never towards cheap under the F1 target, never towards dear over the bandwidth target
      if (underAccuracy && g > 0) g = 0;
      if (overBudget && g < 0) g = 0;
      grads[p.knob] = g;
      if (restarted || g === 0) continue;
      const intervals = Math.sign(g) * Math.min(maxStep, this.o.lr * Math.abs(g));
      this.moveBy(p.knob, -intervals); // cheaper = lower s
    }
    // under the F1 target: one value dearer on the knob with the best accuracy gain per relative byte
    if (underAccuracy && !restarted && !overBudget) {
      const pick = this.bestNeighbour(probes, overhead, 'dearer');
      if (pick && !(grads[pick.knob] < 0)) {
        this.setIndex(pick.knob, Math.max(0, this.knobs.get(pick.knob)!.index - 1));
        grads[pick.knob] = grads[pick.knob] || -Number.EPSILON;
      }
    }
    return { before, after: this.values(), grads, lambda: this.lambda, rateKbps, sceneChange, f1Estimate: this.f1Est };
  }

  /** 'walk': one value dearer under the F1 target, one cheaper above target + margin, the knob chosen by AccGrad per byte. */
  private walk(probes: KnobProbe[], overhead: number, grads: Record<string, number>, overBudget: boolean): void {
    const f1 = this.f1Est, target = this.o.targetF1!;
    // over the bandwidth target nothing moves dearer (as in the loss mode); it goes cheaper instead
    const dir = overBudget ? 'cheaper' : f1 === null ? null : f1 < target ? 'dearer' : f1 > target + this.o.f1Margin ? 'cheaper' : null;
    if (!dir) return;
    const pick = this.bestNeighbour(probes, overhead, dir, true);
    if (!pick) return;
    const k = this.knobs.get(pick.knob)!;
    this.setIndex(pick.knob, dir === 'dearer' ? Math.max(0, k.index - pick.span) : Math.min(k.spec.values.length - 1, k.index + pick.span));
    grads[pick.knob] = dir === 'dearer' ? -1 : 1;
  }

  /**
   * The knob whose `dir` neighbour trades accuracy for bytes best: dearer, the most R recovered per relative byte
   * spent; cheaper, the least R lost per relative byte saved (a value that saves nothing is no move). Ties: the
   * first knob, or with `tieByBytes` the bigger byte change.
   */
  private bestNeighbour(probes: KnobProbe[], overhead: number, dir: 'dearer' | 'cheaper', tieByBytes = false): { knob: KnobName; span: number } | null {
    let pick: { knob: KnobName; span: number; score: number; db: number } | null = null;
    for (const p of probes) {
      const n = p[dir];
      if (!n || !this.knobs.has(p.knob)) continue;
      // relative byte change of the move (> 0 when it goes the intended way) and R change (dearer: R drop; cheaper: R rise)
      const ratio = Math.log((n.bytes + overhead) / Math.max(1, p.current.bytes + overhead));
      const db = dir === 'dearer' ? ratio : -ratio;
      if (dir === 'cheaper' && !(db > 0)) continue;
      const dr = dir === 'dearer' ? p.current.r - n.r : n.r - p.current.r;
      const score = dir === 'dearer' ? dr / Math.max(db, 1e-3) : -Math.max(dr, 0) / db;
      if (!pick || score > pick.score || (tieByBytes && score === pick.score && db > pick.db)) pick = { knob: p.knob, span: n.span, score, db };
    }
    return pick;
  }

  /** Put a knob on a value of its list (a whole-value decision: the state at that value's centre). */
  private setIndex(name: KnobName, index: number): void {
    const k = this.knobs.get(name)!;
    this.knobs.set(name, { ...k, s: stateForIndex(k.spec, index), index });
  }

  /** Move a knob's state by `intervals` list intervals (+ dearer, − cheaper). */
  private moveBy(name: KnobName, intervals: number): void {
    const k = this.knobs.get(name)!;
    const s = Math.min(1, Math.max(S_MIN, k.s + intervals * intervalWidth(k.spec)));
    // a move of a whole interval or more is a decision, not noise: no hysteresis then
    this.knobs.set(name, applyState(k, s, Math.abs(intervals) >= 1 ? 0 : this.o.hysteresis));
  }
}
