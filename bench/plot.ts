/**
 * Minimal line-plot PNG writer for benchmark curves (pngjs, no other deps): axes, ticks with numeric
 * labels, a legend, and one polyline + markers per series. Text uses a built-in 5×7 bitmap font
 * (digits, upper-case letters and a few symbols; lower case is drawn as upper case).
 */
import { writeFileSync } from 'node:fs';
import { PNG } from 'pngjs';

export interface Series { name: string; color: [number, number, number]; points: { x: number; y: number }[] }

// 5×7 glyphs, one string of 7 rows × 5 bits each (row-major, '1' = ink)
const G: Record<string, string> = {
  '0': '01110100011001110101110011000101110', '1': '00100011000010000100001000010001110', '2': '01110100010000100010001000100011111',
  '3': '11111000100010000010000011000101110', '4': '00010001100101010010111110001000010', '5': '11111100001111000001000011000101110',
  '6': '00110010001000011110100011000101110', '7': '11111000010001000100010000100001000', '8': '01110100011000101110100011000101110',
  '9': '01110100011000101111000010001001100', '.': '00000000000000000000000000110001100', '-': '00000000000000011111000000000000000',
  '(': '00010001000100001000010000010000010', ')': '01000001000001000010000100010001000', '/': '00000000010001000100010001000000000',
  ' ': '00000000000000000000000000000000000', '=': '00000000001111100000111110000000000', ',': '00000000000000000000001100010001000',
  '%': '11000110010001000100010001001100011', ':': '00000011000110000000011000110000000',
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

export function linePlot(file: string, o: { title: string; xLabel: string; yLabel: string; series: Series[]; width?: number; height?: number }): void {
  const W = o.width ?? 900, H = o.height ?? 600;
  const png = new PNG({ width: W, height: H });
  png.data.fill(255);
  const px = (x: number, y: number, c: [number, number, number]): void => {
    x = Math.round(x); y = Math.round(y);
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    const i = (y * W + x) * 4;
    png.data[i] = c[0]; png.data[i + 1] = c[1]; png.data[i + 2] = c[2]; png.data[i + 3] = 255;
  };
  const line = (x0: number, y0: number, x1: number, y1: number, c: [number, number, number], t = 1): void => {
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let k = 0; k <= n; k++) {
      const x = x0 + ((x1 - x0) * k) / n, y = y0 + ((y1 - y0) * k) / n;
      for (let dx = -(t >> 1); dx <= t >> 1; dx++) for (let dy = -(t >> 1); dy <= t >> 1; dy++) px(x + dx, y + dy, c);
    }
  };
  const text = (s: string, x: number, y: number, c: [number, number, number] = [0, 0, 0], scale = 2, align: 'left' | 'center' | 'right' = 'left'): void => {
    const w = s.length * 6 * scale;
    let cx = align === 'left' ? x : align === 'center' ? x - w / 2 : x - w;
    for (const ch of s.toUpperCase()) {
      const g = G[ch] ?? G[' '];
      for (let r = 0; r < 7; r++) for (let q = 0; q < 5; q++) if (g[r * 5 + q] === '1') for (let a = 0; a < scale; a++) for (let b = 0; b < scale; b++) px(cx + q * scale + a, y + r * scale + b, c);
      cx += 6 * scale;
    }
  };
  const all = o.series.flatMap((s) => s.points);
  const nice = (lo: number, hi: number): { lo: number; hi: number; step: number } => {
    const span = hi - lo || Math.abs(hi) || 1;
    const raw = span / 6, mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
    return { lo: Math.floor(lo / step) * step, hi: Math.ceil(hi / step) * step, step };
  };
  const xs = nice(Math.min(...all.map((p) => p.x)), Math.max(...all.map((p) => p.x)));
  const ys = nice(Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y)));
  const L = 100, R = W - 30, T = 60, B = H - 80;
  const X = (v: number): number => L + ((v - xs.lo) / (xs.hi - xs.lo)) * (R - L);
  const Y = (v: number): number => B - ((v - ys.lo) / (ys.hi - ys.lo)) * (B - T);
  const grey: [number, number, number] = [220, 220, 220];
  const dec = (s: number): number => Math.max(0, -Math.floor(Math.log10(s) + 1e-9));
  for (let v = xs.lo; v <= xs.hi + xs.step / 2; v += xs.step) { line(X(v), T, X(v), B, grey); text(v.toFixed(dec(xs.step)), X(v), B + 10, [0, 0, 0], 2, 'center'); }
  for (let v = ys.lo; v <= ys.hi + ys.step / 2; v += ys.step) { line(L, Y(v), R, Y(v), grey); text(v.toFixed(dec(ys.step)), L - 8, Y(v) - 7, [0, 0, 0], 2, 'right'); }
  line(L, B, R, B, [0, 0, 0], 2); line(L, T, L, B, [0, 0, 0], 2);
  text(o.title, W / 2, 8, [0, 0, 0], 2, 'center');
  text(o.xLabel, (L + R) / 2, H - 40, [0, 0, 0], 2, 'center');
  text(o.yLabel, 8, T - 26, [0, 0, 0], 2, 'left');
  o.series.forEach((s, k) => {
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    for (let i = 1; i < pts.length; i++) line(X(pts[i - 1].x), Y(pts[i - 1].y), X(pts[i].x), Y(pts[i].y), s.color, 2);
    for (const p of pts) for (let dx = -4; dx <= 4; dx++) for (let dy = -4; dy <= 4; dy++) px(X(p.x) + dx, Y(p.y) + dy, s.color);
    const ly = B - 30 - k * 24;
    line(R - 400, ly + 7, R - 360, ly + 7, s.color, 4);
    text(s.name, R - 350, ly, s.color, 2);
  });
  writeFileSync(file, PNG.sync.write(png));
}
