/**
 * bench:oneadapt-signal — can an accuracy signal the controller could use tell which configuration keeps F1?
 * An upper bound for any controller that minimises bytes under a limit on that signal: per segment, the
 * cheapest grid configuration whose signal is ≤ τ (every configuration measured, no lag, no probing cost), τ
 * chosen on the development set (the cheapest selection with development F1 ≥ the target), then applied
 * unchanged to the evaluation set. Signals, all relative to the proxy O of the original frame (max(O, 1)):
 *   accgrad      OneAdapt's AccGrad as the product computes it: R = Σ_mb |∂O/∂x|·|x − x_orig| (DNNGrad of the
 *                ORIGINAL frame here, the best case; the product has the last streamed frame's)
 *   accgrad_cells  the per-cell version of the first-order estimate without cancellation: √(Σ_px E[G²]·Δx²)
 *                with G = ∂(Σ ε_c σ_c)/∂x for random signs ε_c = ±1 over the candidate (cell, class) pairs
 *                (Hutchinson: E[G²] = Σ_c (∂σ_c/∂x)², 4 draws), Δx = the degraded − original network input: the
 *                L2 norm of the cells' first-order changes if pixel errors are uncorrelated
 *   proxy_change |O(degraded) − O(original)|: the exact change of the summed proxy, i.e. what a first-order
 *                AccGrad estimates at best
 *   cell_change  Σ over (cell, class) |σ_c(degraded) − σ_c(original)|: the exact change of every soft
 *                detection, no cancellation between cells (needs the detector on both frames: not a signal a
 *                camera has; it shows what the summed proxy loses)
 * Baselines in the same run: the best fixed configuration in hindsight (the cheapest grid configuration with
 * evaluation F1 ≥ target) and a per-segment oracle (F1 known; Lagrangian, overall F1 ≥ target).
 *
 *   npm run bench:oneadapt-signal [-- --dev-videos a.mp4:0-3,… --videos b.mp4:20-25,… --target-f1 0.9]
 *
 * Frames, segments and accuracy as bench:oneadapt (10 fps, 640×360, 10-frame segments, ACCURACY on frames 1, 5,
 * 9, dropped frames answered by the last sent one); plot bench/results/oneadapt-signal.png; bytes are bytes on the wire (video,
 * segment header, WebSocket framing: segmentWireBytes, as bench:oneadapt). 95% intervals: paired bootstrap over evaluation segments.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Detector } from '../detector/detector.ts';
import { preprocess } from '../detector/preprocess.ts';
import { dnnView, renderSegment, type RenderKnobs } from '../oneadapt/render.ts';
import { accGrad, rgbErrorPerMb } from '../oneadapt/inputgrad.ts';
import { ACCURACY, frameF1 } from '../detector/accuracy.ts';
import { oneAdaptProxy, oneAdaptProxyGraph, reduceToMacroblocks, ONEADAPT_PROXY } from '../server/dnngrad.ts';
import { GradientModel, ProxyGradModel } from '../server/onnxgrad/index.ts';
import { DETECTOR_MODEL, loadFrames } from '../testdata/fixtures.ts';
import { rng } from '../numeric/random.ts';
import { bootstrap } from '../numeric/stats.ts';
import type { Rgb } from './canvas.ts';
import { linePlot } from './plot.ts';
import { printTable, writeResult } from './report.ts';
import { benchHeader, DEV_DEFAULT, EVAL_DEFAULT, parseClips } from './oneadapt-sets.ts';
import { segmentWireBytes } from '../wire/protocol.ts'; // the same sets as bench:oneadapt

const { values: args } = parseArgs({
  options: {
    videos: { type: 'string', default: EVAL_DEFAULT },
    'dev-videos': { type: 'string', default: DEV_DEFAULT },
    'target-f1': { type: 'string', default: '0.9' },
    bootstrap: { type: 'string', default: '2000' },
  },
});
const W = 640, H = 360, FPS = 10, SEG = 10, POS = [1, 5, 9];
const TARGET = Number(args['target-f1']);
const GRID = { resolution: [1, 0.83, 0.67, 0.5], fps: [10, 5, 2], qp: [24, 30, 36, 42, 50] };
const SIGNALS = ['accgrad', 'accgrad_cells', 'proxy_change', 'cell_change'] as const;
const DRAWS = 4;
type Signal = (typeof SIGNALS)[number];
const log = (...a: unknown[]): void => console.error(`[${(performance.now() / 1000).toFixed(0)}s]`, ...a);

interface Cfg { k: Pick<RenderKnobs, 'resolution' | 'fps' | 'qp'>; bytes: number; f1: number; sig: Record<Signal, number> }
interface Seg { clip: string; startS: number; cfgs: Cfg[] }


const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu', threads: 2 });
const grad = await ProxyGradModel.load(DETECTOR_MODEL, { proxy: oneAdaptProxyGraph(), intraOpNumThreads: 2 });
const vjp = await GradientModel.load(DETECTOR_MODEL, { intraOpNumThreads: 2 });
const classes = ONEADAPT_PROXY.classes;
const signs = rng(7);
const sign = (): number => (signs() < 0.5 ? -1 : 1);
/** ∂(Σ ε_c σ_c)/∂raw over the proxy's candidate (cell, class) pairs, ε_c = ±1 at random. */
const signedSeed = (raw: Float32Array): Float32Array => oneAdaptProxy(raw, { sign }).seed;

