/**
 * Reverse-mode autodiff over an ONNX graph: turns a forward model y = f(x) into a
 * vector–Jacobian-product model (x, grad_y) → (y, grad_x = J_f(x)ᵀ·grad_y), built only from
 * standard ONNX operators so onnxruntime (CPU, Node) runs it like any model.
 * See README.md in this folder for the per-operator adjoint table and the limits.
 */
import { attr, attrFloat, attrInt, attrInts, attrStr, decodeModel, encodeModel, makeNode, num, tensorFromProto, tensorProto, valueInfo, DT, type AttrValue, type Proto } from './proto.ts';
import { ShapeTable, broadcast, prod, windowParams, type Shape } from './shapes.ts';
import { OnnxGradError, UnsupportedOperatorError } from './errors.ts';
import { convInputGradAsConv } from './conv.ts';

export interface VjpOptions {
  /** Forward input to differentiate with respect to (default: the first non-initializer graph input). */
  input?: string;
  /** Forward output whose seed is given (default: the first graph output). */
  output?: string;
  /** Static shape of the input when the model declares symbolic dims. */
  inputShape?: number[];
  /** Name of the seed input (default `grad_<output>`). */
  seedName?: string;
  /** Name of the gradient output (default `grad_<input>`). */
  gradName?: string;
  /**
   * 'conv' (default): Conv adjoints with constant weights are forward Convs (flipped kernels for stride 1,
   * phase decomposition + DepthToSpace for stride 2; see conv.ts); 'transpose': ConvTranspose (the old
   * way, kept for comparison and as the fallback for configurations conv.ts does not handle).
   */
  convAdjoint?: 'conv' | 'transpose';
  /**
   * Fuse the adjoint of SiLU (x·Sigmoid(x)) into g·s·(1 + x − y) (default true). 'omit' passes g through
   * unchanged instead: a WRONG gradient, only for timing the bound "what if each SiLU's backward were free"
   * (bench:server); never used by the product.
   */
  fuseSilu?: boolean | 'omit';
  /**
   * Graph-level speed-ups (default true): a Focus/space-to-depth stem (Concat of the four stride-2 Slice
   * pairs of one tensor) gets one ConvTranspose with 0/1 weights as its adjoint instead of eight Slice
   * adjoints; k×k MaxPools become a 1×k then a k×1 pool (same values; the indices kernel the adjoint
   * needs costs ∝ window size).
   */
  patterns?: boolean;
  /**
   * Adjoints shaped so onnxruntime's NCHWc layout pass keeps the backward blocked (default true): a Concat
   * whose gradient is a sum of adjoint Convs gets per-part Convs (the weights' output channels split) instead
   * of one Conv and a `Split`, and an integer nearest-upsample gets a strided depthwise Conv with unit weights
   * instead of `Reshape` + `ReduceSum`. Same sums, fewer reorders between blocked and plain layouts.
   */
  layoutFriendly?: boolean;
  /**
   * Differentiate a scalar proxy computed in the graph from the forward output instead of taking a
   * seed input: the model then has the forward input only, and outputs (output, proxy, grad_<input>),
   * the gradient being d proxy / d input (backward from seed 1).
   */
  proxy?: ProxyGraph;
}

/**
 * A scalar function of the forward output, as ONNX nodes: they read `input` (a placeholder name replaced
 * by the forward output) and write the scalar `output`. Other tensor names are private to the proxy.
 */
export interface ProxyGraph {
  /** stable description (part of cache keys) */
  key: string;
  input: string;
  output: string;
  nodes: Proto[];
  initializers: Proto[];
}

/** Bump when the emitted graph changes for the same inputs (cache keys include it). */
export const TRANSFORM_VERSION = 4;

/** Lowest opset with ScatterElements(reduction='add'), which the MaxPool adjoint needs. */
export const MIN_TARGET_OPSET = 16;

const unaryPassThrough = new Set(['Identity', 'Dropout']);
const reshapeLike = new Set(['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze']);
/** Outputs that carry no gradient (comparisons, logic, indices): they stop dependence on the input. */
const NON_DIFFERENTIABLE = new Set(['Greater', 'Less', 'Equal', 'GreaterOrEqual', 'LessOrEqual', 'Not', 'And', 'Or', 'Xor', 'ArgMax', 'ArgMin', 'Shape', 'Size', 'Sign', 'Floor', 'Ceil', 'Round']);

/** Emission context shared by the adjoint rules. */
class Builder {
  readonly nodes: Proto[] = [];
  readonly inits: Proto[] = [];
  private counter = 0;
  convMode: 'conv' | 'transpose' = 'conv';
  layoutFriendly = true;
  constructor(readonly st: ShapeTable, private readonly used: Set<string>, readonly initializers: Map<string, Proto> = new Map()) {}

  fresh(base: string): string {
    let n: string;
    do n = `vjp/${base}_${this.counter++}`; while (this.used.has(n));
    this.used.add(n);
    return n;
  }

  shape(name: string): Shape { return this.st.shape(name); }

  emit(op: string, inputs: string[], attrs: Record<string, AttrValue | undefined> = {}, nOut = 1, outShapes?: Shape[]): string[] {
    const outs = Array.from({ length: nOut }, () => this.fresh(op));
    this.nodes.push(makeNode(op, inputs, outs, attrs, outs[0]));
    outShapes?.forEach((s, i) => this.st.shapes.set(outs[i], s));
    return outs;
  }
  one(op: string, inputs: string[], attrs: Record<string, AttrValue | undefined> = {}, outShape?: Shape): string {
    return this.emit(op, inputs, attrs, 1, outShape ? [outShape] : undefined)[0];
  }

  i64(values: number[], dims: number[] = [values.length]): string {
    const n = this.fresh('const_i64');
    this.inits.push(tensorProto(n, DT.INT64, dims, values));
    this.st.shapes.set(n, dims);
    return n;
  }
  f32(values: number[], dims: number[] = []): string {
    const n = this.fresh('const_f32');
    this.inits.push(tensorProto(n, DT.FLOAT, dims, values));
    this.st.shapes.set(n, dims);
    return n;
  }

  zeros(shape: Shape): string {
    return this.one('ConstantOfShape', [this.i64(shape)], { value: { tensor: { dims: [1], dataType: DT.FLOAT, values: [0] } } }, shape);
  }

