/**
 * Wire format for per-macroblock maps (the server's DNNGrad map in each reply): log-quantised to one byte
 * per MB, then raw-deflated. Used by the server to encode and by the agent to decode.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { MB, type MbMap } from '../encoder/frame.ts';
import { MAX_FRAME_SIDE } from './protocol.ts';

/** the most cells a map may declare without an expected grid: the macroblock grid of the largest frame the
 * protocol allows (8192×8192 → 512×512) */
export const MAX_MB_CELLS = Math.ceil(MAX_FRAME_SIDE / MB) ** 2;

/** What the decoder expects: the exact grid (the receiver's own macroblock grid), or at most this many cells. */
export type MbMapExpect = { rows: number; cols: number } | { maxCells: number };

// ---------------------------------------------------------------------------------------------
// Wire format for MB maps
//
//   offset size
//   0      2   magic "MB"
//   2      1   version (1)
//   3      1   flags: bit0 = signed
//   4      2   rows (uint16 LE)
//   6      2   cols (uint16 LE)
//   8      4   max |v| (float32 LE)
//   12     4   floor ratio ρ (float32 LE): |v| < ρ·max decodes as 0
//   16     …   raw-deflate of rows·cols uint8 codes
//
// Unsigned codes: 0 → 0; 1…255 → ρ·max·exp((code−1)·Δ), Δ = ln(1/ρ)/254.
// Signed codes: 0 → 0; 1…127 → +ρ·max·exp((code−1)·Δ), 129…255 → −(same with code−128), Δ = ln(1/ρ)/126.
// Error bound (mbMapErrorBound): |v̂ − v| ≤ max(ρ·max, |v|·(e^{Δ/2} − 1)).
// ---------------------------------------------------------------------------------------------

const MAGIC0 = 0x4d; // 'M'
const MAGIC1 = 0x42; // 'B'
const VERSION = 1;
const HEADER = 16;

export interface MbWireOptions {
  /** dynamic range: values below floorRatio·max are sent as 0 (default 1e-4, i.e. 80 dB) */
  floorRatio?: number;
  /** deflate level (default 9) */
  level?: number;
}

export function mbMapErrorBound(max: number, floorRatio = 1e-4, signed = false): { absFloor: number; relative: number } {
  const levels = signed ? 127 : 255;
  const delta = Math.log(1 / floorRatio) / (levels - 1);
  return { absFloor: floorRatio * max, relative: Math.expm1(delta / 2) };
}

export function encodeMbMap(map: MbMap, opts: MbWireOptions = {}): Buffer {
  const { rows, cols, data } = map;
  if (rows < 0 || cols < 0 || rows > 0xffff || cols > 0xffff || data.length !== rows * cols) throw new RangeError(`bad MbMap ${rows}x${cols} with ${data.length} values`);
  const rho = opts.floorRatio ?? 1e-4;
  if (!(rho > 0 && rho < 1)) throw new RangeError('floorRatio must be in (0,1)');
  let max = 0;
  let signed = false;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) throw new RangeError(`MbMap value ${v} at ${i} is not finite`);
    if (v < 0) signed = true;
    const a = Math.abs(v);
    if (a > max) max = a;
  }
  max = Math.fround(max);
  const rho32 = Math.fround(rho);
  const levels = signed ? 127 : 255;
  const delta = Math.log(1 / rho32) / (levels - 1);
  const lo = rho32 * max;
  const lnLo = Math.log(lo);
  const codes = new Uint8Array(data.length);
  if (max > 0) {
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      const a = Math.abs(v);
      if (a < lo) continue;
      let q = Math.round((Math.log(a) - lnLo) / delta);
      if (q > levels - 1) q = levels - 1;
      codes[i] = 1 + q + (v < 0 ? 128 : 0);
    }
  }
  const body = deflateRawSync(codes, { level: opts.level ?? 9 });
  const out = Buffer.allocUnsafe(HEADER + body.length);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = VERSION;
  out[3] = signed ? 1 : 0;
  out.writeUInt16LE(rows, 4);
  out.writeUInt16LE(cols, 6);
  out.writeFloatLE(max, 8);
  out.writeFloatLE(rho32, 12);
  body.copy(out, HEADER);
  return out;
}

/**
 * Decode a map. The declared grid is checked against `expect` (default: at most MAX_MB_CELLS cells) BEFORE
 * anything is inflated or allocated, and at most rows×cols bytes are inflated: a hostile map costs nothing.
 */
export function decodeMbMap(buf: Uint8Array, expect: MbMapExpect = { maxCells: MAX_MB_CELLS }): MbMap {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < HEADER || b[0] !== MAGIC0 || b[1] !== MAGIC1) throw new Error('not an MB map (bad magic)');
  if (b[2] !== VERSION) throw new Error(`unsupported MB map version ${b[2]}`);
  const signed = (b[3] & 1) === 1;
  const rows = b.readUInt16LE(4);
  const cols = b.readUInt16LE(6);
  if ('rows' in expect) {
    if (rows !== expect.rows || cols !== expect.cols) throw new Error(`MB map is ${rows}x${cols}, expected ${expect.rows}x${expect.cols}`);
  } else if (rows * cols > expect.maxCells) {
    throw new Error(`MB map declares ${rows}x${cols} = ${rows * cols} cells, more than ${expect.maxCells}`);
  }
  const max = b.readFloatLE(8);
  const rho = b.readFloatLE(12);
  if (!(Number.isFinite(max) && max >= 0 && rho > 0 && rho < 1)) throw new Error(`MB map scale out of range (max ${max}, floor ratio ${rho})`);
  let codes: Buffer;
  try {
    // at most rows×cols bytes are inflated: a small body cannot expand into a large allocation
    codes = inflateRawSync(b.subarray(HEADER), { maxOutputLength: Math.max(1, rows * cols) });
  } catch (err) {
    throw new Error(`MB map body does not inflate to ${rows}x${cols} codes: ${(err as Error).message}`);
  }
  if (codes.length !== rows * cols) throw new Error(`MB map body has ${codes.length} codes, header says ${rows}x${cols}`);
  const levels = signed ? 127 : 255;
  const delta = Math.log(1 / rho) / (levels - 1);
  const lo = rho * max;
  const table = new Float32Array(256);
  for (let c = 1; c < 256; c++) {
    if (signed) {
      if (c === 128) continue;
      const m = c > 128 ? c - 128 : c;
      table[c] = (c > 128 ? -1 : 1) * lo * Math.exp((m - 1) * delta);
    } else {
      table[c] = lo * Math.exp((c - 1) * delta);
    }
  }
  const data = new Float32Array(rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = table[codes[i]];
  return { rows, cols, data };
}

/** Bytes one frame's MB map costs on the wire (for benchmarks). */
export function mbMapWireBytes(map: MbMap, opts?: MbWireOptions): number {
  return encodeMbMap(map, opts).length;
}
