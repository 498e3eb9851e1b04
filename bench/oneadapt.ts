/**
 * OneAdapt benchmark (npm run bench:oneadapt): gradient-ascent knob adaptation vs the best fixed
 * configuration in hindsight and vs a periodic-profiling baseline, on real video with scene changes.
 *
 *   npm run bench:oneadapt [-- --clip 10 --eval-every 2 --lambdas 3,10,30,100 --main-lambda 10 --window 5]
 *
 * Video: four held-out clips, each decoded at 10 fps and SCALED (not cropped) to 640×360, concatenated:
 *   campus-576p.avi from 55 s (4:3, so stretched), highway-720p.mp4 from 20 s, people-indoor-432p.mp4
 *   from 100 s, parking-topdown-432p.mp4 from 0 s; `--clip` seconds each (default 10 → 40 segments).
 * Segments: 1 s = 10 frames, each a closed GOP (renderSegment: x264 veryfast, no B-frames).
 *
 * Accuracy: YOLOX-Nano on the ORIGINAL 640×360 frames is the reference. Detections with score ≥ 0.3,
 * road classes (person, bicycle, car, motorcycle, bus, train, truck), IoU ≥ 0.5, same class.
 * Evaluated on every `--eval-every`-th frame of each segment (positions 1, 3, 5, 7, 9 by default), identically
 * for every method. The server detects on the decoded frame at its streamed size and the boxes are
 * scaled to 640×360 (as server/analyzer.ts does); a frame dropped by the fps knob is answered with the
 * detections of the last sent frame. "f1" = mean per-frame F1 over the evaluated frames; the aggregate
 * F1 (summed TP/FP/FN) is reported beside it. Bytes = real encoded bytes of the streamed segments.
 *
 * Methods, all in one run on the same frames:
 *   oneadapt  — the real loop: per segment render at the current knobs (resolution, fps, qp; no cheap model
 *               → importance = null, so the AccMPEG threshold knob is off), the server's DNNGrad of the
 *               segment's last original frame (analyzer.dnnGrad, proxy over road classes), and on the NEXT
 *               segment probeKnobs with that g + OneAdaptController.step. Knob lists = DEFAULT_KNOBS; start
 *               at resolution 1, fps 10, QP 30; w_rec = 1, lr 0.1, Adam betas 0.5/0.5; bandwidth weight λ
 *               swept over `--lambdas` (fixed λ, no target); `--main-lambda` is the headline; the main λ is also
 *               run with the learning rates in `--lr-variants` (default 0.3) to show the effect of step size.
 *   best_fixed — a static grid resolution {1, 0.67, 0.5} × fps {10, 5, 2} × QP {24, 30, 36, 42} over the
 *               whole video. Rule: the highest-F1 config whose total bytes ≤ OneAdapt's; also the cheapest
 *               config whose F1 ≥ OneAdapt's ("cheapest_fixed_at_oneadapt_f1").
 *   profiling — AWStream/Chameleon style: every `--window` segments, profile the whole grid on the window's
 *               first segment (encode + decode + detect on the evaluated frames vs that segment's original-
 *               frame detections), pick the cheapest config (by profiled bytes) whose profiled F1 ≥ target
 *               (else the most accurate), use it for the window. Targets: OneAdapt's F1 (headline) and 0.9.
 *               The chosen config is applied from the profiled segment itself, i.e. profiling is charged as
 *               compute but not as delay (favours the baseline). profiling_cost_s = wall seconds of that
 *               profiling compute on this machine, plus the number of extra encodes.
 *   oneadapt_accmpeg — the product's full configuration (agent with a cheap model): the same loop with 4 knobs
 *               (resolution, fps, qp, threshold) and the AccMPEG cheap model's importance map per segment:
 *               cheapmodel/models/accmpeg_cheap.onnx on frames 0 and 9 of the segment (agent: every k-th and the
 *               last frame, k = 10), meanMap; important MBs at `qp`, the rest at qp + 10 (lowQpDelta). Start
 *               res 1 / fps 10 / QP 30 / threshold 0.5 (the agent's cheapModel.threshold default); λ swept over
 *               `--accmpeg-lambdas` (default: the same as `--lambdas`), headline = `--main-lambda`.
 *   accmpeg_fixed — AccMPEG alone, no adaptation: the same per-segment cheap-model map, res 1, fps 10, fixed
 *               (qp, α) pairs from `--accmpeg-fixed` (default QP {24, 30, 36} × α {0.2, 0.5}). These configs are
 *               also the "AccMPEG slice": for the 4-knob run the best fixed config is reported both over the
 *               uniform grid alone and over grid ∪ slice (the 3-knob rows keep the uniform grid only).
 * OneAdapt's own overhead: probe ms per segment (InputGrad: 3 extra encode+decode + RGB error per knob,
 * measured inside probeKnobs; 4 with the threshold knob) and server DNNGrad ms per segment; with AccMPEG
 * also the cheap model's ms per segment (two frames, CPU, onnxruntime).
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { renderSegment, type Rendered, type RenderKnobs, type RenderOptions } from '../oneadapt/render.ts';
import { decodeSegment } from '../encoder/index.ts';
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { CheapModel } from '../cheapmodel/model.ts';
import { fractionImportant, importanceMask, meanMap } from '../cheapmodel/qpmap.ts';
import { OneAdaptController, type Decision } from '../oneadapt/adapt.ts';
import { DEFAULT_KNOBS } from '../oneadapt/knobs.ts';
import { sampledIndices } from '../oneadapt/inputgrad.ts';
import { probeKnobs } from '../oneadapt/probe.ts';
import { SegmentAnalyzer } from '../server/analyzer.ts';
import { f1FromCounts, frameF1, type F1Options, type FrameF1 } from '../server/accuracy.ts';
import { ROAD_CLASSES, type Detection } from '../detector/postprocess.ts';
import { DETECTOR_MODEL, loadFrames, VIDEOS } from '../testdata/fixtures.ts';
import { printTable, writeResult } from './report.ts';
import { panelPlot, type PanelSeries, type Rgb } from './panelplot.ts';

const { values: args } = parseArgs({
  options: {
    clip: { type: 'string', default: '10' },
    'eval-every': { type: 'string', default: '2' },
    lambdas: { type: 'string', default: '3,10,30,100' },
    'main-lambda': { type: 'string', default: '10' },
    window: { type: 'string', default: '5' },
    lr: { type: 'string', default: '0.1' },
    'lr-variants': { type: 'string', default: '0.3' },
    'accmpeg-lambdas': { type: 'string' },
    'accmpeg-fixed': { type: 'string', default: '24:0.2,24:0.5,30:0.2,30:0.5,36:0.2,36:0.5' },
    'accmpeg-start-variants': { type: 'string', default: '0.05' },
  },
});
const CLIP_S = Number(args.clip);
const EVAL_EVERY = Number(args['eval-every']);
const LAMBDAS = args.lambdas!.split(',').map(Number);
const MAIN_LAMBDA = Number(args['main-lambda']);
if (!LAMBDAS.includes(MAIN_LAMBDA)) LAMBDAS.push(MAIN_LAMBDA);
const WINDOW = Number(args.window);
const LR = Number(args.lr);
const LR_VARIANTS = args['lr-variants'] ? args['lr-variants'].split(',').map(Number) : [];
const AM_LAMBDAS = args['accmpeg-lambdas'] ? args['accmpeg-lambdas'].split(',').map(Number) : [...LAMBDAS];
if (!AM_LAMBDAS.includes(MAIN_LAMBDA)) AM_LAMBDAS.push(MAIN_LAMBDA);
const AM_FIXED = args['accmpeg-fixed']!.split(',').map((p) => { const [qp, a] = p.split(':').map(Number); return { qp, threshold: a }; });
/** AccMPEG as the agent runs it: cheap model on every k-th frame and the last (k = segment length → first and last) */
const AM_EVERY_K = 10, AM_START_THRESHOLD = 0.5;
/** extra main-λ runs from other threshold starts (0.05 = index 0: what agent.ts's controller starts at, as it passes no threshold start) */
const AM_START_VARIANTS = args['accmpeg-start-variants'] ? args['accmpeg-start-variants'].split(',').map(Number) : [];
const W = 640, H = 360, FPS = 10, SEG = 10;
const SCORE = 0.3;
const F1_OPTS: F1Options = { iouThreshold: 0.5, classes: ROAD_CLASSES, scoreThreshold: SCORE };
const RENDER: RenderOptions = { srcFps: FPS, lowQpDelta: 10 };
const BASE: RenderKnobs = { resolution: 1, fps: 10, qp: 30, threshold: 0.2 };
const GRID = { resolution: [1, 0.67, 0.5], fps: [10, 5, 2], qp: [24, 30, 36, 42] };
const SCENES = [
  { name: 'campus', file: VIDEOS.campus, startS: 55 },
  { name: 'highway', file: VIDEOS.highway, startS: 20 },
  { name: 'people', file: VIDEOS.people, startS: 100 },
  { name: 'parking', file: VIDEOS.parking, startS: 0 },
];
// evaluated positions inside a segment: 1, 1+k, … (k = --eval-every)
const POS = [...Array(SEG).keys()].filter((i) => i % EVAL_EVERY === 1 % EVAL_EVERY);

