/**
 * The whole edge path (npm run bench:edge -- --video <clip>): how many frames per second the agent's
 * per-segment pipeline sustains on this machine, beside plain `ffmpeg -c:v libx264 -preset veryfast`
 * encoding the same clip in the same run (the floor a user would compare with).
 *
 *   npm run bench:edge -- --video ../shared/videos/highway-720p.mp4 [--seconds 30 --segment 10 --k 10 --probe-width 640]
 *
 * Measured path, as the agent runs it (agent/pipeline.ts), one process:
 *   capture: ffmpeg decodes the clip to YUV420p at its own frame rate, every frame, read one segment ahead
 *   cheap model (AccMPEG, the bundled ONNX model) on every k-th and the last frame of each segment → QP map
 *   encode (x264 veryfast, per-MB QP offsets, one closed GOP per segment) + the accuracy monitor's HQ
 *   reference I-frame on every monitor.referenceEvery-th segment (config default)
 *   OneAdapt probes on the worker thread of every segment for which the worker is free (4 knobs: re-encode
 *   at both neighbouring values, decode, upsample, InputGrad against the server's DNNGrad), at most
 *   --probe-width pixels wide (oneadapt/probe-pool.ts)
 * Knobs are HELD (OneAdapt's step is computed with learning rate 0, so it cannot buy speed by lowering
 * resolution or frame rate): resolution 1, every source frame sent (the fps knob's list starts at the
 * source rate), the configured QP 30 for important MBs / 40 for the rest, threshold 0.5.
 * Server replies: DNNGrad maps of the clip computed beforehand in a child process by the server's own
 * analyzer (so the detector's memory and time are not charged to the edge); each segment gets the map of
 * the nearest earlier reference frame, as if every reply had arrived.
 *
 * Reported: fps = source frames / wall seconds from the first frame requested until the last probe has
 * stepped; cpu_s_per_frame = (user + system CPU of this process, all threads, + its ffmpeg child) / frames;
 * peak_rss_mb = this process's peak resident set (ffmpeg's is not included); event_loop_lag_p99_ms =
 * p99 of perf_hooks.monitorEventLoopDelay (10 ms resolution) over the run; ffmpeg_fps = frames / wall
 * seconds of `ffmpeg -i clip -an -c:v libx264 -preset veryfast -f null -` (its default threads).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AgentSettingsSchema, type AgentSettings } from '../config/schema.ts';
import type { MbMap } from '../encoder/frame.ts';
import { CheapModel, DEFAULT_CHEAP_MODEL } from '../cheapmodel/model.ts';
import { FfmpegSource, readAhead, segments } from '../media/capture.ts';
import { OneAdaptController } from '../oneadapt/adapt.ts';
import { DEFAULT_KNOBS } from '../oneadapt/knobs.ts';
import { ProbeRunner } from '../oneadapt/probe-pool.ts';
import { EdgePipeline } from '../agent/pipeline.ts';
import { printTable, writeResult } from './report.ts';

const { values: args } = parseArgs({
  options: {
    video: { type: 'string' },
    seconds: { type: 'string', default: '30' },
    segment: { type: 'string', default: '10' },
    k: { type: 'string', default: '10' },
    'probe-width': { type: 'string', default: '640' },
    'grad-every': { type: 'string', default: '3' },
    // internal: the child that computes the server's DNNGrad maps
    'grads-out': { type: 'string' },
  },
});
if (!args.video) {
  console.error('usage: npm run bench:edge -- --video <clip> [--seconds 30 --segment 10 --k 10 --probe-width 640]');
  process.exit(2);
}
const video = path.resolve(args.video);
const seconds = Number(args.seconds);
const segmentFrames = Number(args.segment);
const everyK = Number(args.k);
const probeWidth = Number(args['probe-width']);
const gradEvery = Number(args['grad-every']);

interface GradFile { fps: number; maps: { t: number; proxy: number; rows: number; cols: number; data: number[] }[] }

if (args['grads-out']) {
  // Child: the server's DNNGrad (analyzer.dnnGrad, YOLOX-Nano, all classes) of one frame every `gradEvery` s.
  const { SegmentAnalyzer } = await import('../server/analyzer.ts');
  const { DETECTOR_MODEL } = await import('../testdata/fixtures.ts');
  const analyzer = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL });
  const src = new FfmpegSource({ kind: 'file', uri: video, durationS: seconds });
  const out: GradFile = { fps: src.fps, maps: [] };
  const step = Math.max(1, Math.round(gradEvery * src.fps));
  let i = 0;
  for await (const f of src) {
    if (i++ % step) continue;
    const g = await analyzer.dnnGrad(f);
    out.maps.push({ t: f.ptsMs, proxy: g.proxy, rows: g.map.rows, cols: g.map.cols, data: [...g.map.data] });
  }
  await analyzer.close();
  writeFileSync(args['grads-out'], JSON.stringify(out));
  process.exit(0);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'bench-edge-'));
const gradFile = path.join(tmp, 'grads.json');
console.log('computing the server\'s DNNGrad maps (child process, not timed)…');
const child = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'edge.ts'), '--video', video, '--seconds', String(seconds), '--grad-every', String(gradEvery), '--grads-out', gradFile], { stdio: 'inherit' });
if (child.status !== 0) throw new Error(`DNNGrad child failed with status ${child.status}`);
const grads = (JSON.parse(readFileSync(gradFile, 'utf8')) as GradFile).maps.map((m) => ({ t: m.t, proxy: m.proxy, map: { rows: m.rows, cols: m.cols, data: Float32Array.from(m.data) } as MbMap }));

const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();

// ---------------------------------------------------------------- the edge path
const settings: AgentSettings = AgentSettingsSchema.parse({
  deviceId: 'bench-edge',
  source: { kind: 'file', uri: video },
  encoder: { segmentFrames, preset: 'veryfast' },
  cheapModel: { enabled: true, everyK },
  oneadapt: { enabled: true, probeWidth },
});
const src = new FfmpegSource({ kind: 'file', uri: video, durationS: seconds });
const fpsList = [src.fps, ...DEFAULT_KNOBS.fps.values.filter((v) => v < src.fps)];
const probes = new ProbeRunner();
const pipeline = new EdgePipeline({ probes, maxDecisions: Infinity, onProbeError: (e, seg) => console.error(`probe of segment ${seg} failed: ${e.message}`) });
pipeline.cheap = await CheapModel.load(DEFAULT_CHEAP_MODEL);
pipeline.oneadapt = new OneAdaptController({
  enabled: ['resolution', 'fps', 'qp', 'threshold'],
  knobs: { fps: { ...DEFAULT_KNOBS.fps, values: fpsList } },
  start: { qp: settings.cheapModel.highQp, threshold: settings.cheapModel.threshold },
  lambda: settings.oneadapt.lambdaBw,
  lr: 0, // hold the knobs at the expensive end: the probes and steps run, the load does not drop
});
probes.start();
// warm-up outside the timing: the worker's module loading and the ONNX session's first run
await pipeline.cheap.importance({ width: src.width, height: src.height, ptsMs: 0, data: new Uint8Array(src.width * src.height * 1.5).fill(128) });

const cpuChildren = (): number => {
  // utime+stime of waited-for children (fields 16, 17 of /proc/self/stat), in clock ticks
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return (Number(f[13]) + Number(f[14])) / 100;
};
const lag = monitorEventLoopDelay({ resolution: 10 });
const cpu0 = process.cpuUsage();
const child0 = cpuChildren();
const elu0 = performance.eventLoopUtilization();
const t0 = performance.now();
lag.enable();
let frames = 0;
let segs = 0;
const perSegment: number[] = [];
let tSeg = performance.now();
for await (const seg of readAhead(segments(src, segmentFrames))) {
  const out = await pipeline.process(seg, src.fps, settings);
  frames += seg.length;
  segs++;
  // the reply to this segment: the DNNGrad of the nearest earlier reference frame
  const t = out.refFrame.ptsMs;
  const g = [...grads].reverse().find((m) => m.t <= t) ?? grads[0];
  pipeline.setGradient(g.map, g.proxy);
  const now = performance.now();
  perSegment.push(now - tSeg);
  tSeg = now;
}
await pipeline.settled();
const wallS = (performance.now() - t0) / 1000;
lag.disable();
const elu = performance.eventLoopUtilization(elu0);
const cpu = process.cpuUsage(cpu0);
await pipeline.stop();
const childCpuS = cpuChildren() - child0;
const cpuS = (cpu.user + cpu.system) / 1e6 + childCpuS;
const peakRssMb = process.resourceUsage().maxRSS / 1024;
const decisions = pipeline.decisions;
const knobsHeld = decisions.every((d) => JSON.stringify(d.before) === JSON.stringify(d.after));

// ---------------------------------------------------------------- plain ffmpeg on the same clip
const ff0 = performance.now();
const ffChild0 = cpuChildren();
execFileSync('ffmpeg', ['-hide_banner', '-nostdin', '-loglevel', 'error', '-t', String(seconds), '-i', video, '-an', '-c:v', 'libx264', '-preset', 'veryfast', '-f', 'null', '-']);
const ffmpegS = (performance.now() - ff0) / 1000;
const ffmpegCpuS = cpuChildren() - ffChild0;
const ffmpegFps = frames / ffmpegS;
const loadAfter = readFileSync('/proc/loadavg', 'utf8').trim();

const fps = frames / wallS;
const p99 = lag.percentile(99) / 1e6;
perSegment.sort((a, b) => a - b);
printTable(`edge path, ${path.basename(video)} ${src.width}x${src.height} @ ${src.fps} fps, ${frames} frames`, [
  { what: 'edge path (capture → cheap model → QP map → encode + ref → OneAdapt probes)', fps: Math.round(fps * 10) / 10, cpu_ms_per_frame: Math.round((cpuS / frames) * 1e4) / 10, peak_rss_mb: Math.round(peakRssMb), lag_p99_ms: Math.round(p99 * 10) / 10 },
  { what: 'ffmpeg -c:v libx264 -preset veryfast (decode + encode only)', fps: Math.round(ffmpegFps * 10) / 10, cpu_ms_per_frame: '', peak_rss_mb: '', lag_p99_ms: '' },
]);
console.log(`probed ${pipeline.probesStarted} of ${segs} segments (the others: worker still busy); knobs held: ${knobsHeld}; load ${loadBefore} → ${loadAfter}`);

writeResult('edge', {
  video: path.basename(video),
  fps: Math.round(fps * 10) / 10,
  cpu_s_per_frame: Math.round((cpuS / frames) * 1e5) / 1e5,
  peak_rss_mb: Math.round(peakRssMb),
  event_loop_lag_p99_ms: Math.round(p99 * 10) / 10,
  ffmpeg_fps: Math.round(ffmpegFps * 10) / 10,
  config: {
    width: src.width,
    height: src.height,
    source_fps: src.fps,
    frames,
    seconds,
    segment_frames: segmentFrames,
    cheap_model_every_k: everyK,
    accmpeg: true,
    oneadapt: true,
    knobs: { resolution: 1, fps: src.fps, qp: settings.cheapModel.highQp, low_qp: settings.cheapModel.lowQp, threshold: settings.cheapModel.threshold, held_at_expensive_end: knobsHeld },
    probe_width: probeWidth,
    segments: segs,
    probed_segments: pipeline.probesStarted,
    segment_wall_ms_p50: Math.round(perSegment[perSegment.length >> 1]),
    segment_wall_ms_max: Math.round(perSegment[perSegment.length - 1]),
    edge_cpu_s: Math.round(cpuS * 100) / 100,
    ffmpeg_capture_cpu_s: Math.round(childCpuS * 100) / 100,
    wall_s: Math.round(wallS * 100) / 100,
    ffmpeg_wall_s: Math.round(ffmpegS * 100) / 100,
    ffmpeg_cpu_s_per_frame: Math.round((ffmpegCpuS / frames) * 1e5) / 1e5,
    // share of the run the agent's thread was busy (the rest it waited on capture, encoder, worker)
    event_loop_utilization: Math.round(elu.utilization * 1000) / 1000,
    event_loop_lag_max_ms: Math.round(lag.max / 1e5) / 10,
    ffmpeg_cmd: `ffmpeg -t ${seconds} -i ${path.basename(video)} -an -c:v libx264 -preset veryfast -f null -`,
    cores: os.cpus().length,
    loadavg_before: loadBefore,
    loadavg_after: loadAfter,
    dnngrad: `server analyzer.dnnGrad on one frame every ${gradEvery} s, computed before the run in a child process`,
  },
});
