/**
 * bench:native — the per-pixel hot loops: TypeScript reference vs C++ (encoder addon) vs CUDA (native-cuda),
 * per call, on real frames, with the largest output difference from the reference.
 *
 *   npm run bench:native -- [--video campus] [--frames 16] [--reps 5]
 *
 * Frame kernels: ts = the product's TypeScript function, cpu = the C++ kernel as the product runs it (the
 * AVX2 loops on an x86-64 CPU with AVX2), portable = the same kernel's portable loops (what an aarch64 board
 * such as a Jetson runs, NEON there), gpu = the CUDA kernel (wall-clock, host→device copies included).
 * ts, cpu and portable are CPU time per call (the machine is shared).
 * GPU-server-only kernels (batched letterbox, CacheBlend, Grace):
 * ts = native-cuda/reference.ts, cpu = the C++ twin, gpu = CUDA. Times are medians over frames × reps.
 * gpu_ms is null where no CUDA device is usable (the reason is in the file).
 * The gradient input is synthetic (a detector gradient's shape and value range; its values do not
 * change the work done). Run it alone: `flock /work/bench.lock npm run bench:native`.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import v8 from 'node:v8';
import vm from 'node:vm';
import { parseArgs } from 'node:util';
import { nativeKernels, nativeKernelsStatus } from '../encoder/kernels.ts';
import { yuvFrameSize, mbGrid, type YuvFrame } from '../encoder/frame.ts';
import { preprocessTs, letterboxFor } from '../detector/preprocess.ts';
import { halfResRgbTs } from '../cheapmodel/model.ts';
import { reduceToMacroblocksTs, saliencyToFrameTs } from '../server/dnngrad.ts';
import { frameDiffPerMbTs, planePerMbTs } from '../media/mb.ts';
import { importanceMaskTs } from '../cheapmodel/qpmap.ts';
import { cudaAddon, cudaAddonStatus, gpuUnavailableReason, type CudaKernels } from '../native-cuda/index.ts';
import { ropeDeltaRef, tokenDeviationRef, topKRef, quantiseGatherRef, scatterDequantiseRef, seededPermutation } from '../native-cuda/reference.ts';
import { VIDEOS, loadFrames } from '../testdata/fixtures.ts';
import { maxAbsDiff, median } from '../numeric/stats.ts';
import { rng } from '../numeric/random.ts';
import { printTable, writeResult } from './report.ts';

const { values: args } = parseArgs({ options: { video: { type: 'string', default: 'campus' }, frames: { type: 'string', default: '16' }, reps: { type: 'string', default: '5' } } });
const video = VIDEOS[args.video as keyof typeof VIDEOS];
if (!video) throw new Error(`--video must be one of ${Object.keys(VIDEOS).join(', ')}`);
const FRAMES = Number(args.frames);
const REPS = Number(args.reps);

const kernels = nativeKernels();
if (!kernels) throw new Error(`C++ kernels unavailable: ${nativeKernelsStatus()}`);
const k = kernels;
const cuda = cudaAddon();
if (!cuda) throw new Error(`CUDA addon unavailable: ${cudaAddonStatus()}`);
const gpuReason = gpuUnavailableReason();
const gpu: CudaKernels | null = gpuReason ? null : cuda.gpu;
const info = cuda.info();
const simd = k.useSimd(true);
const cpuName = `${os.cpus()[0]?.model ?? 'cpu'} (1 thread, ${simd} loops)`;
const gpuName = gpu ? `${info.name} (sm ${info.computeCapability})` : null;

const frames = loadFrames(video, FRAMES + 1, { startS: 10, fps: 2 });
const S = 416;
const r = rng(11);
const grad = Float32Array.from({ length: 3 * S * S }, () => (r() - 0.5) * Math.exp(r() * 14 - 16));

/**
 * One call: wall-clock ms and this process's CPU ms (user + system). On a shared, overloaded machine the wall
 * time mostly measures waiting for a core; CPU time does not, so speed-ups are taken from CPU time.
 */