  reshape(x: string, to: Shape): string { return this.one('Reshape', [x, this.i64(to)], {}, to); }

  /** Sum a gradient of shape gShape down to `target` (numpy broadcasting reversed). */
  unbroadcast(g: string, gShape: Shape, target: Shape): string {
    const r = gShape.length;
    const axes: number[] = [];
    for (let i = 0; i < r; i++) {
      const ti = i - (r - target.length);
      if (ti < 0 || (target[ti] === 1 && gShape[i] !== 1)) axes.push(i);
    }
    let out = g;
    let sh = gShape;
    if (axes.length) {
      sh = gShape.map((d, i) => (axes.includes(i) ? 1 : d));
      out = this.one('ReduceSum', [g, this.i64(axes)], { keepdims: 1 }, sh);
    }
    if (sh.length !== target.length || sh.some((d, i) => d !== target[i])) out = this.reshape(out, target);
    return out;
  }

  sum(terms: string[], shape: Shape): string {
    return terms.length === 1 ? terms[0] : this.one('Sum', terms, {}, shape);
  }
}

type Adjoint = (b: Builder, node: Proto, g: (string | null)[], need: boolean[], opset: number) => (string | null)[];

const unsupported = (node: Proto, detail?: string): never => { throw new UnsupportedOperatorError(node.opType, node.name, detail); };

/** Gradient of one input of a Conv: ConvTranspose with the same weights. */
function convAdjoint(b: Builder, node: Proto, g: string, need: boolean[]): (string | null)[] {
  if (need[1] || need[2]) unsupported(node, 'gradient w.r.t. weights/bias (weights must be constant)');
  const x = b.shape(node.input[0]);
  const w = b.shape(node.input[1]);
  const y = b.shape(node.output[0]);
  const p = windowParams(node, x, w);
  const n = x.length - 2;
  const outputPadding = x.slice(2).map((d, i) => {
    const eff = (p.kernel[i] - 1) * p.dilations[i] + 1;
    const produced = p.strides[i] * (y[i + 2] - 1) + eff - p.pads[i] - p.pads[i + n];
    return d - produced;
  });
  if (outputPadding.some((v, i) => v < 0 || v >= Math.max(p.strides[i], p.dilations[i]))) unsupported(node, `cannot invert spatial shape (output_padding ${outputPadding})`);
  const group = attrInt(node, 'group', 1);
  const wInit = b.initializers.get(node.input[1]);
  if (b.convMode === 'conv' && wInit) {
    const dxc = convInputGradAsConv(b, g, wInit, x, w, y, p, group);
    if (dxc) return [dxc, null, null];
  }
  const dx = b.one('ConvTranspose', [g, node.input[1]], {
    group, kernel_shape: p.kernel, strides: p.strides, dilations: p.dilations, pads: p.pads,
    output_padding: outputPadding.some((v) => v) ? outputPadding : undefined,
  }, x);
  return [dx, null, null];
}

/** Weights M[o][i] (out×in) of a 1-D Resize along one axis, for nearest/linear modes. */
function resizeMatrix(node: Proto, inLen: number, outLen: number, scale: number): number[][] {
  const mode = attrStr(node, 'mode', 'nearest');
  const ctm = attrStr(node, 'coordinate_transformation_mode', 'half_pixel');
  const nearestMode = attrStr(node, 'nearest_mode', 'round_prefer_floor');
  const M = Array.from({ length: outLen }, () => new Array(inLen).fill(0));
  for (let o = 0; o < outLen; o++) {
    let xo: number;
    switch (ctm) {
      case 'half_pixel': xo = (o + 0.5) / scale - 0.5; break;
      case 'pytorch_half_pixel': xo = outLen > 1 ? (o + 0.5) / scale - 0.5 : 0; break;
      case 'align_corners': xo = outLen === 1 ? 0 : (o * (inLen - 1)) / (outLen - 1); break;
      case 'asymmetric': xo = o / scale; break;
      case 'tf_half_pixel_for_nn': xo = (o + 0.5) / scale; break;
      default: return unsupported(node, `coordinate_transformation_mode ${ctm}`);
    }
    if (mode === 'nearest') {
      let i: number;
      switch (nearestMode) {
        case 'round_prefer_floor': i = xo === Math.floor(xo) + 0.5 ? Math.floor(xo) : Math.round(xo); break;
        case 'round_prefer_ceil': i = Math.round(xo); break;
        case 'floor': i = Math.floor(xo); break;
        case 'ceil': i = Math.ceil(xo); break;
        default: return unsupported(node, `nearest_mode ${nearestMode}`);
      }
      M[o][Math.min(Math.max(i, 0), inLen - 1)] += 1;
    } else if (mode === 'linear') {
      const xc = Math.min(Math.max(xo, 0), inLen - 1);
      const i0 = Math.floor(xc);
      const i1 = Math.min(i0 + 1, inLen - 1);
      const f = xc - i0;
      M[o][i0] += 1 - f;
      M[o][i1] += f;
    } else return unsupported(node, `mode ${mode}`);
  }
  return M;
}

