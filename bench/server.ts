/**
 * bench:server — the server's per-frame cost on this CPU, on real frames, measured side by side:
 * - detector alone (preprocess + inference + NMS), the job done on every streamed frame;
 * - detector + DNNGrad in ONE graph (preprocess + forward/proxy/backward run + NMS + per-MB map + wire
 *   encoding), the job done on one frame per segment;
 * - the DNNGrad gradient's relative error against central finite differences of the product's own proxy
 *   (the JS OneAdapt proxy on the plain detector's output) on real frames of several videos;
 * - streams one server sustains at 10 fps with 10-frame segments (per stream-second: decode, the detector on
 *   9 frames, and one combined run on the last decoded frame, which gives its detections and DNNGrad);
 * - onnxruntime's per-operator profile of the detector, of the old gradient model (ConvTranspose adjoints,
 *   unfused SiLU, seeded VJP), of the combined graph, and of the combined graph without the layout-friendly
 *   adjoints (Split / ReduceSum, as at TRANSFORM_VERSION 3).
 * Both sessions are configured as the server's SegmentAnalyzer configures them (no intra-op spinning); the same
 * interleaved measurement is repeated with onnxruntime's default spinning for comparison.
 *
 * Usage: npm run bench:server -- [--video campus] [--frames 12] [--reps 3] [--threads 2] [--fd-frames 3]
 * Run it at normal priority inside `flock /work/bench.lock`; the load average is recorded.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { Detector } from '../detector/detector.ts';
import { postprocess } from '../detector/postprocess.ts';
import { preprocess } from '../detector/preprocess.ts';
import { decodeSegment, encodeSegment } from '../encoder/index.ts';
import { bootstrap, median } from '../numeric/stats.ts';
import { oneAdaptProxy, oneAdaptProxyGraph, reduceToMacroblocks } from '../server/dnngrad.ts';
import { ProxyGradModel, buildVjpModel, buildVjpModelCached, finiteDifferenceCheck, profileModel, type OpTime } from '../server/onnxgrad/index.ts';
import { DETECTOR_MODEL, VIDEOS, loadFrames } from '../testdata/fixtures.ts';
import { encodeMbMap } from '../wire/mbmap.ts';
import { printTable, writeResult } from './report.ts';

const { values: args } = parseArgs({
  options: {
    video: { type: 'string', default: 'campus' },
    frames: { type: 'string', default: '12' },
    reps: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    'fd-frames': { type: 'string', default: '3' },
  },
});
const videoKey = args.video as keyof typeof VIDEOS;
if (!VIDEOS[videoKey]) throw new Error(`--video must be one of ${Object.keys(VIDEOS).join(', ')}`);
const FRAMES = Number(args.frames);
const REPS = Number(args.reps);
const THREADS = Number(args.threads);
const FD_FRAMES = Number(args['fd-frames']);
const SEGMENT_FRAMES = 10; // the agent's default segment: 10 frames at 10 fps
const loadBefore = os.loadavg();

const frames = loadFrames(VIDEOS[videoKey], FRAMES, { startS: 60, fps: 2 });
const proxy = oneAdaptProxyGraph(); // the server's configuration: all classes
const cacheDir = mkdtempSync(path.join(os.tmpdir(), 'bench-server-'));
// as server/analyzer.ts configures them
const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu', threads: THREADS, spinning: false });
let t0 = performance.now();
const grad = await ProxyGradModel.load(DETECTOR_MODEL, { proxy, intraOpNumThreads: THREADS, spinning: false, cacheDir });
const buildMs = performance.now() - t0;
t0 = performance.now();
const cached = await ProxyGradModel.load(DETECTOR_MODEL, { proxy, intraOpNumThreads: THREADS, spinning: false, cacheDir });
const cachedLoadMs = performance.now() - t0;
if (!cached.fromCache) throw new Error('second load did not come from the cache');
await cached.release();
// timing bound, not a gradient: the same graph with every SiLU's backward (two Muls and a depthwise conv)
// replaced by passing the gradient through — what the combined graph would cost if onnxruntime had a free
// fused SiLU-gradient kernel
const bound = await ProxyGradModel.fromBytes(new Uint8Array(readFileSync(DETECTOR_MODEL)), { proxy, fuseSilu: 'omit', intraOpNumThreads: THREADS, spinning: false });

/** The analyzer's per-frame DNNGrad work: one run gives detections and the MB map. */
async function detectAndGrad(f: (typeof frames)[number]): Promise<number> {
  const { input, letterbox } = preprocess(f);
  const r = await grad.run(input);
  postprocess(r.output, letterbox);
  const map = reduceToMacroblocks(r.gradInput, letterbox, f.width, f.height, { reduce: 'mean' });
  return encodeMbMap(map).length;
}

