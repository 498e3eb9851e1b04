/**
 * The server's GPU profile (detector.device: cuda): onnxruntime's CUDA provider for the detector and
 * DNNGrad, or — where its libraries are absent, as with the npm package's CPU-only install here and in
 * CI — a clean fallback to CPU that names the reason, or ExecutionProviderError when fallback is off.
 */
import { SegmentAnalyzer } from '../server/analyzer.ts';
import { ExecutionProviderError } from '../detector/detector.ts';
import { DETECTOR_MODEL, VIDEOS, loadFrames, requireFile } from '../testdata/fixtures.ts';

test('cuda requested: both models run on CUDA, or both fall back to CPU with the reason and still compute DNNGrad', async () => {
  requireFile(DETECTOR_MODEL);
  const fallbacks: [string, string][] = [];
  const gpu = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, device: 'cuda', threads: 1, onFallback: (m, r) => fallbacks.push([m, r]) });
  const [frame] = loadFrames(VIDEOS.campus, 1, { startS: 20 });
  const got = await gpu.dnnGrad(frame);
  expect(got.map.data.some((v) => v > 0)).toBe(true);
  if (gpu.detector.device === 'cpu') {
    // no CUDA provider in this onnxruntime install: each model says why, once
    expect(fallbacks.map(([m]) => m)).toEqual(['detector', 'dnngrad']);
    for (const [, reason] of fallbacks) expect(reason).toMatch(/cuda|provider|shared library/i);
    expect(gpu.gradDevice).toBe('cpu');
    // and the CPU result is what a CPU-profile server computes
    const cpu = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, device: 'cpu', threads: 1 });
    const ref = await cpu.dnnGrad(frame);
    expect(Array.from(got.map.data)).toEqual(Array.from(ref.map.data));
  } else {
    expect(fallbacks).toEqual([]);
    expect(gpu.gradDevice).toBe('cuda');
  }
}, 240_000);

test('cuda required (fallbackToCpu: false) without the provider: ExecutionProviderError naming it', async () => {
  const r = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, device: 'cuda', threads: 1, fallbackToCpu: false, dnngrad: false }).then(
    (a) => a,
    (e: unknown) => e,
  );
  if (r instanceof SegmentAnalyzer) {
    expect(r.detector.device).toBe('cuda'); // a machine with the CUDA provider
  } else {
    expect(r).toBeInstanceOf(ExecutionProviderError);
    expect((r as ExecutionProviderError).message).toMatch(/^execution provider 'cuda' unavailable: /);
  }
}, 120_000);
