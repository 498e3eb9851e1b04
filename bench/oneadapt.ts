/**
 * OneAdapt benchmark (npm run bench:oneadapt): the product's controller against the best fixed configuration in
 * hindsight, a per-scene oracle, AWStream-style periodic profiling and Chameleon-style greedy one-knob profiling,
 * every byte on the wire counted, tuned on a development set and reported on a disjoint evaluation set.
 *
 *   npm run bench:oneadapt [-- --videos a.mp4:0-6,b.mp4:20-26,… --dev-videos … --target-f1 0.9 --dev-only]
 * (--dev-only: run the development sweep and stop, for exploration that must not see the evaluation set)
 *
 * Clips: `file:start-end` (seconds; a bare name is looked up in ../shared/videos), each decoded at 10 fps and
 * SCALED (not cropped) to 640×360, concatenated in the order given; 1-s segments of 10 frames, each a closed
 * GOP (renderSegment: x264 veryfast, no B-frames). Every change of clip is a scene change.
 * Development set (`--dev-videos`): where λ, lr, the deadband and the scene-change handling are chosen (`--tune`
 * sweeps them there; without it the pre-registered values below are used). Evaluation set (`--videos`): other time
 * spans of the same nine cameras, in another order; nothing is chosen on it. Both are named in the result file.
 *
 * Accuracy (detector/accuracy.ts ACCURACY, the product's definition): YOLOX-Nano on the ORIGINAL 640×360 frames is
 * the reference; road classes, score ≥ 0.3, IoU ≥ 0.5, same class; frames 1, 5, 9 of every segment (`--eval-every
 * 4`), identically for every method; a frame dropped by the fps knob is answered with the last sent frame's
 * detections; the server detects on the decoded frame at its streamed size, boxes scaled to 640×360.
 * "f1" = mean per-frame F1 (empty vs empty = 1); the aggregate F1 (summed TP/FP/FN) beside it.
 *
 * Bytes = bytes on the wire (server/protocol.ts segmentWireBytes): the video, the segment's JSON header with its
 * length prefix and WebSocket frame header, and any reference frame (OneAdapt's accuracy monitor, the profiling
 * baselines' high-quality uploads). Downlink (replies: detections, F1, DNNGrad map) is reported separately.
 *
 * Methods (one run, same frames, same accuracy):
 *  oneadapt    the product's loop (the agent's code path): segment t is sent at the current knobs; the server's
 *              DNNGrad is taken on segment t's last DECODED streamed frame (analyzer.dnnGrad, ONEADAPT_PROXY) and
 *              carried to the source MB grid (gradToSourceGrid); segment t+1 is probed with it (probeKnobs: both
 *              neighbours of every knob) and OneAdaptController.step sets the knobs of t+2 (the probe's current
 *              rendering is what is sent for t+1). Optional monitor: every N-th segment also uploads its last sent
 *              frame as a QP-`--monitor-qp` I-frame and the server's F1 on it reaches the controller one segment
 *              later (targetF1 constraint). Knob lists DEFAULT_KNOBS (resolution, fps, qp), start res 1 / fps 10 / QP 30.
 *  best_fixed  static grid resolution {1, .5} × fps {10, 5, 2} × QP {24, 30, 36, 42, 50} over the whole set;
 *              the cheapest configuration (bytes on the wire) whose F1 ≥ the pre-registered target `--target-f1`.
 *  per_scene_oracle  the cheapest choice of one grid configuration per scene (in hindsight) whose overall mean F1
 *              ≥ the target (Lagrangian sweep over the per-scene bytes/F1 tables; an upper bound of adaptation).
 *  profiling   AWStream-style: every `--window` segments the camera uploads one segment at high quality (res 1,
 *              fps 10, QP `--reference-qp`; those bytes are counted) and the server profiles the whole grid on it
 *              (encode + decode + detect, compute measured), then picks the cheapest config with profiled F1 ≥ target
 *              for the rest of the window.
 *  chameleon   Chameleon-style greedy: the same high-quality upload every `--window` segments, then one knob at a
 *              time (qp, resolution, fps), the others held at the current choice, the cheapest value meeting the
 *              target is kept; fewer configs profiled, cost measured the same way.
 */
import path from 'node:path';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { gradToSourceGrid, renderSegment, type Rendered, type RenderKnobs, type RenderOptions } from '../oneadapt/render.ts';
import { decodeSegment, encodeSegment } from '../encoder/index.ts';
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { OneAdaptController, type AdaptOptions, type Decision } from '../oneadapt/adapt.ts';
import { DEFAULT_KNOBS } from '../oneadapt/knobs.ts';
import { sampledIndices } from '../oneadapt/inputgrad.ts';
import { probeKnobs } from '../oneadapt/probe.ts';
import { contentSignature } from '../oneadapt/scene.ts';
import { SegmentAnalyzer } from '../server/analyzer.ts';
import { ACCURACY, f1FromCounts, frameF1, type FrameF1 } from '../detector/accuracy.ts';
import { encodeMbMap } from '../wire/mbmap.ts';
import { segmentWireBytes, wsFrameOverhead, type SegmentHeader } from '../wire/protocol.ts';
import type { Detection } from '../detector/postprocess.ts';
import { ONEADAPT_TUNED } from '../config/schema.ts';
import { DETECTOR_MODEL, loadFrames } from '../testdata/fixtures.ts';
import { printTable, writeResult } from './report.ts';
import { benchHeader, DEV_DEFAULT, EVAL_DEFAULT, parseClips, type Clip } from './oneadapt-sets.ts';
import { panelPlot, type PanelSeries, type Rgb } from './panelplot.ts';
import { bootstrap } from '../numeric/stats.ts';

/** Pre-registered before the evaluation run (see `preregistered` in the result file): DEV_DEFAULT, EVAL_DEFAULT. */