const log = (...a: unknown[]): void => console.error(`[${(performance.now() / 1000).toFixed(0)}s]`, ...a);
const tStart = performance.now();

// ---------------------------------------------------------------- data
const segments: YuvFrame[][] = [];
const sceneOf: number[] = [];
SCENES.forEach((s, k) => {
  const frames = loadFrames(s.file, CLIP_S * FPS, { startS: s.startS, width: W, height: H, fps: FPS });
  for (let i = 0; i + SEG <= frames.length; i += SEG) { segments.push(frames.slice(i, i + SEG)); sceneOf.push(k); }
  log(`${s.name}: ${frames.length} frames from ${s.startS} s`);
});
const N = segments.length;
const boundaries = sceneOf.map((s, i) => (i === 0 || s !== sceneOf[i - 1] ? i : -1)).filter((i) => i >= 0);

const analyzer = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, proxyClasses: ROAD_CLASSES });
const detect = async (f: YuvFrame): Promise<Detection[]> => {
  const d = (await analyzer.detector.detect(f)).detections;
  if (f.width === W && f.height === H) return d;
  const sx = W / f.width, sy = H / f.height;
  return d.map((b) => ({ ...b, x1: b.x1 * sx, x2: b.x2 * sx, y1: b.y1 * sy, y2: b.y2 * sy }));
};

