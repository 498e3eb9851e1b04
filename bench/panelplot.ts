/**
 * Stacked step-plot panels as a PNG (pngjs only): one panel per quantity over a shared x axis
 * (segments), vertical markers with labels (scene changes), several series per panel with a legend.
 * Drawn with bench/canvas.ts.
 */
import { Canvas, niceScale, BLACK, type Rgb } from './canvas.ts';

export type { Rgb } from './canvas.ts';

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

export function panelPlot(file: string, o: { title: string; xLabel: string; n: number; panels: Panel[]; markers?: Marker[]; width?: number; panelHeight?: number }): void {
  const W = o.width ?? 1200;
  const PH = o.panelHeight ?? 190;
  const top = 76, gap = 40, left = 110, right = 200;
  const H = top + o.panels.length * (PH + gap) + 50;
  const cv = new Canvas(W, H);
  const seg = cv.line.bind(cv);
  const alignOf = { l: 'left', c: 'center', r: 'right' } as const;
  // labels are vertically centred on y + 5 (the old 3×5 font's middle) so the layout is unchanged
  const text = (s: string, x: number, y: number, c: Rgb = BLACK, sc = 2, align: 'l' | 'c' | 'r' = 'l'): void => cv.text(s, x, y + 5, c, sc, alignOf[align], true);
  const x0 = left, x1 = W - right;
  const X = (i: number): number => x0 + (i / Math.max(1, o.n)) * (x1 - x0);
  text(o.title, W / 2, 12, BLACK, Math.max(1, Math.min(3, Math.floor((W - 20) / (o.title.length * 6)))), 'c'); // shrink long titles to fit
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
        text(fmt(v), x0 - 8, yy - 5, BLACK, 2, 'r');
      });
    } else {
      const all = p.series.flatMap((s) => s.values.filter(Number.isFinite));
      let [lo, hi] = p.range ?? [Math.min(0, ...all), Math.max(...all)];
      if (hi <= lo) hi = lo + 1;
      const nice = niceScale(lo, hi, 4);
      const step = nice.step;
      lo = nice.lo; hi = nice.hi;
      Y = (v) => y1 - ((v - lo) / (hi - lo)) * (y1 - y0);
      for (let v = lo; v <= hi + step / 2; v += step) { seg(x0, Y(v), x1, Y(v), grey); text(fmt(v), x0 - 8, Y(v) - 5, BLACK, 2, 'r'); }
    }
    seg(x0, y1 + 4, x1, y1 + 4, BLACK);
    seg(x0, y0 - 4, x0, y1 + 4, BLACK);
    text(p.title, x0, y0 - 20, BLACK, 2, 'l');
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
    for (let i = 0; i <= o.n; i += xs) { seg(X(i), y1 + 4, X(i), y1 + 9, BLACK); if (k === o.panels.length - 1) text(String(i), X(i), y1 + 14, BLACK, 2, 'c'); }
    p.series.forEach((s, j) => {
      const ly = y0 + j * 18;
      seg(x1 + 14, ly + 5, x1 + 40, ly + 5, s.color, 3);
      text(s.name, x1 + 46, ly, BLACK, 2, 'l');
    });
  });
  text(o.xLabel, (x0 + x1) / 2, H - 22, BLACK, 2, 'c');
  cv.save(file);
}