function resizeAdjoint(b: Builder, node: Proto, g: string): string {
  const x = b.shape(node.input[0]);
  const { out, scales } = b.st.resizeDims(node);
  const axes = x.map((_, i) => i).filter((i) => out[i] !== x[i] || scales[i] !== 1);
  const mats = new Map(axes.map((a) => [a, resizeMatrix(node, x[a], out[a], scales[a])]));
  // Fast path: every resized axis is an integer block replication (out i ← in floor(i/k)).
  const blockK = axes.map((a) => {
    const k = out[a] / x[a];
    if (!Number.isInteger(k)) return 0;
    const M = mats.get(a)!;
    for (let o = 0; o < out[a]; o++) for (let i = 0; i < x[a]; i++) if (M[o][i] !== (Math.floor(o / k) === i ? 1 : 0)) return 0;
    return k;
  });
  if (axes.length && blockK.every((k) => k > 0)) {
    if (b.layoutFriendly && x.length === 4 && axes.every((a) => a >= 2)) {
      // Σ over each k_h×k_w block = depthwise Conv with unit weights and stride k (stays in onnxruntime's blocked layout)
      const k = [2, 3].map((a) => (axes.includes(a) ? blockK[axes.indexOf(a)] : 1));
      const wName = b.fresh('block_sum_weight');
      b.inits.push(tensorProto(wName, DT.FLOAT, [x[1], 1, k[0], k[1]], new Float32Array(x[1] * k[0] * k[1]).fill(1)));
      return b.one('Conv', [g, wName], { group: x[1], kernel_shape: k, strides: k }, x);
    }
    const split: number[] = [];
    const sumAxes: number[] = [];
    x.forEach((d, i) => {
      const j = axes.indexOf(i);
      if (j < 0) split.push(d);
      else { split.push(d, blockK[j]); sumAxes.push(split.length - 1); }
    });
    return b.one('ReduceSum', [b.reshape(g, split), b.i64(sumAxes)], { keepdims: 0 }, x);
  }
  // General path: separable linear maps, gradient = Mᵀ applied along each resized axis.
  let cur = g;
  let curShape = out.slice();
  for (const a of axes) {
    const M = mats.get(a)!;
    const r = curShape.length;
    const perm = curShape.map((_, i) => i);
    perm.splice(a, 1); perm.push(a);
    const inv = perm.map((_, i) => perm.indexOf(i));
    const tShape = perm.map((p) => curShape[p]);
    const t = a === r - 1 ? cur : b.one('Transpose', [cur], { perm }, tShape);
    const mName = b.f32(M.flat(), [out[a], x[a]]);
    const mmShape = tShape.slice(); mmShape[r - 1] = x[a];
    const mm = b.one('MatMul', [t, mName], {}, mmShape);
    curShape = curShape.slice(); curShape[a] = x[a];
    cur = a === r - 1 ? mm : b.one('Transpose', [mm], { perm: inv }, curShape);
  }
  return cur;
}

function sliceAdjoint(b: Builder, node: Proto, g: string): string {
  const x = b.shape(node.input[0]);
  const specs = b.st.sliceSpecs(node);
  let cur = g;
  let sh = b.shape(node.output[0]).slice();
  if (specs.some((s) => s.count === 0)) return b.zeros(x);
  const pads = new Array(2 * x.length).fill(0);
  for (const sp of specs) {
    const a = sp.axis;
    let first = sp.start;
    let step = sp.step;
    if (step < 0) {
      // reverse the gradient along the axis, then it is a positive-step slice from the last index
      cur = b.one('Slice', [cur, b.i64([-1]), b.i64([-Number.MAX_SAFE_INTEGER]), b.i64([a]), b.i64([-1])], {}, sh);
      first = sp.start + (sp.count - 1) * step;
      step = -step;
    }
    let len = sp.count;
    if (step > 1) {
      // interleave step-1 zeros after every element: [.., n, ..] → [.., n, step, ..] → [.., n*step, ..]
      const uShape = sh.slice(); uShape.splice(a + 1, 0, 1);
      const u = b.one('Unsqueeze', [cur, b.i64([a + 1])], {}, uShape);
      const p = new Array(2 * uShape.length).fill(0); p[a + 1 + uShape.length] = step - 1;
      const pShape = uShape.slice(); pShape[a + 1] = step;
      const padded = b.one('Pad', [u, b.i64(p)], { mode: 'constant' }, pShape);
      sh = sh.slice(); sh[a] = len * step; len = len * step;
      cur = b.reshape(padded, sh);
      if (first + len > x[a]) {
        len = x[a] - first;
        sh = sh.slice(); sh[a] = len;
        cur = b.one('Slice', [cur, b.i64([0]), b.i64([len]), b.i64([a])], {}, sh);
      }
    }
    pads[a] = first;
    pads[a + x.length] = x[a] - first - len; // sh[a] stays len: the padding is applied once, below
  }
  if (pads.some((p) => p < 0)) throw new OnnxGradError(`Slice ${node.name}: internal pad error`);
  return pads.some((p) => p) ? b.one('Pad', [cur, b.i64(pads)], { mode: 'constant' }, x) : cur;
}

function maxPoolAdjoint(b: Builder, node: Proto, g: string): string {
  const x = b.shape(node.input[0]);
  if (attrInt(node, 'storage_order', 0) !== 0) unsupported(node, 'storage_order=1');
  const indices = node.output[1] as string; // added to the forward node by the transform
  const total = prod(x);
  const flatIdx = b.reshape(indices, [1, prod(b.shape(node.output[0]))]);
  const flatG = b.reshape(g, [1, prod(b.shape(node.output[0]))]);
  const sc = b.one('ScatterElements', [b.zeros([1, total]), flatIdx, flatG], { axis: 1, reduction: 'add' }, [1, total]);
  return b.reshape(sc, x);
}