const { values: args } = parseArgs({
  options: {
    videos: { type: 'string', default: EVAL_DEFAULT },
    'dev-videos': { type: 'string', default: DEV_DEFAULT },
    'eval-every': { type: 'string', default: '4' },
    'target-f1': { type: 'string', default: '0.9' },
    window: { type: 'string', default: '5' },
    /** QP of the profiling baselines' high-quality upload (every frame at res 1, fps 10) */
    'reference-qp': { type: 'string', default: '20' },
    /** QP of OneAdapt's accuracy-monitor reference frame (one I-frame) */
    'monitor-qp': { type: 'string', default: '26' },
    /** where the monitor's reference comes from: 'upload' (an HQ I-frame sent to the server, its bytes counted) or
     *  'local' (the camera runs the detector on its own original frame and compares with the server's detections
     *  on the streamed frame: no upload, one detector run per monitored segment at the camera) */
    'monitor-source': { type: 'string', default: 'upload' },
    /** OneAdapt's use of a measured F1 (oneadapt/adapt.ts f1Mode) and its hold band */
    'f1-mode': { type: 'string', default: 'loss' },
    'f1-margin': { type: 'string', default: '0.01' },
    'f1-smoothing': { type: 'string', default: '0.5' },
    /** frames of each segment the local monitor compares (not the evaluated positions 1, 5, 9) */
    'monitor-frames': { type: 'string', default: '0,4,8' },
    /** the F1 the controller aims at with a monitor (default: --target-f1) */
    'controller-f1': { type: 'string' },
    /** OneAdapt settings (pre-registered = the product defaults, config/schema.ts ONEADAPT_TUNED) */
    lambda: { type: 'string', default: String(ONEADAPT_TUNED.lambda) },
    lr: { type: 'string', default: String(ONEADAPT_TUNED.lr) },
    deadband: { type: 'string', default: String(ONEADAPT_TUNED.deadband) },
    'on-scene-change': { type: 'string', default: ONEADAPT_TUNED.onSceneChange },
    'reference-every': { type: 'string', default: '0' },
    /** sweep these on the development set (comma lists) and report the pick; the eval run still uses the flags above */
    'no-tune': { type: 'boolean', default: false },
    'tune-lambdas': { type: 'string', default: '1,1.4,2' },
    'tune-lrs': { type: 'string', default: '' },
    'tune-scene': { type: 'string', default: 'burst' },
    'tune-monitor': { type: 'string', default: '0' },
    'tune-walk': { type: 'string', default: '0.88,0.9,0.92' },
    /** stop after the development sweep (exploration that must not see the evaluation set) */
    'dev-only': { type: 'boolean', default: false },
    /** extra labelled OneAdapt runs on the evaluation set (JSON overrides of the pick, ';'-separated) */
    'eval-variants': { type: 'string', default: '' },
    bootstrap: { type: 'string', default: '2000' },
    /** keep evaluated (segment, config) outcomes here between runs (deterministic encodes: a pure speed-up) */
    'cache-dir': { type: 'string' },
    /** result name: bench/results/<name>.json and <name>-knobs.png */
    name: { type: 'string', default: 'oneadapt' },
    /** say in the result file that this run is not pre-registered (e.g. the evaluation set was seen before the change) */
    posthoc: { type: 'string' },
  },
});
const W = 640, H = 360, FPS = 10, SEG = 10;
const EVAL_EVERY = Number(args['eval-every']);
const POS = [...Array(SEG).keys()].filter((i) => i % EVAL_EVERY === 1 % EVAL_EVERY);
const TARGET = Number(args['target-f1']);
const WINDOW = Number(args.window);
const REF_QP = Number(args['reference-qp']);
const MONITOR_QP = Number(args['monitor-qp']);
const MONITOR_FRAMES = args['monitor-frames']!.split(',').map(Number);
const RENDER: RenderOptions = { srcFps: FPS, lowQpDelta: 10 };
const BASE: RenderKnobs = { resolution: 1, fps: 10, qp: 30, threshold: 0.2 };
const HQ: RenderKnobs = { resolution: 1, fps: 10, qp: REF_QP, threshold: 0.2 };
const GRID = { resolution: [1, 0.5], fps: [10, 5, 2], qp: [24, 30, 36, 42, 50] };
/** monitor: where the F1 reference comes from (with referenceEvery > 0); f1Mode/controllerF1/f1Margin: adapt.ts */
interface OaParams { lambda: number; lr: number; deadband: number; onSceneChange: 'burst' | 'restart'; referenceEvery: number; monitor: 'upload' | 'local'; f1Mode: 'loss' | 'walk'; controllerF1: number; f1Margin: number }
const PRE: OaParams = { lambda: Number(args.lambda), lr: Number(args.lr), deadband: Number(args.deadband), onSceneChange: args['on-scene-change'] as 'burst' | 'restart', referenceEvery: Number(args['reference-every']), monitor: args['monitor-source'] as 'upload' | 'local', f1Mode: args['f1-mode'] as 'loss' | 'walk', controllerF1: Number(args['controller-f1'] ?? args['target-f1']), f1Margin: Number(args['f1-margin']) };

const log = (...a: unknown[]): void => console.error(`[${(performance.now() / 1000).toFixed(0)}s]`, ...a);
const tStart = performance.now();
const mean = (a: number[]): number => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);

// ---------------------------------------------------------------- inputs: bench/oneadapt-sets.ts

const analyzer = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL });
let detections = 0;
const detect = async (f: YuvFrame): Promise<{ dets: Detection[]; raw: Float32Array }> => {
  detections++;
  const r = await analyzer.detector.detect(f);
  if (f.width === W && f.height === H) return { dets: r.detections, raw: r.raw };
  const sx = W / f.width, sy = H / f.height;
  return { dets: r.detections.map((b) => ({ ...b, x1: b.x1 * sx, x2: b.x2 * sx, y1: b.y1 * sy, y2: b.y2 * sy })), raw: r.raw };
};

/** A realistic header for a rendering (bench/oneadapt-sets.ts), to count its bytes exactly as the agent sends them. */
const header = (seq: number, r: Rendered, k: RenderKnobs, ref: number): SegmentHeader => benchHeader(seq, r, k, ref, W, H);