// warm-up (first runs allocate arenas and pick kernels)
for (let i = 0; i < 3; i++) { await det.detect(frames[i % frames.length]); await detectAndGrad(frames[i % frames.length]); await bound.run(preprocess(frames[i % frames.length]).input); }

const detMs: number[] = [];
const gradMs: number[] = [];
const detInferMs: number[] = [];
const gradInferMs: number[] = [];
const boundInferMs: number[] = [];
const wire: number[] = [];
for (let rep = 0; rep < REPS; rep++) {
  for (const f of frames) {
    // interleaved, so drifts in machine load hit both alike
    let t = performance.now();
    await det.detect(f);
    detMs.push(performance.now() - t);
    t = performance.now();
    wire.push(await detectAndGrad(f));
    gradMs.push(performance.now() - t);
    const { input } = preprocess(f);
    t = performance.now();
    await det.runRaw(input);
    detInferMs.push(performance.now() - t);
    t = performance.now();
    await grad.run(input);
    gradInferMs.push(performance.now() - t);
    t = performance.now();
    await bound.run(input);
    boundInferMs.push(performance.now() - t);
  }
}
const detector_ms = median(detMs);
const dnngrad_ms = median(gradMs);
// 95% interval of the ratio of medians: bootstrap over the interleaved (detector, detector + DNNGrad) pairs
const ratioCi = bootstrap(detMs.length, (idx) => median(idx.map((i) => gradMs[i])) / median(idx.map((i) => detMs[i])), 2000, 1);

// the same interleaved inference-only measurement with onnxruntime's default (spinning) sessions, for comparison
const detSpin = await Detector.load(DETECTOR_MODEL, { device: 'cpu', threads: THREADS });
const gradSpin = await ProxyGradModel.load(DETECTOR_MODEL, { proxy, intraOpNumThreads: THREADS, cacheDir });
const spinDet: number[] = [];
const spinGrad: number[] = [];
for (let i = 0; i < 3 + FRAMES * REPS; i++) {
  const { input } = preprocess(frames[i % frames.length]);
  let t = performance.now();
  await detSpin.runRaw(input);
  if (i >= 3) spinDet.push(performance.now() - t);
  t = performance.now();
  await gradSpin.run(input);
  if (i >= 3) spinGrad.push(performance.now() - t);
}
await detSpin.release();
await gradSpin.release();

// gradient vs central finite differences of the product proxy, on real frames of different videos
const fdSources: [string, number][] = [['campus', 60], ['highway', 5], ['people', 10], ['parking', 10]];
const fdRows: Record<string, string | number>[] = [];
for (const [key, startS] of fdSources.slice(0, FD_FRAMES)) {
  const f = loadFrames(VIDEOS[key as keyof typeof VIDEOS], 1, { startS })[0];
  const { input } = preprocess(f);
  const r = await grad.run(input);
  const fn = async (x: Float32Array): Promise<number> => oneAdaptProxy(await det.runRaw(x)).value;
  const c = await finiteDifferenceCheck(fn, input, r.gradInput, { directions: 4, coordinates: 2, eps: 0.01, coordEps: 0.5 });
  fdRows.push({ frame: `${key} @${startS}s (${f.width}x${f.height})`, proxy: r.proxy, rel_err_vs_fd: c.relErr });
}
const grad_rel_err_vs_fd = Math.max(...fdRows.map((r) => r.rel_err_vs_fd as number));

// decode cost of one 10-frame segment (and its one-frame reference) as the agent sends them
const segFrames = loadFrames(VIDEOS[videoKey], SEGMENT_FRAMES, { startS: 60, fps: 10 });
const seg = await encodeSegment(segFrames, segFrames.map(() => null), { baseQp: 30, fps: 10 });
const decMs: number[] = [];
for (let i = 0; i < 5; i++) {
  const t = performance.now();
  await decodeSegment(seg.data, seg.codec);
  decMs.push(performance.now() - t);
}
// (sampled accuracy-monitor reference frames, one detector run each on some segments, are left out)
const decode_ms_per_segment = median(decMs);
const perStreamSecond = decode_ms_per_segment + (SEGMENT_FRAMES - 1) * detector_ms + dnngrad_ms;
const streams_per_server = Math.floor(1000 / perStreamSecond);
const streams_without_dnngrad = Math.floor(1000 / (decode_ms_per_segment + SEGMENT_FRAMES * detector_ms));