/** σ(k·(obj·cls − centre)) of every (cell, class) pair of the proxy's classes: the proxy's soft detections. */
function softDetections(raw: Float32Array): Float32Array {
  const rows = raw.length / 85;
  const out = new Float32Array(rows * classes.length);
  for (let c = 0; c < rows; c++) {
    const obj = raw[c * 85 + 4];
    for (let i = 0; i < classes.length; i++) out[c * classes.length + i] = 1 / (1 + Math.exp(-ONEADAPT_PROXY.sharpness * (obj * raw[c * 85 + 5 + classes[i]] - ONEADAPT_PROXY.centre)));
  }
  return out;
}

async function measure(list: string, label: string): Promise<Seg[]> {
  const segs: Seg[] = [];
  for (const c of parseClips(list)) {
    const frames = loadFrames(c.file, Math.round((c.endS - c.startS) * FPS), { startS: c.startS, width: W, height: H, fps: FPS });
    for (let i = 0; i + SEG <= frames.length; i += SEG) {
      const seg = frames.slice(i, i + SEG);
      const orig = [];
      for (const p of POS) {
        const r = await det.detect(seg[p]);
        const { input, letterbox } = preprocess(seg[p]);
        const x0 = input.slice();
        const g = await grad.run(input);
        const g2 = new Float32Array(x0.length); // E over draws of G², per network-input value
        for (let k = 0; k < DRAWS; k++) {
          const gk = (await vjp.vjp(x0, [1, 3, 416, 416], signedSeed(r.raw))).gradInput;
          for (let t = 0; t < gk.length; t++) g2[t] += (gk[t] * gk[t]) / DRAWS;
        }
        orig.push({ dets: r.detections, o: oneAdaptProxy(r.raw).value, soft: softDetections(r.raw), g: reduceToMacroblocks(g.gradInput, letterbox, W, H, { reduce: 'mean' }), x0, g2 });
      }
      const O = Math.max(1, orig.reduce((a, o) => a + o.o, 0) / POS.length);
      const cfgs: Cfg[] = [];
      for (const resolution of GRID.resolution) for (const fps of GRID.fps) for (const qp of GRID.qp) {
        const k = { resolution, fps, qp, threshold: 0.2 };
        const r = await renderSegment(seg, k, null, { srcFps: FPS, lowQpDelta: 10 });
        const view = await dnnView(r, seg, FPS, fps); // decoded, upsampled to 640×360, dropped frames repeated
        let f1 = 0, R = 0, dO = 0, cell = 0, hutch = 0;
        for (let j = 0; j < POS.length; j++) {
          const v = view[POS[j]];
          const d = await det.detect(v);
          f1 += frameF1(d.detections, orig[j].dets, ACCURACY).f1; // the view is at W×H, as the original
          R += accGrad(orig[j].g, rgbErrorPerMb(v, seg[POS[j]]));
          const xv = preprocess(v).input;
          let q = 0;
          for (let t = 0; t < xv.length; t++) { const dx = xv[t] - orig[j].x0[t]; q += orig[j].g2[t] * dx * dx; }
          hutch += Math.sqrt(q);
          dO += Math.abs(oneAdaptProxy(d.raw).value - orig[j].o);
          const s = softDetections(d.raw);
          for (let t = 0; t < s.length; t++) cell += Math.abs(s[t] - orig[j].soft[t]);
        }
        const n = POS.length;
        // bytes on the wire: the video plus its segment header and WebSocket framing (no reference frame here)
        cfgs.push({ k: { resolution, fps, qp }, bytes: segmentWireBytes(benchHeader(segs.length, r, k, 0, W, H)).total, f1: f1 / n, sig: { accgrad: R / n / O, accgrad_cells: hutch / n / O, proxy_change: dO / n / O, cell_change: cell / n / O } });
      }
      segs.push({ clip: path.basename(c.file), startS: c.startS + i / FPS, cfgs });
    }
    log(`${label}: ${segs.length} segments measured`);
  }
  return segs;
}

