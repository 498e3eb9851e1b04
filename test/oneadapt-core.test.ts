import { applyState, DEFAULT_KNOBS, indexForState, initialKnob, knobValue, stateForIndex } from '../oneadapt/knobs.ts';
import { OneAdaptController, type KnobProbe } from '../oneadapt/adapt.ts';
import { contentSignature, SceneDetector, signatureDistance } from '../oneadapt/scene.ts';
import { accGrad, keptFrames, rgbErrorPerMb, sampledIndices } from '../oneadapt/inputgrad.ts';
import type { YuvFrame } from '../encoder/frame.ts';

function flat(w: number, h: number, y: number, u = 128, v = 128): YuvFrame {
  const data = new Uint8Array(w * h * 1.5);
  data.fill(y, 0, w * h);
  data.fill(u, w * h, w * h * 1.25);
  data.fill(v, w * h * 1.25);
  return { width: w, height: h, ptsMs: 0, data };
}

describe('knobs', () => {
  const qp = DEFAULT_KNOBS.qp;
  test('state ↔ index mapping: s=1 is the most expensive value, s→0 the cheapest', () => {
    expect(indexForState(qp, 1)).toBe(0);
    expect(indexForState(qp, 1e-7)).toBe(qp.values.length - 1);
    for (let i = 0; i < qp.values.length; i++) expect(indexForState(qp, stateForIndex(qp, i))).toBe(i);
    expect(knobValue(initialKnob(qp, 30))).toBe(30);
    expect(() => initialKnob(qp, 31)).toThrow(/not one of/);
  });
  test('hysteresis: small excursions past a boundary keep the value, large ones change it', () => {
    const k = initialKnob(qp, 30); // index 5 of 11, interval [1-6/11, 1-5/11)
    const w = 1 / 11;
    const lowerBoundary = 1 - 6 / 11;
    expect(applyState(k, lowerBoundary - 0.1 * w).index).toBe(5);
    expect(applyState(k, lowerBoundary - 0.3 * w).index).toBe(6);
    expect(applyState(k, 5).s).toBe(1); // projected to range
    expect(applyState(k, -3).s).toBeGreaterThan(0);
  });
});

describe('InputGrad / AccGrad', () => {
  test('RGB error of a uniform luma shift is 3·(255/219)·Δ in every macroblock (BT.601 limited range)', () => {
    const e = rgbErrorPerMb(flat(64, 32, 110), flat(64, 32, 100));
    expect([e.rows, e.cols]).toEqual([2, 4]);
    for (const v of e.data) expect(v).toBeCloseTo(3 * (255 / 219) * 10, 3);
  });
  test('AccGrad is the inner product of the maps (×256 px per MB)', () => {
    const g = { rows: 1, cols: 3, data: new Float32Array([1, 0, 2]) };
    const e = { rows: 1, cols: 3, data: new Float32Array([5, 100, 1]) };
    expect(accGrad(g, e)).toBe((5 + 2) * 256);
  });
  test('frame sampling repeats the last sent frame', () => {
    expect(sampledIndices(10, 10, 5)).toEqual([0, 0, 2, 2, 4, 4, 6, 6, 8, 8]);
    expect(keptFrames(10, 10, 2)).toEqual([0, 5]);
    expect(sampledIndices(4, 10, 10)).toEqual([0, 1, 2, 3]);
  });
});

/** synthetic world: QP q costs bytes(q), accuracy error R(q); probes of both neighbours, as probe.ts measures them */
const qpSpec = DEFAULT_KNOBS.qp;
const worldBytes = (q: number): number => 1e5 * 2 ** (-q / 6);
const worldR = (q: number): number => (q / 10) ** 4;
function qpProbe(c: OneAdaptController, R = worldR, bytes = worldBytes): KnobProbe {
  const i = c.knobs.get('qp')!.index;
  const at = (j: number) => ({ r: R(qpSpec.values[j]), bytes: bytes(qpSpec.values[j]), span: 1 });
  return { knob: 'qp', current: at(i), ...(i > 0 ? { dearer: at(i - 1) } : {}), ...(i + 1 < qpSpec.values.length ? { cheaper: at(i + 1) } : {}) };
}
/** the value minimising L = R/O + λ·ln B over the QP list (what the controller should settle on) */
function argminQp(lambda: number, proxy: number): number {
  let best = qpSpec.values[0];
  for (const q of qpSpec.values) if (worldR(q) / proxy + lambda * Math.log(worldBytes(q)) < worldR(best) / proxy + lambda * Math.log(worldBytes(best))) best = q;
  return best;
}