const adjoints: Record<string, Adjoint> = {
  Conv: (b, n, g, need) => convAdjoint(b, n, g[0]!, need),
  Sigmoid: (b, n, g) => {
    const y = n.output[0];
    const sh = b.shape(y);
    const oneMinus = b.one('Sub', [b.f32([1]), y], {}, sh);
    return [b.one('Mul', [g[0]!, b.one('Mul', [y, oneMinus], {}, sh)], {}, sh)];
  },
  Tanh: (b, n, g) => {
    const y = n.output[0]; const sh = b.shape(y);
    const d = b.one('Sub', [b.f32([1]), b.one('Mul', [y, y], {}, sh)], {}, sh);
    return [b.one('Mul', [g[0]!, d], {}, sh)];
  },
  Exp: (b, n, g) => [b.one('Mul', [g[0]!, n.output[0]], {}, b.shape(n.output[0]))],
  Relu: (b, n, g) => {
    const sh = b.shape(n.input[0]);
    const pos = b.one('Greater', [n.input[0], b.f32([0])], {}, sh);
    return [b.one('Where', [pos, g[0]!, b.f32([0])], {}, sh)];
  },
  LeakyRelu: (b, n, g) => {
    const sh = b.shape(n.input[0]);
    const alpha = attrFloat(n, 'alpha', 0.01);
    const pos = b.one('Greater', [n.input[0], b.f32([0])], {}, sh);
    return [b.one('Where', [pos, g[0]!, b.one('Mul', [g[0]!, b.f32([alpha])], {}, sh)], {}, sh)];
  },
  Neg: (b, n, g) => [b.one('Neg', [g[0]!], {}, b.shape(n.input[0]))],
  Softmax: (b, n, g, _need, opset) => {
    if (opset < 13) throw new OnnxGradError('internal: Softmax not converted to opset 13 semantics');
    const y = n.output[0]; const sh = b.shape(y);
    const axis = attrInt(n, 'axis', -1);
    const gy = b.one('Mul', [g[0]!, y], {}, sh);
    const rs = sh.slice(); rs[axis < 0 ? axis + sh.length : axis] = 1;
    const s = b.one('ReduceSum', [gy, b.i64([axis])], { keepdims: 1 }, rs);
    return [b.one('Mul', [y, b.one('Sub', [g[0]!, s], {}, sh)], {}, sh)];
  },
  LogSoftmax: (b, n, g, _need, opset) => {
    if (opset < 13) throw new OnnxGradError('internal: LogSoftmax not converted to opset 13 semantics');
    const y = n.output[0]; const sh = b.shape(y);
    const axis = attrInt(n, 'axis', -1);
    const rs = sh.slice(); rs[axis < 0 ? axis + sh.length : axis] = 1;
    const s = b.one('ReduceSum', [g[0]!, b.i64([axis])], { keepdims: 1 }, rs);
    return [b.one('Sub', [g[0]!, b.one('Mul', [b.one('Exp', [y], {}, sh), s], {}, sh)], {}, sh)];
  },
  Add: (b, n, g, need) => {
    const ys = b.shape(n.output[0]);
    return [0, 1].map((i) => (need[i] ? b.unbroadcast(g[0]!, ys, b.shape(n.input[i])) : null));
  },
  Sum: (b, n, g, need) => {
    const ys = b.shape(n.output[0]);
    return n.input.map((x: string, i: number) => (need[i] ? b.unbroadcast(g[0]!, ys, b.shape(x)) : null));
  },
  Sub: (b, n, g, need) => {
    const ys = b.shape(n.output[0]);
    return [
      need[0] ? b.unbroadcast(g[0]!, ys, b.shape(n.input[0])) : null,
      need[1] ? b.unbroadcast(b.one('Neg', [g[0]!], {}, ys), ys, b.shape(n.input[1])) : null,
    ];
  },
  Mul: (b, n, g, need) => {
    const ys = b.shape(n.output[0]);
    return [0, 1].map((i) => (need[i] ? b.unbroadcast(b.one('Mul', [g[0]!, n.input[1 - i]], {}, ys), ys, b.shape(n.input[i])) : null));
  },
  Div: (b, n, g, need) => {
    const ys = b.shape(n.output[0]);
    const ga = b.one('Div', [g[0]!, n.input[1]], {}, ys);
    return [
      need[0] ? b.unbroadcast(ga, ys, b.shape(n.input[0])) : null,
      need[1] ? b.unbroadcast(b.one('Neg', [b.one('Mul', [ga, n.output[0]], {}, ys)], {}, ys), ys, b.shape(n.input[1])) : null,
    ];
  },
  Concat: (b, n, g, need) => {
    const ys = b.shape(n.output[0]);
    const ins = (n.input as string[]).map((x) => b.shape(x));
    const axis = attrInt(n, 'axis', 0) < 0 ? attrInt(n, 'axis', 0) + ys.length : attrInt(n, 'axis', 0);
    const outs = b.emit('Split', [g[0]!, b.i64(ins.map((s) => s[axis]))], { axis }, ins.length, ins);
    return outs.map((o, i) => (need[i] ? o : null));
  },
  Split: (b, n, g, _need) => {
    const xs = b.shape(n.input[0]);
    const axis = attrInt(n, 'axis', 0) < 0 ? attrInt(n, 'axis', 0) + xs.length : attrInt(n, 'axis', 0);
    const parts = (n.output as string[]).map((o, i) => g[i] ?? b.zeros(b.shape(o)));
    return [parts.length === 1 ? parts[0] : b.one('Concat', parts, { axis }, xs)];
  },
  Slice: (b, n, g, need) => {
    if (need.slice(1).some((x) => x)) unsupported(n, 'slice bounds depend on the input');
    return [sliceAdjoint(b, n, g[0]!)];
  },
  MaxPool: (b, n, g) => [maxPoolAdjoint(b, n, g[0]!)],
  GlobalAveragePool: (b, n, g) => {
    const x = b.shape(n.input[0]);
    const scaled = b.one('Mul', [g[0]!, b.f32([1 / prod(x.slice(2))])], {}, b.shape(n.output[0]));
    return [b.one('Expand', [scaled, b.i64(x)], {}, x)];
  },
  Resize: (b, n, g, need) => {
    if (need.slice(1).some((x) => x)) unsupported(n, 'scales/sizes depend on the input');
    return [resizeAdjoint(b, n, g[0]!)];
  },
  ReduceSum: (b, n, g, need, opset) => {
    if (opset < 13) throw new OnnxGradError('internal: ReduceSum not converted to opset 13 semantics');
    if (need[1]) unsupported(n, 'axes depend on the input');
    const x = b.shape(n.input[0]);
    const axesIn = n.input[1] ? b.st.ints(n.input[1], `ReduceSum ${n.name}`) : [];
    if (!axesIn.length && attrInt(n, 'noop_with_empty_axes', 0) === 1) return [g[0]];
    const axes = (axesIn.length ? axesIn : x.map((_, i) => i)).map((a) => (a < 0 ? a + x.length : a));
    const kept = x.map((d, i) => (axes.includes(i) ? 1 : d));
    const gk = attrInt(n, 'keepdims', 1) === 1 ? g[0]! : b.reshape(g[0]!, kept);
    return [b.one('Expand', [gk, b.i64(x)], {}, x), null];
  },
  MatMul: (b, n, g, need) => {
    // A·B with a constant 2-D B: dA = g·Bᵀ
    if (need[1]) unsupported(n, 'gradient w.r.t. the second operand (it must be a constant matrix)');
    const bInit = b.initializers.get(n.input[1]) ?? b.inits.find((t) => t.name === n.input[1]);
    const bs = b.shape(n.input[1]);
    if (!bInit || bs.length !== 2) unsupported(n, 'second operand must be a constant 2-D initializer');
    const v = tensorFromProto(bInit).values;
    const bt = new Array(v.length);
    for (let i = 0; i < bs[0]; i++) for (let j = 0; j < bs[1]; j++) bt[j * bs[0] + i] = v[i * bs[1] + j];
    return [b.one('MatMul', [g[0]!, b.f32(bt, [bs[1], bs[0]])], {}, b.shape(n.input[0])), null];
  },
  Where: (b, n, g, need) => {
    const ys = b.shape(n.output[0]);
    const z = b.f32([0], []);
    return [
      null,
      need[1] ? b.unbroadcast(b.one('Where', [n.input[0], g[0]!, z], {}, ys), ys, b.shape(n.input[1])) : null,
      need[2] ? b.unbroadcast(b.one('Where', [n.input[0], z, g[0]!], {}, ys), ys, b.shape(n.input[2])) : null,
    ];
  },
  Transpose: (b, n, g) => {
    const x = b.shape(n.input[0]);
    const perm = attrInts(n, 'perm') ?? x.map((_, i) => x.length - 1 - i);
    return [b.one('Transpose', [g[0]!], { perm: perm.map((_, i) => perm.indexOf(i)) }, x)];
  },
};