const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);
/** Per segment, the cheapest configuration with signal ≤ τ (none: the one with the smallest signal). */
function select(segs: Seg[], s: Signal, tau: number): Cfg[] {
  return segs.map((g) => {
    const ok = g.cfgs.filter((c) => c.sig[s] <= tau);
    const pool = ok.length ? ok : [g.cfgs.reduce((a, b) => (b.sig[s] < a.sig[s] ? b : a))];
    return pool.reduce((a, b) => (b.bytes < a.bytes ? b : a));
  });
}
const totals = (pick: Cfg[]): { bytes: number; f1: number } => ({ bytes: sum(pick.map((c) => c.bytes)), f1: sum(pick.map((c) => c.f1)) / pick.length });
function bestFixed(segs: Seg[]): { idx: number; bytes: number; f1: number } {
  let best: { idx: number; bytes: number; f1: number } | null = null;
  for (let i = 0; i < segs[0].cfgs.length; i++) {
    const t = totals(segs.map((g) => g.cfgs[i]));
    if (t.f1 >= TARGET && (!best || t.bytes < best.bytes)) best = { idx: i, ...t };
  }
  if (best) return best;
  const i = segs[0].cfgs.map((_, j) => totals(segs.map((g) => g.cfgs[j])).f1).reduce((bi, f, j, a) => (f > a[bi] ? j : bi), 0);
  return { idx: i, ...totals(segs.map((g) => g.cfgs[i])) };
}
/** τ candidates: every distinct signal value (a selection only changes there). */
const taus = (segs: Seg[], s: Signal): number[] => [...new Set(segs.flatMap((g) => g.cfgs.map((c) => c.sig[s])))].sort((a, b) => a - b);

const dev = await measure(args['dev-videos']!, 'dev');
const evalSegs = await measure(args.videos!, 'eval');

// τ per signal on the development set: the cheapest selection with development F1 ≥ target
const chosen = new Map<Signal, { tau: number; dev: { bytes: number; f1: number } }>();
for (const s of SIGNALS) {
  let best: { tau: number; dev: { bytes: number; f1: number } } | null = null;
  for (const t of taus(dev, s)) {
    const r = totals(select(dev, s, t));
    if (r.f1 >= TARGET && (!best || r.bytes < best.dev.bytes)) best = { tau: t, dev: r };
  }
  chosen.set(s, best ?? { tau: 0, dev: totals(select(dev, s, 0)) });
}

