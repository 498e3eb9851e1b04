/**
 * Static shape inference (and folding of Constant/Shape nodes) for the operators the
 * gradient transform handles. We chose our own inference over running the model with every
 * intermediate exposed: it keeps `buildVjpModel` synchronous and needs no onnxruntime session;
 * the adjoints need the exact same constant attributes anyway (slice bounds, resize scales…).
 * Shapes declared in the model's value_info/outputs are used as a fallback for other ops.
 */
import { attrInt, attrInts, attrStr, getAttr, num, tensorFromProto, valueInfoDims, DT, type Proto, type Tensor } from './proto.ts';
import { OnnxGradError } from './errors.ts';

export type Shape = number[];

export function broadcast(...shapes: Shape[]): Shape {
  const r = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    let d = 1;
    for (const s of shapes) {
      const v = s[i - (r - s.length)] ?? 1;
      if (v !== 1) {
        if (d !== 1 && d !== v) throw new OnnxGradError(`shapes [${shapes.map((x) => x.join(',')).join('] [')}] do not broadcast`);
        d = v;
      }
    }
    out.push(d);
  }
  return out;
}

export const prod = (s: Shape): number => s.reduce((a, b) => a * b, 1);
const normAxis = (a: number, r: number): number => (a < 0 ? a + r : a);

/** Explicit begin/end pads for Conv/pooling, resolving auto_pad. */
export function convPads(node: Proto, inSpatial: number[], kernel: number[], strides: number[], dilations: number[]): number[] {
  const n = inSpatial.length;
  const autoPad = attrStr(node, 'auto_pad', 'NOTSET');
  if (autoPad === 'NOTSET') return attrInts(node, 'pads', new Array(2 * n).fill(0))!;
  if (autoPad === 'VALID') return new Array(2 * n).fill(0);
  const pads = new Array(2 * n).fill(0);
  for (let i = 0; i < n; i++) {
    const eff = (kernel[i] - 1) * dilations[i] + 1;
    const out = Math.ceil(inSpatial[i] / strides[i]);
    const total = Math.max(0, (out - 1) * strides[i] + eff - inSpatial[i]);
    const small = Math.floor(total / 2);
    if (autoPad === 'SAME_UPPER') { pads[i] = small; pads[i + n] = total - small; } else { pads[i] = total - small; pads[i + n] = small; }
  }
  return pads;
}

export interface WindowParams { kernel: number[]; strides: number[]; dilations: number[]; pads: number[] }

export function windowParams(node: Proto, xShape: Shape, wShape?: Shape): WindowParams {
  const n = xShape.length - 2;
  const kernel = attrInts(node, 'kernel_shape') ?? (wShape ? wShape.slice(2) : undefined);
  if (!kernel) throw new OnnxGradError(`${node.opType} ${node.name}: no kernel_shape`);
  const strides = attrInts(node, 'strides', new Array(n).fill(1))!;
  const dilations = attrInts(node, 'dilations', new Array(n).fill(1))!;
  const pads = convPads(node, xShape.slice(2), kernel, strides, dilations);
  return { kernel, strides, dilations, pads };
}

/** Normalised [start, step, count] of a slice along one axis of length dim (onnxruntime semantics). */
export function sliceAxis(dim: number, start: number, end: number, step: number): { start: number; step: number; count: number } {
  if (step === 0) throw new OnnxGradError('Slice step 0');
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = Math.min(Math.max(start, 0), dim);
    end = Math.min(Math.max(end, 0), dim);
    return { start, step, count: Math.max(0, Math.ceil((end - start) / step)) };
  }
  start = Math.min(Math.max(start, 0), dim - 1);
  end = Math.min(Math.max(end, -1), dim - 1);
  return { start, step, count: Math.max(0, Math.ceil((start - end) / -step)) };
}

export interface SliceSpec { axis: number; start: number; step: number; count: number }

export class ShapeTable {
  readonly shapes = new Map<string, Shape>();
  readonly consts = new Map<string, Tensor>();
  private readonly declared = new Map<string, (number | undefined)[]>();

  constructor(graph: Proto) {
    for (const vi of [...(graph.valueInfo ?? []), ...(graph.output ?? []), ...(graph.input ?? [])]) {
      const d = valueInfoDims(vi);
      if (d) this.declared.set(vi.name, d);
    }
  }

  has(name: string): boolean { return this.shapes.has(name); }

  shape(name: string): Shape {
    const s = this.shapes.get(name);
    if (!s) throw new OnnxGradError(`no static shape known for tensor "${name}"`);
    return s;
  }

  /** Constant integer list (from an initializer, Constant or folded Shape); throws when not constant. */
  ints(name: string, what: string): number[] {
    const t = this.consts.get(name);
    if (!t) throw new OnnxGradError(`${what}: input "${name}" must be a constant`);
    return Array.from(t.values as ArrayLike<number>);
  }
  floats(name: string, what: string): number[] { return this.ints(name, what); }
  optInts(node: Proto, i: number, what: string): number[] | undefined {
    const n = node.input[i];
    return n ? this.ints(n, what) : undefined;
  }