interface Outcome { video: number; wire: number; headers: number; frames: FrameF1[]; computeS: number }
class DataSet {
  segments: YuvFrame[][] = [];
  sceneOf: number[] = [];
  refDets: Detection[][][] = [];
  refS: number[] = [];
  signatures: Float32Array[] = [];
  private cache = new Map<string, Outcome>();
  private get cacheFile(): string | null {
    if (!args['cache-dir']) return null;
    const id = createHash('sha1').update(JSON.stringify([this.clips, POS, W, H, FPS, SEG])).digest('hex').slice(0, 12);
    return path.join(args['cache-dir'], `oneadapt-${this.label}-${id}.json`);
  }
  loadCache(): void {
    const f = this.cacheFile;
    if (f && existsSync(f)) for (const [k, v] of JSON.parse(readFileSync(f, 'utf8')) as [string, Outcome][]) this.cache.set(k, v);
  }
  saveCache(): void {
    const f = this.cacheFile;
    if (!f) return;
    mkdirSync(path.dirname(f), { recursive: true });
    writeFileSync(f, JSON.stringify([...this.cache]));
  }
  private grads = new Map<string, { proxy: number; map: MbMap; ms: number; downlink: number }>();
  private refs = new Map<number, { bytes: number; dets: Detection[] }>();
  constructor(readonly label: string, readonly clips: Clip[]) {}

  async load(): Promise<void> {
    this.clips.forEach((c, k) => {
      const frames = loadFrames(c.file, Math.round((c.endS - c.startS) * FPS), { startS: c.startS, width: W, height: H, fps: FPS });
      for (let i = 0; i + SEG <= frames.length; i += SEG) { this.segments.push(frames.slice(i, i + SEG)); this.sceneOf.push(k); }
    });
    for (const frames of this.segments) {
      const t = performance.now();
      const d: Detection[][] = [];
      for (const p of POS) d.push((await detect(frames[p])).dets);
      this.refDets.push(d);
      this.refS.push((performance.now() - t) / 1000);
      this.signatures.push(contentSignature(frames[0]));
    }
    this.loadCache();
    log(`${this.label}: ${this.segments.length} segments from ${this.clips.length} clips (${this.cache.size} cached outcomes)`);
  }
  get n(): number { return this.segments.length; }
  get boundaries(): number[] { return this.sceneOf.map((s, i) => (i === 0 || s !== this.sceneOf[i - 1] ? i : -1)).filter((i) => i >= 0); }
  key(seg: number, k: RenderKnobs): string { return `${seg}|${k.resolution}|${k.fps}|${k.qp}`; }

  /** Encode (or take the given rendering), decode, detect at the evaluated positions; cached by segment+config. */
  async evaluate(seg: number, k: RenderKnobs, rendered?: Rendered): Promise<Outcome> {
    const key = this.key(seg, k);
    const hit = this.cache.get(key);
    if (hit) return hit;
    const t = performance.now();
    const frames = this.segments[seg];
    const r = rendered ?? (await renderSegment(frames, k, null, RENDER));
    const decoded = (await decodeSegment(r.encoded.data, r.encoded.codec)).frames;
    const src = sampledIndices(SEG, FPS, k.fps);
    const bySent = new Map<number, Detection[]>();
    const out: FrameF1[] = [];
    for (let j = 0; j < POS.length; j++) {
      const s = src[POS[j]];
      let d = bySent.get(s);
      if (!d) { d = (await detect(decoded[r.sent.indexOf(s)])).dets; bySent.set(s, d); }
      out.push(frameF1(d, this.refDets[seg][j], ACCURACY));
    }
    const wire = segmentWireBytes(header(seg, r, k, 0));
    const o = { video: wire.video, wire: wire.total, headers: wire.headers, frames: out, computeS: (performance.now() - t) / 1000 };
    this.cache.set(key, o);
    return o;
  }

  /** The server's DNNGrad on the rendering's last decoded frame, on the source MB grid; cached by segment+config. */
  async dnnGrad(seg: number, k: RenderKnobs, r: Rendered): Promise<{ proxy: number; map: MbMap; ms: number; downlink: number }> {
    const key = this.key(seg, k);
    const hit = this.grads.get(key);
    if (hit) return hit;
    const t = performance.now();
    const decoded = (await decodeSegment(r.encoded.data, r.encoded.codec)).frames;
    const last = decoded[decoded.length - 1];
    const g = await analyzer.dnnGrad(last);
    const mapBytes = Buffer.from(encodeMbMap(g.map).toString('base64')).length;
    const out = { proxy: g.proxy, map: gradToSourceGrid(g.map, last.width, last.height, W, H), ms: performance.now() - t, downlink: mapBytes };
    this.grads.set(key, out);
    return out;
  }

  private origDets = new Map<number, Detection[]>();
  /** The detector's output on an original frame (the local monitor's reference at the camera). */
  async originalDets(seg: number, frameIdx: number): Promise<Detection[]> {
    const key = seg * SEG + frameIdx;
    let d = this.origDets.get(key);
    if (!d) { d = (await detect(this.segments[seg][frameIdx])).dets; this.origDets.set(key, d); }
    return d;
  }

  /** The accuracy monitor's reference: the segment's last sent frame at QP MONITOR_QP (one I-frame), its bytes and detections. */
  async reference(seg: number, frameIdx: number): Promise<{ bytes: number; dets: Detection[] }> {
    const key = seg * SEG + frameIdx;
    const hit = this.refs.get(key);
    if (hit) return hit;
    const enc = await encodeSegment([this.segments[seg][frameIdx]], [null], { baseQp: MONITOR_QP, gop: 1, codec: 'h264' });
    const dec = (await decodeSegment(enc.data, enc.codec)).frames[0];
    const out = { bytes: enc.data.length, dets: (await detect(dec)).dets };
    this.refs.set(key, out);
    return out;
  }
}

