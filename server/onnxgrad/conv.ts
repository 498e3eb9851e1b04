/**
 * Input gradient of a Conv with constant weights, as forward Convs (onnxruntime's ConvTranspose runs
 * group by group as GEMM + col2im, which is slow for depthwise and small-channel layers).
 *
 * 1-D derivation (dilation d, stride s, begin pad p, kernel K): y[o] = Σ_k w[k]·x[s·o + d·k − p], so
 * dx[i] = Σ_{o,k : s·o + d·k = i + p} w[k]·g[o].
 * - stride 1: dx[i] = Σ_k w[k]·g[i + p − d·k], a Conv of g with the spatially flipped, in/out-swapped
 *   kernel and pads d(K−1) − p (a 1×1 conv becomes the transposed weight matrix).
 * - stride s > 1 (dilation 1), phase decomposition: write i + p = s·q + r (0 ≤ r < s). Then
 *   k = r + s·m, o = q − m and dx = Σ_m w[r + s·m]·g[q − m]: for each phase r a stride-1 Conv of g with
 *   the flipped sub-kernel h_r[j] = w[r + s(kp − 1 − j)], kp = ⌈K/s⌉, left pad kp − 1. The s² phase
 *   outputs are interleaved with DepthToSpace and the begin pad is cropped with a Slice.
 */
import { tensorFromProto, tensorProto, DT, type Proto } from './proto.ts';
import { prod, type Shape, type WindowParams } from './shapes.ts';

/** What the conv adjoint needs from the VJP builder. */
export interface ConvEmitter {
  fresh(base: string): string;
  one(op: string, inputs: string[], attrs?: Record<string, unknown>, outShape?: Shape): string;
  i64(values: number[]): string;
  inits: Proto[];
}

/**
 * dX of Conv(x, W) given g = dY, or null when this configuration is not handled here (non-2-D strided,
 * unequal strides, dilation with stride) and the caller should use ConvTranspose.
 */
export function convInputGradAsConv(b: ConvEmitter, g: string, wInit: Proto, x: Shape, w: Shape, y: Shape, p: WindowParams, group: number): string | null {
  const n = x.length - 2;
  const strided = p.strides.some((s) => s !== 1);
  if (strided && (n !== 2 || p.strides[0] !== p.strides[1] || p.dilations.some((d) => d !== 1))) return null;
  const wt = tensorFromProto(wInit).values as ArrayLike<number>;
  const [M, Cg] = [w[0], w[1]];
  const Mg = M / group;
  const C = Cg * group;
  const K = p.kernel;

  if (!strided) return flippedConv(b, g, wt, x, y, p.kernel, p.dilations, p.pads, group, Cg, Mg);
  const s = p.strides[0];
  if (group > 1) {
    // grouped (depthwise): zero-insert g (nearest ×s upsample, then keep one pixel per s×s block) and run
    // the stride-1 flipped conv on it. Depthwise MACs are few, and this stays on onnxruntime's fast
    // Upsample / depthwise-Conv kernels (per-phase convs need DepthToSpace, which is slow on CPU).
    const up = [y[0], M, y[2] * s, y[3] * s];
    const roi = b.fresh('empty_roi');
    b.inits.push(tensorProto(roi, DT.FLOAT, [0], []));
    const scales = b.fresh('upsample_scales');
    b.inits.push(tensorProto(scales, DT.FLOAT, [4], [1, 1, s, s]));
    const u = b.one('Resize', [g, roi, scales], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }, up);
    const mask = new Float32Array(up[2] * up[3]);
    for (let i = 0; i < up[2]; i += s) for (let j = 0; j < up[3]; j += s) mask[i * up[3] + j] = 1;
    const mName = b.fresh('zero_insert_mask');
    b.inits.push(tensorProto(mName, DT.FLOAT, [1, 1, up[2], up[3]], mask));
    const gz = b.one('Mul', [u, mName], {}, up);
    return flippedConv(b, gz, wt, x, up, p.kernel, p.dilations, p.pads, group, Cg, Mg);
  }
  // dense, stride s, 2-D: one stride-1 Conv computing every phase (a, c) with its flipped sub-kernel, interleaved by DepthToSpace.
  const kp = K.map((k) => Math.ceil(k / s));
  const pb = [p.pads[0], p.pads[1]];
  // q must cover ⌈(p_begin + X)/s⌉ rows; the Conv gives Ho + rightPad rows (left pad kp − 1)
  const Q = [0, 1].map((i) => Math.ceil((pb[i] + x[i + 2]) / s));
  const right = [0, 1].map((i) => Math.max(0, Q[i] - y[i + 2]));
  const qOut = [0, 1].map((i) => y[i + 2] + right[i]);
  const sub = (gi: number, mo: number, ci: number, a: number, c: number, jh: number, jw: number): number => {
    const kh = a + s * (kp[0] - 1 - jh);
    const kw = c + s * (kp[1] - 1 - jw);
    return kh < K[0] && kw < K[1] ? wt[(((gi * Mg + mo) * Cg + ci) * K[0] + kh) * K[1] + kw] : 0;
  };
  const kk = kp[0] * kp[1];
  const convAttrs = { group: 1, kernel_shape: kp, pads: [kp[0] - 1, kp[1] - 1, right[0], right[1]], strides: [1, 1] };
  // output channel (c·s² + phase): DepthToSpace CRD order
  const wp = new Float32Array(C * s * s * Mg * kk);
  for (let ci = 0; ci < C; ci++) for (let a = 0; a < s; a++) for (let c = 0; c < s; c++) for (let mo = 0; mo < Mg; mo++) for (let jh = 0; jh < kp[0]; jh++) for (let jw = 0; jw < kp[1]; jw++) {
    wp[((((ci * s + a) * s + c) * Mg + mo) * kp[0] + jh) * kp[1] + jw] = sub(0, mo, ci, a, c, jh, jw);
  }
  const wName = b.fresh('conv_adjoint_weight');
  b.inits.push(tensorProto(wName, DT.FLOAT, [C * s * s, Mg, ...kp], wp));
  let phases = b.one('Conv', [g, wName], convAttrs, [x[0], C * s * s, ...qOut]);
  phases = b.one('DepthToSpace', [phases], { blocksize: s, mode: 'CRD' }, [x[0], C, qOut[0] * s, qOut[1] * s]);
  if (pb[0] === 0 && pb[1] === 0 && qOut[0] * s === x[2] && qOut[1] * s === x[3]) return phases;
  return b.one('Slice', [phases, b.i64(pb), b.i64([pb[0] + x[2], pb[1] + x[3]]), b.i64([2, 3])], {}, x);
}

