/**
 * @jest-environment ./test/helpers/ort-env.cjs
 *
 * onnxgrad: every supported operator's adjoint against central finite differences of the
 * forward model run by onnxruntime, a composite graph, the real YOLOX-Nano detector on a real
 * image, and the typed error for unsupported operators.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { decodeModel } from '../server/onnxgrad/proto.ts';
import {
  GradientModel, aggregateProfile, buildVjpModel, finiteDifferenceCheck, gradCheck, makeModel, makeNode as node, UnsupportedOperatorError, SUPPORTED_OPS,
} from '../server/onnxgrad/index.ts';
import { rng } from '../numeric/random.ts';
import { DETECTOR_MODEL, IMAGES, requireFile } from '../testdata/fixtures.ts';

type Init = { name: string; dims: number[]; values: number[]; dataType?: number };
const I64 = 7;
const BIG = 9223372036854775807;

function randn(n: number, r: () => number): number[] {
  return Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()));
}
const w = (name: string, dims: number[], seed: number, scale = 0.5): Init => ({ name, dims, values: randn(dims.reduce((a, b) => a * b, 1), rng(seed)).map((v) => v * scale) });
const i64 = (name: string, values: number[]): Init => ({ name, dims: [values.length], values, dataType: I64 });
const f32 = (name: string, values: number[], dims = [values.length]): Init => ({ name, dims, values });

interface Case {
  name: string;
  x: number[];
  y: number[];
  nodes: ReturnType<typeof node>[];
  inits?: Init[];
  opset?: number;
  eps?: number;
  /** values of x (default N(0,1)); for MaxPool a well-separated permutation avoids ties */
  input?: (n: number) => Float32Array;
}

async function check(c: Case, convAdjoint: 'conv' | 'transpose' = 'conv'): Promise<number> {
  const bytes = makeModel({ nodes: c.nodes, inputs: [{ name: 'x', dims: c.x }], outputs: [{ name: 'y', dims: c.y }], initializers: c.inits, opset: c.opset ?? 11 });
  const model = await GradientModel.fromBytes(bytes, { intraOpNumThreads: 1, convAdjoint });
  try {
    const n = c.x.reduce((a, b) => a * b, 1);
    const x = c.input ? c.input(n) : Float32Array.from(randn(n, rng(7)));
    const seed = Float32Array.from(randn(c.y.reduce((a, b) => a * b, 1), rng(11)));
    const r = await gradCheck(model, x, seed, { directions: 4, coordinates: 3, eps: c.eps ?? 1e-2, coordEps: c.eps ?? 1e-2 });
    // the analytic side must be non-trivial, otherwise a zero gradient could pass
    expect(Math.max(...r.checks.map((k) => Math.abs(k.analytic)))).toBeGreaterThan(1e-3);
    return r.relErr;
  } finally {
    await model.release();
  }
}

const permInput = (n: number): Float32Array => {
  // distinct values spaced by ≥ 0.05 so MaxPool argmaxes do not switch under ±eps
  const r = rng(3);
  const idx = Array.from({ length: n }, (_, i) => i).sort(() => r() - 0.5);
  return Float32Array.from(idx, (i) => (i - n / 2) * 0.05);
};