// reference detections on the original frames (evaluated positions), with their cost
const refDets: Detection[][][] = [];
const refS: number[] = [];
for (const frames of segments) {
  const t = performance.now();
  const d: Detection[][] = [];
  for (const p of POS) d.push(await detect(frames[p]));
  refDets.push(d);
  refS.push((performance.now() - t) / 1000);
}
log(`reference detections: ${N} segments × ${POS.length} frames`);

// AccMPEG importance per segment, as agent.handleSegment computes it (computed once, shared by every AccMPEG method)
const cheap = await CheapModel.load();
const impMaps: MbMap[] = [];
const cheapMs: number[] = [];
for (const frames of segments) {
  const t = performance.now();
  const picked = frames.filter((_, i) => i % AM_EVERY_K === 0 || i === frames.length - 1);
  const maps: MbMap[] = [];
  for (const f of picked) maps.push(await cheap.importance(f));
  impMaps.push(meanMap(maps));
  cheapMs.push(performance.now() - t);
}
const AM_FRAMES_PER_SEG = segments[0].filter((_, i) => i % AM_EVERY_K === 0 || i === SEG - 1).length;
log(`cheap model: ${N} segments × ${AM_FRAMES_PER_SEG} frames, mean ${(cheapMs.reduce((a, b) => a + b, 0) / N).toFixed(0)} ms/segment`);

// ---------------------------------------------------------------- evaluating a rendering (cached by segment+config)
interface Outcome { bytes: number; frames: FrameF1[]; computeS: number }
const cache = new Map<string, Outcome>();
// AccMPEG renderings depend on the threshold too (uniform ones ignore it)
const keyOf = (seg: number, k: RenderKnobs, am = false): string => `${seg}|${k.resolution}|${k.fps}|${k.qp}${am ? `|am${k.threshold}` : ''}`;
let detections = 0;

async function evaluate(seg: number, k: RenderKnobs, rendered?: Rendered, am = false): Promise<Outcome> {
  const key = keyOf(seg, k, am);
  const hit = cache.get(key);
  if (hit) {
    if (rendered && rendered.encoded.data.length !== hit.bytes) log(`note: re-encode of ${key} gave ${rendered.encoded.data.length} B, cached ${hit.bytes} B`);
    return hit;
  }
  const t = performance.now();
  const frames = segments[seg];
  const r = rendered ?? (await renderSegment(frames, k, am ? impMaps[seg] : null, RENDER));
  const decoded = (await decodeSegment(r.encoded.data, r.encoded.codec)).frames;
  const src = sampledIndices(SEG, FPS, k.fps);
  const bySent = new Map<number, Detection[]>();
  const out: FrameF1[] = [];
  for (let j = 0; j < POS.length; j++) {
    const s = src[POS[j]];
    let d = bySent.get(s);
    if (!d) {
      d = await detect(decoded[r.sent.indexOf(s)]);
      detections++;
      bySent.set(s, d);
    }
    out.push(frameF1(d, refDets[seg][j], F1_OPTS));
  }
  const o = { bytes: r.encoded.data.length, frames: out, computeS: (performance.now() - t) / 1000 };
  cache.set(key, o);
  return o;
}

interface Totals { bytes: number; f1: number; aggF1: number; kbps: number }
function totals(outs: Outcome[]): Totals {
  let tp = 0, fp = 0, fn = 0, sum = 0, n = 0, bytes = 0;
  for (const o of outs) {
    bytes += o.bytes;
    for (const f of o.frames) { tp += f.tp; fp += f.fp; fn += f.fn; sum += f.f1; n++; }
  }
  return { bytes, f1: sum / n, aggF1: f1FromCounts(tp, fp, fn), kbps: (bytes * 8) / 1000 / outs.length };
}
const cfgName = (k: Pick<RenderKnobs, 'resolution' | 'fps' | 'qp'>): string => `res ${k.resolution} fps ${k.fps} qp ${k.qp}`;
const amName = (k: RenderKnobs): string => `accmpeg ${cfgName(k)}/${Math.min(51, k.qp + RENDER.lowQpDelta)} a ${k.threshold}`;