/** Rewrite forward nodes whose signature changed between their opset and the target opset. */
function upgradeNode(node: Proto, from: number, to: number, st: ShapeTable, b: Builder): Proto[] {
  if (from >= 13 || to < 13) return [node];
  const dropAttr = (name: string): void => { node.attribute = (node.attribute ?? []).filter((a: Proto) => a.name !== name); };
  switch (node.opType) {
    case 'Split': {
      const split = attrInts(node, 'split');
      dropAttr('split');
      if (split) node.input = [node.input[0], b.i64(split)];
      return [node];
    }
    case 'Squeeze': case 'Unsqueeze': case 'ReduceSum': {
      const axes = attrInts(node, 'axes');
      dropAttr('axes');
      if (axes) node.input = [node.input[0], b.i64(axes)];
      return [node];
    }
    case 'Softmax': case 'LogSoftmax': case 'Hardmax': {
      // opset < 13 coerces the input to 2-D at `axis` (default 1); opset 13 works along one axis (default -1)
      const x = st.shape(node.input[0]);
      const axis = attrInt(node, 'axis', 1) < 0 ? attrInt(node, 'axis', 1) + x.length : attrInt(node, 'axis', 1);
      dropAttr('axis');
      node.attribute.push(attr('axis', -1));
      if (axis === x.length - 1) return [node];
      const flat = [prod(x.slice(0, axis)), prod(x.slice(axis))];
      const fIn = b.fresh('flat_in');
      const fOut = b.fresh('flat_out');
      const out = node.output[0];
      st.shapes.set(fIn, flat); st.shapes.set(fOut, flat);
      const pre = makeNode('Reshape', [node.input[0], b.i64(flat)], [fIn], {}, `${node.name}/flatten`);
      const post = makeNode('Reshape', [fOut, b.i64(x)], [out], {}, `${node.name}/unflatten`);
      node.input = [fIn]; node.output = [fOut];
      return [pre, node, post];
    }
    default: return [node];
  }
}

const OPS_CHANGED_UNHANDLED = new Set(['Upsample', 'Scatter', 'ReduceL1', 'Hardmax_old']);

/**
 * Build the VJP model. Inputs: the forward input plus `grad_<output>` (the seed, same shape as
 * the output); outputs: the forward output and `grad_<input>` = d<seed, output>/d input.
 */
