import { FreqTable, ransDecode, ransEncode, RansError } from '../grace/rans.ts';
import { chooseTables, depacketise, maskLatent, packetise, parsePacket, quantise, PacketError, type QLatent } from '../grace/packet.ts';
import { rng } from '../numeric/random.ts';

/** uint32 draws from the project's PRNG */
const prng = (seed: number): (() => number) => { const r = rng(seed); return () => Math.floor(r() * 4294967296); };
import { loadTables } from '../grace/model.ts';
import { NetEm } from '../grace/netem.ts';

const tables = loadTables();

function randomTable(rnd: () => number, n: number): FreqTable {
  // random positive weights, some forced to frequency 1
  const w = Array.from({ length: n }, () => (rnd() % 7 === 0 ? 0 : (rnd() % 1000) + 1));
  const sum = w.reduce((a, b) => a + b, 0) || 1;
  const f = w.map((v) => Math.max(1, Math.floor((v / sum) * (65536 - n))));
  f[0] += 65536 - f.reduce((a, b) => a + b, 0);
  return new FreqTable(f);
}

/** Laplace-like integer latent, channel scales spread over two decades. */
function laplaceLatent(seed: number, c: number, h: number, w: number): QLatent {
  const rnd = prng(seed);
  const y = new Float32Array(c * h * w);
  for (let ch = 0; ch < c; ch++) {
    const b = 0.05 * 1.3 ** ch;
    for (let i = 0; i < h * w; i++) {
      const u = (rnd() + 0.5) / 4294967296 - 0.5;
      y[ch * h * w + i] = -b * Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
    }
  }
  return quantise(y, c, h, w, tables.maxAbs);
}

describe('rANS with static 16-bit tables', () => {
  test('round-trips random symbols through random mixtures of tables, bit-exactly', () => {
    const rnd = prng(7);
    for (let trial = 0; trial < 20; trial++) {
      const nSym = 2 + (rnd() % 255);
      const ts = Array.from({ length: 1 + (rnd() % 5) }, () => randomTable(rnd, nSym));
      const n = rnd() % 5000;
      const tableOf = Uint8Array.from({ length: n }, () => rnd() % ts.length);
      // draw symbols from the table's own distribution half the time, uniformly otherwise (rare symbols included)
      const syms = Int32Array.from({ length: n }, (_, i) => {
        if (rnd() & 1) return rnd() % nSym;
        return ts[tableOf[i]].symbolOfSlot(rnd() & 0xffff);
      });
      const bytes = ransEncode(syms, tableOf, ts);
      expect(ransDecode(bytes, n, tableOf, ts)).toEqual(syms);
    }
  });

  test('code length is within 1% + 8 bytes of the ideal entropy on matched data', () => {
    const t = tables.tables[12];
    const rnd = prng(3);
    const n = 50000;
    const syms = Int32Array.from({ length: n }, () => t.symbolOfSlot(rnd() & 0xffff));
    const ideal = syms.reduce((a, s) => a + t.bits(s), 0) / 8;
    const bytes = ransEncode(syms, new Uint8Array(n), [t]);
    expect(bytes.length).toBeLessThan(ideal * 1.01 + 8);
  });

  test('truncated or corrupted streams raise RansError or decode without crashing', () => {
    const t = [tables.tables[5]];
    const syms = Int32Array.from({ length: 3000 }, (_, i) => (i * 7) % 63);
    const bytes = ransEncode(syms, new Uint8Array(3000), t);
    expect(() => ransDecode(bytes.subarray(0, bytes.length - 5), 3000, new Uint8Array(3000), t)).toThrow(RansError);
    expect(() => ransDecode(new Uint8Array(2), 1, new Uint8Array(1), t)).toThrow(RansError);
    const bad = bytes.slice();
    bad[bytes.length >> 1] ^= 0x55;
    expect(() => ransDecode(bad, 3000, new Uint8Array(3000), t)).toThrow(RansError);
  });

  test('rejects tables that do not sum to 2^16 and symbols outside the table', () => {
    expect(() => new FreqTable([1, 2, 3])).toThrow(RangeError);
    expect(() => new FreqTable([65536, 0])).toThrow(RangeError);
    expect(() => ransEncode([70], [0], tables.tables)).toThrow(RangeError);
  });
});