interface Totals { bytes: number; video: number; f1: number; aggF1: number; kbps: number }
function totals(outs: { wire: number; video: number; frames: FrameF1[] }[]): Totals {
  let tp = 0, fp = 0, fn = 0, sum = 0, n = 0, bytes = 0, video = 0;
  for (const o of outs) {
    bytes += o.wire; video += o.video;
    for (const f of o.frames) { tp += f.tp; fp += f.fp; fn += f.fn; sum += f.f1; n++; }
  }
  return { bytes, video, f1: n ? sum / n : 1, aggF1: f1FromCounts(tp, fp, fn), kbps: outs.length ? (bytes * 8) / 1000 / outs.length : 0 };
}
const segF1 = (o: { frames: FrameF1[] }): number => mean(o.frames.map((f) => f.f1));
const cfgName = (k: Pick<RenderKnobs, 'resolution' | 'fps' | 'qp'>): string => `res ${k.resolution} fps ${k.fps} qp ${k.qp}`;

// ---------------------------------------------------------------- OneAdapt (the agent's loop)
interface SegOut { wire: number; video: number; reference: number; headers: number; frames: FrameF1[]; downlink: number }
interface OaRun { params: OaParams; knobs: RenderKnobs[]; outs: SegOut[]; probeMs: number[]; gradMs: number[]; decisions: Decision[]; t: Totals; perScene: Totals[]; encodes: number; proxies: number[]; monitorF1: (number | null)[] }
async function runOneAdapt(ds: DataSet, p: OaParams): Promise<OaRun> {
  const opts: AdaptOptions = { enabled: ['resolution', 'fps', 'qp'], start: { qp: BASE.qp }, lambda: p.lambda, lr: p.lr, deadband: p.deadband, onSceneChange: p.onSceneChange, targetF1: p.referenceEvery > 0 ? p.controllerF1 : undefined, f1Mode: p.f1Mode, f1Margin: p.f1Margin, f1Smoothing: Number(args['f1-smoothing']) };
  const ctrl = new OneAdaptController(opts);
  const knobs: RenderKnobs[] = [], outs: SegOut[] = [], probeMs: number[] = [], gradMs: number[] = [], decisions: Decision[] = [], proxies: number[] = [], monitorF1: (number | null)[] = [];
  let encodes = 0, lastHeaders = 0, refMean: number | null = null;
  let grad: { proxy: number; map: MbMap } | null = null;
  let pendingF1: number | null = null;
  for (let s = 0; s < ds.n; s++) {
    const k: RenderKnobs = { ...BASE, ...ctrl.values() };
    let rendered: Rendered;
    const overheadBytes = lastHeaders + (p.referenceEvery > 0 && refMean !== null ? refMean / p.referenceEvery : 0);
    if (grad) {
      const pr = await probeKnobs(ctrl, ds.segments[s], null, grad.map, BASE, RENDER);
      rendered = pr.current;
      probeMs.push(pr.probeMs);
      encodes += pr.encodes;
      decisions.push(ctrl.step(pr.probes, { bytes: rendered.encoded.data.length + overheadBytes, durationS: SEG / FPS, proxy: grad.proxy, f1: pendingF1, overheadBytes, signature: ds.signatures[s] }));
      // OA_DEBUG=1: one line per step (knobs, O, R/O, both neighbours' R/O per knob, the moves)
      if (process.env.OA_DEBUG) log(`seg ${s} scene ${ds.sceneOf[s]} ${cfgName(k)} O=${grad.proxy.toFixed(1)} R=${pr.currentR.toFixed(0)} R/O=${(pr.currentR / Math.max(grad!.proxy, 1)).toFixed(1)} probes ${pr.probes.map((q) => `${q.knob}:${q.dearer ? (q.dearer.r / Math.max(grad!.proxy, 1)).toFixed(0) : '-'}/${q.cheaper ? (q.cheaper.r / Math.max(grad!.proxy, 1)).toFixed(0) : '-'}`).join(' ')} → ${JSON.stringify(decisions.at(-1)!.grads)} ${decisions.at(-1)!.sceneChange.join(',')}`);
      pendingF1 = null;
    } else {
      rendered = await renderSegment(ds.segments[s], k, null, RENDER);
    }
    knobs.push(k);
    const o = await ds.evaluate(s, k, rendered);
    // server side: DNNGrad on the decoded streamed frame; the monitor's reference and F1 on sampled segments
    const g = await ds.dnnGrad(s, k, rendered);
    gradMs.push(g.ms);
    grad = g;
    proxies.push(g.proxy);
    let refBytes = 0;
    let mf1: number | null = null;
    if (p.referenceEvery > 0 && s % p.referenceEvery === 0) {
      const lastSent = rendered.sent[rendered.sent.length - 1];
      if (p.monitor === 'local') {
        // the camera's own detector on its original first frame against the server's detections on that frame as
        // received (the reply carries them): no upload; frame 0 is always sent and is not an evaluated position
        const decoded = (await decodeSegment(rendered.encoded.data, rendered.encoded.codec)).frames;
        const src = sampledIndices(SEG, FPS, k.fps);
        const f1s: number[] = [];
        for (const pos of MONITOR_FRAMES) f1s.push(frameF1((await detect(decoded[rendered.sent.indexOf(src[pos])])).dets, await ds.originalDets(s, pos), ACCURACY).f1);
        mf1 = mean(f1s);
        refMean = 0;
      } else {
        const ref = await ds.reference(s, lastSent);
        refBytes = ref.bytes;
        refMean = refMean === null ? ref.bytes : 0.8 * refMean + 0.2 * ref.bytes;
        const decoded = (await decodeSegment(rendered.encoded.data, rendered.encoded.codec)).frames;
        mf1 = frameF1((await detect(decoded[decoded.length - 1])).dets, ref.dets, ACCURACY).f1;
      }
      pendingF1 = mf1;
    }
    monitorF1.push(mf1);
    const wire = segmentWireBytes(header(s, rendered, k, refBytes));
    lastHeaders = wire.headers;
    // downlink: the reply's JSON (detections ≈ the evaluated frames' count is not known here: DNNGrad map + envelope)
    const downlink = g.downlink + 200 + wsFrameOverhead(g.downlink + 200, false);
    outs.push({ wire: wire.total, video: wire.video, reference: wire.reference, headers: wire.headers, frames: o.frames, downlink });
  }
  const t = totals(outs);
  log(`${ds.label} OneAdapt λ=${p.lambda} lr=${p.lr} db=${p.deadband} ${p.onSceneChange} ref/${p.referenceEvery}${p.referenceEvery ? ` ${p.monitor} ${p.f1Mode} F1 ${p.controllerF1}±${p.f1Margin}` : ''}: ${t.bytes} B, F1 ${t.f1.toFixed(3)}`);
  return { params: p, knobs, outs, probeMs, gradMs, decisions, t, perScene: ds.clips.map((_, c) => totals(outs.filter((_, i) => ds.sceneOf[i] === c))), encodes, proxies, monitorF1 };
}