export function buildVjpModel(forwardModelBytes: Uint8Array, opts: VjpOptions = {}): Uint8Array {
  const model = decodeModel(forwardModelBytes);
  const graph = model.graph;
  const opsetEntry = (model.opsetImport ?? []).find((o: Proto) => !o.domain || o.domain === 'ai.onnx');
  const fromOpset = opsetEntry ? num(opsetEntry.version) : 1;
  if (fromOpset < 11) throw new OnnxGradError(`forward model opset ${fromOpset} < 11 is not supported`);
  const toOpset = Math.max(MIN_TARGET_OPSET, fromOpset);

  const st = new ShapeTable(graph);
  const initNames = new Set<string>((graph.initializer ?? []).map((t: Proto) => t.name));
  for (const t of graph.initializer ?? []) st.addInitializer(t);
  const inputVi = opts.input ? graph.input.find((i: Proto) => i.name === opts.input) : graph.input.find((i: Proto) => !initNames.has(i.name));
  if (!inputVi) throw new OnnxGradError(`input ${opts.input ?? '(first)'} not found`);
  const outputVi = opts.output ? graph.output.find((o: Proto) => o.name === opts.output) : graph.output[0];
  if (!outputVi) throw new OnnxGradError(`output ${opts.output ?? '(first)'} not found`);
  const xName: string = inputVi.name;
  const fwdOutName: string = outputVi.name;
  const declared = opts.inputShape ?? (inputVi.type?.tensorType?.shape?.dim ?? []).map((d: Proto) => (d.dimValue ? num(d.dimValue) : NaN));
  if (declared.some((d: number) => !(d > 0))) throw new OnnxGradError(`input ${xName} has symbolic dims; pass opts.inputShape`);
  if (inputVi.type?.tensorType?.elemType !== DT.FLOAT) throw new OnnxGradError(`input ${xName} must be float32`);
  st.shapes.set(xName, declared);

  const used = new Set<string>();
  for (const n of graph.node) { for (const t of [...n.input, ...n.output]) used.add(t); }
  for (const t of initNames) used.add(t);
  const b = new Builder(st, used, new Map((graph.initializer ?? []).map((t: Proto) => [t.name, t])));
  b.convMode = opts.convAdjoint ?? 'conv';
  b.layoutFriendly = opts.layoutFriendly !== false;

  // Forward pass: shape inference, opset upgrade.
  const fwd: Proto[] = [];
  for (const node of graph.node) {
    if (node.domain && node.domain !== 'ai.onnx') { fwd.push(node); continue; }
    if (OPS_CHANGED_UNHANDLED.has(node.opType)) unsupported(node, `operator changed semantics after opset ${fromOpset}`);
    st.infer(node, fromOpset);
    fwd.push(...upgradeNode(node, fromOpset, toOpset, st, b));
  }

  const patterns = opts.patterns !== false;
  if (patterns) separableMaxPools(fwd, st, b);

  // The proxy (target-opset nodes) reads the forward output; its private names get a prefix.
  let yName = fwdOutName;
  const proxy = opts.proxy;
  if (proxy) {
    const rename = new Map<string, string>([[proxy.input, fwdOutName], [proxy.output, used.has('proxy') ? b.fresh('proxy') : 'proxy']]);
    used.add(rename.get(proxy.output)!);
    const nameOf = (t: string): string => {
      if (!t) return t;
      let r = rename.get(t);
      if (!r) { r = used.has(`proxy/${t}`) ? b.fresh(`proxy_${t}`) : `proxy/${t}`; used.add(r); rename.set(t, r); }
      return r;
    };
    for (const t of proxy.initializers) {
      const c = { ...t, name: nameOf(t.name) };
      b.inits.push(c);
      st.addInitializer(c);
    }
    for (const n of proxy.nodes) {
      const c = { ...n, input: n.input.map(nameOf), output: n.output.map(nameOf), name: `proxy/${n.name ?? n.output[0]}` };
      st.infer(c, toOpset);
      fwd.push(c);
    }
    yName = nameOf(proxy.output);
  }

  // Which tensors depend on x (differentiably), and which nodes lie on an x → y path.
  const dependsOnX = new Set<string>([xName]);
  for (const node of fwd) {
    if (NON_DIFFERENTIABLE.has(node.opType)) continue;
    if (node.input.some((i: string) => dependsOnX.has(i))) node.output.forEach((o: string) => o && dependsOnX.add(o));
  }
  if (!dependsOnX.has(yName)) throw new OnnxGradError(`output ${yName} does not depend on input ${xName}`);
  const reachesY = new Set<string>([yName]);
  const active: Proto[] = [];
  for (let i = fwd.length - 1; i >= 0; i--) {
    const node = fwd[i];
    if (node.output.some((o: string) => reachesY.has(o)) && node.input.some((x: string) => dependsOnX.has(x))) {
      active.push(node);
      node.input.forEach((x: string) => x && dependsOnX.has(x) && reachesY.add(x));
    }
  }
  // Check support up front so the error names the first offending node.
  for (const node of [...active].reverse()) {
    if (!adjoints[node.opType] && !unaryPassThrough.has(node.opType) && !reshapeLike.has(node.opType)) unsupported(node);
  }
  // MaxPool adjoints need the argmax indices: expose them on the forward node.
  for (const node of active) {
    if (node.opType === 'MaxPool' && !node.output[1]) {
      const idx = b.fresh('maxpool_indices');
      node.output = [node.output[0], idx];
      st.shapes.set(idx, st.shape(node.output[0]));
    }
  }
  // How often each tensor is read (graph outputs count), for the fusions below.
  const readers = new Map<string, number>();
  for (const node of fwd) for (const t of node.input) if (t) readers.set(t, (readers.get(t) ?? 0) + 1);
  for (const o of graph.output) readers.set(o.name, (readers.get(o.name) ?? 0) + 1);
  const producer = new Map<string, Proto>();
  for (const node of fwd) for (const o of node.output) if (o) producer.set(o, node);

  // Reverse pass.
  const seedName = proxy ? b.f32([1], []) : opts.seedName ?? `grad_${yName}`;
  const gradName = opts.gradName ?? `grad_${xName}`;
  const ySh = st.shape(yName);
  if (proxy && ySh.length !== 0) throw new OnnxGradError(`proxy output must be a scalar, has shape [${ySh}]`);
  const contrib = new Map<string, string[]>([[yName, [seedName]]]);
  st.shapes.set(seedName, ySh);
  const gradOf = (t: string): string | null => {
    const c = contrib.get(t);
    if (!c || !c.length) return null;
    const s = b.sum(c, st.shape(t));
    contrib.set(t, [s]);
    return s;
  };
  const addContrib = (x: string, g: string): void => {
    const list = contrib.get(x) ?? [];
    list.push(g);
    contrib.set(x, list);
  };
  const focus = patterns ? findFocus(fwd, st, producer, readers) : new Map<Proto, FocusPattern>();
  for (const node of active) {
    if (node.opType === 'Concat' && b.layoutFriendly && !focus.has(node)) {
      const parts = concatAsPartConvs(b, node, contrib.get(node.output[0]) ?? [], dependsOnX);
      if (parts) {
        (node.input as string[]).forEach((x, i) => { if (parts[i]) addContrib(x, parts[i]!); });
        continue;
      }
    }
    const g = (node.output as string[]).map((o, i) => (node.opType === 'MaxPool' && i === 1 ? null : o ? gradOf(o) : null));
    if (g.every((x) => x === null)) continue;
    const fp = focus.get(node);
    if (fp && g[0] && dependsOnX.has(fp.src)) {
      // Concat of the four stride-2 phases of X: dX interleaves the four channel blocks of g, which a
      // stride-2 2×2 ConvTranspose with 0/1 weights W[k·C + c][c][a_k][b_k] = 1 does in one GEMM + col2im.
      const [N, C, H, W] = st.shape(fp.src);
      const w = new Float32Array(4 * C * C * 4);
      fp.phases.forEach(([a, c], k) => { for (let ch = 0; ch < C; ch++) w[(((k * C + ch) * C + ch) * 2 + a) * 2 + c] = 1; });
      const wName = b.fresh('focus_adjoint_weight');
      b.inits.push(tensorProto(wName, DT.FLOAT, [4 * C, C, 2, 2], w));
      addContrib(fp.src, b.one('ConvTranspose', [g[0], wName], { kernel_shape: [2, 2], strides: [2, 2] }, [N, C, H, W]));
      continue;
    }
    const need = (node.input as string[]).map((x) => !!x && dependsOnX.has(x));
    const silu = opts.fuseSilu !== false ? siluInput(node, producer, readers) : null;
    if (silu && g[0]) {
      addContrib(silu.x, opts.fuseSilu === 'omit' ? g[0] : siluAdjoint(b, g[0], silu.x, silu.s, node.output[0]));
      continue;
    }
    let dx: (string | null)[];
    if (unaryPassThrough.has(node.opType)) dx = [g[0]];
    else if (reshapeLike.has(node.opType)) dx = [b.reshape(g[0]!, st.shape(node.input[0]))];
    else {
      if (g.length > 1 && node.opType !== 'Split' && g.slice(1).some((x) => x !== null)) unsupported(node, 'gradient through a secondary output');
      dx = adjoints[node.opType](b, node, g, need, toOpset);
    }
    (node.input as string[]).forEach((x, i) => { if (need[i] && dx[i]) addContrib(x, dx[i]!); });
  }
  const gx = gradOf(xName) ?? b.zeros(st.shape(xName));
  b.nodes.push(makeNode('Identity', [gx], [gradName], {}, 'vjp/grad_output_identity'));

  const otherInputs = (graph.input as Proto[]).filter((i) => initNames.has(i.name));
  const out = {
    irVersion: Math.max(num(model.irVersion ?? 7), 8),
    producerName: 'camstream-onnxgrad',
    opsetImport: [
      ...(model.opsetImport ?? []).filter((o: Proto) => o.domain && o.domain !== 'ai.onnx'),
      { domain: '', version: toOpset },
    ],
    graph: {
      name: `${graph.name ?? 'graph'}_vjp`,
      node: [...fwd, ...b.nodes],
      initializer: [...(graph.initializer ?? []), ...b.inits],
      input: proxy ? [inputVi, ...otherInputs] : [inputVi, ...otherInputs, valueInfo(seedName, ySh)],
      output: proxy
        ? [outputVi, valueInfo(yName, []), valueInfo(gradName, st.shape(xName))]
        : [outputVi, valueInfo(gradName, st.shape(xName))],
    },
  };
  return encodeModel(out);
}