// per-operator profiles (per node: median and fastest of 21 runs after 2 warm-ups)
const x = new ort.Tensor('float32', preprocess(frames[0]).input, [1, 3, 416, 416]);
const forwardBytes = new Uint8Array(readFileSync(DETECTOR_MODEL));
const combinedBytes = buildVjpModelCached(forwardBytes, { proxy, cacheDir }).bytes;
const oldBytes = buildVjpModel(forwardBytes, { convAdjoint: 'transpose', fuseSilu: false, patterns: false });
const seed = new ort.Tensor('float32', oneAdaptProxy(await det.runRaw(x.data as Float32Array)).seed, [1, 3549, 85]);
const prof = {
  detector: await profileModel(forwardBytes, { images: x }, { intraOpNumThreads: THREADS, runs: 21 }),
  old_vjp: await profileModel(oldBytes, { images: x, grad_output: seed }, { intraOpNumThreads: THREADS, runs: 21 }),
  combined: await profileModel(combinedBytes, { images: x }, { intraOpNumThreads: THREADS, runs: 21 }),
  combined_v3: await profileModel(buildVjpModel(forwardBytes, { proxy, layoutFriendly: false }), { images: x }, { intraOpNumThreads: THREADS, runs: 21 }),
  bound_free_silu_backward: await profileModel(buildVjpModel(forwardBytes, { proxy, fuseSilu: 'omit' }), { images: x }, { intraOpNumThreads: THREADS, runs: 21 }),
};
const r2 = (v: number): number => Math.round(v * 100) / 100;
const top = (ops: OpTime[], n = 10): { op: string; ms: number; min_ms: number; nodes: number }[] => ops.slice(0, n).map((o) => ({ op: o.op, ms: r2(o.ms), min_ms: r2(o.minMs), nodes: o.nodes }));

await det.release();
await grad.release();
await bound.release();
rmSync(cacheDir, { recursive: true, force: true });
const loadAfter = os.loadavg();

const f0 = frames[0];
printTable(`bench:server — ${frames.length} frames × ${REPS} reps of ${path.basename(VIDEOS[videoKey])} (${f0.width}×${f0.height} → 416×416), ${THREADS} threads, ${os.cpus().length} cores, load ${loadBefore.map((v) => v.toFixed(2)).join(' ')}`, [
  { path: 'detector alone (preprocess + inference + NMS)', median_ms: detector_ms, inference_only_ms: median(detInferMs), fastest_ms: Math.min(...detMs) },
  { path: 'detector + DNNGrad, one graph (+ MB map + wire)', median_ms: dnngrad_ms, inference_only_ms: median(gradInferMs), fastest_ms: Math.min(...gradMs) },
  { path: 'ratio', median_ms: dnngrad_ms / detector_ms, inference_only_ms: median(gradInferMs) / median(detInferMs), fastest_ms: Math.min(...gradMs) / Math.min(...detMs) },
  { path: 'bound: combined graph with every SiLU backward free (wrong gradient)', median_ms: '', inference_only_ms: median(boundInferMs), fastest_ms: Math.min(...boundInferMs) },
  { path: '… bound / detector', median_ms: '', inference_only_ms: median(boundInferMs) / median(detInferMs), fastest_ms: Math.min(...boundInferMs) / Math.min(...detInferMs) },
  { path: 'inference only, sessions spinning (onnxruntime default): detector', median_ms: '', inference_only_ms: median(spinDet), fastest_ms: Math.min(...spinDet) },
  { path: '… detector + DNNGrad', median_ms: '', inference_only_ms: median(spinGrad), fastest_ms: Math.min(...spinGrad) },
  { path: '… ratio', median_ms: '', inference_only_ms: median(spinGrad) / median(spinDet), fastest_ms: Math.min(...spinGrad) / Math.min(...spinDet) },
]);
printTable('DNNGrad gradient vs central finite differences of the OneAdapt proxy (ε = 0.01 on 0–255, 4 random ±1 directions + 2 coordinates)', fdRows);
printTable(`streams per server at 10 fps, ${SEGMENT_FRAMES}-frame segments (decode ${decode_ms_per_segment.toFixed(1)} ms/segment)`, [
  { work: 'decode + 9 detector runs + 1 detector+DNNGrad run', ms_per_stream_second: perStreamSecond, streams: streams_per_server },
  { work: 'without DNNGrad (10 detector runs)', ms_per_stream_second: decode_ms_per_segment + SEGMENT_FRAMES * detector_ms, streams: streams_without_dnngrad },
]);
const kr = (p: typeof prof.combined, v: 'totalMs' | 'minTotalMs'): string => (p[v] / prof.detector[v]).toFixed(2);
console.log(`\nratio of medians, detector + DNNGrad / detector: ${(dnngrad_ms / detector_ms).toFixed(2)} (95% bootstrap interval over the ${detMs.length} interleaved pairs ${ratioCi.map((v) => v.toFixed(2)).join('–')})`);
console.log(`\nbound (every SiLU backward free, wrong gradient) / detector, kernel time: ${kr(prof.bound_free_silu_backward, 'totalMs')} | ${kr(prof.bound_free_silu_backward, 'minTotalMs')}; inference wall clock ${(median(boundInferMs) / median(detInferMs)).toFixed(2)}`);
console.log(`\nkernel-time ratio combined / detector (onnxruntime profile totals; per-node median | fastest run): ${kr(prof.combined, 'totalMs')} | ${kr(prof.combined, 'minTotalMs')}; without the layout-friendly adjoints ${kr(prof.combined_v3, 'totalMs')} | ${kr(prof.combined_v3, 'minTotalMs')}`);
for (const [name, p] of Object.entries(prof)) printTable(`onnxruntime profile: ${name} (kernel total ${p.totalMs.toFixed(1)} ms; fastest runs ${p.minTotalMs.toFixed(1)} ms)`, top(p.ops));
console.log(`\ngraph build ${buildMs.toFixed(0)} ms, load from cache ${cachedLoadMs.toFixed(0)} ms; load average after ${loadAfter.map((v) => v.toFixed(2)).join(' ')}`);