function time(fn: () => void, inner = 1): { wall: number; cpu: number } {
  const c0 = process.cpuUsage();
  const t = performance.now();
  for (let j = 0; j < inner; j++) fn();
  const wall = performance.now() - t;
  const c = process.cpuUsage(c0);
  return { wall: wall / inner, cpu: (c.user + c.system) / 1000 / inner };
}

interface Row {
  name: string;
  /** CPU time per call (median): TypeScript, C++ */
  ts_ms: number;
  cpu_ms: number;
  /** CPU time per call of the portable C++ loops (frame kernels; null for the GPU server's CPU twins) */
  portable_ms: number | null;
  /** wall-clock per call (median), includes host↔device copies for the GPU */
  gpu_ms: number | null;
  ts_wall_ms: number;
  cpu_wall_ms: number;
  device: string;
  max_abs_diff: number;
  gpu_max_abs_diff: number | null;
  speedup_cpu: number;
  speedup_portable: number | null;
}
const rows: Row[] = [];

/**
 * Time one kernel: for each case (frame) and rep, the TS reference, the C++ kernel and (if any) the CUDA
 * kernel, interleaved so that load on the machine hits all alike (and, for the frame kernels, the C++ kernel
 * once more with the portable loops). Each function returns its output; max_abs_diff covers both C++ paths.
 */
// A full garbage collection before each kernel's samples, so that one kernel's garbage is not collected
// (and its CPU time charged) inside another's timed calls.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc') as () => void;

function measure(name: string, cases: number, ts: (i: number) => ArrayLike<number>, cpu: (i: number) => ArrayLike<number>, cu: ((i: number) => ArrayLike<number>) | null, inner = 1, portable = true): void {
  collectGarbage();
  ts(0); cpu(0); cu?.(0); // warm-up (JIT, first-touch, CUDA context)
  const t: { wall: number; cpu: number }[] = [], c: { wall: number; cpu: number }[] = [], p: number[] = [], g: number[] = [];
  let diff = 0, gdiff = 0;
  for (let rep = 0; rep < REPS; rep++) {
    for (let i = 0; i < cases; i++) {
      let a: ArrayLike<number> = [], b: ArrayLike<number> = [], d: ArrayLike<number> = [];
      t.push(time(() => (a = ts(i)), inner)); // short kernels: `inner` calls per sample (µs clock resolution)
      if (portable) {
        k.useSimd(false);
        p.push(time(() => (b = cpu(i)), inner).cpu);
        k.useSimd(true);
        if (rep === 0) diff = Math.max(diff, maxAbsDiff(a, b));
      }
      c.push(time(() => (b = cpu(i)), inner));
      if (cu) g.push(time(() => (d = cu(i))).wall);
      if (rep === 0) {
        diff = Math.max(diff, maxAbsDiff(a, b));
        if (cu) gdiff = Math.max(gdiff, maxAbsDiff(d, b));
      }
    }
  }
  const tsCpu = median(t.map((x) => x.cpu)), cppCpu = median(c.map((x) => x.cpu)), portCpu = portable ? median(p) : null;
  const row: Row = {
    name, ts_ms: tsCpu, cpu_ms: cppCpu, portable_ms: portCpu, gpu_ms: cu ? median(g) : null, ts_wall_ms: median(t.map((x) => x.wall)), cpu_wall_ms: median(c.map((x) => x.wall)),
    device: gpuName ? `${cpuName}; ${gpuName}` : cpuName, max_abs_diff: diff, gpu_max_abs_diff: cu ? gdiff : null, speedup_cpu: tsCpu / cppCpu,
    speedup_portable: portCpu === null ? null : tsCpu / portCpu,
  };
  rows.push(row);
  console.log(`${name}: ts ${row.ts_ms.toFixed(3)} ms, C++ ${row.cpu_ms.toFixed(3)} ms (×${row.speedup_cpu.toFixed(1)})${portCpu === null ? '' : `, portable ${portCpu.toFixed(3)} ms`}, max |Δ| ${diff}`);
}