describe('OneAdaptController', () => {
  test('gradient: loss gain per interval towards the better neighbour; 0 at a minimum (both neighbours worse)', () => {
    const c = new OneAdaptController({ enabled: ['qp'], start: { qp: 30 }, lambda: 1, deadband: 0 });
    const cur = { r: 10, bytes: 1000 };
    // cheaper neighbour: R +1 (/O=10 → +0.1), ln B −ln 2 (−0.693): gain 0.593 towards cheap
    expect(c.gradient({ knob: 'qp', current: cur, cheaper: { r: 11, bytes: 500, span: 1 }, dearer: { r: 9.9, bytes: 2000, span: 1 } }, 10)).toBeCloseTo(Math.log(2) - 0.1, 6);
    // accuracy dominates: the dearer value lowers R a lot → negative (towards dear)
    expect(c.gradient({ knob: 'qp', current: cur, cheaper: { r: 40, bytes: 900, span: 1 }, dearer: { r: 1, bytes: 1100, span: 1 } }, 10)).toBeCloseTo(-(0.9 - Math.log(1.1)), 6);
    // both neighbours worse: hold
    expect(c.gradient({ knob: 'qp', current: cur, cheaper: { r: 30, bytes: 900, span: 1 }, dearer: { r: 9.9, bytes: 1500, span: 1 } }, 10)).toBe(0);
    // a two-interval probe (flat stretch) halves the per-interval gain
    expect(c.gradient({ knob: 'qp', current: cur, cheaper: { r: 10, bytes: 250, span: 2 } }, 10)).toBeCloseTo(Math.log(4) / 2, 6);
    // deadband: a gain below it is no gain
    const d = new OneAdaptController({ enabled: ['qp'], start: { qp: 30 }, lambda: 1, deadband: 0.05 });
    expect(d.gradient({ knob: 'qp', current: cur, cheaper: { r: 10, bytes: 970, span: 1 } }, 10)).toBe(0);
  });

  test('converges to the loss minimum from either end and then holds (no cycling)', () => {
    for (const [lambda, startQp] of [[3, 20], [3, 50], [0.3, 20], [0.3, 50], [30, 20]] as const) {
      const c = new OneAdaptController({ enabled: ['qp'], start: { qp: startQp }, lambda });
      const seen: number[] = [];
      for (let t = 0; t < 60; t++) {
        c.step([qpProbe(c)], { bytes: worldBytes(c.values().qp), durationS: 1, proxy: 10 });
        seen.push(c.values().qp);
      }
      expect(c.values().qp).toBe(argminQp(lambda, 10));
      expect(new Set(seen.slice(-30)).size).toBe(1); // settled: one value over the last 30 steps
    }
    // the minima differ: the price of bytes matters
    expect(argminQp(30, 10)).toBeGreaterThan(argminQp(0.3, 10));
  });

  test('step size follows the gain, in units of each knob\'s own interval width', () => {
    // equal gain per interval on a 5-value and an 11-value list: both move the same number of values
    const c = new OneAdaptController({ enabled: ['resolution', 'qp'], start: { resolution: 1, qp: 20 }, lambda: 1, lr: 2, maxStep: 1 });
    const big = (knob: 'resolution' | 'qp') => ({ knob, current: { r: 0, bytes: 1000 }, cheaper: { r: 0, bytes: 500, span: 1 } }); // gain ln 2 → 1.39 intervals, capped at 1
    let d = c.step([big('resolution'), big('qp')], { bytes: 1000, durationS: 1, proxy: 1 });
    expect(d.after).toEqual({ resolution: 0.83, qp: 22 });
    // a small gain moves s by a fraction of an interval: no value change on this step, but it accumulates
    const small = (knob: 'resolution' | 'qp') => ({ knob, current: { r: 0, bytes: 1000 }, cheaper: { r: 0, bytes: 900, span: 1 } }); // ln(1000/900)·2 ≈ 0.21 interval
    const s0 = c.knobs.get('qp')!.s;
    d = c.step([small('resolution'), small('qp')], { bytes: 1000, durationS: 1, proxy: 1 });
    expect(d.after).toEqual({ resolution: 0.83, qp: 22 });
    expect(s0 - c.knobs.get('qp')!.s).toBeCloseTo(2 * Math.log(1000 / 900) / qpSpec.values.length, 9);
    for (let t = 0; t < 4; t++) d = c.step([small('resolution'), small('qp')], { bytes: 1000, durationS: 1, proxy: 1 });
    expect(d.after).toEqual({ resolution: 0.67, qp: 24 });
  });

  test('a scene change (content jump) allows multi-interval moves for a few steps; "restart" goes back to the start values', () => {
    const sigA = new Float32Array(64).fill(0.2);
    const sigB = new Float32Array(64).fill(0.6);
    const huge = { knob: 'qp' as const, current: { r: 0, bytes: 1e5 }, cheaper: { r: 0, bytes: 1e3, span: 1 } }; // gain ln 100
    const c = new OneAdaptController({ enabled: ['qp'], start: { qp: 20 }, lambda: 1, lr: 2, sceneMaxStep: 3, sceneSteps: 2 });
    let d = c.step([huge], { bytes: 1e5, durationS: 1, proxy: 1, signature: sigA });
    expect(d.sceneChange).toEqual([]);
    expect(d.after.qp).toBe(22); // one interval in normal operation
    d = c.step([huge], { bytes: 1e5, durationS: 1, proxy: 1, signature: sigB });
    expect(d.sceneChange).toContain('content');
    expect(d.after.qp).toBe(28); // three intervals right after the change
    d = c.step([huge], { bytes: 1e5, durationS: 1, proxy: 1, signature: sigB });
    expect(d.after.qp).toBe(38);
    d = c.step([huge], { bytes: 1e5, durationS: 1, proxy: 1, signature: sigB });
    expect(d.after.qp).toBe(42); // burst over: one interval again
    // proxy jump flags a change too; 'restart' returns to the configured start
    const r = new OneAdaptController({ enabled: ['qp'], start: { qp: 30 }, lambda: 1, onSceneChange: 'restart' });
    r.step([huge], { bytes: 1e5, durationS: 1, proxy: 1 });
    expect(r.values().qp).toBe(34);
    d = r.step([huge], { bytes: 1e5, durationS: 1, proxy: 20 });
    expect(d.sceneChange).toEqual(['proxy']);
    expect(d.after.qp).toBe(30);
  });

  test('F1 target: under it no knob moves cheaper and the best accuracy-per-byte knob steps dearer; above it they may', () => {
    const c = new OneAdaptController({ enabled: ['resolution', 'qp'], start: { resolution: 0.67, qp: 34 }, lambda: 10, targetF1: 0.9 });
    // both want to go cheaper (bytes are expensive); QP's dearer value buys far more R per byte
    const probes: KnobProbe[] = [
      { knob: 'resolution', current: { r: 10, bytes: 1000 }, dearer: { r: 9, bytes: 2000, span: 1 }, cheaper: { r: 11, bytes: 500, span: 1 } },
      { knob: 'qp', current: { r: 10, bytes: 1000 }, dearer: { r: 2, bytes: 1300, span: 1 }, cheaper: { r: 11, bytes: 700, span: 1 } },
    ];
    let d = c.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 0.7 });
    expect(d.after).toEqual({ resolution: 0.67, qp: 30 });
    expect(d.f1Estimate).toBeCloseTo(0.7, 9);
    // no new measurement: the estimate holds (still under), so still no cheaper move
    d = c.step(probes, { bytes: 1000, durationS: 1, proxy: 10 });
    expect(d.after.resolution).toBe(0.67);
    // measurements above the target lift the estimate (0.7 → 0.85 → 0.925): cheaper moves resume
    c.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 1 });
    d = c.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 1 });
    expect(d.f1Estimate).toBeGreaterThan(0.9);
    expect(d.after.resolution).toBe(0.5);
  });

  test("F1 walk: the measured F1 decides when (dearer under the target, cheaper above target + margin, hold in the band), AccGrad per byte decides which knob", () => {
    const c = new OneAdaptController({ enabled: ['resolution', 'qp'], start: { resolution: 0.67, qp: 34 }, lambda: 1, targetF1: 0.9, f1Mode: 'walk', f1Margin: 0.02, f1Smoothing: 1 });
    // resolution: going dearer recovers a little R for many bytes, going cheaper loses little R for many bytes saved;
    // QP: dearer recovers much R for few bytes, cheaper loses much R for few bytes saved
    const probes: KnobProbe[] = [
      { knob: 'resolution', current: { r: 10, bytes: 1000 }, dearer: { r: 9, bytes: 2000, span: 1 }, cheaper: { r: 11, bytes: 500, span: 1 } },
      { knob: 'qp', current: { r: 10, bytes: 1000 }, dearer: { r: 2, bytes: 1300, span: 1 }, cheaper: { r: 30, bytes: 800, span: 1 } },
    ];
    // no F1 measured yet: the walk holds, where the λ loss would move
    const opts = { enabled: ['resolution', 'qp'] as ('resolution' | 'qp')[], start: { resolution: 0.67, qp: 34 }, lambda: 1, targetF1: 0.9 };
    const walkNoF1 = new OneAdaptController({ ...opts, f1Mode: 'walk' }).step(probes, { bytes: 1000, durationS: 1, proxy: 10 });
    const lossNoF1 = new OneAdaptController({ ...opts, f1Mode: 'loss' }).step(probes, { bytes: 1000, durationS: 1, proxy: 10 });
    expect(walkNoF1.after).toEqual(walkNoF1.before);
    expect(lossNoF1.after).not.toEqual(lossNoF1.before);
    // under the target: one value dearer, on QP (most R recovered per relative byte)
    let d = c.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 0.8 });
    expect(d.after).toEqual({ resolution: 0.67, qp: 30 });
    // in the band [0.9, 0.92]: hold
    d = c.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 0.91 });
    expect(d.after).toEqual(d.before);
    // above the band: one value cheaper, on resolution (least R lost per relative byte saved)
    d = c.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 0.99 });
    expect(d.after).toEqual({ resolution: 0.5, qp: 30 });
    // one move per measurement: steps without a new F1 hold (a monitor every N-th segment moves the knobs once per N)
    d = c.step(probes, { bytes: 1000, durationS: 1, proxy: 10 });
    expect(d.after).toEqual(d.before);
    // over a bandwidth target with no reading yet (start, after a scene change, monitor off): one value cheaper
    const noReading = new OneAdaptController({ enabled: ['resolution', 'qp'], start: { resolution: 0.67, qp: 34 }, targetF1: 0.9, targetKbps: 100, f1Mode: 'walk' });
    d = noReading.step(probes, { bytes: 100_000, durationS: 1, proxy: 10 });
    expect(d.after).toEqual({ resolution: 0.5, qp: 34 });
    // over a bandwidth target nothing goes dearer, even under the F1 target
    const capped = new OneAdaptController({ enabled: ['resolution', 'qp'], start: { resolution: 0.67, qp: 34 }, targetF1: 0.9, targetKbps: 100, f1Mode: 'walk', f1Smoothing: 1 });
    d = capped.step(probes, { bytes: 100_000, durationS: 1, proxy: 10, f1: 0.5 });
    expect(d.after.qp).toBeGreaterThanOrEqual(34);
    // an F1 handed in at a scene change was measured before it: no walk on it
    const sc = new OneAdaptController({ ...opts, f1Mode: 'walk', f1Smoothing: 1 });
    const flatSig = new Float32Array(64).fill(0.2), other = new Float32Array(64).fill(0.8);
    sc.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 0.95, signature: flatSig });
    d = sc.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 0.5, signature: other });
    expect(d.sceneChange).toContain('content');
    expect(d.f1Estimate).toBeNull();
    // λ's loss does not move anything while F1 is measured: a huge λ changes nothing in the band
    c.reconfigure({ enabled: ['resolution', 'qp'], lambda: 1000, targetF1: 0.9, f1Mode: 'walk', f1Margin: 0.02, f1Smoothing: 1 });
    d = c.step(probes, { bytes: 1000, durationS: 1, proxy: 10, f1: 0.91 });
    expect(d.after).toEqual(d.before);
  });

  test('bandwidth target: λ rises while over target and falls while under', () => {
    const c = new OneAdaptController({ enabled: ['qp'], targetKbps: 100, lambda: 1 });
    const l0 = c.lambda;
    c.step([], { bytes: 50_000, durationS: 1, proxy: 1 }); // 400 kbps > 100
    expect(c.lambda).toBeGreaterThan(l0);
    const l1 = c.lambda;
    c.step([], { bytes: 2_000, durationS: 1, proxy: 1 }); // 16 kbps < 100
    expect(c.lambda).toBeLessThan(l1);
  });

  test('over the bandwidth target no knob moves towards expensive, whatever the accuracy gradient says', () => {
    const c = new OneAdaptController({ start: { qp: 34, fps: 5, resolution: 0.67 }, targetKbps: 100, lambda: 0.001 });
    const before = c.values();
    // huge accuracy gap: unconstrained, every knob would climb to its expensive end
    const probes = (['resolution', 'fps', 'qp'] as const).map((knob) => ({ knob, current: { r: 1e6, bytes: 1000 }, dearer: { r: 0, bytes: 1001, span: 1 } }));
    for (let t = 0; t < 10; t++) c.step(probes, { bytes: 50_000, durationS: 1, proxy: 1 }); // 400 kbps > 100
    expect(c.values()).toEqual(before);
    for (let t = 0; t < 10; t++) c.step(probes, { bytes: 1_000, durationS: 1, proxy: 1 }); // under the target they move
    expect(c.values().qp).toBeLessThan(34);
  });

  test('reconfigure keeps the knob positions (a config reload does not forget the state); new λ applies', () => {
    const c = new OneAdaptController({ enabled: ['qp', 'fps'], start: { qp: 20 }, lambda: 30 });
    for (let t = 0; t < 8; t++) c.step([qpProbe(c)], { bytes: 1, durationS: 1, proxy: 10 });
    const here = c.values();
    expect(here.qp).not.toBe(20);
    c.reconfigure({ enabled: ['qp', 'fps', 'resolution'], start: { qp: 20 }, lambda: 7 });
    expect(c.values()).toEqual({ ...here, resolution: 1 });
    expect(c.lambda).toBe(7);
    c.reconfigure({ enabled: ['qp'], start: { qp: 20 }, lambda: 7 });
    expect(c.values()).toEqual({ qp: here.qp });
  });

  test('removing or changing the bandwidth target restarts λ (it stayed at its extreme, pinning the knobs cheapest)', () => {
    const c = new OneAdaptController({ enabled: ['qp'], start: { qp: 30 }, lambda: 1, targetKbps: 100 });
    for (let t = 0; t < 30; t++) c.step([qpProbe(c)], { bytes: 500_000, durationS: 1, proxy: 1 }); // far over the target
    expect(c.lambda).toBeGreaterThan(10);
    c.reconfigure({ enabled: ['qp'], start: { qp: 30 }, lambda: 1 }); // target removed, λ setting unchanged
    expect(c.lambda).toBe(1);
    for (let t = 0; t < 30; t++) c.step([qpProbe(c)], { bytes: 500_000, durationS: 1, proxy: 1 });
    const grown = c.lambda;
    c.reconfigure({ enabled: ['qp'], start: { qp: 30 }, lambda: 1, targetKbps: 100 });
    expect(c.lambda).toBe(1);
    expect(grown).toBe(1); // without a target there is no dual update
  });

  test('knobs stay within their ranges under extreme gradients', () => {
    const c = new OneAdaptController({ lr: 50, sceneMaxStep: 20 });
    for (let t = 0; t < 20; t++) {
      const probes = (['resolution', 'fps', 'qp', 'threshold'] as const).map((knob) => ({ knob, current: { r: 0, bytes: 1e9 }, dearer: { r: t % 2 ? 0 : -1e12, bytes: 1e9, span: 1 }, cheaper: { r: 0, bytes: t % 2 ? 1 : 1e9, span: 1 } }));
      const d = c.step(probes, { bytes: 1, durationS: 1, proxy: 1, signature: new Float32Array(4).fill(t % 2) });
      for (const [n, v] of Object.entries(d.after)) expect(DEFAULT_KNOBS[n as keyof typeof DEFAULT_KNOBS].values).toContain(v);
      for (const k of c.knobs.values()) expect(k.s).toBeGreaterThan(0);
    }
  });
});

