/**
 * Luma quality metrics: PSNR and SSIM (8×8 windows at stride 4, as ffmpeg's ssim filter computes
 * it), and SSIM in dB = −10·log10(1 − SSIM) as the Grace paper reports it.
 */
import type { YuvFrame } from '../encoder/frame.ts';

export function psnrY(a: YuvFrame, b: YuvFrame): number {
  const n = a.width * a.height;
  let se = 0;
  for (let i = 0; i < n; i++) {
    const d = a.data[i] - b.data[i];
    se += d * d;
  }
  return se === 0 ? 99 : 10 * Math.log10((255 * 255 * n) / se);
}

export function ssimY(a: YuvFrame, b: YuvFrame): number {
  if (a.width !== b.width || a.height !== b.height) throw new RangeError('ssim: frame sizes differ');
  const w = a.width, h = a.height;
  const c1 = (0.01 * 255) ** 2, c2 = (0.03 * 255) ** 2;
  let sum = 0, count = 0;
  for (let y = 0; y + 8 <= h; y += 4) {
    for (let x = 0; x + 8 <= w; x += 4) {
      let sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
      for (let dy = 0; dy < 8; dy++) {
        const row = (y + dy) * w + x;
        for (let dx = 0; dx < 8; dx++) {
          const p = a.data[row + dx], q = b.data[row + dx];
          sa += p; sb += q; saa += p * p; sbb += q * q; sab += p * q;
        }
      }
      const ma = sa / 64, mb = sb / 64;
      const va = saa / 64 - ma * ma, vb = sbb / 64 - mb * mb, cov = sab / 64 - ma * mb;
      sum += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
      count++;
    }
  }
  return sum / count;
}

export function ssimDb(ssim: number): number {
  return -10 * Math.log10(Math.max(1e-10, 1 - ssim));
}
