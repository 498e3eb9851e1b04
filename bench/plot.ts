/**
 * Line-plot PNG for benchmark curves: axes, ticks with numeric labels, a legend, and one polyline +
 * markers per series (drawn with bench/canvas.ts).
 */
import { Canvas, niceScale, BLACK, type Rgb } from './canvas.ts';

export interface Series { name: string; color: Rgb; points: { x: number; y: number }[] }

export function linePlot(file: string, o: { title: string; xLabel: string; yLabel: string; series: Series[]; width?: number; height?: number }): void {
  const W = o.width ?? 900, H = o.height ?? 600;
  const cv = new Canvas(W, H);
  const line = cv.line.bind(cv);
  const text = cv.text.bind(cv);
  const all = o.series.flatMap((s) => s.points);
  const xs = niceScale(Math.min(...all.map((p) => p.x)), Math.max(...all.map((p) => p.x)));
  const ys = niceScale(Math.min(...all.map((p) => p.y)), Math.max(...all.map((p) => p.y)));
  const L = 100, R = W - 30, T = 60, B = H - 80;
  const X = (v: number): number => L + ((v - xs.lo) / (xs.hi - xs.lo)) * (R - L);
  const Y = (v: number): number => B - ((v - ys.lo) / (ys.hi - ys.lo)) * (B - T);
  const grey: Rgb = [220, 220, 220];
  const dec = (s: number): number => Math.max(0, -Math.floor(Math.log10(s) + 1e-9));
  for (let v = xs.lo; v <= xs.hi + xs.step / 2; v += xs.step) { line(X(v), T, X(v), B, grey); text(v.toFixed(dec(xs.step)), X(v), B + 10, BLACK, 2, 'center'); }
  for (let v = ys.lo; v <= ys.hi + ys.step / 2; v += ys.step) { line(L, Y(v), R, Y(v), grey); text(v.toFixed(dec(ys.step)), L - 8, Y(v), BLACK, 2, 'right', true); }
  line(L, B, R, B, BLACK, 2); line(L, T, L, B, BLACK, 2);
  text(o.title, W / 2, 8, BLACK, 2, 'center');
  text(o.xLabel, (L + R) / 2, H - 40, BLACK, 2, 'center');
  text(o.yLabel, 8, T - 26, BLACK, 2, 'left');
  o.series.forEach((s, k) => {
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    for (let i = 1; i < pts.length; i++) line(X(pts[i - 1].x), Y(pts[i - 1].y), X(pts[i].x), Y(pts[i].y), s.color, 2);
    for (const p of pts) cv.square(X(p.x), Y(p.y), 4, s.color);
    const ly = B - 30 - k * 24;
    line(R - 400, ly + 7, R - 360, ly + 7, s.color, 4);
    text(s.name, R - 350, ly, s.color, 2);
  });
  cv.save(file);
}