const cases: Case[] = [
  { name: 'Conv 3x3 pad 1 + bias', x: [1, 3, 8, 8], y: [1, 4, 8, 8], nodes: [node('Conv', ['x', 'W', 'B'], ['y'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] })], inits: [w('W', [4, 3, 3, 3], 1), w('B', [4], 2)] },
  { name: 'Conv stride 2 even input (output_padding)', x: [1, 2, 10, 9], y: [1, 3, 5, 5], nodes: [node('Conv', ['x', 'W'], ['y'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] })], inits: [w('W', [3, 2, 3, 3], 3)] },
  { name: 'Conv groups=2 dilation 2 asymmetric pads', x: [1, 4, 9, 9], y: [1, 6, 8, 5], nodes: [node('Conv', ['x', 'W', 'B'], ['y'], { kernel_shape: [3, 3], pads: [1, 0, 2, 0], dilations: [2, 2], group: 2 })], inits: [w('W', [6, 2, 3, 3], 4), w('B', [6], 5)] },
  { name: 'Conv depthwise stride 2 SAME_UPPER', x: [1, 4, 7, 8], y: [1, 4, 4, 4], nodes: [node('Conv', ['x', 'W'], ['y'], { kernel_shape: [3, 3], strides: [2, 2], group: 4, auto_pad: 'SAME_UPPER' })], inits: [w('W', [4, 1, 3, 3], 6)] },
  { name: 'Conv 1x1 (yolox stem style)', x: [1, 12, 5, 5], y: [1, 8, 5, 5], nodes: [node('Conv', ['x', 'W', 'B'], ['y'], { kernel_shape: [1, 1] })], inits: [w('W', [8, 12, 1, 1], 7), w('B', [8], 8)] },
  { name: 'Conv depthwise 3x3 stride 1 pad 1 (yolox)', x: [1, 5, 6, 7], y: [1, 5, 6, 7], nodes: [node('Conv', ['x', 'W', 'B'], ['y'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], group: 5 })], inits: [w('W', [5, 1, 3, 3], 31), w('B', [5], 32)] },
  { name: 'Conv depthwise 3x3 stride 2 pad 1 odd input (yolox downsampling)', x: [1, 3, 9, 8], y: [1, 3, 5, 4], nodes: [node('Conv', ['x', 'W'], ['y'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2], group: 3 })], inits: [w('W', [3, 1, 3, 3], 33)] },
  { name: 'Conv groups=2 stride 3 kernel 5 (phases with partial sub-kernels)', x: [1, 4, 11, 13], y: [1, 6, 4, 4], nodes: [node('Conv', ['x', 'W'], ['y'], { kernel_shape: [5, 5], pads: [2, 1, 1, 2], strides: [3, 3], group: 2 })], inits: [w('W', [6, 2, 5, 5], 34)] },
  { name: 'Conv 1x1 with pad 1 (pad beyond the kernel: cropped adjoint)', x: [1, 3, 4, 5], y: [1, 2, 6, 7], nodes: [node('Conv', ['x', 'W'], ['y'], { kernel_shape: [1, 1], pads: [1, 1, 1, 1] })], inits: [w('W', [2, 3, 1, 1], 35)] },
  { name: 'Conv 2x2 stride 2 no pad, dense (DepthToSpace CRD, no crop)', x: [1, 3, 6, 6], y: [1, 4, 3, 3], nodes: [node('Conv', ['x', 'W'], ['y'], { kernel_shape: [2, 2], strides: [2, 2] })], inits: [w('W', [4, 3, 2, 2], 36)] },
  { name: 'Sigmoid', x: [2, 3, 4], y: [2, 3, 4], nodes: [node('Sigmoid', ['x'], ['y'])] },
  { name: 'Mul SiLU fan-out (x * sigmoid(x))', x: [1, 3, 4, 4], y: [1, 3, 4, 4], nodes: [node('Sigmoid', ['x'], ['s']), node('Mul', ['x', 's'], ['y'])] },
  { name: 'SiLU whose sigmoid is read twice (not fused)', x: [1, 3, 4, 4], y: [1, 3, 4, 4], nodes: [node('Sigmoid', ['x'], ['s']), node('Mul', ['s', 'x'], ['m']), node('Add', ['m', 's'], ['y'])] },
  {
    name: 'Mul broadcasting both operands + constant', x: [2, 3, 4, 5], y: [2, 3, 4, 5],
    nodes: [node('Slice', ['x', 's0', 's1', 'ax3'], ['xs']), node('Mul', ['x', 'xs'], ['m']), node('Mul', ['m', 'c'], ['y'])],
    inits: [i64('s0', [1]), i64('s1', [2]), i64('ax3', [3]), w('c', [3, 1, 1], 9)],
  },
  {
    name: 'Add broadcasting (rank-lower operand) + constant', x: [2, 3, 4, 5], y: [2, 3, 4, 5],
    nodes: [node('Slice', ['x', 's0', 's1', 'ax0'], ['x0']), node('Reshape', ['x0', 'shp'], ['x0r']), node('Add', ['x', 'x0r'], ['a']), node('Add', ['c', 'a'], ['y'])],
    inits: [i64('s0', [0]), i64('s1', [1]), i64('ax0', [0]), i64('shp', [3, 4, 5]), w('c', [5], 10)],
  },
  {
    name: 'Sub and Div with broadcasting', x: [2, 3, 4], y: [2, 3, 4],
    nodes: [node('Slice', ['x', 's0', 's1', 'ax'], ['xs']), node('Exp', ['xs'], ['den']), node('Sub', ['x', 'xs'], ['d']), node('Div', ['d', 'den'], ['y'])],
    inits: [i64('s0', [0]), i64('s1', [1]), i64('ax', [2])],
  },
  {
    name: 'Concat (slice the gradient back)', x: [1, 2, 3, 3], y: [1, 6, 3, 3],
    nodes: [node('Sigmoid', ['x'], ['s']), node('Concat', ['s', 'c', 'x'], ['y'], { axis: 1 })], inits: [w('c', [1, 2, 3, 3], 11)],
  },
  {
    // the Concat's gradient is a sum of two adjoint Convs: per-part Convs (weight rows split), no Split
    name: 'Concat read by a 1x1 and a 3x3 Conv (CSP/PAN: per-part adjoint Convs)', x: [1, 3, 5, 6], y: [1, 4, 5, 6],
    nodes: [
      node('Conv', ['x', 'Wa'], ['a'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), node('Concat', ['a', 'x'], ['cat'], { axis: 1 }),
      node('Conv', ['cat', 'W1', 'B1'], ['c1'], { kernel_shape: [1, 1] }), node('Conv', ['cat', 'W2'], ['c2'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
      node('Add', ['c1', 'c2'], ['y']),
    ],
    inits: [w('Wa', [5, 3, 3, 3], 12), w('W1', [4, 8, 1, 1], 13), w('B1', [4], 14), w('W2', [4, 8, 3, 3], 15, 0.3)],
  },
  {
    name: 'Slice Focus-style steps=2 on H and W (yolox stem)', x: [1, 3, 8, 8], y: [1, 12, 4, 4],
    nodes: [
      node('Slice', ['x', 'z', 'big', 'a2', 'two'], ['r0']), node('Slice', ['r0', 'z', 'big', 'a3', 'two'], ['p00']),
      node('Slice', ['x', 'one', 'big', 'a2', 'two'], ['r1']), node('Slice', ['r1', 'z', 'big', 'a3', 'two'], ['p10']),
      node('Slice', ['x', 'z', 'big', 'a2', 'two'], ['r2']), node('Slice', ['r2', 'one', 'big', 'a3', 'two'], ['p01']),
      node('Slice', ['x', 'one', 'big', 'a2', 'two'], ['r3']), node('Slice', ['r3', 'one', 'big', 'a3', 'two'], ['p11']),
      node('Concat', ['p00', 'p10', 'p01', 'p11'], ['y'], { axis: 1 }),
    ],
    inits: [i64('z', [0]), i64('one', [1]), i64('two', [2]), i64('big', [BIG]), i64('a2', [2]), i64('a3', [3])],
  },
  {
    name: 'Slice negative start, odd length step 3, negative step', x: [2, 4, 7], y: [2, 3, 2],
    nodes: [node('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['y'])],
    inits: [i64('st', [-3, 6]), i64('en', [BIG, 0]), i64('ax', [1, 2]), i64('sp', [1, -3])],
  },
  {
    name: 'Slice step 3 (tail cropped)', x: [1, 2, 8], y: [1, 2, 3],
    nodes: [node('Slice', ['x', 'st', 'en', 'ax', 'sp'], ['y'])], inits: [i64('st', [1]), i64('en', [8]), i64('ax', [2]), i64('sp', [3])],
  },
  { name: 'MaxPool 2x2 stride 2', x: [1, 2, 6, 6], y: [1, 2, 3, 3], nodes: [node('MaxPool', ['x'], ['y'], { kernel_shape: [2, 2], strides: [2, 2] })], input: permInput, eps: 1e-3 },
  {
    name: 'MaxPool SPP overlapping stride-1 windows (5/9/13) + concat', x: [1, 2, 7, 7], y: [1, 8, 7, 7],
    nodes: [
      node('MaxPool', ['x'], ['m5'], { kernel_shape: [5, 5], pads: [2, 2, 2, 2], strides: [1, 1] }),
      node('MaxPool', ['x'], ['m9'], { kernel_shape: [9, 9], pads: [4, 4, 4, 4], strides: [1, 1] }),
      node('MaxPool', ['x'], ['m13'], { kernel_shape: [13, 13], pads: [6, 6, 6, 6], strides: [1, 1] }),
      node('Concat', ['x', 'm5', 'm9', 'm13'], ['y'], { axis: 1 }),
    ],
    input: permInput, eps: 1e-3,
  },
  {
    name: 'Resize nearest x2 asymmetric/floor (yolox, opset 11 roi+scales)', x: [1, 2, 3, 4], y: [1, 2, 6, 8],
    nodes: [node('Resize', ['x', 'roi', 'sc'], ['y'], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' })],
    inits: [f32('roi', [], [0]), f32('sc', [1, 1, 2, 2])],
  },
  {
    name: 'Resize nearest by sizes, non-integer (general path)', x: [1, 1, 5, 3], y: [1, 1, 7, 6],
    nodes: [node('Resize', ['x', 'roi', 'sc', 'sz'], ['y'], { mode: 'nearest' })],
    inits: [f32('roi', [], [0]), f32('sc', [], [0]), i64('sz', [1, 1, 7, 6])],
  },
  {
    name: 'Resize linear half_pixel x2', x: [1, 2, 3, 4], y: [1, 2, 6, 8],
    nodes: [node('Resize', ['x', 'roi', 'sc'], ['y'], { mode: 'linear' })], inits: [f32('roi', [], [0]), f32('sc', [1, 1, 2, 2])],
  },
  {
    name: 'ReduceSum (opset 13 axes input, keepdims 0) + MatMul with a constant matrix', x: [1, 4, 6], y: [1, 3],
    nodes: [node('Exp', ['x'], ['e']), node('MatMul', ['e', 'M'], ['m']), node('ReduceSum', ['m', 'ax'], ['y'], { keepdims: 0 })],
    inits: [w('M', [6, 3], 41), i64('ax', [1])], opset: 13,
  },
  {
    name: 'Where gated by a comparison of the input (gate carries no gradient) + ReduceSum over all axes', x: [2, 5], y: [],
    nodes: [node('Greater', ['x', 'zero'], ['pos']), node('Exp', ['x'], ['e']), node('Where', ['pos', 'e', 'x'], ['w']), node('ReduceSum', ['w'], ['y'], { keepdims: 0 })],
    inits: [f32('zero', [0], [])], opset: 13, eps: 1e-3,
  },
  { name: 'Reshape (0 and -1)', x: [1, 6, 2, 2], y: [1, 6, 4], nodes: [node('Reshape', ['x', 's'], ['r']), node('Sigmoid', ['r'], ['y'])], inits: [i64('s', [0, 6, -1])] },
  { name: 'Transpose', x: [1, 2, 3, 4], y: [1, 4, 2, 3], nodes: [node('Exp', ['x'], ['e']), node('Transpose', ['e'], ['y'], { perm: [0, 3, 1, 2] })] },
  { name: 'Relu', x: [3, 5], y: [3, 5], nodes: [node('Relu', ['x'], ['y'])], eps: 1e-3 },
  { name: 'LeakyRelu', x: [3, 5], y: [3, 5], nodes: [node('LeakyRelu', ['x'], ['y'], { alpha: 0.1 })], eps: 1e-3 },
  { name: 'Exp', x: [3, 5], y: [3, 5], nodes: [node('Exp', ['x'], ['y'])] },
  { name: 'Tanh + Neg', x: [3, 5], y: [3, 5], nodes: [node('Tanh', ['x'], ['t']), node('Neg', ['t'], ['y'])] },
  { name: 'Softmax opset 11 axis=1 on 3-D (coerced to 2-D)', x: [2, 3, 4], y: [2, 3, 4], nodes: [node('Softmax', ['x'], ['y'], { axis: 1 })] },
  { name: 'Softmax opset 13 axis=1', x: [2, 3, 4], y: [2, 3, 4], nodes: [node('Softmax', ['x'], ['y'], { axis: 1 })], opset: 13 },
  { name: 'LogSoftmax last axis', x: [2, 5], y: [2, 5], nodes: [node('LogSoftmax', ['x'], ['y'], { axis: -1 })] },
  {
    name: 'Split opset 11 (attribute) with an unused output', x: [2, 6], y: [2, 2],
    nodes: [node('Split', ['x'], ['a', 'b', 'c'], { axis: 1, split: [1, 2, 3] }), node('Exp', ['b'], ['y'])],
  },
  {
    name: 'Split opset 13 (input) both used', x: [2, 6], y: [2, 3],
    nodes: [node('Split', ['x', 'sp'], ['a', 'b'], { axis: 1 }), node('Mul', ['a', 'b'], ['y'])], inits: [i64('sp', [3, 3])], opset: 13,
  },
  { name: 'Identity + Sum (three-way)', x: [2, 3], y: [2, 3], nodes: [node('Identity', ['x'], ['i']), node('Exp', ['x'], ['e']), node('Sum', ['x', 'i', 'e'], ['y'])] },
  {
    name: 'Flatten, Squeeze/Unsqueeze (opset 11 attrs), GlobalAveragePool', x: [1, 3, 4, 4], y: [1, 3],
    nodes: [node('GlobalAveragePool', ['x'], ['g']), node('Squeeze', ['g'], ['s'], { axes: [2, 3] }), node('Unsqueeze', ['s'], ['u'], { axes: [0] }), node('Flatten', ['u'], ['f'], { axis: 2 }), node('Reshape', ['f', 'shp'], ['r']), node('Exp', ['r'], ['y'])],
    inits: [i64('shp', [1, 3])],
  },
];

describe('onnxgrad per-operator adjoints vs central finite differences', () => {
  const errors: string[] = [];
  afterAll(() => console.log(`per-op relative errors vs FD:\n${errors.join('\n')}`));
  test.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const err = await check(c);
    errors.push(`${err.toExponential(2)}  ${c.name}`);
    expect(err).toBeLessThan(2e-3);
  });

  test.each(cases.filter((c) => c.nodes.some((n) => n.opType === 'Conv')).map((c) => [c.name, c] as const))('%s (convAdjoint: transpose)', async (_name, c) => {
    expect(await check(c, 'transpose')).toBeLessThan(2e-3);
  });

  test('every adjoint op has a case above', () => {
    const covered = new Set(cases.flatMap((c) => c.nodes.map((n) => n.opType)));
    const missing = SUPPORTED_OPS.filter((op) => !covered.has(op) && op !== 'Dropout');
    expect(missing).toEqual([]);
  });
});

test('composite graph: focus slices → conv → SiLU → SPP maxpool → concat → resize → conv → reshape → transpose', async () => {
  const slices = [[0, 0], [1, 0], [0, 1], [1, 1]].flatMap(([h, wOff], k) => [
    node('Slice', ['x', h ? 'one' : 'z', 'big', 'a2', 'two'], [`r${k}`]),
    node('Slice', [`r${k}`, wOff ? 'one' : 'z', 'big', 'a3', 'two'], [`p${k}`]),
  ]);
  const err = await check({
    name: 'composite', x: [1, 3, 16, 16], y: [1, 64, 6],
    nodes: [
      ...slices,
      node('Concat', ['p0', 'p1', 'p2', 'p3'], ['foc'], { axis: 1 }),
      node('Conv', ['foc', 'W1', 'B1'], ['c1'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
      node('Sigmoid', ['c1'], ['s1']), node('Mul', ['c1', 's1'], ['a1']),
      node('Conv', ['a1', 'W2'], ['c2'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2], group: 4 }),
      node('MaxPool', ['c2'], ['m5'], { kernel_shape: [5, 5], pads: [2, 2, 2, 2], strides: [1, 1] }),
      node('Concat', ['c2', 'm5'], ['spp'], { axis: 1 }),
      node('Resize', ['spp', 'roi', 'sc'], ['up'], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }),
      node('Concat', ['up', 'a1'], ['cat'], { axis: 1 }),
      node('Conv', ['cat', 'W3', 'B3'], ['c3'], { kernel_shape: [1, 1] }),
      node('Sigmoid', ['c3'], ['s3']),
      node('Add', ['s3', 'c3'], ['sum']),
      node('Reshape', ['sum', 'shp'], ['flat']),
      node('Transpose', ['flat'], ['y'], { perm: [0, 2, 1] }),
    ],
    inits: [
      i64('z', [0]), i64('one', [1]), i64('two', [2]), i64('big', [BIG]), i64('a2', [2]), i64('a3', [3]),
      w('W1', [8, 12, 3, 3], 21, 0.3), w('B1', [8], 22), w('W2', [8, 2, 3, 3], 23, 0.4),
      i64('shp', [1, 6, -1]), f32('roi', [], [0]), f32('sc', [1, 1, 2, 2]), w('W3', [6, 24, 1, 1], 24, 0.3), w('B3', [6], 25),
    ],
  });
  console.log(`composite relErr=${err.toExponential(2)}`);
  expect(err).toBeLessThan(2e-3);
});

test('aggregateProfile: per node the median and the fastest run, summed per operator type', () => {
  const ev = (name: string, op: string, dur: number): object => ({ cat: 'Node', name: `${name}_kernel_time`, dur, args: { op_name: op } });
  const ops = aggregateProfile([
    ev('a', 'Conv', 100), ev('a', 'Conv', 300), ev('a', 'Conv', 200), ev('b', 'Conv', 50), ev('b', 'Conv', 70), ev('b', 'Conv', 60),
    ev('c', 'Mul', 10), ev('c', 'Mul', 1000), ev('c', 'Mul', 20), { cat: 'Session', name: 'model_run', dur: 5000 },
  ] as never);
  expect(ops.map((o) => [o.op, o.nodes, o.ms, o.minMs])).toEqual([['Conv', 2, 0.26, 0.15], ['Mul', 1, 0.02, 0.01]]);
});

test('unsupported operators raise UnsupportedOperatorError naming the op and node', () => {
  const einsum = makeModel({
    nodes: [node('Sigmoid', ['x'], ['s']), node('Einsum', ['s', 's'], ['y'], { equation: 'ij,ij->ij' }, 'my_einsum')],
    inputs: [{ name: 'x', dims: [2, 3] }], outputs: [{ name: 'y', dims: [2, 3] }], opset: 12,
  });
  expect(() => buildVjpModel(einsum)).toThrow(UnsupportedOperatorError);
  try { buildVjpModel(einsum); } catch (e) {
    expect((e as UnsupportedOperatorError).opType).toBe('Einsum');
    expect((e as UnsupportedOperatorError).nodeName).toBe('my_einsum');
    expect((e as Error).message).toMatch(/Einsum.*my_einsum/);
  }
  // a weight that depends on the input is not supported either (only d/dx with constant weights)
  const convW = makeModel({
    nodes: [node('Conv', ['x', 'x'], ['y'], { kernel_shape: [1, 1] }, 'conv_self')],
    inputs: [{ name: 'x', dims: [1, 1, 1, 1] }], outputs: [{ name: 'y', dims: [1, 1, 1, 1] }],
  });
  expect(() => buildVjpModel(convW)).toThrow(/Conv.*conv_self/);
  // an unsupported op off the input→output path is fine
  const offPath = makeModel({
    nodes: [node('Einsum', ['c', 'c'], ['cc'], { equation: 'i,i->i' }), node('Mul', ['x', 'cc'], ['y'])],
    inputs: [{ name: 'x', dims: [3] }], outputs: [{ name: 'y', dims: [3] }], initializers: [f32('c', [1, 2, 3])], opset: 12,
  });
  expect(() => buildVjpModel(offPath)).not.toThrow();
});

test('negative control: the finite-difference checker rejects wrong gradients it is handed', async () => {
  // the same checker the other tests use, run on gradients that are wrong in different ways: it must fail them
  const bytes = makeModel({
    nodes: [node('Conv', ['x', 'W'], ['c'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), node('Sigmoid', ['c'], ['s']), node('Mul', ['c', 's'], ['y'])],
    inputs: [{ name: 'x', dims: [1, 2, 6, 6] }], outputs: [{ name: 'y', dims: [1, 3, 6, 6] }], initializers: [w('W', [3, 2, 3, 3], 5)],
  });
  const m = await GradientModel.fromBytes(bytes);
  try {
    const x = Float32Array.from(randn(72, rng(1)));
    const seed = Float32Array.from(randn(108, rng(2)));
    const { gradInput } = await m.vjp(x, [1, 2, 6, 6], seed);
    const f = async (xx: Float32Array): Promise<number> => { const y = await m.forward(xx); let s = 0; for (let i = 0; i < y.length; i++) s += seed[i] * y[i]; return s; };
    const opts = { directions: 4, coordinates: 3, eps: 1e-2 };
    expect((await finiteDifferenceCheck(f, x, gradInput, opts)).relErr).toBeLessThan(2e-3);
    const wrong: Record<string, Float32Array> = {
      'scaled by 1.05': gradInput.map((g) => 1.05 * g),
      'shifted one pixel': gradInput.map((_, i) => (i % 6 === 5 ? 0 : gradInput[i + 1])),
      'channels swapped': gradInput.map((_, i) => gradInput[(i + 36) % 72]),
      'one coordinate wrong': gradInput.map((g, i) => (i === gradInput.reduce((b, v, j) => (Math.abs(v) > Math.abs(gradInput[b]) ? j : b), 0) ? -g : g)),
    };
    for (const [what, g] of Object.entries(wrong)) {
      const r = await finiteDifferenceCheck(f, x, g, opts);
      if (!(r.relErr > 2e-2)) throw new Error(`checker passed a gradient ${what} (relErr ${r.relErr})`);
    }
  } finally {
    await m.release();
  }
});

/** dog.jpg → 416×416 BGR planar floats 0–255 (stretched, no letterbox). */
function loadImageBgr(file: string, size = 416): Float32Array {
  const r = spawnSync('ffmpeg', ['-v', 'error', '-i', requireFile(file), '-vf', `scale=${size}:${size}`, '-f', 'rawvideo', '-pix_fmt', 'bgr24', '-'], { maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(r.stderr.toString());
  const hw = size * size;
  const out = new Float32Array(3 * hw);
  for (let p = 0; p < hw; p++) for (let c = 0; c < 3; c++) out[c * hw + p] = r.stdout[p * 3 + c];
  return out;
}

describe('real detector: YOLOX-Nano on dog.jpg', () => {
  let model: GradientModel;
  beforeAll(async () => { model = await GradientModel.load(requireFile(DETECTOR_MODEL), { intraOpNumThreads: 2 }); });
  afterAll(async () => { await model?.release(); });

  test('gradient of Σ obj·cls over confident cells matches finite differences', async () => {
    const x = loadImageBgr(IMAGES.dog);
    const y = await model.forward(x, [1, 3, 416, 416]);
    // seed = ∂/∂output of S = Σ_{cells with obj·max cls > 0.3} obj·cls_best
    const seed = new Float32Array(y.length);
    let kept = 0;
    for (let c = 0; c < 3549; c++) {
      const row = c * 85;
      let best = 5;
      for (let k = 6; k < 85; k++) if (y[row + k] > y[row + best]) best = k;
      if (y[row + 4] * y[row + best] > 0.3) { seed[row + 4] = y[row + best]; seed[row + best] = y[row + 4]; kept++; }
    }
    expect(kept).toBeGreaterThan(3); // bicycle, dog, truck are found
    const r = await gradCheck(model, x, seed, { directions: 4, coordinates: 2, eps: 0.01, coordEps: 0.5 });
    console.log(`yolox grad check: relErr=${r.relErr.toExponential(2)} cells=${kept} vjp=${r.vjpMs.toFixed(0)}ms checks=${JSON.stringify(r.checks)}`);
    expect(r.checks.every((k) => Math.abs(k.analytic) > 1e-4)).toBe(true);
    expect(r.relErr).toBeLessThan(5e-3);
  });

  test('layout-friendly adjoints give the previous adjoint\'s gradient on the detector', async () => {
    const x = loadImageBgr(IMAGES.dog);
    const seed = Float32Array.from(randn(3549 * 85, rng(9)));
    const old = await GradientModel.load(requireFile(DETECTOR_MODEL), { intraOpNumThreads: 2, layoutFriendly: false });
    try {
      const [a, b] = [(await model.vjp(x, [1, 3, 416, 416], seed)).gradInput, (await old.vjp(x, [1, 3, 416, 416], seed)).gradInput];
      let d2 = 0; let n2 = 0;
      for (let i = 0; i < a.length; i++) { d2 += (a[i] - b[i]) ** 2; n2 += b[i] ** 2; }
      expect(n2).toBeGreaterThan(0);
      expect(Math.sqrt(d2 / n2)).toBeLessThan(1e-5);
    } finally {
      await old.release();
    }
  });
});

test('layout-friendly adjoints (per-part Concat convs, strided-conv upsample adjoint) give the previous adjoint\'s gradient', async () => {
  // same graph built with and without layoutFriendly: the gradients agree to float rounding, and the new one has no Split/ReduceSum
  const bytes = makeModel({
    nodes: [
      node('Conv', ['x', 'Wa'], ['a'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }), node('Sigmoid', ['a'], ['sa']), node('Mul', ['a', 'sa'], ['ya']),
      node('Resize', ['ya', 'roi', 'sc'], ['up'], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }),
      node('Resize', ['x', 'roi', 'sc'], ['xu']), node('Concat', ['up', 'xu'], ['cat'], { axis: 1 }),
      node('Conv', ['cat', 'W1'], ['c1'], { kernel_shape: [1, 1] }), node('Conv', ['cat', 'W2'], ['c2'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
      node('Concat', ['c1', 'c2'], ['y'], { axis: 1 }),
    ],
    inputs: [{ name: 'x', dims: [1, 3, 6, 5] }], outputs: [{ name: 'y', dims: [1, 9, 12, 10] }],
    initializers: [w('Wa', [8, 3, 3, 3], 16), f32('roi', [], [0]), f32('sc', [1, 1, 2, 2]), w('W1', [4, 11, 1, 1], 17), w('W2', [5, 11, 3, 3], 18, 0.3)],
  });
  const ops = (b: Uint8Array): string[] => decodeModel(b).graph.node.map((n: { opType: string }) => n.opType);
  const count = (b: Uint8Array, op: string): number => ops(b).filter((o) => o === op).length;
  // the output Concat's gradient is the seed (Split either way); the inner one's is two adjoint Convs
  expect([count(buildVjpModel(bytes), 'Split'), count(buildVjpModel(bytes, { layoutFriendly: false }), 'Split')]).toEqual([1, 2]);
  expect([count(buildVjpModel(bytes), 'ReduceSum'), count(buildVjpModel(bytes, { layoutFriendly: false }), 'ReduceSum')]).toEqual([0, 2]);
  const x = Float32Array.from(randn(90, rng(4)));
  const seed = Float32Array.from(randn(9 * 120, rng(5)));
  const grads: Float32Array[] = [];
  for (const layoutFriendly of [true, false]) {
    const m = await GradientModel.fromBytes(bytes, { layoutFriendly, intraOpNumThreads: 1 });
    try { grads.push((await m.vjp(x, [1, 3, 6, 5], seed)).gradInput); } finally { await m.release(); }
  }
  const scale = Math.max(...grads[1].map(Math.abs));
  expect(scale).toBeGreaterThan(0.1);
  expect(Math.max(...grads[0].map((g, i) => Math.abs(g - grads[1][i])))).toBeLessThan(1e-5 * scale);
});

test('buildVjpModel on the detector: no ConvTranspose, no MaxPool over 2-D windows, SiLU adjoints fused', () => {
  const bytes = new Uint8Array(readFileSync(requireFile(DETECTOR_MODEL)));
  const count = (b: Uint8Array, op: string): number => decodeModel(b).graph.node.filter((n: { opType: string }) => n.opType === op).length;
  const cheap = buildVjpModel(bytes);
  const old = buildVjpModel(bytes, { convAdjoint: 'transpose', fuseSilu: false, patterns: false });
  expect(count(old, 'ConvTranspose')).toBe(113); // one per forward Conv
  expect(count(cheap, 'ConvTranspose')).toBe(1); // only the Focus stem's 0/1 interleave
  // forward, adjoint, 1 − y + x per SiLU, and 21 more adjoint Convs: the CSP/PAN Concats' gradients are per-part Convs
  expect(count(cheap, 'Conv')).toBe(113 * 2 + 104 + 21);
  expect(count(cheap, 'Split')).toBe(4); // only the head's Concats, whose gradients come from the output reshapes
  expect(count(buildVjpModel(bytes, { layoutFriendly: false }), 'Split')).toBe(17);
  expect(count(cheap, 'ReduceSum')).toBe(0); // the two ×2 upsamples' adjoints are strided depthwise Convs
  expect(count(cheap, 'Sub')).toBeLessThan(count(old, 'Sub') - 100); // SiLU adjoints have no Sub
  const pools = decodeModel(cheap).graph.node.filter((n: { opType: string }) => n.opType === 'MaxPool');
  expect(pools.length).toBe(6);
});