// ---------------------------------------------------------------- best fixed: the grid over the whole video
const grid: RenderKnobs[] = [];
for (const resolution of GRID.resolution) for (const fps of GRID.fps) for (const qp of GRID.qp) grid.push({ ...BASE, resolution, fps, qp });
interface FixedTotals { cfg: RenderKnobs; name: string; t: Totals; perScene: Totals[]; outs: Outcome[] }
const gridTotals: FixedTotals[] = [];
for (const cfg of grid) {
  const outs: Outcome[] = [];
  for (let s = 0; s < N; s++) outs.push(await evaluate(s, cfg));
  gridTotals.push({ cfg, name: cfgName(cfg), t: totals(outs), perScene: SCENES.map((_, k) => totals(outs.filter((_, i) => sceneOf[i] === k))), outs });
}
log(`grid: ${grid.length} configs × ${N} segments, ${detections} detector runs so far`);

// ---------------------------------------------------------------- AccMPEG alone (fixed qp, α; res 1, fps 10)
const amFixed: (FixedTotals & { fracImportant: number })[] = [];
for (const p of AM_FIXED) {
  const cfg: RenderKnobs = { ...BASE, qp: p.qp, threshold: p.threshold };
  const outs: Outcome[] = [];
  for (let s = 0; s < N; s++) outs.push(await evaluate(s, cfg, undefined, true));
  const fracImportant = impMaps.reduce((a, m) => a + fractionImportant(importanceMask(m, { threshold: p.threshold })), 0) / N;
  amFixed.push({ cfg, name: amName(cfg), t: totals(outs), perScene: SCENES.map((_, k) => totals(outs.filter((_, i) => sceneOf[i] === k))), outs, fracImportant });
}
log(`AccMPEG fixed: ${amFixed.length} configs × ${N} segments, ${detections} detector runs so far`);

// ---------------------------------------------------------------- OneAdapt
// server side: DNNGrad of each segment's last original frame (computed once, shared by every λ run)
const grads: { proxy: number; map: MbMap }[] = [];
const gradMs: number[] = [];
for (const frames of segments) {
  const t = performance.now();
  const g = await analyzer.dnnGrad(frames[SEG - 1]);
  gradMs.push(performance.now() - t);
  grads.push({ proxy: g.proxy, map: g.map });
}
log(`DNNGrad: ${N} frames, mean ${(gradMs.reduce((a, b) => a + b, 0) / N).toFixed(0)} ms`);

interface OaRun { lambda: number; lr: number; am: boolean; amStart: number; knobs: RenderKnobs[]; outs: Outcome[]; probeMs: number[]; decisions: Decision[]; t: Totals; perScene: Totals[] }
/** am: the product's full configuration (cheap-model importance + the threshold knob) */
async function runOneAdapt(lambda: number, lr = LR, am = false, amStart = AM_START_THRESHOLD): Promise<OaRun> {
  const ctrl = am
    ? new OneAdaptController({ enabled: ['resolution', 'fps', 'qp', 'threshold'], lambda, wRec: 1, lr, start: { qp: BASE.qp, threshold: amStart } })
    : new OneAdaptController({ enabled: ['resolution', 'fps', 'qp'], lambda, wRec: 1, lr, start: { qp: BASE.qp } });
  const knobs: RenderKnobs[] = [];
  const outs: Outcome[] = [];
  const probeMs: number[] = [];
  const decisions: Decision[] = [];
  for (let s = 0; s < N; s++) {
    const k: RenderKnobs = { ...BASE, ...ctrl.values() };
    let rendered: Rendered;
    if (s > 0) {
      // the camera has the server's DNNGrad of the previous segment: probe this segment with it and step
      const g = grads[s - 1];
      const p = await probeKnobs(ctrl, segments[s], am ? impMaps[s] : null, g.map, BASE, RENDER);
      rendered = p.current;
      probeMs.push(p.probeMs);
      decisions.push(ctrl.step(p.probes, { bytes: rendered.encoded.data.length, durationS: SEG / FPS, proxy: g.proxy }));
    } else {
      rendered = await renderSegment(segments[s], k, am ? impMaps[s] : null, RENDER);
    }
    knobs.push(k);
    outs.push(await evaluate(s, k, rendered, am));
  }
  const t = totals(outs);
  log(`OneAdapt${am ? `+AccMPEG (α0 ${amStart})` : ''} λ=${lambda} lr=${lr}: ${t.bytes} B, F1 ${t.f1.toFixed(3)}`);
  return { lambda, lr, am, amStart, knobs, outs, probeMs, decisions, t, perScene: SCENES.map((_, k) => totals(outs.filter((_, i) => sceneOf[i] === k))) };
}
const runs: OaRun[] = [];
for (const l of LAMBDAS) runs.push(await runOneAdapt(l));
const main = runs.find((r) => r.lambda === MAIN_LAMBDA)!;
const lrRuns: OaRun[] = [];
for (const lr of LR_VARIANTS) if (lr !== LR) lrRuns.push(await runOneAdapt(MAIN_LAMBDA, lr));
const amRuns: OaRun[] = [];
for (const l of AM_LAMBDAS) amRuns.push(await runOneAdapt(l, LR, true));
const amMain = amRuns.find((r) => r.lambda === MAIN_LAMBDA)!;
const amStartRuns: OaRun[] = [];
for (const a of AM_START_VARIANTS) if (a !== AM_START_THRESHOLD) amStartRuns.push(await runOneAdapt(MAIN_LAMBDA, LR, true, a));

