/**
 * AccMPEG benchmark (npm run bench:accmpeg): bytes vs detector F1, AccMPEG against uniform QP, on scenes the
 * cheap model never saw.
 *
 *   npm run bench:accmpeg                         leave-one-scene-out over the nine scenes (testdata/scenes.ts)
 *   npm run bench:accmpeg -- --scenes a,b,c       only these held-out scenes (settings still chosen on the others' dev spans)
 *   npm run bench:accmpeg -- --phase dev          the development phase only (prints the chosen settings; no evaluation)
 *   npm run bench:accmpeg -- --reuse-dev          take the development results from data/accmpeg/dev-cache.json (same settings
 *                                                 and models only) instead of measuring them again
 *   npm run bench:accmpeg -- --video PATH [--start S] [--duration S] [--model M]
 *                                                 the shipped model and the agent's default rule on any clip
 *
 * Protocol (../shared/notes/evaluation.md):
 * - Fold s: the cheap model data/cheap/loso/saldiff-s.onnx is trained on the OTHER eight scenes' training spans
 *   (training/train_loso.sh; made here if missing). No frame of scene s trains it or scores a setting choice.
 * - Development: every rule setting of GRID (α/floor, important QP, rest QP) and the uniform curve are measured on
 *   each scene's dev span with that scene's fold model. For fold s the setting with the best median saving over the
 *   OTHER scenes' dev spans is pre-registered; then the evaluation span of s is measured once with it. (Second-order
 *   caveat: each other scene s′ was scored with its own fold model, whose training included s's training span;
 *   nested folds, a model per pair of held-out scenes, would remove that and cost 36 more models.)
 * - Every byte of every chunk counted (the encoded segment; the same container for every scheme); chunks of 10
 *   frames at 10 fps, each a closed GOP (renderSegment, x264 veryfast).
 * - Accuracy (detector/accuracy.ts ACCURACY, the same as bench:oneadapt and the server): YOLOX-Nano on the original
 *   frames is the reference; road classes, score ≥ 0.3, IoU 0.5, same class; aggregate F1 over a span's frames.
 * - Saving at equal F1 = 1 − bytes / (the uniform curve's Pareto frontier interpolated at the same F1). Above the
 *   best uniform F1 the best uniform point's bytes are used (a lower bound on the saving); below the cheapest
 *   uniform point's F1, that point's bytes (flagged: uniform is then both cheaper and more accurate).
 *   95% interval: bootstrap over chunks (the same resample for uniform and AccMPEG), 2000 draws.
 * - In the same run: the oracle (the same rule on the frames' true labels), AccMPEG's code's label (sal) model, every
 *   grid setting on the evaluation span (reported, not chosen), the paper's delay model per chunk
 *   (RTT + bytes/bandwidth + encode + cheap model on two frames), and the agent's per-camera α calibration
 *   (cheapmodel/calibrate.ts): α calibrated on the first half of the evaluation chunks from the saliency label of
 *   each chunk's last frame (standing in for the server's DNNGrad reply), both α compared on the second half.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PNG } from 'pngjs';
import { scaleFrame } from '../encoder/index.ts';
import type { MbMap } from '../encoder/frame.ts';
import { CheapModel, DEFAULT_CHEAP_MODEL } from '../cheapmodel/model.ts';
import { coverLabels, readLabelDir } from '../cheapmodel/labels.ts';
import { meanMap } from '../cheapmodel/qpmap.ts';
import { calibrateThreshold, sampleFromSaliency } from '../cheapmodel/calibrate.ts';
import { Detector } from '../detector/detector.ts';
import { ACCURACY } from '../detector/accuracy.ts';
import { labelVideo } from '../server/label-cli.ts';
import { ACCMPEG_DEFAULTS } from '../config/schema.ts';
import { DETECTOR_MODEL, VIDEOS, loadFrames } from '../testdata/fixtures.ts';
import { mean, median } from '../numeric/stats.ts';
import { SCENES, labelDir, type Scene } from '../testdata/scenes.ts';
import { agg, compare, dominating, savingOn, type Pt, type Stats } from '../numeric/equal-f1.ts';
import { CHUNK, DILATE, Evaluator, FPS, UNIFORM_QPS, cheapMaps, key, spanFrames, type Setting } from './accmpeg-eval.ts';
import { printTable, writeResult } from './report.ts';
import { linePlot } from './plot.ts';

/** α / floor pairs: "sparse" and "generous"; each with dilation by one MB and no opening/closing */
const RULES = [{ name: 'sparse', threshold: 0.5, minFraction: 0.05 }, { name: 'generous', threshold: 0.3, minFraction: 0.15 }];
const HIGH_QPS = [30, 34, 38];
const LOW_QPS = [44, 50];
/** label mass a frame's true labels cover (training/train_cheap.py --cover) */
const COVER = 0.5;
const EPOCHS = 15;
/** the paper's delay model */
const RTT_MS = 100;
const UPLINK_BPS = 1e6;
/** the agent's default cheapModel.calibrate.targetRecall */
const CALIB_RECALL = 0.9;