/**
 * Stride-1 adjoint: Conv of g (shape gy, the forward output's or a zero-inserted version of it) with the
 * flipped, in/out-swapped kernel W'[gi·Cg + ci][mo][k] = W[gi·Mg + mo][ci][K−1−k] (flat reverse = every axis
 * flipped), pads d(K−1) − p_begin at the start and whatever makes the length x's at the end (negative → crop).
 */
function flippedConv(b: ConvEmitter, g: string, wt: ArrayLike<number>, x: Shape, gy: Shape, K: number[], dil: number[], fwdPads: number[], group: number, Cg: number, Mg: number): string {
  const ks = prod(K);
  const C = Cg * group;
  const wf = new Float32Array(wt.length);
  for (let gi = 0; gi < group; gi++) for (let mo = 0; mo < Mg; mo++) for (let ci = 0; ci < Cg; ci++) {
    const src = ((gi * Mg + mo) * Cg + ci) * ks;
    const dst = ((gi * Cg + ci) * Mg + mo) * ks;
    for (let k = 0; k < ks; k++) wf[dst + k] = wt[src + ks - 1 - k];
  }
  const wName = b.fresh('conv_adjoint_weight');
  b.inits.push(tensorProto(wName, DT.FLOAT, [C, Mg, ...K], wf));
  const begin = K.map((k, i) => (k - 1) * dil[i] - fwdPads[i]);
  const end = K.map((k, i) => x[i + 2] - gy[i + 2] + (k - 1) * dil[i] - begin[i]);
  const pads = [...begin.map((v) => Math.max(0, v)), ...end.map((v) => Math.max(0, v))];
  const outSp = x.slice(2).map((d, i) => d + Math.max(0, -begin[i]) + Math.max(0, -end[i]));
  const dx = b.one('Conv', [g, wName], { group, kernel_shape: K, dilations: dil, pads, strides: K.map(() => 1) }, [x[0], C, ...outSp]);
  if (begin.every((v) => v >= 0) && end.every((v) => v >= 0)) return dx;
  const axes = x.slice(2).map((_, i) => i + 2);
  return b.one('Slice', [dx, b.i64(begin.map((v) => Math.max(0, -v))), b.i64(begin.map((v, i) => Math.max(0, -v) + x[i + 2])), b.i64(axes)], {}, x);
}