// ---------------------------------------------------------------- baselines relative to a OneAdapt run
function bestFixed(ref: Totals, pool: FixedTotals[] = gridTotals): { underBytes: FixedTotals | null; atF1: FixedTotals | null } {
  const under = pool.filter((g) => g.t.bytes <= ref.bytes).sort((a, b) => b.t.f1 - a.t.f1 || a.t.bytes - b.t.bytes)[0] ?? null;
  const at = pool.filter((g) => g.t.f1 >= ref.f1).sort((a, b) => a.t.bytes - b.t.bytes)[0] ?? null;
  return { underBytes: under, atF1: at };
}

interface ProfRun { target: number; t: Totals; configs: RenderKnobs[]; costS: number; extraEncodes: number; windows: number }
async function profiling(target: number): Promise<ProfRun> {
  const configs: RenderKnobs[] = [];
  const outs: Outcome[] = [];
  let costS = 0, extra = 0, windows = 0;
  for (let w = 0; w < N; w += WINDOW) {
    windows++;
    costS += refS[w]; // detector on the original frames of the profiled segment
    const prof: { cfg: RenderKnobs; o: Outcome; f1: number }[] = [];
    for (const cfg of grid) {
      const o = await evaluate(w, cfg);
      costS += o.computeS; // measured when this (segment, config) was first encoded+decoded+detected
      prof.push({ cfg, o, f1: o.frames.reduce((a, f) => a + f.f1, 0) / o.frames.length });
    }
    extra += grid.length - 1; // the chosen config's encoding of the profiled segment is what gets sent
    const ok = prof.filter((p) => p.f1 >= target).sort((a, b) => a.o.bytes - b.o.bytes);
    const pick = ok[0] ?? [...prof].sort((a, b) => b.f1 - a.f1 || a.o.bytes - b.o.bytes)[0];
    for (let s = w; s < Math.min(N, w + WINDOW); s++) {
      configs.push(pick.cfg);
      outs.push(await evaluate(s, pick.cfg));
    }
  }
  return { target, t: totals(outs), configs, costS, extraEncodes: extra, windows };
}
const profMain = await profiling(main.t.f1);
const prof09 = await profiling(0.9);
const bf = bestFixed(main.t);
const amPool = [...gridTotals, ...amFixed];
const bfAm = bestFixed(amMain.t); // uniform grid only, vs OneAdapt+AccMPEG
const bfAmSlice = bestFixed(amMain.t, amPool); // grid ∪ AccMPEG slice

// ---------------------------------------------------------------- report
const mean = (a: number[]): number => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
const row = (method: string, t: Totals, extra: Record<string, string | number> = {}): Record<string, string | number> => ({
  method, kbytes: Math.round(t.bytes / 100) / 10, kbps: Math.round(t.kbps), f1: t.f1, agg_f1: t.aggF1, ...extra,
});
const rows: Record<string, string | number>[] = [];
for (const r of runs) rows.push(row(`oneadapt λ=${r.lambda}${r === main ? ' (main)' : ''}`, r.t, { note: `probe ${mean(r.probeMs).toFixed(0)} ms/seg` }));
for (const r of lrRuns) rows.push(row(`oneadapt λ=${r.lambda} lr=${r.lr}`, r.t, { note: `probe ${mean(r.probeMs).toFixed(0)} ms/seg` }));
if (bf.underBytes) rows.push(row('best fixed, bytes ≤ OA', bf.underBytes.t, { note: cfgName(bf.underBytes.cfg) }));
if (bf.atF1) rows.push(row('cheapest fixed, F1 ≥ OA', bf.atF1.t, { note: cfgName(bf.atF1.cfg) }));
rows.push(row(`profiling, target OA F1`, profMain.t, { note: `cost ${profMain.costS.toFixed(1)} s, ${profMain.extraEncodes} extra enc` }));
rows.push(row(`profiling, target 0.9`, prof09.t, { note: `cost ${prof09.costS.toFixed(1)} s, ${prof09.extraEncodes} extra enc` }));
for (const r of amRuns) rows.push(row(`oneadapt+accmpeg λ=${r.lambda}${r === amMain ? ' (main)' : ''}`, r.t, { note: `probe ${mean(r.probeMs).toFixed(0)} + cheap ${mean(cheapMs).toFixed(0)} ms/seg` }));
for (const r of amStartRuns) rows.push(row(`oneadapt+accmpeg λ=${r.lambda} α start ${r.amStart}`, r.t, { note: `probe ${mean(r.probeMs).toFixed(0)} + cheap ${mean(cheapMs).toFixed(0)} ms/seg` }));
for (const a of amFixed) rows.push(row(a.name, a.t, { note: `${(a.fracImportant * 100).toFixed(0)}% MBs important, cheap ${mean(cheapMs).toFixed(0)} ms/seg` }));
if (bfAm.underBytes) rows.push(row('best fixed, bytes ≤ OA+AM', bfAm.underBytes.t, { note: bfAm.underBytes.name }));
if (bfAmSlice.underBytes) rows.push(row('best fixed+AM slice, bytes ≤ OA+AM', bfAmSlice.underBytes.t, { note: bfAmSlice.underBytes.name }));
if (bfAmSlice.atF1) rows.push(row('cheapest fixed+AM slice, F1 ≥ OA+AM', bfAmSlice.atF1.t, { note: bfAmSlice.atF1.name }));
printTable(`OneAdapt vs baselines — ${N} × 1-s segments, 640×360, F1 vs original-frame detections (road classes, score ≥ ${SCORE}, IoU 0.5), frames ${POS.join(',')} of each segment`, rows);