describe('Grace++ packetisation', () => {
  const q = laplaceLatent(11, 24, 9, 15);

  test('table choice follows each channel\'s spread (wider channels get wider tables)', () => {
    const idx = chooseTables(q, tables);
    expect(idx[23]).toBeGreaterThan(idx[0]);
    for (let c = 1; c < 24; c++) expect(idx[c]).toBeGreaterThanOrEqual(idx[c - 1] - 1);
  });

  for (const n of [1, 2, 3, 4, 5, 6]) {
    test(`every non-empty subset of ${n} packets decodes to exactly the masked latent`, () => {
      const packets = packetise(q, tables, { model: 1, frameId: 40 + n, refId: 39 + n, width: 120, height: 72, minPackets: n, mtu: 4000 });
      expect(packets).toHaveLength(n);
      for (let mask = 1; mask < 1 << n; mask++) {
        const subset = packets.filter((_, i) => mask & (1 << i));
        const d = depacketise(subset, tables);
        const received = Array.from({ length: n }, (_, i) => Boolean(mask & (1 << i)));
        expect(d.received).toEqual(received);
        expect(d.rejected).toBe(0);
        expect(d.header).toMatchObject({ model: 1, frameId: 40 + n, refId: 39 + n, count: n, width: 120, height: 72, c: 24, h: 9, w: 15 });
        expect(d.latent.data).toEqual(maskLatent(q, 40 + n, received).data);
      }
    });
  }

  test('losing k of n packets zeroes ~k/n of the elements, spread over every channel', () => {
    const big = laplaceLatent(5, 24, 34, 60);
    const packets = packetise(big, tables, { model: 0, frameId: 9, refId: 8, width: 480, height: 272, minPackets: 10 });
    const kept = [0, 2, 3, 5, 6, 8, 9].map((i) => packets[i]); // 3 of 10 lost
    const d = depacketise(kept, tables);
    const lostShare = d.received.filter((r) => !r).length / packets.length;
    const plane = 34 * 60;
    for (let c = 0; c < 24; c++) {
      let lost = 0;
      for (let i = c * plane; i < (c + 1) * plane; i++) if (d.latent.data[i] === 0 && big.data[i] !== 0) lost++;
      let nonzero = 0;
      for (let i = c * plane; i < (c + 1) * plane; i++) if (big.data[i] !== 0) nonzero++;
      if (nonzero > 200) expect(Math.abs(lost / nonzero - lostShare)).toBeLessThan(0.08);
    }
  });

  test('packets respect the MTU; larger frames get more packets', () => {
    const big = laplaceLatent(6, 24, 34, 60);
    const packets = packetise(big, tables, { model: 0, frameId: 1, refId: 0, width: 480, height: 272, minPackets: 4, mtu: 600 });
    expect(packets.length).toBeGreaterThan(4);
    for (const p of packets) expect(p.length).toBeLessThanOrEqual(600);
    expect(depacketise(packets, tables).latent.data).toEqual(big.data);
    // a receiver that expects a smaller latent (its models at its frame size) rejects the packets unread
    expect(() => depacketise(packets, tables, 24 * 34 * 60 - 1)).toThrow(PacketError);
    expect(depacketise(packets, tables, 24 * 34 * 60).latent.data).toEqual(big.data);
  });

  test('garbage, foreign and mismatched packets are rejected, never trusted', () => {
    expect(() => parsePacket(new Uint8Array(5))).toThrow(PacketError);
    expect(() => parsePacket(new Uint8Array(64))).toThrow(PacketError);
    const a = packetise(q, tables, { model: 0, frameId: 3, refId: 2, width: 120, height: 72, minPackets: 4 });
    const b = packetise(q, tables, { model: 0, frameId: 4, refId: 3, width: 120, height: 72, minPackets: 4 });
    const corrupt = a[2].slice();
    corrupt[corrupt.length - 3] ^= 0xff;
    const d = depacketise([a[0], b[1], a[0], corrupt, new Uint8Array(30)], tables);
    expect(d.received).toEqual([true, false, false, false]);
    expect(d.rejected).toBe(4);
    expect(() => depacketise([new Uint8Array(40)], tables)).toThrow(PacketError);
  });
});

describe('network emulator', () => {
  test('i.i.d. loss hits its rate, deterministic by seed', () => {
    const run = (seed: number): boolean[] => {
      const n = new NetEm({ loss: { kind: 'iid', p: 0.3 }, rttMs: 100, bandwidthKbps: 0, seed });
      return Array.from({ length: 20000 }, (_, i) => n.send(i, 1000) === null);
    };
    const a = run(1);
    expect(run(1)).toEqual(a);
    expect(run(2)).not.toEqual(a);
    expect(Math.abs(a.filter(Boolean).length / a.length - 0.3)).toBeLessThan(0.015);
  });

  test('Gilbert–Elliott gives the mean loss and mean burst length asked for', () => {
    const n = new NetEm({ loss: { kind: 'ge', p: 0.2, burst: 4 }, rttMs: 0, bandwidthKbps: 0, seed: 9 });
    const lost = Array.from({ length: 200000 }, () => n.send(0, 100) === null);
    let bursts = 0;
    for (let i = 0; i < lost.length; i++) if (lost[i] && (i === 0 || !lost[i - 1])) bursts++;
    const rate = lost.filter(Boolean).length / lost.length;
    expect(Math.abs(rate - 0.2)).toBeLessThan(0.02);
    expect(Math.abs(rate * lost.length / bursts - 4)).toBeLessThan(0.3);
  });

  test('delay is RTT/2 plus queueing at the bottleneck rate', () => {
    const n = new NetEm({ loss: { kind: 'none' }, rttMs: 200, bandwidthKbps: 800, seed: 1 });
    expect(n.send(0, 1000)).toBeCloseTo(110, 6); // 8000 bits at 800 kbit/s = 10 ms, + 100 ms
    expect(n.send(0, 1000)).toBeCloseTo(120, 6); // queued behind the first
    expect(n.send(500, 100)).toBeCloseTo(601, 6);
  });
});