const GRID: Setting[] = RULES.flatMap((r) => HIGH_QPS.flatMap((h) => LOW_QPS.map((l) => ({ rule: r.name, threshold: r.threshold, minFraction: r.minFraction, highQp: h, lowQp: l }))));

function ensureLabels(s: Scene, part: 'train' | 'eval'): Promise<unknown> | null {
  const dir = path.resolve(labelDir(s.name, part));
  if (existsSync(path.join(dir, 'meta.json'))) return null;
  console.error(`labelling ${s.name} ${part} span …`);
  return labelVideo({ video: s.video, out: dir, modelPath: DETECTOR_MODEL, ...s[part] });
}

const foldModel = (label: string, scene: string): string => path.resolve('data', 'cheap', 'loso', `${label}-${scene}.onnx`);

function ensureFoldModel(label: string, held: string): string {
  const out = foldModel(label, held);
  if (existsSync(out)) return out;
  mkdirSync(path.dirname(out), { recursive: true });
  const train = SCENES.filter((s) => s.name !== held).map((s) => path.resolve(labelDir(s.name, 'train')));
  console.error(`training the ${label} cheap model without ${held} …`);
  execFileSync('/usr/bin/python3', ['training/train_cheap.py', '--label', label, '--cover', String(COVER), '--epochs', String(EPOCHS), '--train', ...train, '--out', out, '--log', out.replace(/\.onnx$/, '.json')], { stdio: ['ignore', 'ignore', 'inherit'] });
  return out;
}

function delayMs(bytesPerChunk: number, encodeMs: number, cheapMs: number): number {
  return RTT_MS + (bytesPerChunk * 8 * 1000) / UPLINK_BPS + encodeMs + cheapMs;
}

async function cheapMs720(model: CheapModel): Promise<number> {
  const hw = scaleFrame(loadFrames(VIDEOS.highway, 1, { startS: 25 })[0], 1280, 720);
  for (let i = 0; i < 3; i++) await model.importance(hw);
  const times: number[] = [];
  for (let i = 0; i < 20; i++) { const t = performance.now(); await model.importance(hw); times.push(performance.now() - t); }
  return median(times);
}

/** Grid of per-scene plots (uniform curve, AccMPEG's grid, the pre-registered point, the oracle) in one PNG. */
function scenePlots(file: string, scenes: { name: string; uniform: Pt[]; grid: Pt[]; chosen: Pt; oracle: Pt }[]): void {
  const tiles: PNG[] = [];
  const tmp = path.resolve('bench', 'results', '.tile.png');
  for (const s of scenes) {
    linePlot(tmp, {
      title: `${s.name.toUpperCase()} (HELD OUT)`,
      xLabel: 'KB PER 10 S',
      yLabel: 'F1',
      width: 560,
      height: 380,
      series: [
        { name: 'UNIFORM QP', color: [40, 40, 200], points: s.uniform.map((p) => ({ x: p.bytes / 1000, y: p.f1 })) },
        { name: 'ACCMPEG GRID', color: [240, 150, 40], points: [...s.grid].sort((a, b) => a.bytes - b.bytes).map((p) => ({ x: p.bytes / 1000, y: p.f1 })) },
        { name: 'PRE-REGISTERED', color: [220, 30, 30], points: [{ x: s.chosen.bytes / 1000, y: s.chosen.f1 }] },
        { name: 'ORACLE', color: [30, 150, 60], points: [{ x: s.oracle.bytes / 1000, y: s.oracle.f1 }] },
      ],
    });
    tiles.push(PNG.sync.read(readFileSync(tmp)));
  }
  rmSync(tmp, { force: true });
  const cols = 3, tw = tiles[0].width, th = tiles[0].height;
  const out = new PNG({ width: cols * tw, height: Math.ceil(tiles.length / cols) * th });
  out.data.fill(255);
  tiles.forEach((t, i) => PNG.bitblt(t, out, 0, 0, tw, th, (i % cols) * tw, Math.floor(i / cols) * th));
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, PNG.sync.write(out));
}