printTable('Per scene (F1 / kB)', SCENES.map((sc, k) => {
  const r: Record<string, string | number> = { scene: sc.name };
  for (const o of runs) r[`OA λ=${o.lambda}`] = `${o.perScene[k].f1.toFixed(3)} / ${(o.perScene[k].bytes / 1000).toFixed(0)}`;
  if (bf.underBytes) r['best fixed'] = `${bf.underBytes.perScene[k].f1.toFixed(3)} / ${(bf.underBytes.perScene[k].bytes / 1000).toFixed(0)}`;
  const pm = totals(profMain.configs.map((c, i) => cache.get(keyOf(i, c))!).filter((_, i) => sceneOf[i] === k));
  r['profiling'] = `${pm.f1.toFixed(3)} / ${(pm.bytes / 1000).toFixed(0)}`;
  r[`OA+AM λ=${amMain.lambda}`] = `${amMain.perScene[k].f1.toFixed(3)} / ${(amMain.perScene[k].bytes / 1000).toFixed(0)}`;
  for (const a of amFixed) if (a.cfg.qp === 30) r[`AM qp30 a${a.cfg.threshold}`] = `${a.perScene[k].f1.toFixed(3)} / ${(a.perScene[k].bytes / 1000).toFixed(0)}`;
  return r;
}));

printTable('Static grid (whole video)', [...gridTotals].sort((a, b) => a.t.bytes - b.t.bytes).map((g) => row(cfgName(g.cfg), g.t)));

const knobRows = main.knobs.map((k, i) => ({ seg: i, scene: SCENES[sceneOf[i]].name, res: k.resolution, fps: k.fps, qp: k.qp, kB: Math.round(main.outs[i].bytes / 100) / 10, f1: main.outs[i].frames.reduce((a, f) => a + f.f1, 0) / POS.length, O: grads[i].proxy }));
printTable(`OneAdapt λ=${MAIN_LAMBDA} per segment (knobs used for the segment; O = DNNGrad proxy of its last frame)`, knobRows);
const amKnobRows = amMain.knobs.map((k, i) => ({ seg: i, scene: SCENES[sceneOf[i]].name, res: k.resolution, fps: k.fps, qp: k.qp, alpha: k.threshold, imp: fractionImportant(importanceMask(impMaps[i], { threshold: k.threshold })), kB: Math.round(amMain.outs[i].bytes / 100) / 10, f1: amMain.outs[i].frames.reduce((a, f) => a + f.f1, 0) / POS.length }));
printTable(`OneAdapt+AccMPEG λ=${MAIN_LAMBDA} per segment (imp = fraction of MBs marked important at res 1)`, amKnobRows);

const oaOverhead = { probe_ms_per_segment: mean(main.probeMs), probe_extra_encodes_per_segment: 3, dnngrad_ms_per_segment: mean(gradMs), probe_ms_all_lambdas: mean(runs.flatMap((r) => r.probeMs)) };
console.log(`\nOneAdapt overhead: probe ${oaOverhead.probe_ms_per_segment.toFixed(0)} ms/segment (3 extra encode+decode + InputGrad), server DNNGrad ${oaOverhead.dnngrad_ms_per_segment.toFixed(0)} ms/segment (one frame)`);
console.log(`OneAdapt+AccMPEG overhead: probe ${mean(amMain.probeMs).toFixed(0)} ms/segment (4 extra encode+decode + InputGrad), cheap model ${mean(cheapMs).toFixed(0)} ms/segment (${AM_FRAMES_PER_SEG} frames at ${W}x${H})`);
console.log(`Profiling overhead (target OA F1): ${profMain.costS.toFixed(1)} s over ${profMain.windows} windows = ${(profMain.costS / N * 1000).toFixed(0)} ms/segment amortised, ${profMain.extraEncodes} extra encodes`);

