/**
 * The CUDA addon (native-cuda/, built by `npm run build:cuda` into build/cuda): the GPU server's kernels
 * and their CPU twins with the same signatures. `cpu.*` always works; `gpu.*` throws "CUDA unavailable: …"
 * when the addon was built without nvcc or no CUDA device can be used — check cudaInfo() first.
 * Outputs are caller-allocated typed arrays (sizes in the comments); all lengths are checked in C++.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fromRoot } from '../encoder/root.ts';
import type { NativeKernels } from '../encoder/kernels.ts';

export interface CudaInfo {
  /** built with nvcc (false: CPU twins only) */
  cuda: boolean;
  /** usable CUDA devices (0 without a GPU or driver) */
  devices: number;
  /** why devices is 0 (the CUDA runtime's error, or "built without CUDA"); null when a device is usable */
  error: string | null;
  name: string | null;
  computeCapability: string | null;
  memoryGiB: number | null;
  runtimeVersion: number;
  driverVersion: number;
  /** GPU architectures compiled in, e.g. "75,80,87,90" */
  archs: string;
}

/** The frame kernels of the encoder addon (same arguments), plus the batched and GPU-server-only ones. */
export interface CudaKernels extends Omit<NativeKernels, 'letterbox'> {
  /** n frames packed back to back; dims = [w0,h0,…]; out: n·3·S·S */
  letterboxBatch(yuv: Uint8Array, dims: Int32Array, inputSize: number, bgr: boolean, out: Float32Array): void;
  /** CacheBlend: rotate keys [T,H,D] (rotate-half RoPE) by delta[t] positions, in place */
  ropeDelta(keys: Float32Array, delta: Int32Array, heads: number, headDim: number, base: number): void;
  /** CacheBlend: dev[t] = Σ (a−b)² over one layer's [T, H·D]; idx = the k largest, descending (ties: lower index) */
  tokenDeviationTopK(a: Float32Array, b: Float32Array, tokens: number, k: number, dev: Float32Array, idx: Int32Array): void;
  /** Grace sender: symbols[i] = clamp(rint(latent[perm[i]]/step), ±32767) */
  quantiseGather(latent: Float32Array, perm: Int32Array, step: number, symbols: Int16Array): void;
  /** Grace receiver: latent[perm[i]] = received[i/packetSize] ? symbols[i]·step : 0 */
  scatterDequantise(symbols: Int16Array, perm: Int32Array, packetSize: number, received: Uint8Array, step: number, latent: Float32Array): void;
}

export interface CudaAddon {
  info(): CudaInfo;
  cpu: CudaKernels;
  gpu: CudaKernels;
}

export const CUDA_ADDON_PATH = process.env.CAMSTREAM_CUDA_ADDON ?? fromRoot('build', 'cuda', 'Release', 'camstream_cuda.node');

let cached: CudaAddon | null | undefined;
let why = '';

/** The addon, or null when it is not built (see cudaAddonStatus()). */
export function cudaAddon(): CudaAddon | null {
  if (cached !== undefined) return cached;
  if (!existsSync(CUDA_ADDON_PATH)) {
    why = `not built (${CUDA_ADDON_PATH}): run npm run build:cuda`;
    return (cached = null);
  }
  try {
    cached = createRequire(import.meta.url)(CUDA_ADDON_PATH) as CudaAddon;
  } catch (err) {
    why = `failed to load ${CUDA_ADDON_PATH}: ${err instanceof Error ? err.message : String(err)}`;
    cached = null;
  }
  return cached;
}

export function cudaAddonStatus(): string {
  cudaAddon();
  return why;
}

/** "" when gpu.* can run, else a one-line reason (addon missing, built without nvcc, no device/driver). */
export function gpuUnavailableReason(): string {
  const a = cudaAddon();
  if (!a) return `CUDA addon ${cudaAddonStatus()}`;
  const i = a.info();
  return i.devices > 0 ? '' : (i.error ?? 'no CUDA device');
}