  addInitializer(t: Proto): void {
    const tensor = t.dataType === DT.FLOAT && (t.rawData?.length ?? 0) > 4096 * 4
      ? { dims: t.dims.map(num), dataType: t.dataType, values: [] as number[] } // big weights: shape only
      : tensorFromProto(t);
    this.consts.set(t.name, tensor);
    this.shapes.set(t.name, tensor.dims);
  }

  /** Slice parameters of a Slice node (opset ≥ 10: starts/ends/axes/steps inputs). */
  sliceSpecs(node: Proto): SliceSpec[] {
    const x = this.shape(node.input[0]);
    const what = `Slice ${node.name}`;
    const starts = this.ints(node.input[1], what);
    const ends = this.ints(node.input[2], what);
    const axes = this.optInts(node, 3, what) ?? starts.map((_, i) => i);
    const steps = this.optInts(node, 4, what) ?? starts.map(() => 1);
    return axes.map((a, i) => {
      const axis = normAxis(a, x.length);
      return { axis, ...sliceAxis(x[axis], starts[i], ends[i], steps[i]) };
    });
  }

  /** Output dims and per-axis scales of a Resize node (opset 11+: X, roi, scales, sizes). */
  resizeDims(node: Proto): { out: Shape; scales: number[] } {
    const x = this.shape(node.input[0]);
    const what = `Resize ${node.name}`;
    const sizes = node.input[3] ? this.ints(node.input[3], what) : undefined;
    if (sizes && sizes.length) return { out: sizes, scales: sizes.map((s, i) => s / x[i]) };
    const scales = this.floats(node.input[2], what);
    return { out: x.map((d, i) => Math.floor(d * scales[i])), scales };
  }

  splitSizes(node: Proto, opset: number): number[] {
    const x = this.shape(node.input[0]);
    const axis = normAxis(attrInt(node, 'axis', 0), x.length);
    const given = opset >= 13 ? this.optInts(node, 1, `Split ${node.name}`) : attrInts(node, 'split');
    if (given && given.length) return given;
    const n = node.output.length;
    return new Array(n).fill(x[axis] / n);
  }

