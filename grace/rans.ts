/**
 * Byte-wise rANS entropy coder with static 16-bit frequency tables (after Duda's rANS and the
 * public-domain "rans_byte" layout: 32-bit state in [2^23, 2^31), one byte per renormalisation).
 *
 * Written here because npm has no maintained multi-symbol range/ANS coder. Everything is integer
 * arithmetic below 2^31, so encoding and decoding are bit-exact on every machine; the tables are
 * static (grace/models/cdf_tables.json), never computed from floats at run time.
 */

export const PROB_BITS = 16;
const PROB_SCALE = 1 << PROB_BITS;
const RANS_L = 1 << 23;

/** A static table: frequencies of symbols 0..n-1 summing to 2^16, each ≥ 1. */
export class FreqTable {
  readonly freq: Uint32Array;
  readonly start: Uint32Array;
  private slots: Uint8Array | undefined; // cumulative slot → symbol, built on first decode
  private readonly codeLen: Float64Array;

  constructor(freqs: ArrayLike<number>) {
    const n = freqs.length;
    if (n < 1 || n > 256) throw new RangeError(`a table has 1..256 symbols, got ${n}`);
    this.freq = new Uint32Array(n);
    this.start = new Uint32Array(n);
    let acc = 0;
    for (let s = 0; s < n; s++) {
      const f = freqs[s];
      if (!Number.isInteger(f) || f < 1) throw new RangeError(`frequency of symbol ${s} must be an integer ≥ 1, got ${f}`);
      this.start[s] = acc;
      this.freq[s] = f;
      acc += f;
    }
    if (acc !== PROB_SCALE) throw new RangeError(`frequencies must sum to ${PROB_SCALE}, got ${acc}`);
    this.codeLen = Float64Array.from(this.freq, (f) => PROB_BITS - Math.log2(f));
  }

  get size(): number {
    return this.freq.length;
  }

  symbolOfSlot(slot: number): number {
    if (!this.slots) {
      this.slots = new Uint8Array(PROB_SCALE);
      for (let s = 0; s < this.freq.length; s++) this.slots.fill(s, this.start[s], this.start[s] + this.freq[s]);
    }
    return this.slots[slot];
  }

  /** Ideal code length of symbol s in bits (for table selection and packet sizing). */
  bits(s: number): number {
    return this.codeLen[s];
  }
}

/**
 * Encode symbols[i] with tables[tableOf[i]]. Returns the byte stream (state flushed first, so the
 * decoder reads forward).
 */
export function ransEncode(symbols: ArrayLike<number>, tableOf: ArrayLike<number>, tables: readonly FreqTable[]): Uint8Array {
  const n = symbols.length;
  if (tableOf.length !== n) throw new RangeError(`${n} symbols but ${tableOf.length} table indices`);
  // rANS encodes in reverse; bytes are produced back to front.
  let buf = new Uint8Array(Math.max(16, n + 8));
  let pos = buf.length;
  const put = (b: number): void => {
    if (pos === 0) {
      const bigger = new Uint8Array(buf.length * 2);
      bigger.set(buf, buf.length);
      pos = buf.length;
      buf = bigger;
    }
    buf[--pos] = b;
  };
  let x = RANS_L;
  for (let i = n - 1; i >= 0; i--) {
    const t = tables[tableOf[i]];
    if (!t) throw new RangeError(`symbol ${i}: no table ${tableOf[i]}`);
    const s = symbols[i];
    if (!(s >= 0 && s < t.size) || !Number.isInteger(s)) throw new RangeError(`symbol ${i} = ${s} outside table ${tableOf[i]} (0..${t.size - 1})`);
    const f = t.freq[s];
    const xMax = ((RANS_L >>> PROB_BITS) << 8) * f;
    while (x >= xMax) {
      put(x & 0xff);
      x = x >>> 8;
    }
    x = Math.floor(x / f) * PROB_SCALE + (x % f) + t.start[s];
  }
  for (let k = 3; k >= 0; k--) put((x >>> (8 * k)) & 0xff); // little-endian state at the front
  return buf.slice(pos);
}

/** Thrown when a byte stream cannot be what ransEncode produced with these tables. */
export class RansError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RansError';
  }
}

/** Decode n symbols; tableOf must be the indices used to encode. */
export function ransDecode(bytes: Uint8Array, n: number, tableOf: ArrayLike<number>, tables: readonly FreqTable[], out?: Int32Array): Int32Array {
  if (tableOf.length < n) throw new RangeError(`${n} symbols but ${tableOf.length} table indices`);
  if (bytes.length < 4) throw new RansError(`stream of ${bytes.length} bytes is shorter than the 4-byte state`);
  const res = out ?? new Int32Array(n);
  let pos = 0;
  let x = (bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (bytes[3] << 24)) >>> 0;
  pos = 4;
  if (x < RANS_L || x >= 2 ** 31) throw new RansError('corrupt stream: bad initial state');
  for (let i = 0; i < n; i++) {
    const t = tables[tableOf[i]];
    if (!t) throw new RangeError(`symbol ${i}: no table ${tableOf[i]}`);
    const slot = x & (PROB_SCALE - 1);
    const s = t.symbolOfSlot(slot);
    res[i] = s;
    x = t.freq[s] * (x >>> PROB_BITS) + slot - t.start[s];
    while (x < RANS_L) {
      if (pos >= bytes.length) throw new RansError(`corrupt stream: ran out of bytes at symbol ${i} of ${n}`);
      x = ((x << 8) | bytes[pos++]) >>> 0;
    }
  }
  if (pos !== bytes.length || x !== RANS_L) throw new RansError(`corrupt stream: ${bytes.length - pos} bytes left over or final state mismatch`);
  return res;
}