// ---------------------------------------------------------------- the static grid (best fixed in hindsight)
const grid: RenderKnobs[] = [];
for (const resolution of GRID.resolution) for (const fps of GRID.fps) for (const qp of GRID.qp) grid.push({ ...BASE, resolution, fps, qp });
interface Fixed { cfg: RenderKnobs; name: string; outs: Outcome[]; t: Totals; perScene: Totals[] }
async function fixedRuns(ds: DataSet): Promise<Fixed[]> {
  const out: Fixed[] = [];
  for (const cfg of grid) {
    const outs: Outcome[] = [];
    for (let s = 0; s < ds.n; s++) outs.push(await ds.evaluate(s, cfg));
    out.push({ cfg, name: cfgName(cfg), outs, t: totals(outs), perScene: ds.clips.map((_, c) => totals(outs.filter((_, i) => ds.sceneOf[i] === c))) });
  }
  return out;
}
const cheapestAt = (fs: Fixed[], f1: number): Fixed | null => [...fs].filter((f) => f.t.f1 >= f1).sort((a, b) => a.t.bytes - b.t.bytes)[0] ?? null;

// ---------------------------------------------------------------- development set: tuning
const dev = new DataSet('dev', parseClips(args['dev-videos']!));
const evalSet = new DataSet('eval', parseClips(args.videos!));
await dev.load();
const tuning: { params: OaParams; bytes: number; f1: number; agg_f1: number }[] = [];
let chosen = PRE;
const devRuns = new Map<string, OaRun>();
if (!args['no-tune']) {
  const list = (s: string): number[] => s.split(',').filter(Boolean).map(Number);
  const cands: OaParams[] = [];
  for (const lambda of list(args['tune-lambdas']!)) cands.push({ ...PRE, lambda });
  for (const lr of list(args['tune-lrs']!)) if (lr !== PRE.lr) cands.push({ ...PRE, lr });
  for (const sc of args['tune-scene']!.split(',')) if (sc !== PRE.onSceneChange) cands.push({ ...PRE, onSceneChange: sc as 'burst' | 'restart' });
  for (const m of list(args['tune-monitor']!)) if (m !== PRE.referenceEvery) cands.push({ ...PRE, referenceEvery: m });
  // the F1 walk with the camera's local monitor on every segment, per controller F1
  for (const f of list(args['tune-walk']!)) cands.push({ ...PRE, referenceEvery: 1, monitor: 'local', f1Mode: 'walk', controllerF1: f });
  for (const c of cands) {
    const r = await runOneAdapt(dev, c);
    devRuns.set(JSON.stringify(c), r);
    tuning.push({ params: c, bytes: r.t.bytes, f1: r.t.f1, agg_f1: r.t.aggF1 });
  }
  // rule: the cheapest setting whose development F1 reaches the target
  const ok = tuning.filter((t) => t.f1 >= TARGET).sort((a, b) => a.bytes - b.bytes);
  chosen = (ok[0] ?? [...tuning].sort((a, b) => b.f1 - a.f1)[0]).params;
  printTable(`Development set: OneAdapt settings (target F1 ${TARGET}; pick = cheapest reaching it)`, tuning.map((t) => ({ ...t.params, kB: Math.round(t.bytes / 100) / 10, f1: t.f1, agg_f1: t.agg_f1 })) as never);
  console.log(`dev pick: ${JSON.stringify(chosen)} (centre of the sweep: ${JSON.stringify(PRE)}); the evaluation uses the pick`);
}
const devMain = devRuns.get(JSON.stringify(chosen)) ?? (await runOneAdapt(dev, chosen));
// the development set's own best fixed configuration (a yardstick for the sweep; nothing is picked by it)
const devFixed = await fixedRuns(dev);
const devBest = cheapestAt(devFixed, TARGET);
console.log(`development best fixed (F1 >= ${TARGET}): ${devBest ? `${devBest.name} ${devBest.t.bytes} B, F1 ${devBest.t.f1.toFixed(3)}` : 'none'}`);
if (args['dev-only']) {
  // the fixed configurations' frontier on the development set (no cheaper config with higher F1)
  const frontier = [...devFixed].sort((a, b) => a.t.bytes - b.t.bytes).filter((f, i, arr) => arr.slice(0, i).every((g) => g.t.f1 < f.t.f1));
  printTable('development set: fixed-configuration frontier', frontier.map((f) => ({ config: f.name, kB: f.t.bytes / 1000, f1: f.t.f1 })));
  dev.saveCache();
  log('--dev-only: stopping before the evaluation set');
  process.exit(0);
}

// ---------------------------------------------------------------- evaluation set
await evalSet.load();
const ds = evalSet;
const N = ds.n;
const main = await runOneAdapt(ds, chosen);
const variants: OaRun[] = [];
for (const v of (args['eval-variants'] ?? '').split(';').filter(Boolean)) variants.push(await runOneAdapt(ds, { ...chosen, ...JSON.parse(v) }));

// static grid over the evaluation set
const fixed = await fixedRuns(ds);
log(`grid: ${grid.length} configs × ${N} segments, ${detections} detector runs so far`);
ds.saveCache();
dev.saveCache();
const bestFixed = cheapestAt(fixed, TARGET) ?? [...fixed].sort((a, b) => b.t.f1 - a.t.f1)[0];
const cheapestAtOaF1 = cheapestAt(fixed, main.t.f1);