  /** Infer output shapes of one node; unknown ops fall back to declared value_info. */
  infer(node: Proto, opset: number): void {
    const ins = node.input as string[];
    const outs = node.output as string[];
    const s = (i: number): Shape => this.shape(ins[i]);
    const set = (i: number, sh: Shape): void => { if (outs[i]) this.shapes.set(outs[i], sh); };
    try {
      switch (node.opType) {
        case 'Constant': {
          const v = getAttr(node, 'value');
          if (!v || typeof v !== 'object' || Array.isArray(v)) throw new OnnxGradError(`Constant ${node.name}: only 'value' tensors supported`);
          this.consts.set(outs[0], v as Tensor);
          set(0, (v as Tensor).dims);
          return;
        }
        case 'Shape': {
          const sh = s(0);
          this.consts.set(outs[0], { dims: [sh.length], dataType: DT.INT64, values: sh.slice() });
          set(0, [sh.length]);
          return;
        }
        case 'ReduceSum': case 'ReduceMax': case 'ReduceMin': case 'ReduceMean': {
          const x = s(0);
          const axesIn = (opset >= 13 && node.opType === 'ReduceSum') || opset >= 18 ? this.optInts(node, 1, `${node.opType} ${node.name}`) ?? [] : attrInts(node, 'axes') ?? [];
          if (!axesIn.length && attrInt(node, 'noop_with_empty_axes', 0) === 1) { set(0, x); return; }
          const axes = (axesIn.length ? axesIn : x.map((_, i) => i)).map((a) => normAxis(a, x.length));
          const keep = attrInt(node, 'keepdims', 1) === 1;
          set(0, keep ? x.map((d, i) => (axes.includes(i) ? 1 : d)) : x.filter((_, i) => !axes.includes(i)));
          return;
        }
        case 'MatMul': {
          const a = s(0); const bb = s(1);
          if (a.length < 2 || bb.length < 2) throw new OnnxGradError(`MatMul ${node.name}: 1-D operands not supported`);
          set(0, [...broadcast(a.slice(0, -2), bb.slice(0, -2)), a[a.length - 2], bb[bb.length - 1]]);
          return;
        }
        case 'ArgMax': case 'ArgMin': {
          const x = s(0);
          const axis = normAxis(attrInt(node, 'axis', 0), x.length);
          set(0, attrInt(node, 'keepdims', 1) === 1 ? x.map((d, i) => (i === axis ? 1 : d)) : x.filter((_, i) => i !== axis));
          return;
        }
        case 'Identity': case 'Sigmoid': case 'Relu': case 'LeakyRelu': case 'Exp': case 'Tanh': case 'Neg': case 'Softmax':
        case 'LogSoftmax': case 'Dropout': case 'Cast': case 'Sqrt': case 'Log': case 'Abs': case 'Clip': case 'HardSigmoid':
        case 'HardSwish': case 'Erf': case 'BatchNormalization': case 'Elu': case 'Softplus':
          set(0, s(0));
          if (node.opType === 'Dropout' && outs[1]) set(1, s(0));
          return;
        case 'Not': case 'Floor': case 'Ceil': case 'Round': case 'Sign':
          set(0, s(0));
          return;
        case 'Add': case 'Sub': case 'Mul': case 'Div': case 'Pow': case 'Sum': case 'Max': case 'Min': case 'Where':
        case 'Greater': case 'Less': case 'Equal': case 'GreaterOrEqual': case 'LessOrEqual': case 'And': case 'Or':
          set(0, broadcast(...ins.map((_, i) => s(i))));
          return;
        case 'Conv': case 'MaxPool': case 'AveragePool': {
          const x = s(0);
          const w = node.opType === 'Conv' ? s(1) : undefined;
          const p = windowParams(node, x, w);
          const n = x.length - 2;
          const ceil = node.opType !== 'Conv' && attrInt(node, 'ceil_mode', 0) === 1;
          const sp = x.slice(2).map((d, i) => {
            const eff = (p.kernel[i] - 1) * p.dilations[i] + 1;
            const v = (d + p.pads[i] + p.pads[i + n] - eff) / p.strides[i];
            return (ceil ? Math.ceil(v) : Math.floor(v)) + 1;
          });
          const outSh = [x[0], w ? w[0] : x[1], ...sp];
          set(0, outSh);
          if (outs[1]) set(1, outSh);
          return;
        }
        case 'GlobalAveragePool': case 'GlobalMaxPool': { const x = s(0); set(0, [x[0], x[1], ...x.slice(2).map(() => 1)]); return; }
        case 'Concat': {
          const sh = ins.filter((n) => n).map((n) => this.shape(n));
          const axis = normAxis(attrInt(node, 'axis', 0), sh[0].length);
          const o = sh[0].slice(); o[axis] = sh.reduce((a, b) => a + b[axis], 0);
          set(0, o);
          return;
        }
        case 'Split': {
          const x = s(0);
          const axis = normAxis(attrInt(node, 'axis', 0), x.length);
          this.splitSizes(node, opset).forEach((len, i) => { const o = x.slice(); o[axis] = len; set(i, o); });
          return;
        }
        case 'Slice': {
          const o = s(0).slice();
          for (const sp of this.sliceSpecs(node)) o[sp.axis] = sp.count;
          set(0, o);
          return;
        }
        case 'Resize': set(0, this.resizeDims(node).out); return;
        case 'Reshape': {
          const x = s(0);
          const t = this.ints(ins[1], `Reshape ${node.name}`);
          const allowZero = attrInt(node, 'allowzero', 0) === 1;
          const o = t.map((d, i) => (d === 0 && !allowZero ? x[i] : d));
          const k = o.indexOf(-1);
          if (k >= 0) o[k] = prod(x) / -prod(o);
          set(0, o);
          return;
        }
        case 'Flatten': {
          const x = s(0);
          const axis = normAxis(attrInt(node, 'axis', 1), x.length);
          set(0, [prod(x.slice(0, axis)), prod(x.slice(axis))]);
          return;
        }
        case 'Squeeze': {
          const x = s(0);
          const axes = (opset >= 13 ? this.optInts(node, 1, `Squeeze ${node.name}`) : attrInts(node, 'axes'))?.map((a) => normAxis(a, x.length));
          set(0, x.filter((d, i) => (axes ? !axes.includes(i) : d !== 1)));
          return;
        }
        case 'Unsqueeze': {
          const x = s(0);
          const axesRaw = (opset >= 13 ? this.ints(ins[1], `Unsqueeze ${node.name}`) : attrInts(node, 'axes'))!;
          const r = x.length + axesRaw.length;
          const axes = axesRaw.map((a) => normAxis(a, r));
          const o: number[] = []; let j = 0;
          for (let i = 0; i < r; i++) o.push(axes.includes(i) ? 1 : x[j++]);
          set(0, o);
          return;
        }
        case 'Transpose': {
          const x = s(0);
          const perm = attrInts(node, 'perm') ?? x.map((_, i) => x.length - 1 - i);
          set(0, perm.map((p) => x[p]));
          return;
        }
        default: break;
      }
    } catch (e) {
      if (!(e instanceof OnnxGradError)) throw e;
      // leave unknown; an adjoint that needs it raises a clear error later
    }
    for (const o of outs) {
      const d = this.declared.get(o);
      if (d && d.every((x) => x !== undefined)) this.shapes.set(o, d as number[]);
    }
  }
}
