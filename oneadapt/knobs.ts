/**
 * OneAdapt knobs (pure). Each knob is an ordered list of values from the most expensive (best
 * accuracy) to the cheapest, driven by a continuous state s ∈ (0, 1]: the list is split into
 * equal intervals and the value used is the expensive end of the interval s falls in (as in
 * OneAdapt's code). Gradient steps move s; the discrete value follows with hysteresis.
 */

export type KnobName = 'resolution' | 'fps' | 'qp' | 'threshold';

export interface KnobSpec {
  name: KnobName;
  /** ordered from most expensive (index 0) to cheapest */
  values: readonly number[];
  /** human description for logs and the status page */
  unit: string;
}

/** Defaults after the paper: QP {20..30 step 2, 34..50 step 4}, resolution down to ⅓, fps 10→1. */
export const DEFAULT_KNOBS: Record<KnobName, KnobSpec> = {
  resolution: { name: 'resolution', values: [1, 0.83, 0.67, 0.5, 0.33], unit: 'scale of source size' },
  fps: { name: 'fps', values: [10, 8, 6, 5, 4, 3, 2, 1], unit: 'frames/s sent' },
  qp: { name: 'qp', values: [20, 22, 24, 26, 28, 30, 34, 38, 42, 46, 50], unit: 'base QP' },
  threshold: { name: 'threshold', values: [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9], unit: 'AccMPEG P(important) threshold' },
};

export const S_MIN = 1e-7;

export interface KnobState {
  spec: KnobSpec;
  /** continuous state in [S_MIN, 1] */
  s: number;
  /** index of the value in use (changes with hysteresis) */
  index: number;
}

export function intervalWidth(spec: KnobSpec): number {
  return 1 / spec.values.length;
}

/** Index of the interval s falls in: s=1 → 0 (most expensive); s→0 → last. */
export function indexForState(spec: KnobSpec, s: number): number {
  const n = spec.values.length;
  return Math.min(n - 1, Math.max(0, Math.floor((1 - s) * n)));
}

/** A state at the centre of the interval for a value index (for starting at a configured value). */
export function stateForIndex(spec: KnobSpec, index: number): number {
  const n = spec.values.length;
  return Math.min(1, Math.max(S_MIN, 1 - (index + 0.5) / n));
}

export function initialKnob(spec: KnobSpec, startValue?: number): KnobState {
  if (startValue === undefined) return { spec, s: 1, index: 0 };
  const index = spec.values.indexOf(startValue);
  if (index < 0) throw new RangeError(`knob ${spec.name}: start value ${startValue} is not one of ${spec.values.join(', ')}`);
  return { spec, s: stateForIndex(spec, index), index };
}

export const knobValue = (k: KnobState): number => k.spec.values[k.index];

/** The value one step cheaper than the current one (or null at the cheap end). */
export function cheaperValue(k: KnobState): number | null {
  return k.index + 1 < k.spec.values.length ? k.spec.values[k.index + 1] : null;
}

/**
 * Move to the value for a new state, with hysteresis: the index changes only when s is past the
 * interval boundary by more than `hysteresis` × interval width, so noise around a boundary does
 * not make the knob oscillate.
 */
export function applyState(k: KnobState, s: number, hysteresis = 0.25): KnobState {
  const clipped = Math.min(1, Math.max(S_MIN, s));
  const target = indexForState(k.spec, clipped);
  if (target === k.index) return { ...k, s: clipped };
  const n = k.spec.values.length;
  const w = 1 / n;
  // boundary between current interval and the neighbour towards target
  const boundary = target > k.index ? 1 - (k.index + 1) * w : 1 - k.index * w;
  const past = target > k.index ? boundary - clipped : clipped - boundary;
  if (Math.abs(target - k.index) > 1 || past > hysteresis * w) return { ...k, s: clipped, index: target };
  return { ...k, s: clipped };
}