const res = (t: Totals): Record<string, number> => ({ bytes: t.bytes, f1: t.f1, agg_f1: t.aggF1, kbps: t.kbps });
const elapsedS = (performance.now() - tStart) / 1000;
writeResult('oneadapt', {
  video: `${SCENES.map((s) => `${path.basename(s.file)} ${s.startS}–${s.startS + CLIP_S} s`).join(' + ')}; each at 10 fps scaled to ${W}x${H}; ${N} segments of ${SEG} frames`,
  accuracy: `mean per-frame F1 vs YOLOX-Nano on the original frames; road classes, score >= ${SCORE}, IoU 0.5, same class; frames ${POS.join(',')} of every segment; dropped frames answered with the last sent frame`,
  oneadapt: { ...res(main.t), lambda: MAIN_LAMBDA, w_rec: 1, lr: LR, knobs: ['resolution', 'fps', 'qp'], threshold_knob: 'off (no cheap model: importance=null)', ...oaOverhead },
  best_fixed: bf.underBytes ? { config: cfgName(bf.underBytes.cfg), ...res(bf.underBytes.t), rule: 'highest F1 among static grid configs with total bytes <= OneAdapt bytes' } : null,
  profiling: { ...res(profMain.t), profiling_cost_s: profMain.costS, target_f1: profMain.target, extra_encodes: profMain.extraEncodes, window_segments: WINDOW, configs: profMain.configs.map(cfgName) },
  cheapest_fixed_at_oneadapt_f1: bf.atF1 ? { config: cfgName(bf.atF1.cfg), ...res(bf.atF1.t), byte_saving_of_oneadapt: 1 - main.t.bytes / bf.atF1.t.bytes } : null,
  profiling_target_0_9: { ...res(prof09.t), profiling_cost_s: prof09.costS, extra_encodes: prof09.extraEncodes },
  lambda_sweep: runs.map((r) => {
    const b = bestFixed(r.t);
    return { lambda: r.lambda, ...res(r.t), probe_ms_per_segment: mean(r.probeMs), best_fixed_under_bytes: b.underBytes ? { config: cfgName(b.underBytes.cfg), ...res(b.underBytes.t) } : null, cheapest_fixed_at_f1: b.atF1 ? { config: cfgName(b.atF1.cfg), ...res(b.atF1.t) } : null };
  }),
  lr_variants: lrRuns.map((r) => ({ lambda: r.lambda, lr: r.lr, ...res(r.t), per_scene: r.perScene.map(res) })),
  per_scene: SCENES.map((sc, k) => ({ scene: sc.name, oneadapt: res(main.perScene[k]), best_fixed: bf.underBytes ? res(bf.underBytes.perScene[k]) : null })),
  grid: gridTotals.map((g) => ({ config: cfgName(g.cfg), ...res(g.t) })),
  oneadapt_knobs: main.knobs.map((k) => ({ resolution: k.resolution, fps: k.fps, qp: k.qp })),
  oneadapt_segment_bytes: main.outs.map((o) => o.bytes),
  dnngrad_proxy: grads.map((g) => g.proxy),
  scene_boundaries: boundaries,
  oneadapt_accmpeg: {
    ...res(amMain.t), lambda: MAIN_LAMBDA, w_rec: 1, lr: LR, knobs: ['resolution', 'fps', 'qp', 'threshold'],
    importance: `cheap model ${path.basename(cheap.modelPath)} on frames ${segments[0].map((_, i) => i).filter((i) => i % AM_EVERY_K === 0 || i === SEG - 1).join(',')} of each segment, meanMap; important MBs at qp, the rest at qp+${RENDER.lowQpDelta}`,
    start: { resolution: 1, fps: 10, qp: BASE.qp, threshold: AM_START_THRESHOLD },
    probe_ms_per_segment: mean(amMain.probeMs), probe_extra_encodes_per_segment: 4, dnngrad_ms_per_segment: mean(gradMs),
    cheap_model_ms_per_segment: mean(cheapMs), cheap_model_frames_per_segment: AM_FRAMES_PER_SEG,
    best_fixed_under_bytes: bfAm.underBytes ? { config: bfAm.underBytes.name, ...res(bfAm.underBytes.t), rule: 'highest F1 among the uniform static grid with total bytes <= OneAdapt+AccMPEG bytes' } : null,
    best_fixed_incl_accmpeg_under_bytes: bfAmSlice.underBytes ? { config: bfAmSlice.underBytes.name, ...res(bfAmSlice.underBytes.t), rule: 'same over the uniform grid plus the accmpeg_fixed configs' } : null,
    cheapest_fixed_incl_accmpeg_at_f1: bfAmSlice.atF1 ? { config: bfAmSlice.atF1.name, ...res(bfAmSlice.atF1.t) } : null,
    per_scene: SCENES.map((sc, k) => ({ scene: sc.name, ...res(amMain.perScene[k]) })),
    lambda_sweep: amRuns.map((r) => {
      const b = bestFixed(r.t, amPool);
      return { lambda: r.lambda, ...res(r.t), probe_ms_per_segment: mean(r.probeMs), best_fixed_incl_accmpeg_under_bytes: b.underBytes ? { config: b.underBytes.name, ...res(b.underBytes.t) } : null, cheapest_fixed_incl_accmpeg_at_f1: b.atF1 ? { config: b.atF1.name, ...res(b.atF1.t) } : null };
    }),
    knobs_per_segment: amMain.knobs.map((k) => ({ resolution: k.resolution, fps: k.fps, qp: k.qp, threshold: k.threshold })),
    segment_bytes: amMain.outs.map((o) => o.bytes),
    mean_fraction_important: mean(amMain.knobs.map((k, i) => fractionImportant(importanceMask(impMaps[i], { threshold: k.threshold })))),
    fraction_important_per_segment: amMain.knobs.map((k, i) => fractionImportant(importanceMask(impMaps[i], { threshold: k.threshold }))),
    threshold_start_variants: amStartRuns.map((r) => ({
      lambda: r.lambda, threshold_start: r.amStart, ...res(r.t), probe_ms_per_segment: mean(r.probeMs),
      mean_fraction_important: mean(r.knobs.map((k, i) => fractionImportant(importanceMask(impMaps[i], { threshold: k.threshold })))),
      per_scene: SCENES.map((sc, k) => ({ scene: sc.name, ...res(r.perScene[k]) })),
      knobs_per_segment: r.knobs.map((k) => ({ resolution: k.resolution, fps: k.fps, qp: k.qp, threshold: k.threshold })),
    })),
  },
  accmpeg_fixed: amFixed.map((a) => ({
    config: a.name, resolution: a.cfg.resolution, fps: a.cfg.fps, qp: a.cfg.qp, low_qp: Math.min(51, a.cfg.qp + RENDER.lowQpDelta), threshold: a.cfg.threshold,
    ...res(a.t), fraction_important: a.fracImportant, cheap_model_ms_per_segment: mean(cheapMs),
    per_scene: SCENES.map((sc, k) => ({ scene: sc.name, ...res(a.perScene[k]) })),
  })),
  cheap_model_ms_per_segment: mean(cheapMs),
  detector_runs: detections,
  runtime_s: elapsedS,
});

