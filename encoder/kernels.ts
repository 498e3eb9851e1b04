/**
 * The per-pixel hot loops in C++ (encoder/native/kernels.cc, exported by the encoder addon as `kernels`).
 *
 * Each function here is the native twin of a TypeScript reference and returns bit-identical results
 * (same operations, order and precision; see kernels.h). The product's functions call them and keep their
 * TypeScript version, exported with a `Ts` suffix, as the reference the tests compare against:
 * letterbox ↔ detector/preprocess.ts preprocessTs, halfResRgb ↔ cheapmodel/model.ts halfResRgbTs,
 * reduceToMacroblocks / saliencyToFrame ↔ server/dnngrad.ts, frameDiffPerMb / planePerMb ↔ media/mb.ts
 * (InputGrad for AccGrad, AccMPEG's label maps), importanceMask ↔ cheapmodel/qpmap.ts.
 *
 * nativeKernels() is null when the addon is not built, is an older build without `kernels`, or
 * CAMSTREAM_NATIVE_KERNELS=0 — callers then run their TypeScript version (a clean fallback).
 * Inputs are validated by the callers (as before) and checked again in C++.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fromRoot } from './root.ts';

export interface NativeKernels {
  letterbox(yuv: Uint8Array, w: number, h: number, inputSize: number, bgr: boolean, out: Float32Array): void;
  halfResRgb(yuv: Uint8Array, w: number, h: number, out: Float32Array): void;
  reduceToMacroblocks(grad: Float32Array, inputSize: number, frameW: number, frameH: number, mean: boolean, out: Float32Array): void;
  saliencyToFrame(grad: Float32Array, inputSize: number, frameW: number, frameH: number, out: Float32Array): void;
  frameDiffPerMb(a: Uint8Array, b: Uint8Array, w: number, h: number, rgb: boolean, weight: Float32Array | null, mean: boolean, out: Float32Array): void;
  planePerMb(plane: Float32Array, w: number, h: number, mean: boolean, out: Float32Array): void;
  importanceMask(p: Float32Array, rows: number, cols: number, threshold: number, smooth: boolean, out: Uint8Array): void;
  /**
   * Which loops the kernels run: 'avx2' (hand-vectorised, x86-64 CPUs with AVX2) or 'portable' (the
   * compiler's vectorisation: SSE2, NEON on aarch64); both bit-identical to the references. false forces
   * 'portable' (the tests check both), true restores the CPU's best. Process-wide.
   */
  useSimd(enable: boolean): 'avx2' | 'portable';
}

const KERNEL_NAMES: readonly (keyof NativeKernels)[] = ['letterbox', 'halfResRgb', 'reduceToMacroblocks', 'saliencyToFrame', 'frameDiffPerMb', 'planePerMb', 'importanceMask', 'useSimd'];

const addonPath = (): string => process.env.CAMSTREAM_ENCODER_ADDON ?? fromRoot('build', 'encoder', 'Release', 'camstream_encoder.node');

let loaded: { kernels: NativeKernels | null; reason: string } | undefined;

/** Why nativeKernels() is null ('' when it is not). */
export function nativeKernelsStatus(): string {
  nativeKernels();
  return loaded!.reason;
}

/** The C++ kernels, or null (TypeScript fallback). Loaded once per process. */
export function nativeKernels(): NativeKernels | null {
  if (loaded) return loaded.kernels;
  const file = addonPath();
  if (process.env.CAMSTREAM_NATIVE_KERNELS === '0') loaded = { kernels: null, reason: 'disabled by CAMSTREAM_NATIVE_KERNELS=0' };
  else if (!existsSync(file)) loaded = { kernels: null, reason: `addon not built (${file}): run npm run build:native` };
  else {
    try {
      const k = (createRequire(import.meta.url)(file) as { kernels?: Partial<NativeKernels> }).kernels;
      const missing = KERNEL_NAMES.filter((n) => typeof k?.[n] !== 'function');
      loaded = missing.length ? { kernels: null, reason: `addon ${file} lacks ${missing.join(', ')} (rebuild: npm run build:native)` } : { kernels: k as NativeKernels, reason: '' };
    } catch (err) {
      loaded = { kernels: null, reason: `addon ${file} failed to load: ${err instanceof Error ? err.message : String(err)}` };
    }
  }
  return loaded.kernels;
}
