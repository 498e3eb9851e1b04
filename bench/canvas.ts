/**
 * A tiny raster canvas for benchmark plots (pngjs only: no native canvas library installs offline here):
 * points, thick or dashed lines, text in a built-in 5×7 bitmap font (digits, upper case, a few symbols;
 * lower case is drawn as upper case), "nice" axis steps, and PNG output. bench/plot.ts (x–y curves) and
 * bench/panelplot.ts (stacked step panels) draw with it.
 */
import { writeFileSync } from 'node:fs';
import { PNG } from 'pngjs';

export type Rgb = [number, number, number];
export const BLACK: Rgb = [0, 0, 0];

// 5×7 glyphs, one string of 7 rows × 5 bits each (row-major, '1' = ink)
const GLYPHS: Record<string, string> = {
  '0': '01110100011001110101110011000101110', '1': '00100011000010000100001000010001110', '2': '01110100010000100010001000100011111',
  '3': '11111000100010000010000011000101110', '4': '00010001100101010010111110001000010', '5': '11111100001111000001000011000101110',
  '6': '00110010001000011110100011000101110', '7': '11111000010001000100010000100001000', '8': '01110100011000101110100011000101110',
  '9': '01110100011000101111000010001001100', '.': '00000000000000000000000000110001100', '-': '00000000000000011111000000000000000',
  '(': '00010001000100001000010000010000010', ')': '01000001000001000010000100010001000', '/': '00000000010001000100010001000000000',
  ' ': '00000000000000000000000000000000000', '=': '00000000001111100000111110000000000', ',': '00000000000000000000001100010001000',
  '%': '11000110010001000100010001001100011', ':': '00000011000110000000011000110000000', '+': '00000001000010011111001000010000000',
  A: '01110100011000111111100011000110001', B: '11110100011000111110100011000111110', C: '01110100011000010000100001000101110',
  D: '11100100101000110001100011001011100', E: '11111100001000011110100001000011111', F: '11111100001000011110100001000010000',
  G: '01110100011000010111100011000101111', H: '10001100011000111111100011000110001', I: '01110001000010000100001000010001110',
  J: '00111000100001000010000101001001100', K: '10001100101010011000101001001010001', L: '10000100001000010000100001000011111',
  M: '10001110111010110101100011000110001', N: '10001100011100110101100111000110001', O: '01110100011000110001100011000101110',
  P: '11110100011000111110100001000010000', Q: '01110100011000110001101011001001101', R: '11110100011000111110101001001010001',
  S: '01111100001000001110000010000111110', T: '11111001000010000100001000010000100', U: '10001100011000110001100011000101110',
  V: '10001100011000110001100010101000100', W: '10001100011000110101101011010101010', X: '10001100010101000100010101000110001',
  Y: '10001100010101000100001000010000100', Z: '11111000010001000100010001000011111',
};

export type Align = 'left' | 'center' | 'right';

export class Canvas {
  private readonly png: PNG;

  constructor(readonly width: number, readonly height: number) {
    this.png = new PNG({ width, height });
    this.png.data.fill(255);
  }

  dot(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const i = (y * this.width + x) * 4;
    this.png.data[i] = c[0];
    this.png.data[i + 1] = c[1];
    this.png.data[i + 2] = c[2];
    this.png.data[i + 3] = 255;
  }

  /** a square of side 2r+1 centred on (x, y) */
  square(x: number, y: number, r: number, c: Rgb): void {
    for (let dx = -r; dx <= r; dx++) for (let dy = -r; dy <= r; dy++) this.dot(x + dx, y + dy, c);
  }

  /** line of thickness t; dash > 0 leaves gaps of that many pixels */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, t = 1, dash = 0): void {
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let k = 0; k <= n; k++) {
      if (dash && Math.floor(k / dash) % 2 === 1) continue;
      this.square(x0 + ((x1 - x0) * k) / n, y0 + ((y1 - y0) * k) / n, t >> 1, c);
    }
  }

  static textHeight(scale: number): number {
    return 7 * scale;
  }

  /** text with its top at y (or centred on y when middle is true) */
  text(s: string, x: number, y: number, c: Rgb = BLACK, scale = 2, align: Align = 'left', middle = false): void {
    const w = s.length * 6 * scale;
    let cx = align === 'left' ? x : align === 'center' ? x - w / 2 : x - w;
    const top = middle ? y - Canvas.textHeight(scale) / 2 : y;
    for (const ch of s.toUpperCase()) {
      const g = GLYPHS[ch] ?? GLYPHS[' '];
      for (let r = 0; r < 7; r++) for (let q = 0; q < 5; q++) if (g[r * 5 + q] === '1') for (let a = 0; a < scale; a++) for (let b = 0; b < scale; b++) this.dot(cx + q * scale + a, top + r * scale + b, c);
      cx += 6 * scale;
    }
  }

  save(file: string): void {
    writeFileSync(file, PNG.sync.write(this.png));
  }
}

/** An axis range widened to round numbers, with a 1/2/5×10^k step giving about `ticks` intervals. */
export function niceScale(lo: number, hi: number, ticks = 6): { lo: number; hi: number; step: number } {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const l = Math.floor(lo / step) * step, h = Math.ceil(hi / step) * step;
  // all values equal and on a tick (e.g. F1 = 1 everywhere): open one step below so the data is drawn
  return { lo: h === l ? l - step : l, hi: h, step };
}
