/**
 * DNNGrad plumbing (pure): accuracy proxies on the raw YOLOX output and their gradients ("seeds") for a
 * vector–Jacobian-product gradient model, reduction of the input gradient to per-macroblock saliency in
 * ORIGINAL-frame coordinates, and AccMPEG's pixel-difference weighting
 * (the MB-map wire format is in wire/mbmap.ts).
 *
 * Shapes: raw / seed = [1, 3549, 85] (row = x,y,w,h,obj,cls0…cls79; obj/cls are post-sigmoid
 * probabilities, so the seed is the derivative w.r.t. those output values); gradInput = [1,3,416,416]
 * (BGR CHW, the gradient of the proxy w.r.t. the letterboxed detector input).
 */
import { mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { divideByMbArea, frameDiffPerMb, type MbReduce } from '../media/mb.ts';
import { letterboxFor, type Letterbox } from '../detector/preprocess.ts';
import { nativeKernels, type NativeKernels } from '../encoder/kernels.ts';
import { NUM_CLASSES, ROW, decodeCellBox, makeGrid, type Detection } from '../detector/postprocess.ts';
import { ACCURACY } from '../detector/accuracy.ts';
import { DT, makeNode, tensorProto, type Proto } from './onnxgrad/proto.ts';
import type { ProxyGraph } from './onnxgrad/vjp.ts';

export interface ProxyResult {
  /** proxy value (computed in float64) */
  value: number;
  /** d value / d raw, same layout as raw */
  seed: Float32Array;
}

export interface OneAdaptProxyOptions {
  /** classes counted (default: the F1 measurement's classes, ACCURACY.classes) */
  classes?: readonly number[];
  /** sigmoid sharpness k in sigmoid(k·(score − centre)) (default 20) */
  sharpness?: number;
  /** sigmoid centre (default: the F1 measurement's score threshold, ACCURACY.scoreThreshold) */
  centre?: number;
  /** only candidate cells count: a (cell, class) pair whose score obj·cls is below this is skipped, so an
   * empty scene's proxy and gradient are 0 rather than the tail of thousands of near-zero cells
   * (default ONEADAPT_PROXY.candidateScore) */
  candidateScore?: number;
  /** size filter: cells whose decoded box (network-input pixels) is smaller than this area are not counted.
   * It is a hard gate: no gradient flows into the box coordinates. Default 0 (no filter). */
  minBoxArea?: number;
  inputSize?: number;
  /** Hutchinson probes (bench:oneadapt-signal): each candidate pair's term is multiplied by sign() (±1), drawn in
   * cell-then-class order, so the seed is ∂(Σ ε_c σ_c)/∂raw; default +1 for every pair (the proxy itself) */
  sign?: () => number;
}

/** OneAdapt's proxy as the product and the benchmark use it: the F1 measurement's classes and score threshold
 * (centre), candidate cells from a third of that score up (the sigmoid there is ≈ 0.02: a cell that could cross). */
export const ONEADAPT_PROXY = {
  classes: ACCURACY.classes,
  centre: ACCURACY.scoreThreshold,
  sharpness: 20,
  candidateScore: ACCURACY.scoreThreshold / 3,
} as const satisfies OneAdaptProxyOptions;

/**
 * OneAdapt's proxy: O = Σ_candidate (cell, class) sigmoid(k·(obj·cls_c − centre)), a soft count of detections
 * above the F1 measurement's score threshold. dO/dobj = Σ_c k·σ(1−σ)·cls_c ; dO/dcls_c = k·σ(1−σ)·obj.
 */
export function oneAdaptProxy(raw: Float32Array, opts: OneAdaptProxyOptions = {}): ProxyResult {
  const k = opts.sharpness ?? ONEADAPT_PROXY.sharpness;
  const centre = opts.centre ?? ONEADAPT_PROXY.centre;
  const floor = opts.candidateScore ?? ONEADAPT_PROXY.candidateScore;
  const grid = makeGrid(opts.inputSize ?? 416);
  if (raw.length < grid.count * ROW) throw new RangeError(`raw has ${raw.length} values, expected ${grid.count * ROW}`);
  const classes = Int32Array.from(opts.classes ?? ONEADAPT_PROXY.classes);
  const minArea = opts.minBoxArea ?? 0;
  const seed = new Float32Array(raw.length);
  let value = 0;
  for (let cell = 0; cell < grid.count; cell++) {
    const o = cell * ROW;
    if (minArea > 0) {
      const b = decodeCellBox(raw, cell, grid);
      if ((b.x2 - b.x1) * (b.y2 - b.y1) < minArea) continue;
    }
    const obj = raw[o + 4];
    let dObj = 0;
    for (let i = 0; i < classes.length; i++) {
      const c = classes[i];
      const cls = raw[o + 5 + c];
      if (obj * cls < floor) continue;
      const sg = 1 / (1 + Math.exp(-k * (obj * cls - centre)));
      const e = opts.sign ? opts.sign() : 1;
      value += e * sg;
      const d = e * k * sg * (1 - sg);
      dObj += d * cls;
      seed[o + 5 + c] = d * obj;
    }
    seed[o + 4] = dObj;
  }
  return { value, seed };
}

/**
 * The same proxy as `oneAdaptProxy` (same options and defaults), as ONNX nodes on the raw output (`raw` →
 * scalar `proxy`), so the gradient model computes it and backpropagates from seed 1 inside one graph.
 * Float32 throughout (the JS version sums in float64). Gates are hard, without gradient, as in the JS
 * version: candidate (cell, class) pairs with obj·cls ≥ candidateScore, and the size filter, which compares
 * w + h (raw log-sizes) with ln(minBoxArea / stride²) — the same test as box area ≥ minBoxArea.
 */
export function oneAdaptProxyGraph(opts: OneAdaptProxyOptions = {}): ProxyGraph {
  const k = opts.sharpness ?? ONEADAPT_PROXY.sharpness;
  const centre = opts.centre ?? ONEADAPT_PROXY.centre;
  const floor = opts.candidateScore ?? ONEADAPT_PROXY.candidateScore;
  const inputSize = opts.inputSize ?? 416;
  const grid = makeGrid(inputSize);
  const classes = [...(opts.classes ?? ONEADAPT_PROXY.classes)];
  if (classes.some((c) => !Number.isInteger(c) || c < 0 || c >= NUM_CLASSES)) throw new RangeError(`proxy classes must be in 0..${NUM_CLASSES - 1}`);
  const minArea = opts.minBoxArea ?? 0;
  const nodes: Proto[] = [];
  const inits: Proto[] = [];
  const i64 = (name: string, v: number[]): string => { inits.push(tensorProto(name, DT.INT64, [v.length], v)); return name; };
  const f32 = (name: string, dims: number[], v: ArrayLike<number>): string => { inits.push(tensorProto(name, DT.FLOAT, dims, v)); return name; };
  i64('ax2', [2]);
  nodes.push(makeNode('Slice', ['raw', i64('s4', [4]), i64('e5', [5]), 'ax2'], ['obj']));
  nodes.push(makeNode('Slice', ['raw', i64('s5', [5]), i64('e85', [ROW]), 'ax2'], ['cls_all']));
  let cls = 'cls_all';
  if (!(classes.length === NUM_CLASSES && classes.every((c, i) => c === i))) {
    // select the classes with a constant 0/1 matrix (MatMul has an adjoint; Gather does not here)
    const sel = new Float32Array(NUM_CLASSES * classes.length);
    classes.forEach((c, j) => { sel[c * classes.length + j] = 1; });
    nodes.push(makeNode('MatMul', ['cls_all', f32('class_select', [NUM_CLASSES, classes.length], sel)], ['cls']));
    cls = 'cls';
  }
  nodes.push(makeNode('Mul', ['obj', cls], ['score']));
  nodes.push(makeNode('Mul', ['score', f32('k', [], [k])], ['kscore']));
  nodes.push(makeNode('Sub', ['kscore', f32('kc', [], [k * centre])], ['z']));
  nodes.push(makeNode('Sigmoid', ['z'], ['soft']));
  let counted = 'soft';
  const gate = (name: string, cond: string): void => {
    nodes.push(makeNode('Cast', [cond], [`${name}_f`], { to: DT.FLOAT }));
    nodes.push(makeNode('Mul', [counted, `${name}_f`], [`${name}_gated`]));
    counted = `${name}_gated`;
  };
  if (floor > 0) {
    nodes.push(makeNode('GreaterOrEqual', ['score', f32('candidate_score', [], [floor])], ['candidate']));
    gate('candidate', 'candidate');
  }
  if (minArea > 0) {
    const thr = new Float32Array(grid.count);
    for (let c = 0; c < grid.count; c++) thr[c] = Math.log(minArea) - 2 * Math.log(grid.stride[c]);
    nodes.push(makeNode('Slice', ['raw', i64('s2', [2]), i64('e4', [4]), 'ax2'], ['logwh']));
    nodes.push(makeNode('ReduceSum', ['logwh', 'ax2'], ['logarea'], { keepdims: 1 }));
    nodes.push(makeNode('GreaterOrEqual', ['logarea', f32('log_min_area', [1, grid.count, 1], thr)], ['big']));
    gate('size', 'big');
  }
  nodes.push(makeNode('ReduceSum', [counted], ['proxy'], { keepdims: 0 }));
  return {
    key: `oneadapt:k=${k}:c=${centre}:floor=${floor}:classes=${classes.join(',')}:minArea=${minArea}:S=${inputSize}`,
    input: 'raw',
    output: 'proxy',
    nodes,
    initializers: inits,
  };
}

export interface AccMpegProxyOptions {
  /** keep detections with score > minScore (default 0.3, as AccMPEG's code) */
  minScore?: number;
}

/**
 * AccMPEG's label proxy: S = Σ obj[cell]·cls[cell][classId] over the given (post-NMS) detections with
 * score > minScore, any class. The detection set is held fixed; dS/dobj = cls, dS/dcls = obj at those cells.
 * Pass detections decoded at a confidence threshold ≤ minScore (e.g. postprocess with confThreshold 0.3).
 */
export function accmpegProxy(raw: Float32Array, detections: readonly Pick<Detection, 'cell' | 'classId' | 'score'>[], opts: AccMpegProxyOptions = {}): ProxyResult {
  const minScore = opts.minScore ?? 0.3;
  const seed = new Float32Array(raw.length);
  let value = 0;
  for (const d of detections) {
    if (!(d.score > minScore)) continue;
    const o = d.cell * ROW;
    if (o + ROW > raw.length) throw new RangeError(`detection cell ${d.cell} outside raw output`);
    const obj = raw[o + 4];
    const cls = raw[o + 5 + d.classId];
    value += obj * cls;
    seed[o + 4] += cls;
    seed[o + 5 + d.classId] += obj;
  }
  return { value, seed };
}

function checkGrad(gradInput: Float32Array, lb: Letterbox, frameW: number, frameH: number): void {
  const S = lb.inputSize;
  if (gradInput.length !== 3 * S * S) throw new RangeError(`gradInput must be [1,3,${S},${S}] (${3 * S * S} floats), got ${gradInput.length}`);
  if (frameW !== lb.srcW || frameH !== lb.srcH) throw new RangeError(`frame ${frameW}x${frameH} does not match letterbox source ${lb.srcW}x${lb.srcH}`);
}

/** Per-pixel saliency in the network input: Σ over B,G,R of |grad|, [S·S]; padding included (caller ignores it). */
export function inputSaliency(gradInput: Float32Array, inputSize = 416): Float32Array {
  const plane = inputSize * inputSize;
  const s = new Float32Array(plane);
  for (let i = 0; i < plane; i++) s[i] = Math.abs(gradInput[i]) + Math.abs(gradInput[i + plane]) + Math.abs(gradInput[i + 2 * plane]);
  return s;
}

/**
 * Reduce an input gradient to a per-MB map of the ORIGINAL frame (ceil(h/16) × ceil(w/16)).
 * Per-pixel saliency = Σ_BGR |grad| over the un-padded part of the input (padding is ignored). Each input
 * pixel (xi, yi) belongs to one original location ((xi+0.5)·srcW/newW, (yi+0.5)·srcH/newH), and its saliency
 * is added to that location's MB ("push"; the total over MBs equals the total over the un-padded input).
 * - reduce 'sum' (AccMPEG: per-MB sum): that per-MB total.
 * - reduce 'mean' (OneAdapt, default): the total divided by the MB's pixel area in the original frame
 *   (clipped at the right/bottom edge), i.e. the MB's average saliency density per original pixel.
 */
export function reduceToMacroblocks(gradInput: Float32Array, lb: Letterbox, frameW: number, frameH: number, opts: { reduce?: MbReduce } = {}): MbMap {
  checkGrad(gradInput, lb, frameW, frameH);
  const k = kernelsFor(lb);
  if (!k) return reduceToMacroblocksTs(gradInput, lb, frameW, frameH, opts);
  const { rows, cols } = mbGrid(frameW, frameH);
  const data = new Float32Array(rows * cols);
  k.reduceToMacroblocks(gradInput, lb.inputSize, frameW, frameH, (opts.reduce ?? 'mean') === 'mean', data);
  return { rows, cols, data };
}

/** The C++ kernels, when built and when `lb` is the letterbox preprocess() makes for its frame (they derive it). */
function kernelsFor(lb: Letterbox): NativeKernels | null {
  const k = nativeKernels();
  if (!k) return null;
  const std = letterboxFor(lb.srcW, lb.srcH, lb.inputSize);
  return std.newW === lb.newW && std.newH === lb.newH && std.invScaleX === lb.invScaleX && std.invScaleY === lb.invScaleY ? k : null;
}

/** The TypeScript reference of reduceToMacroblocks() (the C++ kernel is bit-identical). */
export function reduceToMacroblocksTs(gradInput: Float32Array, lb: Letterbox, frameW: number, frameH: number, opts: { reduce?: MbReduce } = {}): MbMap {
  checkGrad(gradInput, lb, frameW, frameH);
  const S = lb.inputSize;
  const plane = S * S;
  const { rows, cols } = mbGrid(frameW, frameH);
  const out = new Float32Array(rows * cols);
  const colMb = new Int32Array(lb.newW);
  for (let x = 0; x < lb.newW; x++) colMb[x] = Math.min(frameW - 1, Math.floor((x + 0.5) * lb.invScaleX)) >> 4;
  for (let y = 0; y < lb.newH; y++) {
    const r = Math.min(frameH - 1, Math.floor((y + 0.5) * lb.invScaleY)) >> 4;
    const rowOut = r * cols;
    const base = y * S;
    for (let x = 0; x < lb.newW; x++) {
      const i = base + x;
      out[rowOut + colMb[x]] += Math.abs(gradInput[i]) + Math.abs(gradInput[i + plane]) + Math.abs(gradInput[i + 2 * plane]);
    }
  }
  const map = { rows, cols, data: out };
  return (opts.reduce ?? 'mean') === 'mean' ? divideByMbArea(map, frameW, frameH) : map;
}

/**
 * Per-pixel saliency in ORIGINAL-frame coordinates, [frameH·frameW] row-major. Each original pixel takes
 * the Σ_BGR |grad| of the input pixel it falls in ("pull", nearest), times the area ratio
 * (newW·newH)/(srcW·srcH), so it is a density whose sum over the frame ≈ the sum over the un-padded input
 * (and whose per-MB sums ≈ reduceToMacroblocks(…, 'sum')).
 */
export function saliencyToFrame(gradInput: Float32Array, lb: Letterbox, frameW: number, frameH: number): Float32Array {
  checkGrad(gradInput, lb, frameW, frameH);
  const k = kernelsFor(lb);
  if (!k) return saliencyToFrameTs(gradInput, lb, frameW, frameH);
  const out = new Float32Array(frameW * frameH);
  k.saliencyToFrame(gradInput, lb.inputSize, frameW, frameH, out);
  return out;
}

/** The TypeScript reference of saliencyToFrame(). */
export function saliencyToFrameTs(gradInput: Float32Array, lb: Letterbox, frameW: number, frameH: number): Float32Array {
  checkGrad(gradInput, lb, frameW, frameH);
  const S = lb.inputSize;
  const plane = S * S;
  const k = 1 / (lb.invScaleX * lb.invScaleY);
  const xs = new Int32Array(frameW);
  for (let x = 0; x < frameW; x++) xs[x] = Math.min(lb.newW - 1, Math.floor((x + 0.5) / lb.invScaleX));
  const out = new Float32Array(frameW * frameH);
  for (let y = 0; y < frameH; y++) {
    const yi = Math.min(lb.newH - 1, Math.floor((y + 0.5) / lb.invScaleY));
    const base = yi * S;
    const o = y * frameW;
    for (let x = 0; x < frameW; x++) {
      const i = base + xs[x];
      out[o + x] = k * (Math.abs(gradInput[i]) + Math.abs(gradInput[i + plane]) + Math.abs(gradInput[i + 2 * plane]));
    }
  }
  return out;
}

/**
 * AccMPEG's paper definition: per-MB Σ_pixels saliency · |HQ − LQ|, with the pixel difference taken as
 * |ΔY| + |ΔU| + |ΔV| (chroma of the 2×2 block the pixel belongs to), on the original-resolution frames.
 * Without a saliency map it is the plain per-MB pixel difference (OneAdapt's InputGrad-style error).
 * reduce: 'sum' (default, the paper's definition) or 'mean' (divided by the MB's pixel area).
 */
export function weightByPixelDiff(saliency: Float32Array | undefined, hq: YuvFrame, lq: YuvFrame, opts: { reduce?: MbReduce } = {}): MbMap {
  return frameDiffPerMb(hq, lq, { metric: 'yuv', weight: saliency, reduce: opts.reduce ?? 'sum' });
}
