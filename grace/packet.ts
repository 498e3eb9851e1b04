/**
 * Grace++ bitstream: quantised latent → packets, any non-empty subset of which decodes.
 *
 * - Quantisation: round, clamp to ±maxAbs (the decoder and the sender's reference both see the
 *   clamped values).
 * - Side info ("hyperprior-lite", forward-adaptive): per channel, the index of the static 16-bit
 *   Laplace table that codes that channel's symbols in the fewest bits. It is C bytes and is copied
 *   into every packet, so each packet entropy-decodes on its own.
 * - Packetisation: a permutation seeded by the frame id (sender and receiver compute the same one)
 *   spreads the latent elements over n packets; packet i carries the i-th contiguous chunk of the
 *   permuted order, rANS-coded. Losing k of n packets zeroes a uniform random ~k/n of the elements,
 *   which is exactly the corruption the codec was trained on (lost elements = 0, the prior's mode).
 */
import { rng, shuffledIndices } from '../numeric/random.ts';
import { FreqTable, ransDecode, ransEncode, RansError } from './rans.ts';

export interface CdfTables {
  precisionBits: 16;
  maxAbs: number;
  scales: number[];
  tables: FreqTable[];
}

/** Build tables from the JSON written by training/train_grace.py tables. */
export function parseCdfTables(json: unknown): CdfTables {
  const j = json as { precision_bits?: unknown; max_abs?: unknown; scales?: unknown; freqs?: unknown };
  if (!j || j.precision_bits !== 16 || !Number.isInteger(j.max_abs) || !Array.isArray(j.freqs) || !Array.isArray(j.scales)) {
    throw new RangeError('cdf tables: expected {precision_bits: 16, max_abs, scales[], freqs[][]}');
  }
  const maxAbs = j.max_abs as number;
  const tables = (j.freqs as number[][]).map((f, i) => {
    if (!Array.isArray(f) || f.length !== 2 * maxAbs + 1) throw new RangeError(`cdf table ${i} has ${f?.length} symbols, want ${2 * maxAbs + 1}`);
    return new FreqTable(f);
  });
  if (tables.length < 1 || tables.length > 255) throw new RangeError(`need 1..255 tables, got ${tables.length}`);
  return { precisionBits: 16, maxAbs, scales: j.scales as number[], tables };
}

/** Latent of one frame: C channels of h×w, already rounded and clamped (integers). */
export interface QLatent {
  c: number;
  h: number;
  w: number;
  data: Int16Array; // C·h·w, channel-major
}

export function quantise(y: Float32Array, c: number, h: number, w: number, maxAbs: number): QLatent {
  if (y.length !== c * h * w) throw new RangeError(`latent has ${y.length} values, want ${c}×${h}×${w}`);
  const data = new Int16Array(y.length);
  for (let i = 0; i < y.length; i++) {
    const v = Math.round(y[i]);
    data[i] = v > maxAbs ? maxAbs : v < -maxAbs ? -maxAbs : Number.isNaN(v) ? 0 : v;
  }
  return { c, h, w, data };
}

/** Per channel, the table that codes it in the fewest bits. */
export function chooseTables(q: QLatent, t: CdfTables): Uint8Array {
  const nSym = 2 * t.maxAbs + 1;
  const plane = q.h * q.w;
  const choice = new Uint8Array(q.c);
  const hist = new Float64Array(nSym);
  for (let ch = 0; ch < q.c; ch++) {
    hist.fill(0);
    for (let i = ch * plane; i < (ch + 1) * plane; i++) hist[q.data[i] + t.maxAbs]++;
    let best = Infinity;
    for (let k = 0; k < t.tables.length; k++) {
      let bits = 0;
      for (let s = 0; s < nSym; s++) if (hist[s] > 0) bits += hist[s] * t.tables[k].bits(s);
      if (bits < best) {
        best = bits;
        choice[ch] = k;
      }
    }
  }
  return choice;
}

/**
 * The shared permutation of a frame's n latent elements (Fisher–Yates driven by the project's seeded
 * PRNG; its floats are k/2^32, so floor(r·(i+1)) is exact and identical on every machine).
 */
export function framePermutation(n: number, frameId: number, streamSeed = 0x6ace): Uint32Array {
  return shuffledIndices(new Uint32Array(n), rng((Math.imul(frameId >>> 0, 0x9e3779b1) ^ streamSeed) >>> 0));
}

