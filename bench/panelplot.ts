/**
 * Stacked step-plot panels as a PNG (pngjs only): one panel per quantity over a shared x axis
 * (segments), vertical markers with labels (scene changes), several series per panel with a legend.
 * Text uses a small built-in 3×5 bitmap font (upper case, digits, a few symbols).
 */
import { writeFileSync } from 'node:fs';
import { PNG } from 'pngjs';

export type Rgb = [number, number, number];

export interface PanelSeries { name: string; color: Rgb; values: number[]; width?: number }
export interface Panel {
  title: string;
  series: PanelSeries[];
  /** ordinal axis: these values evenly spaced, the first at the top (e.g. a knob list, expensive first) */
  levels?: readonly number[];
  /** numeric axis range (default: data range) when `levels` is absent */
  range?: [number, number];
}
export interface Marker { x: number; label: string }

// 3×5 glyphs, rows top to bottom, '1' = ink
const FONT: Record<string, string> = {
  '0': '111101101101111', '1': '010110010010111', '2': '111001111100111', '3': '111001111001111', '4': '101101111001001',
  '5': '111100111001111', '6': '111100111101111', '7': '111001010010010', '8': '111101111101111', '9': '111101111001111',
  A: '010101111101101', B: '110101110101110', C: '011100100100011', D: '110101101101110', E: '111100110100111',
  F: '111100110100100', G: '011100101101011', H: '101101111101101', I: '111010010010111', J: '001001001101010',
  K: '101101110101101', L: '100100100100111', M: '101111111101101', N: '110101101101101', O: '010101101101010',
  P: '110101110100100', Q: '010101101110011', R: '110101110101101', S: '011100010001110', T: '111010010010010',
  U: '101101101101111', V: '101101101101010', W: '101101111111101', X: '101101010101101', Y: '101101010010010',
  Z: '111001010100111', '.': '000000000000010', '-': '000000111000000', '=': '000111000111000', '/': '001001010100100',
  ':': '000010000010000', '(': '010100100100010', ')': '010001001001010', ',': '000000000010100', ' ': '000000000000000',
};

