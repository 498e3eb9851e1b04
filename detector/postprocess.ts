/**
 * YOLOX output decoding: [1, N=3549, 85] rows → detections in original-frame coordinates.
 * Row = [x, y, w, h, obj, cls0 … cls79]; obj and cls are already sigmoid probabilities.
 * Cells are ordered stride 8 (52×52), then 16 (26×26), then 32 (13×13), row-major within each.
 */
import type { Letterbox } from './preprocess.ts';

export const NUM_CLASSES = 80;
export const ROW = 5 + NUM_CLASSES; // 85
export const STRIDES = [8, 16, 32] as const;

export const COCO_CLASSES: readonly string[] = [
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
  'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
  'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
  'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
  'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
  'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
  'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven',
  'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
];

/** AccMPEG's "road" classes: person, bicycle, car, motorcycle, bus, train, truck. */
export const ROAD_CLASSES: readonly number[] = [0, 1, 2, 3, 5, 6, 7];
export const PERSON_CLASSES: readonly number[] = [0];

export interface Box { x1: number; y1: number; x2: number; y2: number }

export interface Detection extends Box {
  score: number;
  classId: number;
  className: string;
  /** output row index (0…3548) this detection was decoded from */
  cell: number;
}

export interface Grid {
  /** per cell: grid x, grid y, stride */
  gx: Int16Array;
  gy: Int16Array;
  stride: Int16Array;
  count: number;
}

const gridCache = new Map<number, Grid>();

/** Cell layout for a square input of side S (cached). 416 → 3549 cells. */
export function makeGrid(inputSize = 416): Grid {
  const hit = gridCache.get(inputSize);
  if (hit) return hit;
  let count = 0;
  for (const s of STRIDES) count += Math.floor(inputSize / s) ** 2;
  const gx = new Int16Array(count);
  const gy = new Int16Array(count);
  const stride = new Int16Array(count);
  let k = 0;
  for (const s of STRIDES) {
    const n = Math.floor(inputSize / s);
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) { gx[k] = x; gy[k] = y; stride[k] = s; k++; }
  }
  const g = { gx, gy, stride, count };
  gridCache.set(inputSize, g);
  return g;
}

/** Decoded box of one cell in network-input pixels. */
export function decodeCellBox(raw: Float32Array, cell: number, grid: Grid = makeGrid()): Box {
  const o = cell * ROW;
  const s = grid.stride[cell];
  const cx = (raw[o] + grid.gx[cell]) * s;
  const cy = (raw[o + 1] + grid.gy[cell]) * s;
  const bw = Math.exp(raw[o + 2]) * s;
  const bh = Math.exp(raw[o + 3]) * s;
  return { x1: cx - bw / 2, y1: cy - bh / 2, x2: cx + bw / 2, y2: cy + bh / 2 };
}

export function area(b: Box): number {
  return Math.max(0, b.x2 - b.x1) * Math.max(0, b.y2 - b.y1);
}

export function iou(a: Box, b: Box): number {
  const iw = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const ih = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const u = area(a) + area(b) - inter;
  return u > 0 ? inter / u : 0;
}

/**
 * Greedy per-class NMS: highest score first, drop same-class boxes with IoU > iouThreshold.
 * Returns the kept detections sorted by descending score. Does not mutate the input.
 */
export function nms<T extends Box & { score: number; classId: number }>(dets: readonly T[], iouThreshold = 0.45, classAgnostic = false): T[] {
  const order = [...dets].sort((a, b) => b.score - a.score);
  const keep: T[] = [];
  const suppressed = new Uint8Array(order.length);
  for (let i = 0; i < order.length; i++) {
    if (suppressed[i]) continue;
    const a = order[i];
    keep.push(a);
    for (let j = i + 1; j < order.length; j++) {
      if (suppressed[j]) continue;
      const b = order[j];
      if (!classAgnostic && b.classId !== a.classId) continue;
      if (iou(a, b) > iouThreshold) suppressed[j] = 1;
    }
  }
  return keep;
}

export interface PostprocessOptions {
  /** minimum obj×cls (default 0.25) */
  confThreshold?: number;
  /** NMS IoU threshold, 0.45–0.65 (default 0.45) */
  iouThreshold?: number;
  /** keep only these class ids */
  classes?: readonly number[];
  /** cap on the number of detections returned (default 300) */
  maxDetections?: number;
}

/**
 * Decode, threshold (best class per cell, as YOLOX's `postprocess`), per-class NMS, undo the letterbox
 * and clip to the original frame. Coordinates are in original-frame pixels.
 */
export function postprocess(raw: Float32Array, lb: Letterbox, opts: PostprocessOptions = {}): Detection[] {
  const conf = opts.confThreshold ?? 0.25;
  const iouThr = opts.iouThreshold ?? 0.45;
  const maxDet = opts.maxDetections ?? 300;
  const grid = makeGrid(lb.inputSize);
  if (raw.length < grid.count * ROW) throw new RangeError(`raw output has ${raw.length} values, expected ${grid.count * ROW}`);
  let allowed: Uint8Array | null = null;
  if (opts.classes) {
    allowed = new Uint8Array(NUM_CLASSES);
    for (const c of opts.classes) allowed[c] = 1;
  }
  const cands: Detection[] = [];
  for (let cell = 0; cell < grid.count; cell++) {
    const o = cell * ROW;
    const obj = raw[o + 4];
    if (obj < conf) continue; // score = obj·cls ≤ obj
    let best = -1;
    let bestP = -1;
    for (let c = 0; c < NUM_CLASSES; c++) {
      if (allowed && !allowed[c]) continue;
      const p = raw[o + 5 + c];
      if (p > bestP) { bestP = p; best = c; }
    }
    if (best < 0) continue;
    const score = obj * bestP;
    if (score < conf) continue;
    const b = decodeCellBox(raw, cell, grid);
    cands.push({ ...b, score, classId: best, className: COCO_CLASSES[best], cell });
  }
  const kept = nms(cands, iouThr).slice(0, maxDet);
  const W = lb.srcW;
  const H = lb.srcH;
  for (const d of kept) {
    d.x1 = clamp(d.x1 * lb.invScaleX, 0, W);
    d.x2 = clamp(d.x2 * lb.invScaleX, 0, W);
    d.y1 = clamp(d.y1 * lb.invScaleY, 0, H);
    d.y2 = clamp(d.y2 * lb.invScaleY, 0, H);
  }
  return kept.filter((d) => d.x2 > d.x1 && d.y2 > d.y1);
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}