// per-scene oracle: one grid config per scene, cheapest overall with mean F1 ≥ target (Lagrangian sweep)
const scenes = ds.clips.map((_, c) => [...Array(N).keys()].filter((i) => ds.sceneOf[i] === c));
const nFrames = N * POS.length;
function oracleFor(target: number): { bytes: number; f1: number; configs: string[]; outs: Outcome[] } {
  let best: { bytes: number; f1: number; configs: string[]; outs: Outcome[] } | null = null;
  for (let e = -4; e <= 8; e += 0.02) {
    const mu = 10 ** e; // bytes per unit of summed per-frame F1
    const pick = scenes.map((idx) => {
      let b: Fixed | null = null, bv = Infinity;
      for (const f of fixed) {
        const bytes = idx.reduce((a, i) => a + f.outs[i].wire, 0);
        const f1s = idx.reduce((a, i) => a + f.outs[i].frames.reduce((x, y) => x + y.f1, 0), 0);
        const v = bytes - mu * f1s;
        if (v < bv) { bv = v; b = f; }
      }
      return b!;
    });
    const outs = [...Array(N).keys()].map((i) => pick[ds.sceneOf[i]].outs[i]);
    const t = totals(outs);
    if (t.f1 >= target && (!best || t.bytes < best.bytes)) best = { bytes: t.bytes, f1: t.f1, configs: pick.map((f) => f.name), outs };
  }
  return best ?? { bytes: NaN, f1: NaN, configs: [], outs: [] };
}
const oracle = oracleFor(TARGET);
void nFrames;

// profiling baselines (HQ upload of the profiled segment counted; config applies from the next segment)
interface ProfRun { name: string; t: Totals; configs: string[]; costS: number; profiled: number; hqBytes: number; outs: { wire: number; video: number; frames: FrameF1[] }[] }
async function profilingRun(kind: 'awstream' | 'chameleon'): Promise<ProfRun> {
  const outs: { wire: number; video: number; frames: FrameF1[] }[] = [];
  const configs: string[] = [];
  let costS = 0, profiled = 0, hqBytes = 0;
  let cur: RenderKnobs = { ...BASE };
  for (let s = 0; s < N; s++) {
    if (s % WINDOW === 0) {
      const hq = await ds.evaluate(s, HQ); // the segment goes up at high quality: the server profiles on it
      outs.push(hq);
      hqBytes += hq.wire;
      configs.push(`profile (${cfgName(HQ)})`);
      costS += ds.refS[s];
      const f1Of = async (k: RenderKnobs): Promise<{ o: Outcome; f1: number }> => {
        const o = await ds.evaluate(s, k);
        costS += o.computeS; profiled++;
        return { o, f1: segF1(o) };
      };
      if (kind === 'awstream') {
        const prof: { k: RenderKnobs; o: Outcome; f1: number }[] = [];
        for (const k of grid) prof.push({ k, ...(await f1Of(k)) });
        const ok = prof.filter((p) => p.f1 >= TARGET).sort((a, b) => a.o.wire - b.o.wire);
        cur = (ok[0] ?? [...prof].sort((a, b) => b.f1 - a.f1 || a.o.wire - b.o.wire)[0]).k;
      } else {
        for (const knob of ['qp', 'resolution', 'fps'] as const) {
          const prof: { k: RenderKnobs; o: Outcome; f1: number }[] = [];
          for (const v of GRID[knob]) { const k = { ...cur, [knob]: v }; prof.push({ k, ...(await f1Of(k)) }); }
          const ok = prof.filter((p) => p.f1 >= TARGET).sort((a, b) => a.o.wire - b.o.wire);
          cur = (ok[0] ?? [...prof].sort((a, b) => b.f1 - a.f1 || a.o.wire - b.o.wire)[0]).k;
        }
      }
      continue;
    }
    outs.push(await ds.evaluate(s, cur));
    configs.push(cfgName(cur));
  }
  const t = totals(outs);
  log(`${kind}: ${t.bytes} B, F1 ${t.f1.toFixed(3)}, profiling ${costS.toFixed(1)} s`);
  return { name: kind, t, configs, costS, profiled, hqBytes, outs };
}
const awstream = await profilingRun('awstream');
const chameleon = await profilingRun('chameleon');

// ---------------------------------------------------------------- bootstrap over segments (paired)
function paired(a: { wire: number; frames: FrameF1[] }[], b: { wire: number; frames: FrameF1[] }[], B = Number(args.bootstrap)): { saving: { value: number; ci_low: number; ci_high: number }; f1_diff: { value: number; ci_low: number; ci_high: number } } {
  const sum = (idx: number[], f: (i: number) => number): number => idx.reduce((t, i) => t + f(i), 0);
  const saving = (idx: number[]): number => 1 - sum(idx, (i) => a[i].wire) / sum(idx, (i) => b[i].wire);
  const f1Diff = (idx: number[]): number => sum(idx, (i) => segF1(a[i]) - segF1(b[i])) / idx.length;
  const all = [...a.keys()];
  // the same seed gives both intervals the same resampled segments (paired)
  const [sLo, sHi] = bootstrap(all.length, saving, B, 12345);
  const [dLo, dHi] = bootstrap(all.length, f1Diff, B, 12345);
  return { saving: { value: saving(all), ci_low: sLo, ci_high: sHi }, f1_diff: { value: f1Diff(all), ci_low: dLo, ci_high: dHi } };
}
const vsBest = paired(main.outs, bestFixed.outs);
const vsOracle = oracle.outs.length ? paired(main.outs, oracle.outs) : null;
const vsAw = paired(main.outs, awstream.outs);
const vsCh = paired(main.outs, chameleon.outs);

