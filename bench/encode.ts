/**
 * npm run bench:encode — encoder throughput with a per-frame changing QP map vs. a uniform QP.
 *
 * 720p real footage (highway-720p.mp4, first 60 frames, loaded once). Both variants use the same
 * settings and run interleaved (map, uniform, map, uniform, …) so machine noise hits both alike.
 * The map is AccMPEG-shaped: a box of "important" macroblocks at −10 that moves every frame over a
 * background at +10, plus a small random walk per macroblock, so every frame's side data differs.
 */
import { decodeSegment, encodeSegment, type EncoderSettings } from '../encoder/index.ts';
import { type MbMap, makeMbMap, mbGrid } from '../encoder/frame.ts';
import { VIDEOS, loadFrames } from '../testdata/fixtures.ts';
import { rng } from '../numeric/random.ts';
import os from 'node:os';
import { median } from '../numeric/stats.ts';
import { printTable, writeResult } from './report.ts';

const FRAMES = Number(process.env.BENCH_FRAMES ?? 60);
const REPS = Number(process.env.BENCH_REPS ?? 5);
const settings: EncoderSettings = { baseQp: 30, preset: 'veryfast', fps: 25, bframes: 0, threads: 0 };

function movingBoxMaps(count: number, rows: number, cols: number): MbMap[] {
  const rand = rng(12345);
  const walk = new Float32Array(rows * cols);
  const maps: MbMap[] = [];
  for (let i = 0; i < count; i++) {
    const m = makeMbMap(rows, cols);
    const bw = Math.round(cols / 3), bh = Math.round(rows / 3);
    const c0 = Math.round((cols - bw) * (0.5 + 0.5 * Math.sin(i / 7)));
    const r0 = Math.round((rows - bh) * (0.5 + 0.5 * Math.cos(i / 11)));
    for (let k = 0; k < walk.length; k++) walk[k] = Math.max(-3, Math.min(3, walk[k] + (rand() < 0.5 ? -1 : 1)));
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const inBox = r >= r0 && r < r0 + bh && c >= c0 && c < c0 + bw;
        m.data[r * cols + c] = (inBox ? -10 : 10) + walk[r * cols + c];
      }
    }
    maps.push(m);
  }
  return maps;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  // what else the machine was doing (timings are only comparable on a quiet machine)
  const load0 = os.loadavg();
  const frames = loadFrames(VIDEOS.highway, FRAMES);
  const { width, height } = frames[0];
  console.log(`loaded ${frames.length} frames ${width}x${height} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const { rows, cols } = mbGrid(width, height);
  const maps = movingBoxMaps(frames.length, rows, cols);
  const uniform = frames.map(() => null);

  // warm-up (first open of libx264, page-in)
  await encodeSegment(frames.slice(0, 5), maps.slice(0, 5), settings);

  const runs: { variant: string; rep: number; seconds: number; fps: number; bytes: number }[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    for (const [variant, m] of [['qpmap', maps], ['uniform', uniform]] as const) {
      const t = performance.now();
      const seg = await encodeSegment(frames, m, settings);
      const seconds = (performance.now() - t) / 1000;
      runs.push({ variant, rep, seconds: Number(seconds.toFixed(4)), fps: Number((frames.length / seconds).toFixed(2)), bytes: seg.data.length });
    }
  }

  // decode throughput (with per-MB QP export) on the map-encoded segment, for reference: median of REPS
  const seg = await encodeSegment(frames, maps, settings);
  const decodeRuns: number[] = [];
  for (let rep = 0; rep < REPS; rep++) {
    const td = performance.now();
    const dec = await decodeSegment(seg.data);
    decodeRuns.push(Number((dec.frames.length / ((performance.now() - td) / 1000)).toFixed(2)));
  }
  const decodeFps = median(decodeRuns);

  const of = (v: string) => runs.filter((r) => r.variant === v);
  const fpsQp = median(of('qpmap').map((r) => r.fps));
  const fpsUni = median(of('uniform').map((r) => r.fps));
  const bytesQp = of('qpmap')[0].bytes;
  const bytesUni = of('uniform')[0].bytes;
  const peakRssMb = process.resourceUsage().maxRSS / 1024;

  printTable(`encode ${width}x${height}, ${frames.length} frames, ${REPS} reps interleaved (x264 ${settings.preset}, base QP ${settings.baseQp})`,
    runs.map((r) => ({ variant: r.variant, rep: r.rep, seconds: r.seconds, fps: r.fps, bytes: r.bytes })));
  printTable('summary (median fps)', [
    { variant: 'qpmap (per-frame moving box)', fps: fpsQp, bytes: bytesQp, kbps: (bytesQp * 8 * settings.fps!) / frames.length / 1000 },
    { variant: 'uniform (null maps)', fps: fpsUni, bytes: bytesUni, kbps: (bytesUni * 8 * settings.fps!) / frames.length / 1000 },
  ]);
  console.log(`decode with per-MB QP export: ${decodeFps.toFixed(1)} fps (median of ${REPS}); load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; peak RSS ${peakRssMb.toFixed(0)} MB`);

  writeResult('encode', {
    width,
    height,
    frames: frames.length,
    reps: REPS,
    settings,
    fps_qpmap: Number(fpsQp.toFixed(2)),
    fps_uniform: Number(fpsUni.toFixed(2)),
    qpmap_overhead_pct: Number((((fpsUni - fpsQp) / fpsUni) * 100).toFixed(1)),
    bytes_qpmap: bytesQp,
    bytes_uniform: bytesUni,
    decode_fps: Number(decodeFps.toFixed(2)),
    decode_fps_runs: decodeRuns,
    load_avg_start: load0,
    load_avg_end: os.loadavg(),
    peak_rss_mb: Number(peakRssMb.toFixed(1)),
    runs,
  });
}

await main();