/** Element range [start, end) of the permuted order carried by packet i of n. */
export function chunkRange(total: number, n: number, i: number): [number, number] {
  return [Math.floor((total * i) / n), Math.floor((total * (i + 1)) / n)];
}

export const PACKET_MAGIC = 0x4737;
export const HEADER_BYTES = 22;

export interface PacketHeader {
  model: number; // ladder rung (which model pair decodes this frame)
  frameId: number;
  refId: number; // frame whose reconstruction is the reference
  index: number;
  count: number;
  width: number; // frame size in pixels
  height: number;
  c: number;
  h: number;
  w: number;
}

export interface DecodedPacket {
  header: PacketHeader;
  tableIdx: Uint8Array;
  payload: Uint8Array;
}

/** A packet that is not a well-formed Grace++ packet. */
export class PacketError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PacketError';
  }
}

function writeHeader(dv: DataView, h: PacketHeader): void {
  dv.setUint16(0, PACKET_MAGIC);
  dv.setUint8(2, h.model);
  dv.setUint8(3, h.index);
  dv.setUint8(4, h.count);
  dv.setUint32(5, h.frameId);
  dv.setUint32(9, h.refId);
  dv.setUint16(13, h.width);
  dv.setUint16(15, h.height);
  dv.setUint8(17, h.c);
  dv.setUint16(18, h.h);
  dv.setUint16(20, h.w);
}