// ---------------------------------------------------------------- plot
const colors: Rgb[] = [[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189], [255, 127, 14]];
const series: SeriesFn = (f) => runs.map((r, j) => ({ name: `L=${r.lambda}${r === main ? ' MAIN' : ''}`, color: colors[j % colors.length], values: r.knobs.map((k, i) => f(k, i, r)), width: r === main ? 3 : 1 }));
type SeriesFn = (f: (k: RenderKnobs, i: number, r: OaRun) => number) => PanelSeries[];
/** The knob-trajectory figure: resolution, fps, QP (and the AccMPEG threshold), kbps and F1 per segment. */
function plotKnobs(file: string, title: string, series: SeriesFn, opts: { qpTitle: string; threshold: boolean }): void {
  panelPlot(file, {
    title,
    xLabel: 'SEGMENT',
    n: N,
    markers: boundaries.map((b) => ({ x: b, label: SCENES[sceneOf[b]].name })),
    panels: [
      { title: 'RESOLUTION (SCALE)', levels: DEFAULT_KNOBS.resolution.values, series: series((k) => k.resolution) },
      { title: 'FPS', levels: DEFAULT_KNOBS.fps.values, series: series((k) => k.fps) },
      { title: opts.qpTitle, levels: DEFAULT_KNOBS.qp.values, series: series((k) => k.qp) },
      ...(opts.threshold ? [{ title: 'ACCMPEG THRESHOLD', levels: DEFAULT_KNOBS.threshold.values, series: series((k) => k.threshold) }] : []),
      { title: 'KBPS SENT', series: series((_, i, r) => (r.outs[i].bytes * 8) / 1000) },
      { title: 'F1 (EVALUATED FRAMES)', range: [0, 1], series: series((_, i, r) => r.outs[i].frames.reduce((a, f) => a + f.f1, 0) / r.outs[i].frames.length) },
    ],
  });
  console.log(`wrote ${file}`);
}
plotKnobs(path.resolve('bench', 'results', 'oneadapt-knobs.png'), 'ONEADAPT KNOBS PER 1-S SEGMENT (L = BANDWIDTH WEIGHT LAMBDA)', series, { qpTitle: 'QP', threshold: false });
const amSeries: SeriesFn = (f) => [...amRuns, ...amStartRuns].map((r, j) => ({ name: `L=${r.lambda}${r === amMain ? ' MAIN' : ''}${r.amStart !== AM_START_THRESHOLD ? ` A0=${r.amStart}` : ''}`, color: colors[j % colors.length], values: r.knobs.map((k, i) => f(k, i, r)), width: r === amMain ? 3 : r.amStart !== AM_START_THRESHOLD ? 2 : 1 }));
plotKnobs(path.resolve('bench', 'results', 'oneadapt-accmpeg-knobs.png'), 'ONEADAPT WITH ACCMPEG, 4 KNOBS, PER 1-S SEGMENT (L = LAMBDA, A0 = THRESHOLD START, ELSE 0.5)', amSeries, { qpTitle: 'QP OF IMPORTANT MBS (REST AT QP PLUS 10)', threshold: true });
log(`done in ${elapsedS.toFixed(0)} s, ${detections} detector runs`);
await cheap.release();
await analyzer.close();
