/**
 * AccMPEG benchmark (npm run bench:accmpeg): bytes vs detector F1 on HELD-OUT real video.
 *
 *   npm run bench:accmpeg [-- --start 55 --duration 24 --labels data/labels/campus-heldout]
 *
 * Video: campus-576p.avi 55–79 s at its native 10 fps (the cheap model was trained on 0–50 s only).
 * The frames (and the oracle's labels) come from the labelling CLI's output for that span; if the
 * label directory is missing it is produced first with labelVideo() (≈0.4–0.7 s per frame here).
 * Chunks of 10 frames, each a closed GOP starting with an I frame (renderSegment, veryfast, no B).
 *
 * Accuracy: YOLOX-Nano on the ORIGINAL frames is the reference; detections with score ≥ 0.4,
 * road classes (person, bicycle, car, motorcycle, bus, train, truck), IoU 0.5, same class;
 * "f1" = aggregate F1 over all frames (summed TP/FP/FN), "mean_f1" = mean per-frame F1.
 *
 * Configurations, all in one run on the same frames:
 *   uniform  — one QP for every MB: 26…44, 47, 50 (AWStream-style baseline)
 *   accmpeg  — cheap model P(important) on the first and last frame of each chunk, mean of the two
 *              maps, binarised at threshold α (sweep), 3×3 opening+closing, important MBs at QP 30,
 *              the rest at QP 40 (AccMPEG's two absolute levels)
 *   oracle   — the same but the map is, per MB, the fraction of the chunk's 10 frames whose true
 *              accuracy-gradient label is 1 (sal > T, T = the training label threshold), i.e. it
 *              knows every frame's labels; stored as k/10 − 0.01 for k ≥ 1 labelled frames (so that
 *              α = 0.1 means "more than 1 frame" despite float32 rounding); same α sweep and QPs
 *   *_low_qp — AccMPEG and oracle at α = 0.5 with the rest at QP 44/47/50 (important still at 30),
 *              to extend both curves to the byte range of uniform QP 40–50
 * byte_saving_at_equal_f1: 1 − bytes(AccMPEG at α) / bytes(uniform curve at the same F1), the
 * uniform curve = its Pareto frontier (points not beaten in F1 by a cheaper QP: what a profiler that
 * picks the cheapest QP reaching a target F1 would use), interpolated linearly in (F1, bytes); null where the
 * AccMPEG F1 is outside the uniform curve's measured F1 range. The headline value is AccMPEG's default α = 0.2.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { renderSegment } from '../oneadapt/render.ts';
import { decodeSegment, scaleFrame } from '../encoder/index.ts';
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { CheapModel, DEFAULT_CHEAP_MODEL } from '../cheapmodel/model.ts';
import { readLabelDir } from '../cheapmodel/labels.ts';
import { importanceMask, meanMap, fractionImportant } from '../cheapmodel/qpmap.ts';
import { Detector } from '../detector/detector.ts';
import { ROAD_CLASSES, type Detection } from '../detector/postprocess.ts';
import { segmentF1 } from '../server/accuracy.ts';
import { labelVideo } from '../server/label-cli.ts';
import { DETECTOR_MODEL, VIDEOS, loadFrames } from '../testdata/fixtures.ts';
import { printTable, writeResult } from './report.ts';
import { linePlot } from './plot.ts';

const CHUNK = 10;
const SCORE = 0.4;
const UNIFORM_QPS = [26, 28, 30, 32, 34, 36, 38, 40, 42, 44, 47, 50];
const THRESHOLDS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7];
const HIGH_QP = 30;
const LOW_QP = 40;
const DEFAULT_ALPHA = 0.2;
/** second sweep: α fixed, the unimportant MBs' QP lowered further (reaches the low-byte end of the uniform curve) */
const LOW_SWEEP_ALPHA = 0.5;
const LOW_SWEEP_QPS = [44, 47, 50];