export function parsePacket(buf: Uint8Array, maxElements = 1 << 22): DecodedPacket {
  if (buf.length < HEADER_BYTES) throw new PacketError(`packet of ${buf.length} bytes is shorter than the ${HEADER_BYTES}-byte header`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (dv.getUint16(0) !== PACKET_MAGIC) throw new PacketError('not a Grace++ packet (bad magic)');
  const header: PacketHeader = {
    model: dv.getUint8(2), index: dv.getUint8(3), count: dv.getUint8(4), frameId: dv.getUint32(5), refId: dv.getUint32(9),
    width: dv.getUint16(13), height: dv.getUint16(15), c: dv.getUint8(17), h: dv.getUint16(18), w: dv.getUint16(20),
  };
  if (header.count < 1 || header.index >= header.count) throw new PacketError(`packet index ${header.index} of ${header.count}`);
  if (header.c < 1 || header.h < 1 || header.w < 1 || header.c * header.h * header.w > maxElements) {
    throw new PacketError(`latent ${header.c}×${header.h}×${header.w} is empty or too large`);
  }
  if (buf.length < HEADER_BYTES + header.c) throw new PacketError('packet truncated in the side info');
  return { header, tableIdx: buf.subarray(HEADER_BYTES, HEADER_BYTES + header.c), payload: buf.subarray(HEADER_BYTES + header.c) };
}

export interface PacketiseOptions {
  model: number;
  frameId: number;
  refId: number;
  width: number;
  height: number;
  /** fewest packets per frame (more packets = finer loss granularity); default 8 */
  minPackets?: number;
  /** largest packet in bytes (header included); default 1200 */
  mtu?: number;
}

/** Code a quantised latent into packets (each ≤ mtu bytes). */
export function packetise(q: QLatent, t: CdfTables, o: PacketiseOptions): Uint8Array[] {
  const total = q.data.length;
  const tableIdx = chooseTables(q, t);
  const plane = q.h * q.w;
  const perm = framePermutation(total, o.frameId);
  const mtu = o.mtu ?? 1200;
  const budget = mtu - HEADER_BYTES - q.c - 8;
  if (budget < 64) throw new RangeError(`mtu ${mtu} leaves no room for payload`);
  let estBits = 0;
  for (let i = 0; i < total; i++) estBits += t.tables[tableIdx[Math.floor(i / plane)]].bits(q.data[i] + t.maxAbs);
  let count = Math.max(o.minPackets ?? 8, Math.ceil(estBits / 8 / (budget * 0.9)));
  for (;;) {
    if (count > 255) throw new RangeError('frame needs more than 255 packets');
    const packets: Uint8Array[] = [];
    let fits = true;
    for (let p = 0; p < count && fits; p++) {
      const [a, b] = chunkRange(total, count, p);
      const syms = new Int32Array(b - a);
      const tabs = new Uint8Array(b - a);
      for (let k = a; k < b; k++) {
        const e = perm[k];
        syms[k - a] = q.data[e] + t.maxAbs;
        tabs[k - a] = tableIdx[Math.floor(e / plane)];
      }
      const payload = ransEncode(syms, tabs, t.tables);
      if (HEADER_BYTES + q.c + payload.length > mtu) fits = false;
      const buf = new Uint8Array(HEADER_BYTES + q.c + payload.length);
      writeHeader(new DataView(buf.buffer), { model: o.model, frameId: o.frameId, refId: o.refId, index: p, count, width: o.width, height: o.height, c: q.c, h: q.h, w: q.w });
      buf.set(tableIdx, HEADER_BYTES);
      buf.set(payload, HEADER_BYTES + q.c);
      packets.push(buf);
    }
    if (fits) return packets;
    count = Math.ceil(count * 1.25);
  }
}

export interface Depacketised {
  header: PacketHeader;
  latent: QLatent; // lost elements are 0
  received: boolean[]; // per packet index
}

/**
 * Rebuild a frame's latent from whichever of its packets arrived (any non-empty subset). Packets
 * that disagree with the first one's header, duplicates and undecodable payloads are dropped
 * (counted in `rejected`), never trusted.
 */
/** `maxElements`: the most latent elements a packet may declare (the receiver passes its models' size: a hostile
 * header must not make it allocate and shuffle millions of elements before the model rejects the shape) */
export function depacketise(packets: readonly Uint8Array[], t: CdfTables, maxElements = 1 << 22): Depacketised & { rejected: number } {
  let first: DecodedPacket | undefined;
  let rejected = 0;
  let latent: QLatent | undefined;
  let perm: Uint32Array | undefined;
  let received: boolean[] = [];
  for (const raw of packets) {
    let p: DecodedPacket;
    try {
      p = parsePacket(raw, maxElements);
    } catch {
      rejected++;
      continue;
    }
    const h = p.header;
    if (!first) {
      first = p;
      latent = { c: h.c, h: h.h, w: h.w, data: new Int16Array(h.c * h.h * h.w) };
      perm = framePermutation(latent.data.length, h.frameId);
      received = new Array<boolean>(h.count).fill(false);
    } else {
      const f = first.header;
      const same = f.frameId === h.frameId && f.refId === h.refId && f.count === h.count && f.model === h.model && f.c === h.c && f.h === h.h && f.w === h.w
        && f.width === h.width && f.height === h.height && p.tableIdx.every((v, i) => v === first!.tableIdx[i]);
      if (!same || received[h.index]) {
        rejected++;
        continue;
      }
    }
    if (p.tableIdx.some((v) => v >= t.tables.length)) {
      rejected++;
      continue;
    }
    const lat = latent!;
    const total = lat.data.length;
    const plane = lat.h * lat.w;
    const [a, b] = chunkRange(total, h.count, h.index);
    const tabs = new Uint8Array(b - a);
    for (let k = a; k < b; k++) tabs[k - a] = first.tableIdx[Math.floor(perm![k] / plane)];
    let syms: Int32Array;
    try {
      syms = ransDecode(p.payload, b - a, tabs, t.tables);
    } catch (err) {
      if (err instanceof RansError) {
        rejected++;
        continue;
      }
      throw err;
    }
    for (let k = a; k < b; k++) lat.data[perm![k]] = syms[k - a] - t.maxAbs;
    received[h.index] = true;
  }
  if (!first || !latent || !received.some(Boolean)) throw new PacketError('no decodable packet for this frame');
  return { header: first.header, latent, received, rejected };
}

/** The latent with only the elements carried by the packets in `received` (the rest zero). */
export function maskLatent(q: QLatent, frameId: number, received: readonly boolean[]): QLatent {
  const total = q.data.length;
  const perm = framePermutation(total, frameId);
  const data = new Int16Array(total);
  const n = received.length;
  for (let p = 0; p < n; p++) {
    if (!received[p]) continue;
    const [a, b] = chunkRange(total, n, p);
    for (let k = a; k < b; k++) data[perm[k]] = q.data[perm[k]];
  }
  return { c: q.c, h: q.h, w: q.w, data };
}