describe('scene detector', () => {
  test('content signature: a thumbnail of mean luma; distance is the mean absolute difference', () => {
    const a = contentSignature(flat(64, 32, 100), 4);
    expect(a.length).toBe(16);
    for (const v of a) expect(v).toBeCloseTo(100 / 255, 6);
    expect(signatureDistance(a, contentSignature(flat(64, 32, 151), 4))).toBeCloseTo(51 / 255, 6);
    const det = new SceneDetector({ contentThreshold: 0.1 });
    expect(det.update({ signature: a, proxy: 3, bytes: 1000, knobsKey: 'k' })).toEqual([]);
    expect(det.update({ signature: contentSignature(flat(64, 32, 110), 4), proxy: 3.5, bytes: 1100, knobsKey: 'k' })).toEqual([]);
    expect(det.update({ signature: contentSignature(flat(64, 32, 200), 4), proxy: 3.5, bytes: 1100, knobsKey: 'k' })).toEqual(['content']);
    // bytes jumps count only at unchanged knobs
    expect(det.update({ signature: contentSignature(flat(64, 32, 200), 4), proxy: 3.5, bytes: 5000, knobsKey: 'other' })).toEqual([]);
    expect(det.update({ signature: contentSignature(flat(64, 32, 200), 4), proxy: 3.5, bytes: 500, knobsKey: 'other' })).toEqual(['bytes']);
  });
});