const F = (i: number): YuvFrame => frames[i];
const G = (i: number): YuvFrame => frames[i + 1];
const { width: W, height: H } = frames[0];
const { rows: R, cols: C } = mbGrid(W, H);
const lb = letterboxFor(W, H, S);
const detIn = new Float32Array(3 * S * S);
const cppIn = new Float32Array(3 * S * S);
const gpuIn = new Float32Array(3 * S * S);

// ---- frame kernels: the product's TypeScript vs C++ vs CUDA ------------------------------------------
measure('letterbox (detector input, BGR)', FRAMES, (i) => preprocessTs(F(i), detIn).input,
  (i) => { k.letterbox(F(i).data, W, H, S, true, cppIn); return cppIn; }, // all three reuse their output buffer, as the detector does
  gpu && ((i) => { gpu.letterboxBatch(F(i).data, Int32Array.of(W, H), S, true, gpuIn); return gpuIn; }));
const halfTs = new Float32Array(3 * R * 8 * C * 8);
const halfCpp = new Float32Array(3 * R * 8 * C * 8);
measure('halfResRgb (cheap-model input)', FRAMES, (i) => halfResRgbTs(F(i), halfTs).data, // both reuse their output, as CheapModel does
  (i) => { k.halfResRgb(F(i).data, W, H, halfCpp); return halfCpp; },
  gpu && ((i) => { const o = new Float32Array(3 * R * 8 * C * 8); gpu.halfResRgb(F(i).data, W, H, o); return o; }));
measure('reduceToMacroblocks (DNNGrad map)', FRAMES, () => reduceToMacroblocksTs(grad, lb, W, H, { reduce: 'mean' }).data,
  () => { const o = new Float32Array(R * C); k.reduceToMacroblocks(grad, S, W, H, true, o); return o; },
  gpu && (() => { const o = new Float32Array(R * C); gpu.reduceToMacroblocks(grad, S, W, H, true, o); return o; }), 10);
const sal = saliencyToFrameTs(grad, lb, W, H);
measure('saliencyToFrame (labels)', FRAMES, () => saliencyToFrameTs(grad, lb, W, H),
  () => { const o = new Float32Array(W * H); k.saliencyToFrame(grad, S, W, H, o); return o; },
  gpu && (() => { const o = new Float32Array(W * H); gpu.saliencyToFrame(grad, S, W, H, o); return o; }));
measure('planePerMb (labels: saliency per MB)', FRAMES, () => planePerMbTs(sal, W, H).data,
  () => { const o = new Float32Array(R * C); k.planePerMb(sal, W, H, false, o); return o; },
  gpu && (() => { const o = new Float32Array(R * C); gpu.planePerMb(sal, W, H, false, o); return o; }), 10);
measure('frameDiffPerMb yuv (labels: Σ saliency·|HQ−LQ|)', FRAMES, (i) => frameDiffPerMbTs(F(i), G(i), { metric: 'yuv', weight: sal, reduce: 'sum' }).data,
  (i) => { const o = new Float32Array(R * C); k.frameDiffPerMb(F(i).data, G(i).data, W, H, false, sal, false, o); return o; },
  gpu && ((i) => { const o = new Float32Array(R * C); gpu.frameDiffPerMb(F(i).data, G(i).data, W, H, false, sal, false, o); return o; }));
measure('frameDiffPerMb rgb (AccGrad InputGrad)', FRAMES, (i) => frameDiffPerMbTs(F(i), G(i), { metric: 'rgb', reduce: 'mean' }).data,
  (i) => { const o = new Float32Array(R * C); k.frameDiffPerMb(F(i).data, G(i).data, W, H, true, null, true, o); return o; },
  gpu && ((i) => { const o = new Float32Array(R * C); gpu.frameDiffPerMb(F(i).data, G(i).data, W, H, true, null, true, o); return o; }));