/**
 * Concat (axis 1) whose gradient is a sum of adjoint Convs emitted here (group 1, our own weights, each output
 * read only by this sum): instead of summing and splitting the gradient, give each part its own Convs with the
 * rows of the weights for its channels (per part: Σ_k Conv(g_k, W_k[c₀:c₁])). Same products and sums; no Split,
 * so the NCHWc layout pass keeps these gradients blocked. Returns the per-input gradients, or null.
 */
function concatAsPartConvs(b: Builder, node: Proto, terms: string[], dependsOnX: Set<string>): (string | null)[] | null {
  if (!terms.length || node.input.length < 2) return null;
  const ys = b.shape(node.output[0]);
  const axis = attrInt(node, 'axis', 0) < 0 ? attrInt(node, 'axis', 0) + ys.length : attrInt(node, 'axis', 0);
  if (ys.length !== 4 || axis !== 1) return null;
  const convs: { conv: Proto; w: Proto }[] = [];
  for (const t of terms) {
    const conv = b.nodes.find((n) => n.output[0] === t);
    if (!conv || conv.opType !== 'Conv' || conv.input.length !== 2 || attrInt(conv, 'group', 1) !== 1) return null;
    if (b.nodes.some((n) => n.input.includes(t))) return null;
    const w = b.inits.find((i) => i.name === conv.input[1]);
    if (!w || b.nodes.some((n) => n !== conv && n.input.includes(w.name))) return null;
    convs.push({ conv, w });
  }
  const ins = (node.input as string[]).map((x) => b.shape(x));
  let c0 = 0;
  const out = ins.map((sh, i) => {
    const c1 = c0 + sh[1];
    const range = [c0, c1];
    c0 = c1;
    if (!dependsOnX.has(node.input[i])) return null;
    const per = convs.map(({ conv, w }) => {
      const wt = tensorFromProto(w);
      const inner = prod(wt.dims.slice(1));
      const part = b.fresh('conv_adjoint_weight');
      b.inits.push(tensorProto(part, DT.FLOAT, [range[1] - range[0], ...wt.dims.slice(1)], (wt.values as Float32Array).subarray(range[0] * inner, range[1] * inner)));
      const attrs: Record<string, AttrValue | undefined> = {};
      for (const a of conv.attribute ?? []) attrs[a.name] = attrInts(conv, a.name) as AttrValue;
      return b.one('Conv', [conv.input[0], part], attrs, sh);
    });
    return b.sum(per, sh);
  });
  const drop = new Set(convs.map((c) => c.conv));
  const dropW = new Set(convs.map((c) => c.w));
  b.nodes.splice(0, b.nodes.length, ...b.nodes.filter((n) => !drop.has(n)));
  b.inits.splice(0, b.inits.length, ...b.inits.filter((t) => !dropW.has(t)));
  return out;
}

interface FocusPattern { src: string; phases: [number, number][] }

/**
 * Concat(axis 1) nodes whose four inputs are Slice(Slice(X)) taking every second row and column of the same
 * 4-D X (even H, W) at the four phases (YOLOX's Focus), each intermediate read once.
 */
function findFocus(fwd: Proto[], st: ShapeTable, producer: Map<string, Proto>, readers: Map<string, number>): Map<Proto, FocusPattern> {
  const stride2 = (n: Proto | undefined): { src: string; axis: number; start: number } | null => {
    if (!n || n.opType !== 'Slice' || !st.has(n.input[0])) return null;
    let specs;
    try { specs = st.sliceSpecs(n); } catch { return null; }
    const x = st.shape(n.input[0]);
    if (specs.length !== 1 || specs[0].step !== 2 || specs[0].start > 1 || specs[0].start + 2 * specs[0].count < x[specs[0].axis]) return null;
    return { src: n.input[0], axis: specs[0].axis, start: specs[0].start };
  };
  const found = new Map<Proto, FocusPattern>();
  for (const cat of fwd) {
    if (cat.opType !== 'Concat' || cat.input.length !== 4 || attrInt(cat, 'axis', 0) !== 1) continue;
    const phases: [number, number][] = [];
    let src: string | null = null;
    for (const t of cat.input as string[]) {
      const o = stride2(producer.get(t));
      const i = o ? stride2(producer.get(o.src)) : null;
      if (!o || !i || readers.get(t) !== 1 || readers.get(o.src) !== 1 || o.axis === i.axis || o.axis + i.axis !== 5) break;
      if (src !== null && i.src !== src) break;
      src = i.src;
      phases.push(o.axis === 2 ? [o.start, i.start] : [i.start, o.start]);
    }
    if (phases.length !== 4 || src === null || new Set(phases.map((p) => p.join())).size !== 4) continue;
    const x = st.shape(src);
    if (x.length !== 4 || x[2] % 2 || x[3] % 2) continue;
    found.set(cat, { src, phases });
  }
  return found;
}

