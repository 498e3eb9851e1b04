/**
 * YUV420p (BT.601 limited range, as ffmpeg's default rgb24 conversion that made the training data)
 * ⇄ planar RGB float in [0,1], CHW — the codec's input and output. YUV→RGB is the project's one
 * conversion (media/colour.ts); RGB→YUV (its inverse, chroma averaged over 2×2) lives here, its only user.
 */
import type { YuvFrame } from '../encoder/frame.ts';
import { yuvToRgb } from '../media/colour.ts';

export function yuvToRgbPlanar(f: YuvFrame): Float32Array {
  const { width: w, height: h, data } = f;
  const n = w * h;
  const cw = w >> 1;
  const out = new Float32Array(3 * n);
  const px = new Float64Array(3);
  const uOff = n;
  const vOff = n + cw * (h >> 1);
  for (let y = 0; y < h; y++) {
    const crow = (y >> 1) * cw;
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      yuvToRgb(data[i], data[uOff + crow + (x >> 1)], data[vOff + crow + (x >> 1)], px);
      out[i] = px[0] / 255;
      out[n + i] = px[1] / 255;
      out[2 * n + i] = px[2] / 255;
    }
  }
  return out;
}

function byte(v: number): number {
  const r = Math.round(v);
  return r < 0 ? 0 : r > 255 ? 255 : r;
}

export function rgbPlanarToYuv(rgb: Float32Array, w: number, h: number, ptsMs = 0): YuvFrame {
  const n = w * h;
  if (rgb.length !== 3 * n) throw new RangeError(`rgb has ${rgb.length} values, a ${w}x${h} frame needs ${3 * n}`);
  const cw = w >> 1;
  const ch = h >> 1;
  const data = new Uint8Array(n + 2 * cw * ch);
  for (let i = 0; i < n; i++) {
    const r = rgb[i] * 255, g = rgb[n + i] * 255, b = rgb[2 * n + i] * 255;
    data[i] = byte(16 + 0.256788 * r + 0.504129 * g + 0.097906 * b);
  }
  for (let y = 0; y < ch; y++) {
    for (let x = 0; x < cw; x++) {
      let r = 0, g = 0, b = 0;
      for (const [dy, dx] of [[0, 0], [0, 1], [1, 0], [1, 1]]) {
        const i = (2 * y + dy) * w + 2 * x + dx;
        r += rgb[i];
        g += rgb[n + i];
        b += rgb[2 * n + i];
      }
      r *= 255 / 4; g *= 255 / 4; b *= 255 / 4;
      data[n + y * cw + x] = byte(128 - 0.148223 * r - 0.290993 * g + 0.439216 * b);
      data[n + cw * ch + y * cw + x] = byte(128 + 0.439216 * r - 0.367788 * g - 0.071427 * b);
    }
  }
  return { width: w, height: h, ptsMs, data };
}