async function loso(values: Record<string, string | boolean | undefined>): Promise<void> {
  const held = values.scenes ? String(values.scenes).split(',') : SCENES.map((s) => s.name);
  for (const h of held) if (!SCENES.some((s) => s.name === h)) throw new Error(`unknown scene ${h}; scenes: ${SCENES.map((s) => s.name).join(', ')}`);
  for (const s of SCENES) for (const part of ['train', 'eval'] as const) await ensureLabels(s, part);
  for (const s of SCENES) ensureFoldModel('saldiff', s.name);
  const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu' });
  const ev = new Evaluator(det);

  // ---- development: every scene's dev span, its own fold model, the uniform curve and every grid setting
  const dev = new Map<string, { uniform: Stats[]; grid: Map<string, Stats> }>();
  const cacheFile = path.resolve('data', 'accmpeg', 'dev-cache.json');
  const cacheKey = JSON.stringify({ GRID, UNIFORM_QPS, DILATE, CHUNK, FPS, COVER, EPOCHS, ACCURACY, scenes: SCENES.map((s) => [s.name, s.dev]), models: SCENES.map((s) => createHash('sha256').update(readFileSync(foldModel('saldiff', s.name))).digest('hex')) });
  if (values['reuse-dev'] && existsSync(cacheFile)) {
    const c = JSON.parse(readFileSync(cacheFile, 'utf8')) as { key: string; dev: [string, { uniform: Stats[]; grid: [string, Stats][] }][] };
    if (c.key !== cacheKey) throw new Error(`${cacheFile} was made with other settings or models; run without --reuse-dev`);
    for (const [k, v] of c.dev) dev.set(k, { uniform: v.uniform, grid: new Map(v.grid) });
    console.error(`development results reused from ${cacheFile}`);
  }
  for (const s of SCENES) {
    if (dev.has(s.name)) continue;
    const t = performance.now();
    const sp = await ev.span(spanFrames(s.video, s.dev));
    const model = await CheapModel.load(foldModel('saldiff', s.name));
    const { maps } = await cheapMaps(model, sp.chunks);
    await model.release();
    const uniform = await ev.uniform(sp, UNIFORM_QPS);
    const grid = new Map<string, Stats>();
    for (const g of GRID) grid.set(key(g), await ev.run(sp, maps, g));
    dev.set(s.name, { uniform, grid });
    console.error(`dev ${s.name}: ${((performance.now() - t) / 1000).toFixed(0)} s`);
    mkdirSync(path.dirname(cacheFile), { recursive: true });
    writeFileSync(cacheFile, JSON.stringify({ key: cacheKey, dev: [...dev].map(([k, v]) => [k, { uniform: v.uniform, grid: [...v.grid] }]) }));
  }
  const devSaving = (scene: string, g: Setting): number => savingOn(dev.get(scene)!.uniform, dev.get(scene)!.grid.get(key(g))!, dev.get(scene)!.grid.get(key(g))!.map((_, i) => i));
  const devTable = GRID.map((g) => ({ setting: key(g), ...Object.fromEntries(SCENES.map((s) => [s.name.slice(0, 10), devSaving(s.name, g)])) }));
  printTable('development spans: saving at equal F1 per grid setting (each scene with its own held-out fold model)', devTable);
  const choose = (heldOut: string): Setting => {
    let best = GRID[0], bestV = -Infinity;
    for (const g of GRID) {
      const v = median(SCENES.filter((s) => s.name !== heldOut).map((s) => devSaving(s.name, g)));
      if (v > bestV) { best = g; bestV = v; }
    }
    return best;
  };
  const chosen = new Map(held.map((h) => [h, choose(h)]));
  printTable('pre-registered per fold (best median dev saving over the other scenes)', held.map((h) => ({ held_out: h, setting: key(chosen.get(h)!) })));
  if (values.phase === 'dev') { await det.release(); return; }

  // ---- evaluation: each held-out scene once, with its fold model and its pre-registered setting
  const rows: Record<string, unknown>[] = [];
  const plots: Parameters<typeof scenePlots>[1] = [];
  for (const h of held) {
    const s = SCENES.find((x) => x.name === h)!;
    for (const m of ['sal']) ensureFoldModel(m, h);
    const ls = readLabelDir(path.resolve(labelDir(h, 'eval')));
    const sp = await ev.span(ls.frames);
    const model = await CheapModel.load(foldModel('saldiff', h));
    const { maps, msPerFrame } = await cheapMaps(model, sp.chunks);
    await model.release();
    const salModel = await CheapModel.load(foldModel('sal', h));
    const salMaps = (await cheapMaps(salModel, sp.chunks)).maps;
    await salModel.release();
    const oracleMaps = sp.chunks.map((_, c) => meanMap(ls.saldiff.slice(c * CHUNK, (c + 1) * CHUNK).map((m) => ({ ...m, data: Float32Array.from(coverLabels(m, COVER)) }))));
    const g = chosen.get(h)!;
    const uniform = await ev.uniform(sp, UNIFORM_QPS);
    const grid = new Map<string, Stats>();
    for (const x of GRID) grid.set(key(x), await ev.run(sp, maps, x));
    const pre = grid.get(key(g))!;
    const oracle = await ev.run(sp, oracleMaps, g);
    const sal = await ev.run(sp, salMaps, g);
    // per-camera α: calibrated on the first half's chunks (the saliency label of each chunk's last frame beside the
    // cheap model's map of it, as the agent pairs them with the server's replies), compared on the second half
    const half = Math.floor(sp.chunks.length / 2);
    const lastMaps: MbMap[] = [];
    const calModel = await CheapModel.load(foldModel('saldiff', h));
    for (let c = 0; c < half; c++) lastMaps.push(await calModel.importance(sp.chunks[c][CHUNK - 1]));
    await calModel.release();
    const calRule = { smooth: false, minFraction: g.minFraction, dilate: DILATE };
    const alphaCal = calibrateThreshold(lastMaps.map((m, c) => sampleFromSaliency(m, ls.sal[c * CHUNK + CHUNK - 1])), calRule, CALIB_RECALL) ?? g.threshold;
    const calibrated = await ev.run(sp, maps, { ...g, threshold: alphaCal });
    const secondHalf = pre.map((_, i) => i).slice(half);
    const all = pre.map((_, i) => i);
    const c = compare(uniform, pre);
    const uPts = uniform.map((u, i) => ({ qp: UNIFORM_QPS[i], pt: agg(u, all) }));
    const gridPts = GRID.map((x) => ({ name: key(x), pt: agg(grid.get(key(x))!, all) }));
    const chunkBytes = c.bytes / pre.length;
    const uEnc = mean(uniform.flatMap((u) => u.map((x) => x.encodeMs)));
    rows.push({
      scene: h,
      train_scenes: SCENES.filter((x) => x.name !== h).map((x) => x.name),
      eval_span: s.eval,
      setting: key(g),
      saving_at_equal_f1: c.saving,
      ci_low: c.ci_low,
      ci_high: c.ci_high,
      above_uniform_range: c.above_uniform_range,
      below_uniform_range: c.below_uniform_range,
      accmpeg: { bytes: c.bytes, f1: c.f1, important_frac: mean(pre.map((x) => x.important)) },
      uniform_bytes_at_f1: c.uniform_bytes_at_f1,
      oracle: { ...compare(uniform, oracle), important_frac: mean(oracle.map((x) => x.important)) },
      sal_label_model: compare(uniform, sal),
      calibration: { alpha: alphaCal, target_recall: CALIB_RECALL, calibrated_on_chunks: `0-${half - 1}`, compared_on_chunks: `${half}-${pre.length - 1}`, shipped_alpha: compare(uniform, pre, secondHalf), calibrated_alpha: compare(uniform, calibrated, secondHalf) },
      dominating_points: dominating(uPts, gridPts),
      uniform: uPts.map((u) => ({ qp: u.qp, bytes: u.pt.bytes, f1: u.pt.f1 })),
      grid: gridPts.map((p) => ({ setting: p.name, bytes: p.pt.bytes, f1: p.pt.f1, saving: compare(uniform, grid.get(p.name)!).saving })),
      delay_ms: {
        accmpeg: delayMs(chunkBytes, mean(pre.map((x) => x.encodeMs)), 2 * msPerFrame),
        uniform_at_equal_f1: delayMs(c.uniform_bytes_at_f1 / pre.length, uEnc, 0),
        cheap_model_ms_per_frame: msPerFrame,
      },
      reference_detections: sp.ref.flat().flat().filter((d) => ACCURACY.classes.includes(d.classId) && d.score >= ACCURACY.scoreThreshold).length,
    });
    plots.push({ name: h, uniform: uPts.map((u) => u.pt), grid: gridPts.map((p) => p.pt), chosen: agg(pre, all), oracle: agg(oracle, all) });
    console.error(`eval ${h}: ${key(g)} saving ${(100 * c.saving).toFixed(1)}% [${(100 * c.ci_low).toFixed(1)}, ${(100 * c.ci_high).toFixed(1)}]`);
  }
  await det.release();

  const pct = (v: number | null): string => (v === null ? 'n/a' : Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : '-inf');
  printTable('leave-one-scene-out evaluation (pre-registered setting per fold)', rows.map((r) => {
    const o = r as { scene: string; setting: string; saving_at_equal_f1: number; ci_low: number; ci_high: number; accmpeg: { bytes: number; f1: number; important_frac: number }; oracle: { saving: number }; sal_label_model: { saving: number }; calibration: { alpha: number; shipped_alpha: { saving: number }; calibrated_alpha: { saving: number } }; dominating_points: unknown[]; delay_ms: { accmpeg: number; uniform_at_equal_f1: number } };
    return {
      scene: o.scene, setting: o.setting, kB: o.accmpeg.bytes / 1000, f1: o.accmpeg.f1, imp_pct: 100 * o.accmpeg.important_frac,
      saving: pct(o.saving_at_equal_f1), ci: `[${pct(o.ci_low)}, ${pct(o.ci_high)}]`, oracle: pct(o.oracle.saving), sal_model: pct(o.sal_label_model.saving),
      calib: `a=${o.calibration.alpha} ${pct(o.calibration.shipped_alpha.saving)}->${pct(o.calibration.calibrated_alpha.saving)}`,
      dominating: o.dominating_points.length, delay_ms: `${o.delay_ms.accmpeg.toFixed(0)} vs ${o.delay_ms.uniform_at_equal_f1.toFixed(0)}`,
    };
  }));
  const savings = rows.map((r) => (r as { saving_at_equal_f1: number }).saving_at_equal_f1);
  const shipped = await CheapModel.load(DEFAULT_CHEAP_MODEL);
  const ms720 = await cheapMs720(shipped);
  await shipped.release();
  console.log(`\nmedian saving ${pct(median(savings))}; scenes with the interval above 0: ${rows.filter((r) => (r as { ci_low: number }).ci_low > 0).length}/${rows.length}; shipped cheap model ${ms720.toFixed(1)} ms per 1280x720 frame`);
  const plotFile = path.resolve('bench', 'results', 'accmpeg.png');
  scenePlots(plotFile, plots);
  writeResult('accmpeg', {
    dev_reused: Boolean(values['reuse-dev']),
    protocol: 'leave-one-scene-out: fold model trained on the other eight scenes\' training spans; setting chosen by the best median saving on the other scenes\' development spans (each with its own fold model), fixed before the held-out evaluation span was measured once',
    dev_set: SCENES.map((s) => ({ scene: s.name, span: s.dev })),
    eval_set: SCENES.filter((s) => held.includes(s.name)).map((s) => ({ scene: s.name, span: s.eval })),
    preregistered: {
      rule: `P > alpha, or the top minFraction of MBs if fewer; no opening/closing; dilate ${DILATE} MB; chunk map = mean of the first and last frames' maps`,
      grid: GRID,
      chosen_per_fold: Object.fromEntries(chosen),
      alpha_or_k: Object.fromEntries([...chosen].map(([h, g]) => [h, { alpha: g.threshold, k: g.minFraction }])),
      high_qp: Object.fromEntries([...chosen].map(([h, g]) => [h, g.highQp])),
      low_qp: Object.fromEntries([...chosen].map(([h, g]) => [h, g.lowQp])),
      shipped: ACCMPEG_DEFAULTS,
      epochs: EPOCHS, label: `saldiff (saliency x |HQ-LQ|, LQ = QP 40), per-frame cover ${COVER}`, uniform_qps: UNIFORM_QPS },
    accuracy: { detector: 'yolox_nano.onnx', reference: 'detections on the original frames', ...ACCURACY, classes: 'road (person, bicycle, car, motorcycle, bus, train, truck)', f1: 'aggregate over the span' },
    sizes: 'bytes (1 kB = 1000 B)',
    delay_model: { rtt_ms: RTT_MS, uplink_bps: UPLINK_BPS, per_chunk: 'RTT + bytes/bandwidth + encode + cheap model on two frames' },
    leave_one_scene_out: rows,
    median_saving: median(savings),
    scenes_with_ci_above_zero: rows.filter((r) => (r as { ci_low: number }).ci_low > 0).length,
    cheap_model: path.relative(process.cwd(), DEFAULT_CHEAP_MODEL),
    cheap_model_ms_720p: ms720,
  });
}