/**
 * Rewrite 2-D MaxPools (no dilation, ceil_mode 0, one output) with a k_h×k_w window into a 1×k_w pool then
 * a k_h×1 pool: the max over a rectangle is the max over its rows' maxima (padding is −∞), so the output
 * is the same, and the MaxPool-with-indices kernel the adjoint needs runs k_h + k_w instead of k_h·k_w
 * comparisons per output.
 */
function separableMaxPools(fwd: Proto[], st: ShapeTable, b: Builder): void {
  cascadeSamePools(fwd, st);
  for (let i = 0; i < fwd.length; i++) {
    const n = fwd[i];
    if (n.opType !== 'MaxPool' || n.output.length > 1 || !st.has(n.input[0])) continue;
    const x = st.shape(n.input[0]);
    if (x.length !== 4 || attrInt(n, 'ceil_mode', 0) !== 0 || attrInt(n, 'storage_order', 0) !== 0) continue;
    const p = windowParams(n, x);
    if (p.dilations.some((d) => d !== 1) || p.kernel[0] < 2 || p.kernel[1] < 2) continue;
    const rowOut = b.fresh('maxpool_rows');
    const wOut = Math.floor((x[3] + p.pads[1] + p.pads[3] - p.kernel[1]) / p.strides[1]) + 1;
    st.shapes.set(rowOut, [x[0], x[1], x[2], wOut]);
    fwd.splice(i, 1,
      makeNode('MaxPool', [n.input[0]], [rowOut], { kernel_shape: [1, p.kernel[1]], strides: [1, p.strides[1]], pads: [0, p.pads[1], 0, p.pads[3]] }, `${n.name}/rows`),
      makeNode('MaxPool', [rowOut], [n.output[0]], { kernel_shape: [p.kernel[0], 1], strides: [p.strides[0], 1], pads: [p.pads[0], 0, p.pads[2], 0] }, `${n.name}/cols`));
    i++;
  }
}

/**
 * SiLU y = x·s, s = Sigmoid(x): dy/dx = s + x·s·(1 − s) = s·(1 + x − y). Emitted with ops onnxruntime's
 * NCHWc layout pass keeps in blocked layout (Conv, Add of equal shapes fused into it, Mul of equal shapes;
 * no Sub, no scalar constants), so no reorders are inserted around the backward of every conv block:
 * 1 − y + x = depthwise 1×1 Conv(y; weight −1, bias 1) + x (one conv with the sum fused), then two Muls.
 */
function siluAdjoint(b: Builder, g: string, x: string, s: string, y: string): string {
  const sh = b.shape(y);
  let u: string;
  if (sh.length === 4) {
    const w = b.fresh('neg_one_dw');
    const bias = b.fresh('one_bias');
    b.inits.push(tensorProto(w, DT.FLOAT, [sh[1], 1, 1, 1], new Float32Array(sh[1]).fill(-1)));
    b.inits.push(tensorProto(bias, DT.FLOAT, [sh[1]], new Float32Array(sh[1]).fill(1)));
    u = b.one('Add', [b.one('Conv', [y, w, bias], { group: sh[1], kernel_shape: [1, 1] }, sh), x], {}, sh);
  } else {
    u = b.one('Add', [b.one('Sub', [x, y], {}, sh), b.f32([1], [])], {}, sh);
  }
  return b.one('Mul', [g, b.one('Mul', [s, u], {}, sh)], {}, sh);
}

/**
 * SPP: stride-1 "same" MaxPools of one tensor with odd windows k₁ < k₂ < …: a k₂ window is the max over a
 * (k₂ − k₁ + 1) window of k₁-window maxima (padding is −∞), so pool k₂ is rewritten to read pool k₁'s output
 * with the smaller window (YOLOv5's SPPF identity). Same values, fewer comparisons in the indices kernel.
 */
function cascadeSamePools(fwd: Proto[], st: ShapeTable): void {
  const groups = new Map<string, { node: Proto; k: number; idx: number }[]>();
  fwd.forEach((n, idx) => {
    if (n.opType !== 'MaxPool' || n.output.length > 1 || !st.has(n.input[0])) return;
    const x = st.shape(n.input[0]);
    if (x.length !== 4 || attrInt(n, 'ceil_mode', 0) !== 0 || attrInt(n, 'storage_order', 0) !== 0) return;
    const p = windowParams(n, x);
    const k = p.kernel[0];
    const same = p.kernel[1] === k && k % 2 === 1 && p.strides.every((v) => v === 1) && p.dilations.every((v) => v === 1) && p.pads.every((v) => v === (k - 1) / 2);
    if (!same) return;
    const list = groups.get(n.input[0]) ?? [];
    list.push({ node: n, k, idx });
    groups.set(n.input[0], list);
  });
  for (const list of groups.values()) {
    const byK = [...list].sort((a, b) => a.k - b.k);
    for (let j = 1; j < byK.length; j++) {
      const [prev, cur] = [byK[j - 1], byK[j]];
      if (prev.idx > cur.idx || prev.k === cur.k) continue; // keep topological order; equal windows stay as they are
      const kd = cur.k - prev.k + 1;
      const h = (kd - 1) / 2;
      cur.node.input = [prev.node.output[0]];
      cur.node.attribute = (cur.node.attribute ?? []).filter((a: Proto) => !['kernel_shape', 'pads', 'strides', 'auto_pad', 'dilations'].includes(a.name));
      cur.node.attribute.push(attr('kernel_shape', [kd, kd]), attr('pads', [h, h, h, h]), attr('strides', [1, 1]));
    }
  }
}

/** For Mul(x, s) / Mul(s, x) with s = Sigmoid(x) read by this Mul only (SiLU): the tensor names. */
function siluInput(node: Proto, producer: Map<string, Proto>, readers: Map<string, number>): { x: string; s: string } | null {
  if (node.opType !== 'Mul' || node.input.length !== 2) return null;
  for (const i of [0, 1]) {
    const s = node.input[i];
    const x = node.input[1 - i];
    const p = producer.get(s);
    if (p && p.opType === 'Sigmoid' && p.input[0] === x && readers.get(s) === 1) return { x, s };
  }
  return null;
}

/** The ops that have an adjoint here (for docs and tests). */
export const SUPPORTED_OPS = [...Object.keys(adjoints), ...unaryPassThrough, ...reshapeLike].sort();
