/**
 * native-cuda: the addon loads and reports its device state without a GPU; the CPU twins match the
 * TypeScript references; every CUDA kernel matches its CPU twin — those tests run only where a CUDA
 * device is usable and are listed as skipped, with the reason in their name, elsewhere.
 */
import { cudaAddon, cudaAddonStatus, gpuUnavailableReason, type CudaAddon, type CudaKernels } from '../native-cuda/index.ts';
import { ropeDeltaRef, tokenDeviationRef, topKRef, quantiseGatherRef, scatterDequantiseRef, seededPermutation } from '../native-cuda/reference.ts';
import { yuvFrameSize, mbGrid, type YuvFrame } from '../encoder/frame.ts';
import { preprocessTs } from '../detector/preprocess.ts';
import { loadFrames, VIDEOS } from '../testdata/fixtures.ts';
import { maxAbsDiff } from '../numeric/stats.ts';
import { rng } from '../numeric/random.ts';

const addon: CudaAddon = (() => {
  const a = cudaAddon();
  if (!a) throw new Error(`CUDA addon unavailable: ${cudaAddonStatus()} (scripts/setup.sh builds it)`);
  return a;
})();



const frames: YuvFrame[] = [
  ...loadFrames(VIDEOS.campus, 2, { startS: 4 }),
  ...loadFrames(VIDEOS.highway, 1, { startS: 2, width: 650, height: 362 }),
  ...loadFrames(VIDEOS.people, 1, { startS: 30, width: 242, height: 430 }),
];
const S = 416;
const r = rng(7);
const grad = Float32Array.from({ length: 3 * S * S }, () => (r() - 0.5) * Math.exp(r() * 14 - 16));
// one layer of a small model's KV: 384 tokens × 8 heads × 64, cached vs recomputed (deviation grows with position)
const T = 384, H = 8, D = 64;
const cached = Float32Array.from({ length: T * H * D }, () => r() * 2 - 1);
const recomputed = cached.map((v, i) => v + (r() - 0.5) * 0.2 * (1 + Math.floor(i / (H * D)) / T) * (r() < 0.1 ? 10 : 1));
const delta = Int32Array.from({ length: T }, (_, t) => 1000 + (t % 7) * 13 - 40);
const N = 6000;
const latent = Float32Array.from({ length: N }, () => (r() - 0.5) * 30 * r());
const perm = seededPermutation(N, 42);

/** One call of every kernel on the same inputs; returns the outputs to compare. */
function runAll(k: CudaKernels): Record<string, ArrayLike<number>> {
  const out: Record<string, ArrayLike<number>> = {};
  const packed = new Uint8Array(frames.reduce((a, f) => a + yuvFrameSize(f.width, f.height), 0));
  let off = 0;
  for (const f of frames) {
    packed.set(f.data.subarray(0, yuvFrameSize(f.width, f.height)), off);
    off += yuvFrameSize(f.width, f.height);
  }
  const dims = Int32Array.from(frames.flatMap((f) => [f.width, f.height]));
  out.letterboxBatch = new Float32Array(frames.length * 3 * S * S);
  k.letterboxBatch(packed, dims, S, true, out.letterboxBatch as Float32Array);
  const [f, g] = frames;
  const { rows, cols } = mbGrid(f.width, f.height);
  out.halfResRgb = new Float32Array(3 * rows * 8 * cols * 8);
  k.halfResRgb(f.data, f.width, f.height, out.halfResRgb as Float32Array);
  out.reduceToMacroblocks = new Float32Array(rows * cols);
  k.reduceToMacroblocks(grad, S, f.width, f.height, true, out.reduceToMacroblocks as Float32Array);
  const sal = new Float32Array(f.width * f.height);
  k.saliencyToFrame(grad, S, f.width, f.height, sal);
  out.saliencyToFrame = sal;
  out.planePerMb = new Float32Array(rows * cols);
  k.planePerMb(sal, f.width, f.height, false, out.planePerMb as Float32Array);
  out.frameDiffPerMbYuv = new Float32Array(rows * cols);
  k.frameDiffPerMb(f.data, g.data, f.width, f.height, false, sal, false, out.frameDiffPerMbYuv as Float32Array);
  out.frameDiffPerMbRgb = new Float32Array(rows * cols);
  k.frameDiffPerMb(f.data, g.data, f.width, f.height, true, null, true, out.frameDiffPerMbRgb as Float32Array);
  const e = out.frameDiffPerMbRgb as Float32Array;
  const emax = e.reduce((a, v) => Math.max(a, v), 0);
  out.importanceMask = new Uint8Array(rows * cols);
  k.importanceMask(e.map((v) => v / emax), rows, cols, 0.1, true, out.importanceMask as Uint8Array);
  const keys = cached.slice();
  k.ropeDelta(keys, delta, H, D, 10000);
  out.ropeDelta = keys;
  const dev = new Float32Array(T);
  const idx = new Int32Array(58);
  k.tokenDeviationTopK(recomputed, cached, T, idx.length, dev, idx);
  out.tokenDeviation = dev;
  out.topK = idx;
  const sym = new Int16Array(N);
  k.quantiseGather(latent, perm, 0.05, sym);
  out.quantiseGather = sym;
  const received = Uint8Array.from({ length: Math.ceil(N / 500) }, (_, i) => (i % 3 === 1 ? 0 : 1));
  const lat = new Float32Array(N);
  k.scatterDequantise(sym, perm, 500, received, 0.05, lat);
  out.scatterDequantise = lat;
  return out;
}