writeResult('server', {
  detector_ms,
  dnngrad_ms,
  dnngrad_over_detector: dnngrad_ms / detector_ms,
  dnngrad_over_detector_ci95: ratioCi,
  detector_inference_ms: median(detInferMs),
  dnngrad_inference_ms: median(gradInferMs),
  fastest_ms: { detector: Math.min(...detMs), dnngrad: Math.min(...gradMs), detector_inference: Math.min(...detInferMs), dnngrad_inference: Math.min(...gradInferMs) },
  spinning_sessions: { detector_inference_ms: median(spinDet), dnngrad_inference_ms: median(spinGrad), ratio: median(spinGrad) / median(spinDet) },
  grad_rel_err_vs_fd,
  grad_rel_err_per_frame: fdRows,
  streams_per_server,
  streams_per_server_without_dnngrad: streams_without_dnngrad,
  decode_ms_per_segment,
  dnngrad_bytes_per_frame: median(wire),
  op_profile: { combined: top(prof.combined.ops, 12), combined_v3: top(prof.combined_v3.ops, 12), detector: top(prof.detector.ops, 8), old_vjp: top(prof.old_vjp.ops, 10) },
  kernel_ratio: prof.combined.totalMs / prof.detector.totalMs,
  bound_free_silu_backward: {
    what: 'timing bound, not a gradient: the combined graph with every SiLU backward (2 Mul + 1 depthwise Conv) replaced by passing the gradient through',
    inference_ms: median(boundInferMs),
    over_detector_inference: median(boundInferMs) / median(detInferMs),
    fastest_over_detector_inference: Math.min(...boundInferMs) / Math.min(...detInferMs),
    // the per-frame ratio if the combined run cost the bound's time (same preprocess, NMS, MB map, wire)
    per_frame_over_detector: (dnngrad_ms - median(gradInferMs) + median(boundInferMs)) / detector_ms,
    kernel_ratio: prof.bound_free_silu_backward.totalMs / prof.detector.totalMs,
    kernel_ratio_fastest: prof.bound_free_silu_backward.minTotalMs / prof.detector.minTotalMs,
    op_profile: top(prof.bound_free_silu_backward.ops, 8),
  },
  kernel_ratio_fastest: prof.combined.minTotalMs / prof.detector.minTotalMs,
  op_profile_total_ms: { combined: prof.combined.totalMs, combined_v3: prof.combined_v3.totalMs, detector: prof.detector.totalMs, old_vjp: prof.old_vjp.totalMs },
  op_profile_fastest_total_ms: { combined: prof.combined.minTotalMs, combined_v3: prof.combined_v3.minTotalMs, detector: prof.detector.minTotalMs, old_vjp: prof.old_vjp.minTotalMs },
  graph_build_ms: buildMs,
  graph_cached_load_ms: cachedLoadMs,
  frames: frames.length,
  reps: REPS,
  threads: THREADS,
  video: `${path.basename(VIDEOS[videoKey])} (60 s onward, 2 fps)`,
  loadavg_before: loadBefore,
  loadavg_after: loadAfter,
});