/** The shipped model and the agent's default rule on any clip, against the uniform curve. */
async function clip(values: Record<string, string | boolean | undefined>): Promise<void> {
  const video = path.resolve(String(values.video));
  const startS = Number(values.start ?? 0), durationS = Number(values.duration ?? 10);
  const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu' });
  const ev = new Evaluator(det);
  const sp = await ev.span(spanFrames(video, { startS, durationS, fps: FPS }));
  const modelPath = String(values.model ?? DEFAULT_CHEAP_MODEL);
  const model = await CheapModel.load(modelPath);
  const { maps, msPerFrame } = await cheapMaps(model, sp.chunks);
  const ms720 = await cheapMs720(model);
  await model.release();
  const d = ACCMPEG_DEFAULTS;
  const setting: Setting = { rule: 'default', threshold: d.threshold, minFraction: d.minFraction, highQp: d.highQp, lowQp: d.lowQp };
  const uniform = await ev.uniform(sp, UNIFORM_QPS);
  const pre = await ev.run(sp, maps, setting);
  await det.release();
  const all = pre.map((_, i) => i);
  const c = compare(uniform, pre);
  const uPts = uniform.map((u, i) => ({ qp: UNIFORM_QPS[i], pt: agg(u, all) }));
  printTable(`uniform QP (${path.basename(video)} ${startS}-${startS + durationS} s at ${FPS} fps, ${sp.chunks.length} chunks)`, uPts.map((u) => ({ qp: u.qp, kB: u.pt.bytes / 1000, f1: u.pt.f1 })));
  printTable('AccMPEG (shipped model, agent defaults)', [{ setting: key(setting), kB: c.bytes / 1000, f1: c.f1, saving: c.saving, ci_low: c.ci_low, ci_high: c.ci_high, imp_pct: 100 * mean(pre.map((x) => x.important)) }]);
  writeResult('accmpeg-clip', {
    video: path.basename(video), start_s: startS, duration_s: durationS, fps: FPS, chunks: sp.chunks.length, model: path.relative(process.cwd(), modelPath),
    setting, accuracy: ACCURACY, uniform: uPts.map((u) => ({ qp: u.qp, bytes: u.pt.bytes, f1: u.pt.f1 })), accmpeg: c,
    dominating_points: dominating(uPts, [{ name: key(setting), pt: agg(pre, all) }]),
    delay_ms: { accmpeg: delayMs(c.bytes / pre.length, mean(pre.map((x) => x.encodeMs)), 2 * msPerFrame), uniform_at_equal_f1: delayMs(c.uniform_bytes_at_f1 / pre.length, mean(uniform.flat().map((x) => x.encodeMs)), 0) },
    cheap_model_ms_720p: ms720,
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      video: { type: 'string' },
      start: { type: 'string' },
      duration: { type: 'string' },
      model: { type: 'string' },
      scenes: { type: 'string' },
      phase: { type: 'string' },
      'reuse-dev': { type: 'boolean' },
    },
  });
  if (values.video) await clip(values);
  else await loso(values);
}

main().catch((e) => {
  console.error(String(e?.stack ?? e));
  process.exit(1);
});
