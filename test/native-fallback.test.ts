/**
 * Clean fallback: with an encoder addon that lacks the kernels (an older build — here the CUDA addon stands
 * in for one) the product's functions run their TypeScript versions and give the same results.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeKernels, nativeKernelsStatus } from '../encoder/kernels.ts';
import { preprocess, preprocessTs } from '../detector/preprocess.ts';
import { halfResRgb, halfResRgbTs } from '../cheapmodel/model.ts';
import { importanceMask, importanceMaskTs } from '../cheapmodel/qpmap.ts';
import { frameDiffPerMb, frameDiffPerMbTs } from '../media/mb.ts';
import { loadFrames, VIDEOS } from '../testdata/fixtures.ts';
import { maxAbsDiff } from '../numeric/stats.ts';

// read lazily at the first kernel call, so setting it here (after the imports) takes effect
process.env.CAMSTREAM_ENCODER_ADDON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../build/cuda/Release/camstream_cuda.node');

test('an addon without kernels: nativeKernels() is null with the reason, and the product falls back to TypeScript', () => {
  expect(nativeKernels()).toBeNull();
  expect(nativeKernelsStatus()).toMatch(/lacks letterbox, halfResRgb, .* \(rebuild: npm run build:native\)/);
  const [f, g] = loadFrames(VIDEOS.people, 2, { startS: 40 });
  expect(maxAbsDiff(preprocess(f).input, preprocessTs(f).input)).toBe(0);
  expect(maxAbsDiff(halfResRgb(f).data, halfResRgbTs(f).data)).toBe(0);
  const e = frameDiffPerMb(f, g, { metric: 'rgb', reduce: 'mean' });
  expect(maxAbsDiff(e.data, frameDiffPerMbTs(f, g, { metric: 'rgb', reduce: 'mean' }).data)).toBe(0);
  expect(Array.from(importanceMask(e, { threshold: 2 }))).toEqual(Array.from(importanceMaskTs(e, { threshold: 2 })));
});