// ---------------------------------------------------------------- report
const kB = (b: number): number => Math.round(b / 100) / 10;
const row = (method: string, t: Totals, note = ''): Record<string, string | number> => ({ method, kB_wire: kB(t.bytes), kB_video: kB(t.video), kbps: Math.round(t.kbps), f1: t.f1, agg_f1: t.aggF1, note });
const sumOf = (k: keyof SegOut, r: OaRun): number => r.outs.reduce((a, o) => a + (o[k] as number), 0);
printTable(`OneAdapt vs baselines — evaluation set, ${N} × 1-s segments, ${ds.boundaries.length - 1} scene changes, 640×360; bytes on the wire (video + headers + reference frames); F1 per ACCURACY, frames ${POS.join(',')}; target F1 ${TARGET}`, [
  row('OneAdapt (dev pick)', main.t, `λ ${chosen.lambda} lr ${chosen.lr} deadband ${chosen.deadband} ${chosen.onSceneChange} monitor ${chosen.referenceEvery ? `1/${chosen.referenceEvery}` : 'off'}`),
  ...variants.map((v) => row(`OneAdapt variant`, v.t, JSON.stringify(v.params))),
  row('best fixed (hindsight)', bestFixed.t, `${bestFixed.name}: cheapest with F1 ≥ ${TARGET}`),
  ...(oracle.outs.length ? [row('per-scene oracle', totals(oracle.outs), oracle.configs.join(' | '))] : []),
  row('AWStream profiling', awstream.t, `every ${WINDOW} s, ${awstream.costS.toFixed(1)} s compute, HQ uploads ${kB(awstream.hqBytes)} kB`),
  row('Chameleon greedy', chameleon.t, `every ${WINDOW} s, ${chameleon.costS.toFixed(1)} s compute, HQ uploads ${kB(chameleon.hqBytes)} kB`),
  ...(cheapestAtOaF1 ? [row('cheapest fixed, F1 ≥ OneAdapt', cheapestAtOaF1.t, cheapestAtOaF1.name)] : []),
]);
console.log(`\nOneAdapt vs best fixed: saving ${(vsBest.saving.value * 100).toFixed(1)}% [${(vsBest.saving.ci_low * 100).toFixed(1)}, ${(vsBest.saving.ci_high * 100).toFixed(1)}], ΔF1 ${vsBest.f1_diff.value.toFixed(4)} [${vsBest.f1_diff.ci_low.toFixed(4)}, ${vsBest.f1_diff.ci_high.toFixed(4)}] (95% bootstrap over segments)`);
console.log(`oracle vs best fixed: saving ${((1 - oracle.bytes / bestFixed.t.bytes) * 100).toFixed(1)}%; OneAdapt bytes / oracle bytes = ${(main.t.bytes / oracle.bytes).toFixed(3)}`);
printTable('Per scene (F1 / kB on the wire)', ds.clips.map((c, k) => ({
  scene: `${c.name} ${c.startS}-${c.endS}`,
  oneadapt: `${main.perScene[k].f1.toFixed(3)} / ${kB(main.perScene[k].bytes)}`,
  best_fixed: `${bestFixed.perScene[k].f1.toFixed(3)} / ${kB(bestFixed.perScene[k].bytes)}`,
  oracle: `${totals(scenes[k].map((i) => oracle.outs[i])).f1.toFixed(3)} / ${kB(totals(scenes[k].map((i) => oracle.outs[i])).bytes)} (${oracle.configs[k]})`,
})));
printTable('OneAdapt per segment (knobs used; O = DNNGrad proxy of its last decoded frame)', main.knobs.map((k, i) => ({
  seg: i, scene: ds.clips[ds.sceneOf[i]].name.slice(0, 14), res: k.resolution, fps: k.fps, qp: k.qp, kB: kB(main.outs[i].wire), f1: segF1(main.outs[i]), O: main.proxies[i],
  scene_change: (main.decisions[i - 1]?.sceneChange ?? []).join('+'),
})));
printTable('Static grid (evaluation set)', [...fixed].sort((a, b) => a.t.bytes - b.t.bytes).map((f) => row(f.name, f.t)));