const impMaps = frames.slice(0, FRAMES).map((f, i) => {
  const e = frameDiffPerMbTs(f, frames[i + 1], { metric: 'rgb', reduce: 'mean' });
  const max = e.data.reduce((a, v) => Math.max(a, v), 1e-9);
  return { ...e, data: e.data.map((v) => v / max) };
});
measure('importanceMask (QP-map morphology)', FRAMES, (i) => importanceMaskTs(impMaps[i], { threshold: 0.1 }),
  (i) => { const o = new Uint8Array(R * C); k.importanceMask(impMaps[i].data, R, C, 0.1, true, o); return o; },
  gpu && ((i) => { const o = new Uint8Array(R * C); gpu.importanceMask(impMaps[i].data, R, C, 0.1, true, o); return o; }), 100);

// ---- GPU-server kernels: reference TS vs C++ twin vs CUDA ---------------------------------------------
const measureTwin = (name: string, cases: number, ts: (i: number) => ArrayLike<number>, cpu: (i: number) => ArrayLike<number>, cu: ((i: number) => ArrayLike<number>) | null): void =>
  measure(name, cases, ts, cpu, cu, 1, false); // the CUDA addon's own copy of the C++ (its twins): one path
const BATCH = 4;
const packed = new Uint8Array(BATCH * yuvFrameSize(W, H));
frames.slice(0, BATCH).forEach((f, i) => packed.set(f.data.subarray(0, yuvFrameSize(W, H)), i * yuvFrameSize(W, H)));
const dims = Int32Array.from({ length: 2 * BATCH }, (_, i) => (i % 2 ? H : W));
// Output and working buffers are allocated once per side (as the product reuses its buffers): an 8 MB
// allocation per call made these rows measure V8's garbage collector, varying with the heap's state.
const batchTs = new Float32Array(BATCH * 3 * S * S), batchCpp = new Float32Array(BATCH * 3 * S * S), batchGpu = new Float32Array(BATCH * 3 * S * S);
const plane3 = 3 * S * S;
measureTwin(`letterboxBatch (${BATCH} streams)`, 1, () => { frames.slice(0, BATCH).forEach((f, i) => preprocessTs(f, batchTs.subarray(i * plane3, (i + 1) * plane3))); return batchTs; },
  () => { cuda.cpu.letterboxBatch(packed, dims, S, true, batchCpp); return batchCpp; },
  gpu && (() => { gpu.letterboxBatch(packed, dims, S, true, batchGpu); return batchGpu; }));

const T = 2048, HEADS = 8, HD = 128;
const keys = Float32Array.from({ length: T * HEADS * HD }, () => r() * 2 - 1);
const delta = Int32Array.from({ length: T }, (_, t) => 512 + (t >> 9) * 700);
const ropeTs = new Float32Array(keys.length), ropeCpp = new Float32Array(keys.length), ropeGpu = new Float32Array(keys.length);
measureTwin(`ropeDelta (CacheBlend, ${T} tokens × ${HEADS}×${HD})`, 1, () => { ropeTs.set(keys); ropeDeltaRef(ropeTs, delta, HEADS, HD, 10000); return ropeTs; },
  () => { ropeCpp.set(keys); cuda.cpu.ropeDelta(ropeCpp, delta, HEADS, HD, 10000); return ropeCpp; },
  gpu && (() => { ropeGpu.set(keys); gpu.ropeDelta(ropeGpu, delta, HEADS, HD, 10000); return ropeGpu; }));
const fresh = keys.map((v) => v + (r() - 0.5) * 0.1);
const TOPK = Math.round(T * 0.15);
const devTopK = (kk: CudaKernels) => (): Float32Array => {
  const dev = new Float32Array(T), idx = new Int32Array(TOPK);
  kk.tokenDeviationTopK(fresh, keys, T, TOPK, dev, idx);
  return Float32Array.from([...dev, ...idx]);
};
measureTwin(`tokenDeviationTopK (CacheBlend, top 15% of ${T})`, 1, () => { const dev = tokenDeviationRef(fresh, keys, T); return Float32Array.from([...dev, ...topKRef(dev, TOPK)]); },
  devTopK(cuda.cpu), gpu && devTopK(gpu));

