/**
 * Thin helpers over the `onnx-proto` package (static protobufjs code for onnx.proto v1.10):
 * decode/encode models, read constant tensors, and build small graphs programmatically
 * (used by the VJP transform and by the tests).
 */
import onnxProto from 'onnx-proto';

// onnx-proto is CommonJS; its default export is the module object holding the `onnx` namespace.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const onnx: any = (onnxProto as any).onnx;

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

export const DT = { FLOAT: 1, INT32: 6, INT64: 7, BOOL: 9, DOUBLE: 11 } as const;
const AT = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;

/** int64 fields arrive as Long objects (or numbers); int64 values beyond 2^53 lose precision, which is fine for slice ends. */
export function num(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object' && 'low' in v && 'high' in v) {
    const l = v as { low: number; high: number; unsigned?: boolean };
    return l.high * 4294967296 + (l.low >>> 0);
  }
  if (typeof v === 'string') return Number(v);
  throw new Error(`not an integer: ${String(v)}`);
}

export type AttrValue = number | string | number[] | string[] | { tensor: Tensor } | { float: number } | { floats: number[] };

export interface Tensor {
  dims: number[];
  dataType: number;
  /** Values as JS numbers (float, double, int32, int64, bool). */
  values: Float32Array | Float64Array | number[];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Proto = any;

export function decodeModel(bytes: Uint8Array): Proto {
  return onnx.ModelProto.decode(bytes);
}

export function encodeModel(model: Proto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Decode the values of a TensorProto (float/double/int32/int64/bool; raw_data or typed fields). */
export function tensorFromProto(t: Proto): Tensor {
  const dims = (t.dims ?? []).map(num);
  const dataType = t.dataType;
  const count = dims.reduce((a: number, b: number) => a * b, 1);
  const raw: Uint8Array | undefined = t.rawData && t.rawData.length ? t.rawData : undefined;
  if (t.dataLocation === 1 || (t.externalData && t.externalData.length)) throw new Error(`tensor ${t.name}: external data is not supported`);
  if (raw) {
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    switch (dataType) {
      case DT.FLOAT: {
        if (LITTLE_ENDIAN) return { dims, dataType, values: new Float32Array(Uint8Array.from(raw.subarray(0, count * 4)).buffer) }; // own aligned copy (a Buffer's slice would share its pool)
        const v = new Float32Array(count); for (let i = 0; i < count; i++) v[i] = dv.getFloat32(i * 4, true); return { dims, dataType, values: v };
      }
      case DT.DOUBLE: { const v = new Float64Array(count); for (let i = 0; i < count; i++) v[i] = dv.getFloat64(i * 8, true); return { dims, dataType, values: v }; }
      case DT.INT32: { const v: number[] = []; for (let i = 0; i < count; i++) v.push(dv.getInt32(i * 4, true)); return { dims, dataType, values: v }; }
      case DT.INT64: { const v: number[] = []; for (let i = 0; i < count; i++) v.push(Number(dv.getBigInt64(i * 8, true))); return { dims, dataType, values: v }; }
      case DT.BOOL: { const v: number[] = []; for (let i = 0; i < count; i++) v.push(raw[i]); return { dims, dataType, values: v }; }
      default: throw new Error(`tensor ${t.name}: data type ${dataType} not supported`);
    }
  }
  switch (dataType) {
    case DT.FLOAT: return { dims, dataType, values: Float32Array.from(t.floatData ?? []) };
    case DT.DOUBLE: return { dims, dataType, values: Float64Array.from(t.doubleData ?? []) };
    case DT.INT32: case DT.BOOL: return { dims, dataType, values: (t.int32Data ?? []).map(num) };
    case DT.INT64: return { dims, dataType, values: (t.int64Data ?? []).map(num) };
    default: throw new Error(`tensor ${t.name}: data type ${dataType} not supported`);
  }
}

/** Build a TensorProto (raw_data little-endian) from values. */
export function tensorProto(name: string, dataType: number, dims: number[], values: ArrayLike<number>): Proto {
  let raw: Uint8Array;
  if (dataType === DT.FLOAT) {
    const f = Float32Array.from(values);
    raw = new Uint8Array(f.buffer);
  } else if (dataType === DT.INT64) {
    const b = new BigInt64Array(values.length);
    const max = (1n << 63n) - 1n;
    for (let i = 0; i < values.length; i++) {
      const v = BigInt(Math.trunc(values[i]));
      b[i] = v > max ? max : v < -max - 1n ? -max - 1n : v; // 2^63 (INT64_MAX as a JS number) must not wrap
    }
    raw = new Uint8Array(b.buffer);
  } else if (dataType === DT.INT32) {
    raw = new Uint8Array(Int32Array.from(values).buffer);
  } else if (dataType === DT.DOUBLE) {
    raw = new Uint8Array(Float64Array.from(values).buffer);
  } else if (dataType === DT.BOOL) {
    raw = Uint8Array.from(values);
  } else throw new Error(`tensorProto: data type ${dataType} not supported`);
  return { name, dataType, dims, rawData: raw };
}

export function attr(name: string, v: AttrValue): Proto {
  if (typeof v === 'number') return Number.isInteger(v) ? { name, type: AT.INT, i: v } : { name, type: AT.FLOAT, f: v };
  if (typeof v === 'string') return { name, type: AT.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) {
    if (v.length && typeof v[0] === 'string') return { name, type: AT.STRINGS, strings: (v as string[]).map((s) => new TextEncoder().encode(s)) };
    return { name, type: AT.INTS, ints: v as number[] };
  }
  if ('tensor' in v) return { name, type: AT.TENSOR, t: tensorProto(name, v.tensor.dataType, v.tensor.dims, v.tensor.values) };
  if ('float' in v) return { name, type: AT.FLOAT, f: v.float };
  return { name, type: AT.FLOATS, floats: v.floats };
}

/** Read a node attribute as a plain JS value (undefined when absent). */
export function getAttr(node: Proto, name: string): number | string | number[] | Tensor | undefined {
  const a = (node.attribute ?? []).find((x: Proto) => x.name === name);
  if (!a) return undefined;
  switch (a.type) {
    case AT.FLOAT: return a.f;
    case AT.INT: return num(a.i);
    case AT.STRING: return new TextDecoder().decode(a.s);
    case AT.FLOATS: return [...a.floats];
    case AT.INTS: return a.ints.map(num);
    case AT.TENSOR: return tensorFromProto(a.t);
    default: throw new Error(`attribute ${name} of ${node.name}: type ${a.type} not supported`);
  }
}

export function attrInts(node: Proto, name: string, dflt?: number[]): number[] | undefined {
  const v = getAttr(node, name);
  return v === undefined ? dflt : (v as number[]);
}
export function attrInt(node: Proto, name: string, dflt: number): number {
  const v = getAttr(node, name);
  return v === undefined ? dflt : (v as number);
}
export function attrFloat(node: Proto, name: string, dflt: number): number {
  const v = getAttr(node, name);
  return v === undefined ? dflt : (v as number);
}
export function attrStr(node: Proto, name: string, dflt: string): string {
  const v = getAttr(node, name);
  return v === undefined ? dflt : (v as string);
}

export function makeNode(opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue | undefined> = {}, name?: string): Proto {
  const attribute = Object.entries(attrs).filter(([, v]) => v !== undefined).map(([k, v]) => attr(k, v as AttrValue));
  return { opType, input: inputs, output: outputs, name: name ?? outputs[0], attribute, domain: '' };
}

export function valueInfo(name: string, dims: (number | string)[], elemType: number = DT.FLOAT): Proto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** Static dims of a ValueInfoProto (undefined for unknown/symbolic dims). */
export function valueInfoDims(vi: Proto): (number | undefined)[] | undefined {
  const shape = vi?.type?.tensorType?.shape;
  if (!shape) return undefined;
  return (shape.dim ?? []).map((d: Proto) => (d.dimValue !== undefined && d.dimValue !== null && num(d.dimValue) > 0 ? num(d.dimValue) : undefined));
}

export interface GraphSpec {
  nodes: Proto[];
  inputs: { name: string; dims: number[] }[];
  outputs: { name: string; dims: number[] }[];
  initializers?: { name: string; dims: number[]; values: ArrayLike<number>; dataType?: number }[];
  opset?: number;
}

/** Build a ModelProto (float tensors unless stated) from a small spec; used by tests and tools. */
export function makeModel(spec: GraphSpec): Uint8Array {
  const model = {
    irVersion: 7,
    producerName: 'camstream-onnxgrad',
    opsetImport: [{ domain: '', version: spec.opset ?? 11 }],
    graph: {
      name: 'g',
      node: spec.nodes,
      input: spec.inputs.map((i) => valueInfo(i.name, i.dims)),
      output: spec.outputs.map((o) => valueInfo(o.name, o.dims)),
      initializer: (spec.initializers ?? []).map((t) => tensorProto(t.name, t.dataType ?? DT.FLOAT, t.dims, t.values)),
    },
  };
  return encodeModel(model);
}