describe('native-cuda addon without a GPU', () => {
  test('loads and reports its device state cleanly', () => {
    const info = addon.info();
    expect(typeof info.cuda).toBe('boolean');
    if (info.devices === 0) {
      // no GPU here (CI, this machine): a reason, not a crash; gpu.* refuses with that reason
      expect(info.error).toEqual(expect.any(String));
      expect(info.error!.length).toBeGreaterThan(5);
      expect(info.name).toBeNull();
      expect(gpuUnavailableReason()).toBe(info.error);
      const out = new Float32Array(3 * 8 * 8);
      let msg = '';
      try {
        addon.gpu.halfResRgb(new Uint8Array(6), 2, 2, out);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toBe(`CUDA unavailable: ${info.error}`);
      if (info.cuda) expect(info.archs).toMatch(/^\d+(,\d+)*$/);
    } else {
      expect(info.error).toBeNull();
      expect(info.name).toEqual(expect.any(String));
      expect(info.computeCapability).toMatch(/^\d+\.\d+$/);
    }
  });
});

describe('CPU twins = TypeScript references', () => {
  const cpu = runAll(addon.cpu);

  test('batched letterbox across streams of different sizes = per-frame preprocess', () => {
    const out = cpu.letterboxBatch as Float32Array;
    frames.forEach((f, i) => expect(maxAbsDiff(out.subarray(i * 3 * S * S, (i + 1) * 3 * S * S), preprocessTs(f).input)).toBe(0));
  });

  test('RoPE delta = reference; zero delta is the identity; rotations compose and keep norms', () => {
    const ref = cached.slice();
    ropeDeltaRef(ref, delta, H, D, 10000);
    const got = cpu.ropeDelta as Float32Array;
    expect(maxAbsDiff(got, ref)).toBeLessThanOrEqual(1e-6);
    const id = cached.slice();
    addon.cpu.ropeDelta(id, new Int32Array(T), H, D, 10000);
    expect(maxAbsDiff(id, cached)).toBe(0);
    // rotate by d then by −d: back to the original (float rounding only)
    const back = got.slice();
    addon.cpu.ropeDelta(back, delta.map((d) => -d), H, D, 10000);
    expect(maxAbsDiff(back, cached)).toBeLessThan(1e-5);
    // pair norms are preserved
    for (let t = 0; t < T; t += 97) {
      const o = t * H * D;
      const n0 = Math.hypot(cached[o + 3], cached[o + 3 + D / 2]);
      expect(Math.hypot(got[o + 3], got[o + 3 + D / 2])).toBeCloseTo(n0, 5);
    }
  });

  test('token deviation and top-k = reference', () => {
    const dev = tokenDeviationRef(recomputed, cached, T);
    expect(maxAbsDiff(cpu.tokenDeviation, dev)).toBe(0);
    expect(Array.from(cpu.topK)).toEqual(Array.from(topKRef(dev, 58)));
    // later tokens deviate more by construction: most of the top-k sit in the second half
    expect(Array.from(cpu.topK).filter((i) => i >= T / 2).length).toBeGreaterThan(29);
  });

  test('Grace quantise+gather and scatter+dequantise = reference; lost packets are zeros', () => {
    const sym = quantiseGatherRef(latent, perm, 0.05);
    expect(Array.from(cpu.quantiseGather as Int16Array)).toEqual(Array.from(sym));
    const received = Uint8Array.from({ length: Math.ceil(N / 500) }, (_, i) => (i % 3 === 1 ? 0 : 1));
    const lat = cpu.scatterDequantise as Float32Array;
    expect(maxAbsDiff(lat, scatterDequantiseRef(sym, perm, 500, received, 0.05))).toBe(0);
    let lost = 0;
    for (let i = 0; i < N; i++) {
      if (received[Math.floor(i / 500)]) expect(Math.abs(lat[perm[i]] - latent[perm[i]])).toBeLessThanOrEqual(0.025 + 1e-6);
      else {
        expect(lat[perm[i]]).toBe(0);
        lost++;
      }
    }
    expect(lost).toBe(2000);
  });

  test('a bad permutation or short buffer is refused', () => {
    const bad = perm.slice();
    bad[5] = bad[6];
    expect(() => addon.cpu.quantiseGather(latent, bad, 0.05, new Int16Array(N))).toThrow(/perm repeats/);
    bad[5] = N;
    expect(() => addon.cpu.quantiseGather(latent, bad, 0.05, new Int16Array(N))).toThrow(/outside/);
    expect(() => addon.cpu.tokenDeviationTopK(recomputed, cached, T, 10, new Float32Array(T - 1), new Int32Array(10))).toThrow(/dev: 383 elements/);
    expect(() => addon.cpu.letterboxBatch(new Uint8Array(100), Int32Array.from([64, 48]), S, true, new Float32Array(3 * S * S))).toThrow(/yuv: 100 elements/);
  });
});

const reason = gpuUnavailableReason();
const gpuTest = reason ? test.skip : test;
const skipNote = reason ? ` [skipped: ${reason}]` : '';

describe('CUDA kernels = CPU twins', () => {
  const outputs: { cpu?: Record<string, ArrayLike<number>>; gpu?: Record<string, ArrayLike<number>> } = {};
  const both = (): { cpu: Record<string, ArrayLike<number>>; gpu: Record<string, ArrayLike<number>> } => {
    outputs.cpu ??= runAll(addon.cpu);
    outputs.gpu ??= runAll(addon.gpu);
    return outputs as { cpu: Record<string, ArrayLike<number>>; gpu: Record<string, ArrayLike<number>> };
  };
  // bit-identical except RoPE (device pow/sin/cos may differ from glibc by an ulp: |Δ| ≤ 1e-6, keys are in
  // [−1,1]) and the deviation (a tree sum in double: one float ulp, relative 1e-6 of the largest value)
  const tolerance = (name: string, cpu: ArrayLike<number>): number =>
    name === 'ropeDelta' ? 1e-6 : name === 'tokenDeviation' ? 1e-6 * Array.from(cpu).reduce((a, v) => Math.max(a, Math.abs(v)), 0) : 0;
  for (const name of ['letterboxBatch', 'halfResRgb', 'reduceToMacroblocks', 'saliencyToFrame', 'planePerMb', 'frameDiffPerMbYuv', 'frameDiffPerMbRgb', 'importanceMask', 'ropeDelta', 'tokenDeviation', 'quantiseGather', 'scatterDequantise']) {
    gpuTest(`${name}${skipNote}`, () => {
      const { cpu, gpu } = both();
      expect(maxAbsDiff(gpu[name], cpu[name])).toBeLessThanOrEqual(tolerance(name, cpu[name]));
    });
  }
  gpuTest(`topK (on the GPU's deviations)${skipNote}`, () => {
    const { gpu } = both();
    expect(Array.from(gpu.topK)).toEqual(Array.from(topKRef(gpu.tokenDeviation, 58)));
  });
});