const res = (t: Totals): Record<string, number> => ({ bytes: t.bytes, video_bytes: t.video, f1: t.f1, agg_f1: t.aggF1, kbps: t.kbps });
const clipName = (c: Clip): string => `${path.basename(c.file)}:${c.startS}-${c.endS}`;
const overhead = {
  probe_ms_per_segment: mean(main.probeMs), probe_extra_encodes_per_segment: main.encodes / Math.max(1, main.probeMs.length),
  dnngrad_ms_per_segment: mean(main.gradMs.filter((m) => m > 0)),
  downlink_bytes: sumOf('downlink', main), downlink_note: 'replies: DNNGrad map (base64 in JSON) + ~200 B envelope per segment, detections not included',
};
const doneMet = vsBest.saving.value >= 0.15 && main.t.f1 >= bestFixed.t.f1 - 0.01 && main.t.bytes < awstream.t.bytes && main.t.bytes < chameleon.t.bytes;
writeResult(args.name!, {
  video: `evaluation set: ${ds.clips.map(clipName).join(' + ')}; each at 10 fps scaled to ${W}x${H}; ${N} segments of ${SEG} frames; ${ds.boundaries.length - 1} scene changes`,
  accuracy: `mean per-frame F1 vs YOLOX-Nano on the original frames (detector/accuracy.ts ACCURACY): road classes, score >= ${ACCURACY.scoreThreshold}, IoU ${ACCURACY.iouThreshold}, same class; frames ${POS.join(',')} of every segment; dropped frames answered with the last sent frame`,
  bytes_counted: ['video', 'headers', 'reference'],
  dev_set: dev.clips.map(clipName),
  eval_set: ds.clips.map(clipName),
  ...(args.posthoc ? { posthoc: args.posthoc } : {}),
  preregistered: { target_f1: TARGET, tuning_candidates: args['no-tune'] ? [PRE] : tuning.map((t) => t.params), tuning_rule: 'cheapest development-set setting with F1 >= target (else the most accurate); that pick alone is evaluated',  window_segments: WINDOW, reference_qp: REF_QP, monitor_qp: MONITOR_QP, monitor_frames_local: MONITOR_FRAMES, f1_smoothing: Number(args['f1-smoothing']), grid: GRID, start: { resolution: 1, fps: 10, qp: BASE.qp }, knobs: ['resolution', 'fps', 'qp'], rule_best_fixed: `cheapest grid config (bytes on the wire) with eval F1 >= ${TARGET}` },
  dev_tuning: { rule: 'cheapest setting whose development F1 >= target', runs: tuning, pick: chosen, dev_result_of_pick: res(devMain.t), dev_best_fixed: devBest ? { config: devBest.name, ...res(devBest.t) } : null },
  oneadapt: { ...res(main.t), reference_bytes: sumOf('reference', main), header_bytes: sumOf('headers', main), ...chosen, ...overhead },
  best_fixed: { config: bestFixed.name, ...res(bestFixed.t), rule: `cheapest static grid config with F1 >= ${TARGET} (hindsight, evaluation set)` },
  per_scene_oracle: { bytes: oracle.bytes, f1: oracle.f1, configs: oracle.configs, rule: `cheapest choice of one grid config per scene with overall mean F1 >= ${TARGET}` },
  saving_vs_best_fixed: vsBest.saving,
  f1_diff_vs_best_fixed: vsBest.f1_diff,
  saving_vs_oracle: vsOracle?.saving ?? null,
  oneadapt_over_oracle_bytes: main.t.bytes / oracle.bytes,
  oracle_saving_vs_best_fixed: 1 - oracle.bytes / bestFixed.t.bytes,
  profiling: { ...res(awstream.t), profiling_cost_s: awstream.costS, profiled_configs: awstream.profiled, hq_upload_bytes: awstream.hqBytes, window_segments: WINDOW, configs: awstream.configs, saving_of_oneadapt: vsAw.saving },
  chameleon: { bytes: chameleon.t.bytes, f1: chameleon.t.f1, profiling_cost_s: chameleon.costS, agg_f1: chameleon.t.aggF1, profiled_configs: chameleon.profiled, hq_upload_bytes: chameleon.hqBytes, configs: chameleon.configs, saving_of_oneadapt: vsCh.saving },
  cheapest_fixed_at_oneadapt_f1: cheapestAtOaF1 ? { config: cheapestAtOaF1.name, ...res(cheapestAtOaF1.t), byte_saving_of_oneadapt: 1 - main.t.bytes / cheapestAtOaF1.t.bytes } : null,
  done_when: { met: doneMet, rule: 'saving_vs_best_fixed >= 0.15 with F1 >= best_fixed F1 - 0.01, and fewer bytes than both profiling baselines (their HQ uploads counted)' },
  lambda_sweep: tuning.map((t) => ({ set: 'dev', ...t.params, bytes: t.bytes, f1: t.f1, agg_f1: t.agg_f1 })),
  eval_variants: variants.map((v) => ({ ...v.params, ...res(v.t) })),
  per_scene: ds.clips.map((c, k) => ({ scene: clipName(c), oneadapt: res(main.perScene[k]), best_fixed: res(bestFixed.perScene[k]), oracle: { config: oracle.configs[k], ...res(totals(scenes[k].map((i) => oracle.outs[i]))) } })),
  grid: fixed.map((f) => ({ config: f.name, ...res(f.t) })),
  oneadapt_knobs: main.knobs.map((k) => ({ resolution: k.resolution, fps: k.fps, qp: k.qp })),
  oneadapt_segment_bytes: main.outs.map((o) => o.wire),
  oneadapt_scene_changes_detected: main.decisions.map((d, i) => (d.sceneChange.length ? { segment: i + 1, signals: d.sceneChange } : null)).filter(Boolean),
  dnngrad_proxy: main.proxies,
  scene_boundaries: ds.boundaries,
  detector_runs: detections,
  load_avg: (await import('node:os')).loadavg(),
  runtime_s: (performance.now() - tStart) / 1000,
});

// ---------------------------------------------------------------- knob-trajectory plot
const colors: Rgb[] = [[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189], [255, 127, 14]];
const runs = [main, ...variants];
const series = (f: (k: RenderKnobs, i: number, r: OaRun) => number): PanelSeries[] => runs.map((r, j) => ({ name: j === 0 ? 'ONEADAPT' : `VARIANT ${j}`, color: colors[j % colors.length], values: r.knobs.map((k, i) => f(k, i, r)), width: j === 0 ? 3 : 1 }));
const oracleCfg = (i: number): RenderKnobs => fixed.find((f) => f.name === oracle.configs[ds.sceneOf[i]])?.cfg ?? BASE;
const withRefs = (s: PanelSeries[], f: (i: number) => [number, number]): PanelSeries[] => [
  ...s,
  { name: 'BEST FIXED', color: [120, 120, 120], values: [...Array(N).keys()].map((i) => f(i)[0]), width: 1 },
  { name: 'ORACLE', color: [255, 127, 14], values: [...Array(N).keys()].map((i) => f(i)[1]), width: 1 },
];
panelPlot(path.resolve('bench', 'results', `${args.name}-knobs.png`), {
  title: `ONEADAPT KNOBS PER 1-S SEGMENT, EVALUATION SET (TARGET F1 ${TARGET})`,
  xLabel: 'SEGMENT',
  n: N,
  markers: ds.boundaries.map((b) => ({ x: b, label: ds.clips[ds.sceneOf[b]].name.split('-')[0].toUpperCase() })),
  panels: [
    { title: 'RESOLUTION (SCALE)', levels: DEFAULT_KNOBS.resolution.values, series: withRefs(series((k) => k.resolution), (i) => [bestFixed.cfg.resolution, oracleCfg(i).resolution]) },
    { title: 'FPS', levels: DEFAULT_KNOBS.fps.values, series: withRefs(series((k) => k.fps), (i) => [bestFixed.cfg.fps, oracleCfg(i).fps]) },
    { title: 'QP', levels: DEFAULT_KNOBS.qp.values, series: withRefs(series((k) => k.qp), (i) => [bestFixed.cfg.qp, oracleCfg(i).qp]) },
    { title: 'KBPS ON THE WIRE', series: withRefs(series((_, i, r) => (r.outs[i].wire * 8) / 1000), (i) => [(bestFixed.outs[i].wire * 8) / 1000, (oracle.outs[i].wire * 8) / 1000]) },
    { title: 'F1 (EVALUATED FRAMES)', range: [0, 1], series: withRefs(series((_, i, r) => segF1(r.outs[i])), (i) => [segF1(bestFixed.outs[i]), segF1(oracle.outs[i])]) },
  ],
});
log(`done in ${((performance.now() - tStart) / 1000).toFixed(0)} s, ${detections} detector runs`);
await analyzer.close();