interface Point { bytes: number; f1: number; mean_f1: number }

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      start: { type: 'string', default: '55' },
      duration: { type: 'string', default: '24' },
      labels: { type: 'string', default: 'data/labels/campus-heldout' },
      model: { type: 'string', default: DEFAULT_CHEAP_MODEL },
    },
  });
  const startS = Number(values.start), durationS = Number(values.duration);
  const labelDir = path.resolve(values.labels!);
  if (!existsSync(path.join(labelDir, 'meta.json'))) {
    console.error(`labelling ${VIDEOS.campus} ${startS}–${startS + durationS} s at 10 fps into ${labelDir} …`);
    mkdirSync(labelDir, { recursive: true });
    await labelVideo({ video: VIDEOS.campus, out: labelDir, modelPath: DETECTOR_MODEL, fps: 10, startS, durationS });
  }
  const ls = readLabelDir(labelDir);
  if (ls.meta.video !== path.basename(VIDEOS.campus) || ls.meta.fps !== 10) throw new Error(`${labelDir} is not campus at 10 fps`);
  const frames = ls.frames;
  const nChunks = Math.floor(frames.length / CHUNK);
  const chunks = Array.from({ length: nChunks }, (_, c) => frames.slice(c * CHUNK, (c + 1) * CHUNK));
  const used = nChunks * CHUNK;
  console.error(`${ls.meta.video} ${ls.meta.startS}–${ls.meta.startS + used / 10} s: ${used} frames ${ls.meta.width}x${ls.meta.height}, ${nChunks} chunks`);

  // label threshold = the one the cheap model was trained with (training/train_log.json)
  const trainLog = JSON.parse(readFileSync(path.resolve('training', 'train_log.json'), 'utf8')) as { threshold: number };
  const T = trainLog.threshold;

  const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu' });
  const detectAll = async (fs: YuvFrame[]): Promise<Detection[][]> => {
    const out: Detection[][] = [];
    for (const f of fs) out.push((await det.detect(f, { confThreshold: SCORE })).detections);
    return out;
  };
  const reference = await detectAll(frames.slice(0, used));
  const refCount = reference.flat().filter((d) => ROAD_CLASSES.includes(d.classId)).length;
  console.error(`reference: ${refCount} road-class detections (score ≥ ${SCORE}) in ${used} frames`);

  const run = async (maps: (MbMap | null)[], qp: number, threshold: number, lowDelta: number): Promise<Point & { important: number }> => {
    let bytes = 0, imp = 0;
    const decoded: YuvFrame[] = [];
    for (let c = 0; c < nChunks; c++) {
      const r = await renderSegment(chunks[c], { resolution: 1, fps: 10, qp, threshold }, maps[c], { srcFps: 10, lowQpDelta: lowDelta });
      bytes += r.encoded.data.length;
      if (maps[c]) imp += fractionImportant(importanceMask(maps[c]!, { threshold })) / nChunks;
      decoded.push(...(await decodeSegment(r.encoded.data, r.encoded.codec)).frames);
    }
    const f = segmentF1(await detectAll(decoded), reference, { classes: ROAD_CLASSES, scoreThreshold: SCORE, iouThreshold: 0.5 });
    return { bytes, f1: f.aggregateF1, mean_f1: f.meanF1, important: imp };
  };

  // cheap model maps: first and last frame of each chunk
  const model = await CheapModel.load(values.model!);
  const cheapMaps: MbMap[] = [];
  for (const ch of chunks) cheapMaps.push(meanMap([await model.importance(ch[0]), await model.importance(ch[CHUNK - 1])]));
  // oracle maps: per MB, fraction of the chunk's frames labelled important
  const oracleMaps: MbMap[] = chunks.map((_, c) => meanMap(ls.sal.slice(c * CHUNK, (c + 1) * CHUNK).map((m) => ({ ...m, data: m.data.map((v) => (v > T ? 1 : 0)) })))).map((m) => ({ ...m, data: m.data.map((v) => (v > 0 ? v - 0.01 : 0)) }));

  const uniform: (Point & { qp: number })[] = [];
  for (const qp of UNIFORM_QPS) {
    const p = await run(chunks.map(() => null), qp, 0, 0);
    uniform.push({ qp, bytes: p.bytes, f1: p.f1, mean_f1: p.mean_f1 });
    console.error(`uniform qp ${qp}: ${p.bytes} B f1 ${p.f1.toFixed(4)}`);
  }
  const sweep = async (maps: MbMap[], name: string): Promise<(Point & { threshold: number; important_frac: number })[]> => {
    const out: (Point & { threshold: number; important_frac: number })[] = [];
    for (const a of THRESHOLDS) {
      const p = await run(maps, HIGH_QP, a, LOW_QP - HIGH_QP);
      out.push({ threshold: a, bytes: p.bytes, f1: p.f1, mean_f1: p.mean_f1, important_frac: p.important });
      console.error(`${name} α ${a}: ${p.bytes} B f1 ${p.f1.toFixed(4)} important ${(100 * p.important).toFixed(1)}%`);
    }
    return out;
  };
  const accmpeg = await sweep(cheapMaps, 'accmpeg');
  const oracle = await sweep(oracleMaps, 'oracle');
  const lowSweep = async (maps: MbMap[], name: string): Promise<(Point & { threshold: number; low_qp: number; important_frac: number })[]> => {
    const out: (Point & { threshold: number; low_qp: number; important_frac: number })[] = [];
    for (const lq of LOW_SWEEP_QPS) {
      const p = await run(maps, HIGH_QP, LOW_SWEEP_ALPHA, lq - HIGH_QP);
      out.push({ threshold: LOW_SWEEP_ALPHA, low_qp: lq, bytes: p.bytes, f1: p.f1, mean_f1: p.mean_f1, important_frac: p.important });
      console.error(`${name} α ${LOW_SWEEP_ALPHA} low QP ${lq}: ${p.bytes} B f1 ${p.f1.toFixed(4)}`);
    }
    return out;
  };
  const accmpegLow = await lowSweep(cheapMaps, 'accmpeg');
  const oracleLow = await lowSweep(oracleMaps, 'oracle');

  // uniform bytes needed for a given F1: linear interpolation on the uniform Pareto frontier
  const byBytes: Point[] = [];
  for (const u of [...uniform].sort((a, b) => a.bytes - b.bytes)) if (byBytes.length === 0 || u.f1 > byBytes[byBytes.length - 1].f1) byBytes.push(u);
  const uniformBytesAt = (f1: number): number | null => {
    if (f1 < byBytes[0].f1) return null; // below the cheapest uniform point measured: unknown
    if (f1 === byBytes[0].f1) return byBytes[0].bytes;
    for (let i = 1; i < byBytes.length; i++) {
      const a = byBytes[i - 1], b = byBytes[i];
      if (b.f1 >= f1 && a.f1 < f1) return a.bytes + ((f1 - a.f1) / (b.f1 - a.f1)) * (b.bytes - a.bytes);
    }
    return null;
  };
  const saving = (p: Point): number | null => {
    const u = uniformBytesAt(p.f1);
    return u === null ? null : 1 - p.bytes / u;
  };
  const savingRows = (pts: (Point & { threshold: number; low_qp?: number })[]): { threshold: number; low_qp: number; f1: number; bytes: number; uniform_bytes_at_f1: number | null; saving: number | null }[] =>
    pts.map((p) => ({ threshold: p.threshold, low_qp: p.low_qp ?? LOW_QP, f1: p.f1, bytes: p.bytes, uniform_bytes_at_f1: uniformBytesAt(p.f1), saving: saving(p) }));

  // cheap model cost on a 720p frame
  const hw = scaleFrame(loadFrames(VIDEOS.highway, 1, { startS: 25 })[0], 1280, 720);
  for (let i = 0; i < 3; i++) await model.importance(hw);
  const times: number[] = [];
  for (let i = 0; i < 20; i++) { const t = performance.now(); await model.importance(hw); times.push(performance.now() - t); }
  times.sort((a, b) => a - b);
  const ms720 = times[times.length >> 1];

  const f = (p: Point): Record<string, number> => ({ KB: p.bytes / 1024, f1: p.f1, mean_f1: p.mean_f1 });
  printTable(`uniform QP (${used} frames, ${nChunks} chunks of ${CHUNK})`, uniform.map((u) => ({ qp: u.qp, ...f(u) })));
  const accSave = savingRows(accmpeg), oraSave = savingRows(oracle);
  const accLowSave = savingRows(accmpegLow), oraLowSave = savingRows(oracleLow);
  printTable(`AccMPEG cheap model (QP ${HIGH_QP}/${LOW_QP})`, accmpeg.map((a, i) => ({ alpha: a.threshold, imp_pct: 100 * a.important_frac, ...f(a), saving: accSave[i].saving ?? NaN })));
  printTable(`oracle labels (QP ${HIGH_QP}/${LOW_QP})`, oracle.map((a, i) => ({ alpha: a.threshold, imp_pct: 100 * a.important_frac, ...f(a), saving: oraSave[i].saving ?? NaN })));
  printTable(`low-QP sweep (α ${LOW_SWEEP_ALPHA}, important QP ${HIGH_QP})`, [
    ...accmpegLow.map((a, i) => ({ map: 'accmpeg', low_qp: a.low_qp, imp_pct: 100 * a.important_frac, ...f(a), saving: accLowSave[i].saving ?? NaN })),
    ...oracleLow.map((a, i) => ({ map: 'oracle', low_qp: a.low_qp, imp_pct: 100 * a.important_frac, ...f(a), saving: oraLowSave[i].saving ?? NaN })),
  ]);
  console.log(`\ncheap model: ${ms720.toFixed(1)} ms per 1280x720 frame (median of 20, incl. YUV→RGB)`);

  const plotFile = path.resolve('bench', 'results', 'accmpeg.png');
  mkdirSync(path.dirname(plotFile), { recursive: true });
  linePlot(plotFile, {
    title: `ACCMPEG ON CAMPUS ${ls.meta.startS}-${ls.meta.startS + used / 10} S (HELD OUT)`,
    xLabel: 'KB (10 FPS, 10-FRAME CHUNKS)',
    yLabel: 'F1 VS DETECTOR ON ORIGINAL',
    series: [
      { name: 'UNIFORM QP', color: [40, 40, 200], points: uniform.map((p) => ({ x: p.bytes / 1024, y: p.f1 })) },
      { name: 'ACCMPEG', color: [220, 60, 30], points: accmpeg.map((p) => ({ x: p.bytes / 1024, y: p.f1 })) },
      { name: 'ORACLE', color: [30, 150, 60], points: oracle.map((p) => ({ x: p.bytes / 1024, y: p.f1 })) },
      { name: `ACCMPEG A=${LOW_SWEEP_ALPHA} QP 30/44-50`, color: [240, 150, 40], points: accmpegLow.map((p) => ({ x: p.bytes / 1024, y: p.f1 })) },
      { name: `ORACLE A=${LOW_SWEEP_ALPHA} QP 30/44-50`, color: [120, 200, 120], points: oracleLow.map((p) => ({ x: p.bytes / 1024, y: p.f1 })) },
    ],
  });
  console.log(`wrote ${plotFile}`);

  const headline = accSave.find((s) => s.threshold === DEFAULT_ALPHA)!;
  writeResult('accmpeg', {
    video: `${ls.meta.video} ${ls.meta.startS}-${ls.meta.startS + used / 10} s, ${ls.meta.width}x${ls.meta.height}, 10 fps, ${used} frames, ${nChunks} chunks of ${CHUNK} (held out: training used 0-50 s)`,
    accuracy: { detector: 'yolox_nano.onnx', reference: 'detections on the original frames', score_threshold: SCORE, iou: 0.5, classes: 'road (person, bicycle, car, motorcycle, bus, train, truck)', f1: 'aggregate', reference_detections: refCount },
    encoding: { chunk: CHUNK, gop: 'closed, one I frame per chunk', preset: 'veryfast', accmpeg_qp: { important: HIGH_QP, rest: LOW_QP }, smoothing: '3x3 opening then closing', map: 'mean of first and last frame maps (cheap model); fraction of the 10 frames labelled important (oracle)' },
    label_threshold_sal: T,
    cheap_model: path.relative(process.cwd(), values.model!),
    uniform,
    accmpeg,
    oracle,
    accmpeg_low_qp: accmpegLow,
    oracle_low_qp: oracleLow,
    byte_saving_at_equal_f1: headline.saving,
    byte_saving_note: `AccMPEG at alpha=${DEFAULT_ALPHA} (AccMPEG's default) vs the uniform curve interpolated at the same aggregate F1; per-threshold values below (null: F1 above the best uniform point)`,
    byte_saving_by_threshold: { accmpeg: accSave, oracle: oraSave, accmpeg_low_qp: accLowSave, oracle_low_qp: oraLowSave },
    byte_saving_range_accmpeg: { min: Math.min(...accSave.concat(accLowSave).flatMap((s) => (s.saving === null ? [] : [s.saving]))), max: Math.max(...accSave.concat(accLowSave).flatMap((s) => (s.saving === null ? [] : [s.saving]))) },
    cheap_model_ms_720p: ms720,
  });
  await model.release();
  await det.release();
}

main().catch((e) => {
  console.error(String(e?.stack ?? e));
  process.exit(1);
});