// evaluation
const fixed = bestFixed(evalSegs);
const fixedPick = evalSegs.map((g) => g.cfgs[fixed.idx]);
const devFixed = bestFixed(dev);
const devFixedEval = totals(evalSegs.map((g) => g.cfgs[devFixed.idx]));
let oracle: { bytes: number; f1: number; pick: Cfg[] } | null = null;
for (let e = -8; e <= -2; e += 0.02) {
  const mu = 10 ** e; // F1 per byte
  const pick = evalSegs.map((g) => g.cfgs.reduce((a, b) => (b.f1 - mu * b.bytes > a.f1 - mu * a.bytes ? b : a)));
  const t = totals(pick);
  if (t.f1 >= TARGET && (!oracle || t.bytes < oracle.bytes)) oracle = { ...t, pick };
}
const B = Number(args.bootstrap);
/** Saving vs the best fixed configuration and F1 difference, with paired 95% bootstrap intervals over evaluation segments. */
function ci(pick: Cfg[]): { saving: number; lo: number; hi: number; f1Diff: number; f1Lo: number; f1Hi: number } {
  const saving = (idx: number[]): number => 1 - sum(idx.map((i) => pick[i].bytes)) / sum(idx.map((i) => fixedPick[i].bytes));
  const f1Diff = (idx: number[]): number => sum(idx.map((i) => pick[i].f1 - fixedPick[i].f1)) / idx.length;
  const all = [...pick.keys()];
  const [lo, hi] = bootstrap(pick.length, saving, B);
  const [f1Lo, f1Hi] = bootstrap(pick.length, f1Diff, B);
  return { saving: saving(all), lo, hi, f1Diff: f1Diff(all), f1Lo, f1Hi };
}
const cfgName = (c: Cfg): string => `res ${c.k.resolution} fps ${c.k.fps} qp ${c.k.qp}`;
const rows = SIGNALS.map((s) => {
  const c = chosen.get(s)!;
  const pick = select(evalSegs, s, c.tau);
  const t = totals(pick);
  return { signal: s, tau: c.tau, dev_kB: c.dev.bytes / 1000, dev_f1: c.dev.f1, eval_kB: t.bytes / 1000, eval_f1: t.f1, ...ci(pick) };
});
printTable(`Ideal selection under each signal (τ from the development set, target F1 ${TARGET}); saving vs the best fixed configuration on the evaluation set`, [
  ...rows.map((r) => ({ method: `cheapest with ${r.signal} ≤ ${r.tau.toPrecision(3)}`, dev_kB: r.dev_kB, dev_f1: r.dev_f1, eval_kB: r.eval_kB, eval_f1: r.eval_f1, saving: `${(r.saving * 100).toFixed(0)}% [${(r.lo * 100).toFixed(0)}, ${(r.hi * 100).toFixed(0)}]`, f1_diff: `${r.f1Diff.toFixed(3)} [${r.f1Lo.toFixed(3)}, ${r.f1Hi.toFixed(3)}]` })),
  { method: `best fixed (eval, hindsight): ${cfgName(fixedPick[0])}`, dev_kB: NaN, dev_f1: NaN, eval_kB: fixed.bytes / 1000, eval_f1: fixed.f1, saving: '0%', f1_diff: '0' },
  { method: `best fixed on dev: ${cfgName(dev[0].cfgs[devFixed.idx])}`, dev_kB: devFixed.bytes / 1000, dev_f1: devFixed.f1, eval_kB: devFixedEval.bytes / 1000, eval_f1: devFixedEval.f1, saving: '', f1_diff: '' },
  ...(oracle ? [{ method: 'per-segment oracle (F1 known)', dev_kB: NaN, dev_f1: NaN, eval_kB: oracle.bytes / 1000, eval_f1: oracle.f1, saving: `${((1 - oracle.bytes / fixed.bytes) * 100).toFixed(0)}%`, f1_diff: (oracle.f1 - fixed.f1).toFixed(3) }] : []),
]);
// the whole τ curve on the evaluation set, for the plot-minded reader
const curve = (segs: Seg[], s: Signal): { tau: number; bytes: number; f1: number }[] => {
  const ts = taus(segs, s);
  const step = Math.max(1, Math.floor(ts.length / 40));
  return ts.filter((_, i) => i % step === 0).map((tau) => ({ tau, ...totals(select(segs, s, tau)) }));
};
const evalCurves = Object.fromEntries(SIGNALS.map((s) => [s, curve(evalSegs, s)])) as Record<Signal, ReturnType<typeof curve>>;
writeResult('oneadapt-signal', {
  dev_set: args['dev-videos']!.split(','),
  eval_set: args.videos!.split(','),
  preregistered: { target_f1: TARGET, grid: GRID, rule: 'per signal: τ = the cheapest development-set selection with F1 >= target; applied unchanged to the evaluation set', bytes: 'bytes on the wire per segment: video, segment header, WebSocket framing (bench:oneadapt segmentWireBytes); no reference frames', accuracy: 'ACCURACY (road classes, score >= 0.3, IoU 0.5) on frames 1, 5, 9 of every 10-frame segment, vs YOLOX-Nano on the original frame' },
  signals: rows,
  best_fixed: { config: cfgName(fixedPick[0]), bytes: fixed.bytes, f1: fixed.f1, rule: `cheapest grid config with eval F1 >= ${TARGET} (hindsight)` },
  best_fixed_dev: { config: cfgName(dev[0].cfgs[devFixed.idx]), dev_bytes: devFixed.bytes, dev_f1: devFixed.f1, eval: devFixedEval },
  per_segment_oracle: oracle ? { bytes: oracle.bytes, f1: oracle.f1 } : null,
  eval_curves: evalCurves,
  segments: { dev: dev.length, eval: evalSegs.length },
});

// plot: bytes vs F1 on the evaluation set — each signal's τ sweep, the fixed configurations' frontier and the
// per-segment oracle
const frontier: { x: number; y: number }[] = [];
for (const t of evalSegs[0].cfgs.map((_, i) => totals(evalSegs.map((g) => g.cfgs[i]))).sort((a, b) => a.bytes - b.bytes)) {
  if (!frontier.length || t.f1 > frontier[frontier.length - 1].y) frontier.push({ x: t.bytes / 1000, y: t.f1 });
}
const COLORS: Record<Signal, Rgb> = { accgrad: [200, 40, 40], accgrad_cells: [230, 140, 0], proxy_change: [140, 60, 180], cell_change: [30, 130, 60] };
const plotFile = path.resolve('bench', 'results', 'oneadapt-signal.png');
linePlot(plotFile, {
  title: 'Ideal selection under each signal vs fixed configurations (evaluation set)',
  xLabel: 'kB on the wire (45 segments)',
  yLabel: 'mean per-frame F1',
  series: [
    { name: 'fixed configurations (frontier)', color: [0, 0, 0], points: frontier },
    ...SIGNALS.map((s) => ({ name: `${s} (tau sweep)`, color: COLORS[s], points: evalCurves[s].map((p) => ({ x: p.bytes / 1000, y: p.f1 })) })),
    ...(oracle ? [{ name: 'per-segment oracle', color: [40, 90, 220] as Rgb, points: [{ x: oracle.bytes / 1000, y: oracle.f1 }] }] : []),
  ],
});
console.log(`plot: ${plotFile}`);