export function panelPlot(file: string, o: { title: string; xLabel: string; n: number; panels: Panel[]; markers?: Marker[]; width?: number; panelHeight?: number }): void {
  const W = o.width ?? 1200;
  const PH = o.panelHeight ?? 190;
  const top = 76, gap = 40, left = 110, right = 200;
  const H = top + o.panels.length * (PH + gap) + 50;
  const png = new PNG({ width: W, height: H });
  png.data.fill(255);
  const dot = (x: number, y: number, c: Rgb): void => {
    x = Math.round(x); y = Math.round(y);
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    const i = (y * W + x) * 4;
    png.data[i] = c[0]; png.data[i + 1] = c[1]; png.data[i + 2] = c[2]; png.data[i + 3] = 255;
  };
  const seg = (x0: number, y0: number, x1: number, y1: number, c: Rgb, t = 1, dash = 0): void => {
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    for (let k = 0; k <= n; k++) {
      if (dash && Math.floor(k / dash) % 2 === 1) continue;
      const x = x0 + ((x1 - x0) * k) / n, y = y0 + ((y1 - y0) * k) / n;
      for (let a = 0; a < t; a++) for (let b = 0; b < t; b++) dot(x + a - (t >> 1), y + b - (t >> 1), c);
    }
  };
  const text = (s: string, x: number, y: number, c: Rgb = [0, 0, 0], sc = 2, align: 'l' | 'c' | 'r' = 'l'): void => {
    const w = s.length * 4 * sc;
    let cx = align === 'l' ? x : align === 'c' ? x - w / 2 : x - w;
    for (const ch of s.toUpperCase()) {
      const g = FONT[ch] ?? FONT[' '];
      for (let r = 0; r < 5; r++) for (let q = 0; q < 3; q++) if (g[r * 3 + q] === '1') for (let a = 0; a < sc; a++) for (let b = 0; b < sc; b++) dot(cx + q * sc + a, y + r * sc + b, c);
      cx += 4 * sc;
    }
  };
  const x0 = left, x1 = W - right;
  const X = (i: number): number => x0 + (i / Math.max(1, o.n)) * (x1 - x0);
  text(o.title, W / 2, 12, [0, 0, 0], 3, 'c');
  const fmt = (v: number): string => (Number.isInteger(v) ? String(v) : Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(2).replace(/0$/, ''));
  o.panels.forEach((p, k) => {
    const y0 = top + k * (PH + gap) + 20, y1 = y0 + PH - 20;
    let Y: (v: number) => number;
    const grey: Rgb = [225, 225, 225];
    if (p.levels) {
      const L = p.levels;
      const pos = (v: number): number => {
        const i = L.indexOf(v);
        if (i >= 0) return i;
        let best = 0; // off-list value: nearest level
        for (let j = 1; j < L.length; j++) if (Math.abs(L[j] - v) < Math.abs(L[best] - v)) best = j;
        return best;
      };
      Y = (v) => y0 + (pos(v) / Math.max(1, L.length - 1)) * (y1 - y0);
      L.forEach((v, i) => {
        const yy = y0 + (i / Math.max(1, L.length - 1)) * (y1 - y0);
        seg(x0, yy, x1, yy, grey);
        text(fmt(v), x0 - 8, yy - 5, [0, 0, 0], 2, 'r');
      });
    } else {
      const all = p.series.flatMap((s) => s.values.filter(Number.isFinite));
      let [lo, hi] = p.range ?? [Math.min(0, ...all), Math.max(...all)];
      if (hi <= lo) hi = lo + 1;
      const raw = (hi - lo) / 4, mag = 10 ** Math.floor(Math.log10(raw));
      const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
      lo = Math.floor(lo / step) * step; hi = Math.ceil(hi / step) * step;
      Y = (v) => y1 - ((v - lo) / (hi - lo)) * (y1 - y0);
      for (let v = lo; v <= hi + step / 2; v += step) { seg(x0, Y(v), x1, Y(v), grey); text(fmt(v), x0 - 8, Y(v) - 5, [0, 0, 0], 2, 'r'); }
    }
    seg(x0, y1 + 4, x1, y1 + 4, [0, 0, 0]);
    seg(x0, y0 - 4, x0, y1 + 4, [0, 0, 0]);
    text(p.title, x0, y0 - 20, [0, 0, 0], 2, 'l');
    for (const m of o.markers ?? []) {
      seg(X(m.x), y0 - 4, X(m.x), y1 + 4, [120, 120, 120], 1, 4);
      if (k === 0) { seg(X(m.x), y0 - 40, X(m.x), y0 - 4, [120, 120, 120], 1, 4); text(m.label, X(m.x) + 4, y0 - 40, [90, 90, 90], 2, 'l'); }
    }
    // series as steps: value i holds on [i, i+1)
    for (const s of p.series) {
      const t = s.width ?? 2;
      let prev: number | null = null;
      s.values.forEach((v, i) => {
        if (!Number.isFinite(v)) { prev = null; return; }
        const yy = Y(v);
        if (prev !== null) seg(X(i), prev, X(i), yy, s.color, t);
        seg(X(i), yy, X(i + 1), yy, s.color, t);
        prev = yy;
      });
    }
    // x ticks
    const xs = o.n <= 20 ? 2 : o.n <= 60 ? 5 : 10;
    for (let i = 0; i <= o.n; i += xs) { seg(X(i), y1 + 4, X(i), y1 + 9, [0, 0, 0]); if (k === o.panels.length - 1) text(String(i), X(i), y1 + 14, [0, 0, 0], 2, 'c'); }
    p.series.forEach((s, j) => {
      const ly = y0 + j * 18;
      seg(x1 + 14, ly + 5, x1 + 40, ly + 5, s.color, 3);
      text(s.name, x1 + 46, ly, [0, 0, 0], 2, 'l');
    });
  });
  text(o.xLabel, (x0 + x1) / 2, H - 22, [0, 0, 0], 2, 'c');
  writeFileSync(file, PNG.sync.write(png));
}