const N = 4 * 96 * 60 * 34; // a Grace-sized latent: 96 channels at 1/16 of 960×544, ×4 (MV + residual, two frames)
const latent = Float32Array.from({ length: N }, () => (r() - 0.5) * 20 * r());
const perm = seededPermutation(N, 3);
const PS = 1400;
const received = Uint8Array.from({ length: Math.ceil(N / PS) }, (_, i) => (i % 5 === 2 ? 0 : 1));
measureTwin(`quantiseGather (Grace, ${N} elements)`, 1, () => quantiseGatherRef(latent, perm, 0.1),
  () => { const o = new Int16Array(N); cuda.cpu.quantiseGather(latent, perm, 0.1, o); return o; },
  gpu && (() => { const o = new Int16Array(N); gpu.quantiseGather(latent, perm, 0.1, o); return o; }));
const sym = quantiseGatherRef(latent, perm, 0.1);
measureTwin(`scatterDequantise (Grace, 20% packets lost)`, 1, () => scatterDequantiseRef(sym, perm, PS, received, 0.1),
  () => { const o = new Float32Array(N); cuda.cpu.scatterDequantise(sym, perm, PS, received, 0.1, o); return o; },
  gpu && (() => { const o = new Float32Array(N); gpu.scatterDequantise(sym, perm, PS, received, 0.1, o); return o; }));

printTable(`bench:native — ${W}x${H} ${args.video}, ${FRAMES} frames × ${REPS} reps, median per call (CPU ms; wall ms in brackets)`, rows.map((x) => ({
  kernel: x.name, ts_ms: `${x.ts_ms.toFixed(3)} (${x.ts_wall_ms.toFixed(2)})`, cpp_ms: `${x.cpu_ms.toFixed(3)} (${x.cpu_wall_ms.toFixed(2)})`,
  'C++ speed-up': `×${x.speedup_cpu.toFixed(1)}`, portable_ms: x.portable_ms === null ? '' : `${x.portable_ms.toFixed(3)} (×${x.speedup_portable!.toFixed(1)})`, gpu_ms: x.gpu_ms ?? 'n/a', max_abs_diff: x.max_abs_diff,
})));
const frameRows = rows.slice(0, 8);
const minSpeedup = Math.min(...frameRows.map((x) => x.speedup_cpu));
const minPortable = Math.min(...frameRows.map((x) => x.speedup_portable ?? Infinity));
console.log(`\nframe kernels: smallest C++ speed-up ×${minSpeedup.toFixed(1)} (${simd} loops; portable loops ×${minPortable.toFixed(1)}); largest |Δ| vs TS ${Math.max(...frameRows.map((x) => x.max_abs_diff))}`);
if (!gpu) console.log(`GPU: none (${gpuReason})`);

writeResult('native', {
  loadavg: readFileSync('/proc/loadavg', 'utf8').trim(),
  simd: `cpu_ms: the ${simd} loops (what the product runs on this CPU); portable_ms: the portable loops`,
  input: { video: args.video, width: W, height: H, frames: FRAMES, reps: REPS },
  gpu: gpu ? { name: info.name, computeCapability: info.computeCapability, runtimeVersion: info.runtimeVersion, driverVersion: info.driverVersion } : null,
  timing: 'ts_ms/cpu_ms: median CPU time per call (process user+system, µs resolution), the speed-up basis on this shared machine; *_wall_ms: median wall-clock',
  note: gpu
    ? 'gpu_ms: wall-clock, includes host↔device copies (one synchronous call per frame)'
    : `no GPU was available: gpu_ms is null (${gpuReason}); the CUDA addon was ${info.cuda ? `compiled (nvcc, archs ${info.archs}) but not run` : 'built without CUDA'}`,
  min_frame_kernel_speedup: minSpeedup,
  min_frame_kernel_speedup_portable: minPortable,
  kernels: rows,
});
