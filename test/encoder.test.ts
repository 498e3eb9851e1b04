/**
 * The native encoder on real footage: per-MB QP maps are honoured (read back from the
 * decoder's per-MB QPs), per frame; bytes follow QP; decode is faithful; bad input is a typed error.
 * Needs the addon: npm run build:native (the tests fail, not skip, without it).
 */
import { beforeAll, describe, expect, test } from '@jest/globals';
import {
  EncoderError,
  EncoderUnavailableError,
  InvalidInputError,
  absoluteQpToOffsets,
  decodeSegment,
  encodeSegment,
  encoderVersions,
  scaleFrame,
  scaleFrameAsync,
} from '../encoder/index.ts';
import { type MbMap, type YuvFrame, makeMbMap, mbGrid } from '../encoder/frame.ts';
import { median } from '../numeric/stats.ts';
import { VIDEOS, loadFrames } from '../testdata/fixtures.ts';

const BASE = 30;
let hw: YuvFrame[]; // highway 1280x720, busy traffic
let people: YuvFrame[]; // people-indoor 768x432
let campus: YuvFrame[]; // campus path 768x576, pedestrians

beforeAll(() => {
  hw = loadFrames(VIDEOS.highway, 8, { startS: 5 });
  people = loadFrames(VIDEOS.people, 6, { startS: 30 });
  campus = loadFrames(VIDEOS.campus, 6, { startS: 10, fps: 10 });
});

/** A map over the frame's MB grid with value f(row, col). */
function mapOf(frame: YuvFrame, f: (r: number, c: number, rows: number, cols: number) => number): MbMap {
  const { rows, cols } = mbGrid(frame.width, frame.height);
  const m = makeMbMap(rows, cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) m.data[r * cols + c] = f(r, c, rows, cols);
  return m;
}

/**
 * How well decoded QPs follow an expected absolute-QP map. H.264 codes no QP for skipped MBs
 * and MBs without residual: the decoder reports the previous MB's QP (raster order) for them.
 * So each MB must either match (±tol) or repeat its predecessor; `hit` is the fraction that matches.
 */
function follow(qp: MbMap, expected: Float32Array, tol = 2): { hit: number; unexplained: number } {
  let hit = 0;
  let unexplained = 0;
  for (let i = 0; i < qp.data.length; i++) {
    if (Math.abs(qp.data[i] - expected[i]) <= tol) hit++;
    else if (i === 0 || qp.data[i] !== qp.data[i - 1]) unexplained++;
  }
  return { hit: hit / qp.data.length, unexplained };
}

function psnrY(a: YuvFrame, b: YuvFrame): number {
  const n = a.width * a.height;
  let se = 0;
  for (let i = 0; i < n; i++) {
    const d = a.data[i] - b.data[i];
    se += d * d;
  }
  return 10 * Math.log10((255 * 255) / Math.max(se / n, 1e-10));
}

const abs = (m: MbMap, base: number): Float32Array => m.data.map((v) => v + base);
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

describe('addon', () => {
  test('loads and links libx264', () => {
    const v = encoderVersions();
    expect(v.h264).toBe(true);
    expect(v.avcodec).toMatch(/^\d+\.\d+\.\d+$/);
  });
});

describe('per-macroblock QP maps', () => {
  test('(a) top half −10, bottom half +10 is read back on every frame, P frames included', async () => {
    const map = mapOf(hw[0], (r, _c, rows) => (r < rows / 2 ? -10 : 10));
    const seg = await encodeSegment(hw, hw.map(() => map), { baseQp: BASE });
    expect(seg.frameTypes[0]).toBe('I');
    expect(seg.frameTypes.slice(1).every((t) => t === 'P')).toBe(true);
    const dec = await decodeSegment(seg.data);
    expect(dec.qps).toHaveLength(hw.length);
    const want = abs(map, BASE);
    dec.qps.forEach((qp, i) => {
      const { rows, cols } = qp;
      const top = Array.from(qp.data.subarray(0, Math.ceil(rows / 2) * cols));
      const bottom = Array.from(qp.data.subarray(Math.ceil(rows / 2) * cols));
      expect([i, median(top)]).toEqual([i, BASE - 10]);
      expect([i, median(bottom)]).toEqual([i, BASE + 10]);
      const f = follow(qp, want);
      expect(f.unexplained).toBe(0);
      expect(f.hit).toBeGreaterThan(0.85);
    });
  });

  test('(b) a different map on each frame is honoured frame by frame', async () => {
    // even frames: left half low; odd frames: right half low
    const low = (i: number) => mapOf(campus[0], (_r, c, _rows, cols) => ((c < cols / 2) === (i % 2 === 0) ? -10 : 10));
    const maps = campus.map((_f, i) => low(i));
    const want = (i: number) => abs(low(i), BASE);

    // All-intra: every MB codes its QP, so the read-back is nearly complete on every frame.
    const intra = await decodeSegment((await encodeSegment(campus, maps, { baseQp: BASE, gop: 1 })).data);
    expect(intra.qps).toHaveLength(campus.length);
    intra.qps.forEach((qp, i) => {
      expect(follow(qp, want(i)).hit).toBeGreaterThan(0.9);
      expect(follow(qp, want(i + 1)).hit).toBeLessThan(0.1);
    });

    // I + P frames: a static camera skips much of each P frame (no QP coded there), but every MB
    // whose QP the stream does carry follows its own frame's map and contradicts the neighbour's.
    const seg = await encodeSegment(campus, maps, { baseQp: BASE });
    expect(seg.frameTypes.slice(1).every((t) => t === 'P')).toBe(true);
    const dec = await decodeSegment(seg.data);
    dec.qps.forEach((qp, i) => {
      const own = follow(qp, want(i));
      const other = follow(qp, want(i + 1));
      expect([i, own.unexplained]).toEqual([i, 0]);
      expect(other.unexplained).toBeGreaterThanOrEqual(10);
      expect(own.hit).toBeGreaterThan(other.hit);
    });
  });

  test('absolute QPs (AccMPEG style: important at 30, rest at 40) via absoluteQpToOffsets', async () => {
    const absMap = mapOf(hw[0], (r, c) => (r >= 10 && r < 30 && c >= 20 && c < 60 ? 30 : 40));
    const offsets = absoluteQpToOffsets(absMap, 35);
    expect(offsets.data[0]).toBe(5);
    expect(offsets.data[20 * offsets.cols + 30]).toBe(-5);
    const seg = await encodeSegment(hw.slice(0, 3), [offsets, offsets, offsets], { baseQp: 35 });
    const dec = await decodeSegment(seg.data);
    for (const qp of dec.qps) {
      const f = follow(qp, absMap.data);
      expect(f.unexplained).toBe(0);
      expect(f.hit).toBeGreaterThan(0.6); // P frames: skipped MBs repeat their left neighbour's QP
    }
  });

  test('(c) bytes strictly fall as a uniform offset rises (−10, 0, +10)', async () => {
    const bytes: number[] = [];
    for (const off of [-10, 0, 10]) {
      const m = mapOf(hw[0], () => off);
      const seg = await encodeSegment(hw, hw.map(() => m), { baseQp: BASE });
      expect(seg.data.length).toBe(sum(seg.frameBytes));
      bytes.push(seg.data.length);
    }
    expect(bytes[0]).toBeGreaterThan(bytes[1] * 1.5);
    expect(bytes[1]).toBeGreaterThan(bytes[2] * 1.5);
    // a null map is the same as an all-zero map
    const uniform = await encodeSegment(hw, hw.map(() => null), { baseQp: BASE });
    expect(Math.abs(uniform.data.length - bytes[1]) / bytes[1]).toBeLessThan(0.02);
  });
});

describe('decode', () => {
  test('(d) frame count, size and PSNR vs the source', async () => {
    const seg = await encodeSegment(people, people.map(() => null), { baseQp: 20, fps: 10 });
    expect(seg).toMatchObject({ codec: 'h264', width: 768, height: 432, fps: 10 });
    expect(seg.frameBytes).toHaveLength(people.length);
    const dec = await decodeSegment(seg.data);
    expect(dec.frames).toHaveLength(people.length);
    expect(dec.warnings).toEqual([]);
    dec.frames.forEach((f, i) => {
      expect([f.width, f.height, f.data.length]).toEqual([768, 432, (768 * 432 * 3) / 2]);
      expect(psnrY(f, people[i])).toBeGreaterThan(35);
    });
    // and uniform QP 20 everywhere (an I frame codes QP on every MB)
    expect(follow(dec.qps[0], new Float32Array(dec.qps[0].data.length).fill(20)).hit).toBeGreaterThan(0.95);
    // coarser QP → lower PSNR
    const coarse = await decodeSegment((await encodeSegment(people, people.map(() => null), { baseQp: 40 })).data);
    expect(psnrY(coarse.frames[0], people[0])).toBeLessThan(psnrY(dec.frames[0], people[0]) - 5);
  });

  test('gop and bframes settings shape the stream', async () => {
    const seg = await encodeSegment(hw, hw.map(() => null), { gop: 4, bframes: 2, tune: null, threads: 1 });
    expect(seg.frameTypes.filter((t) => t === 'I')).toHaveLength(2);
    expect(seg.frameTypes).toContain('B');
    const dec = await decodeSegment(seg.data);
    expect(dec.frames).toHaveLength(hw.length);
    dec.frames.forEach((f, i) => expect(psnrY(f, hw[i])).toBeGreaterThan(28)); // display order restored
  });

  test('zerolatency tune encodes and decodes', async () => {
    const seg = await encodeSegment(hw.slice(0, 4), [null, null, null, null], { tune: 'zerolatency', preset: 'ultrafast' });
    expect((await decodeSegment(seg.data)).frames).toHaveLength(4);
  });
});

describe('scaleFrame', () => {
  test('720p → 640x360 → 720p keeps the picture', () => {
    const small = scaleFrame(hw[0], 640, 360, 'area');
    expect([small.width, small.height, small.data.length, small.ptsMs]).toEqual([640, 360, 640 * 360 * 1.5, hw[0].ptsMs]);
    const back = scaleFrame(small, 1280, 720);
    expect(psnrY(back, hw[0])).toBeGreaterThan(25);
    expect(psnrY(back, hw[0])).toBeLessThan(60); // it really went through a lower resolution
  });

  test('scaleFrameAsync (libuv thread pool) gives the same bytes, and the event loop runs while it works', async () => {
    const sync = ['area', 'bilinear', 'bicubic'].map((a) => scaleFrame(hw[0], 640, 360, a as 'area'));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    // a batch big enough that a synchronous call would block every timer until it finished
    const batch = await Promise.all(Array.from({ length: 24 }, (_v, i) => scaleFrameAsync(hw[i % hw.length], 640, 360, 'area')));
    clearInterval(timer);
    expect(ticks).toBeGreaterThan(0);
    expect(Buffer.from(batch[0].data).equals(Buffer.from(sync[0].data))).toBe(true);
    for (const [k, a] of (['area', 'bilinear', 'bicubic'] as const).entries()) {
      const f = await scaleFrameAsync(hw[0], 640, 360, a);
      expect([f.width, f.height, f.ptsMs]).toEqual([640, 360, hw[0].ptsMs]);
      expect(Buffer.from(f.data).equals(Buffer.from(sync[k].data))).toBe(true);
    }
    await expect(scaleFrameAsync(hw[0], 641, 360)).rejects.toThrow(InvalidInputError);
    await expect(scaleFrameAsync({ ...hw[0], data: hw[0].data.subarray(1) }, 640, 360)).rejects.toThrow(InvalidInputError);
  });
});

describe('(e) typed errors', () => {
  test('bad frames, maps and settings are InvalidInputError before native code', async () => {
    const f = hw[0];
    const short: YuvFrame = { ...f, data: f.data.subarray(0, f.data.length - 1) };
    await expect(encodeSegment([short], [null])).rejects.toThrow(InvalidInputError);
    await expect(encodeSegment([], [])).rejects.toThrow(/empty segment/);
    await expect(encodeSegment([f], [makeMbMap(44, 80)])).rejects.toThrow(/45x80/);
    await expect(encodeSegment([f], [makeMbMap(45, 80), null])).rejects.toThrow(InvalidInputError);
    await expect(encodeSegment([{ ...f, width: 1279 }], [null])).rejects.toThrow(/even/);
    await expect(encodeSegment([f], [null], { baseQp: 60 })).rejects.toThrow(InvalidInputError);
    const nan = makeMbMap(45, 80);
    nan.data[7] = NaN;
    await expect(encodeSegment([f], [nan])).rejects.toThrow(/non-finite/);
    expect(() => scaleFrame(f, 641, 360)).toThrow(InvalidInputError);
    await expect(decodeSegment(new Uint8Array(0))).rejects.toThrow(InvalidInputError);
  });

  test('garbage bytes: EncoderError with a step, no crash', async () => {
    const junk = new Uint8Array(5000).map((_v, i) => (i * 7919) & 0xff);
    const err = await decodeSegment(junk).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EncoderError);
    expect((err as EncoderError).step).toMatch(/decode/);
  });

  test('truncated and corrupted streams give partial frames or EncoderError, never a crash', async () => {
    const seg = await encodeSegment(hw, hw.map(() => null), { baseQp: BASE });
    const truncated = seg.data.subarray(0, Math.floor(seg.data.length * 0.6));
    const t = await decodeSegment(truncated);
    expect(t.frames.length).toBeGreaterThan(0);
    expect(t.frames.length).toBeLessThanOrEqual(hw.length);

    const corrupt = Buffer.from(seg.data);
    for (let i = 200; i < corrupt.length; i += 997) corrupt[i] ^= 0x5a;
    const c = await decodeSegment(corrupt).catch((e: unknown) => e);
    if (c instanceof Error) expect(c).toBeInstanceOf(EncoderError);
    else expect((c as { frames: YuvFrame[] }).frames.length).toBeGreaterThan(0);

    // header cut off: nothing decodable
    const headless = await decodeSegment(seg.data.subarray(seg.frameBytes[0] + 10, seg.frameBytes[0] + 400)).catch((e: unknown) => e);
    expect(headless).toBeInstanceOf(EncoderError);
  });

  test('decode limits: a small stream of skip frames cannot expand past maxFrames / maxPixels', async () => {
    // 300 identical 256×144 frames: a few kB of P-skip frames that decode to 300 × 55 kB
    const still = scaleFrame(hw[0], 256, 144);
    const many = Array.from({ length: 300 }, () => still);
    const seg = await encodeSegment(many, many.map(() => null), { baseQp: 30, gop: 300 });
    expect(seg.data.length).toBeLessThan(40_000);
    expect((await decodeSegment(seg.data)).frames).toHaveLength(300); // no limit: all of them
    const tooMany = await decodeSegment(seg.data, 'h264', { maxFrames: 10 }).catch((e: unknown) => e);
    expect(tooMany).toBeInstanceOf(EncoderError);
    expect((tooMany as Error).message).toMatch(/more than 10 frames/);
    const tooBig = await decodeSegment(seg.data, 'h264', { maxPixels: 256 * 143 }).catch((e: unknown) => e);
    expect(tooBig).toBeInstanceOf(EncoderError);
    expect((tooBig as Error).message).toMatch(/256x144 exceeds the limit/);
    expect((await decodeSegment(seg.data, 'h264', { maxFrames: 300, maxPixels: 256 * 144 })).frames).toHaveLength(300);
    await expect(decodeSegment(seg.data, 'h264', { maxFrames: -1 })).rejects.toThrow(InvalidInputError);
  });

  test('EncoderUnavailableError tells how to build', () => {
    expect(new EncoderUnavailableError('/x.node').message).toMatch(/npm run build:native/);
  });
});

describe('h265 (optional: libx265)', () => {
  test('encodes, decodes, and offsets change the bytes', async () => {
    if (!encoderVersions().h265) return; // libx265 not in this libavcodec
    const sizes: number[] = [];
    for (const off of [-10, 10]) {
      const m = mapOf(people[0], () => off);
      const seg = await encodeSegment(people, people.map(() => m), { codec: 'h265', baseQp: BASE });
      expect(seg.codec).toBe('h265');
      sizes.push(seg.data.length);
      const dec = await decodeSegment(seg.data, 'h265');
      expect(dec.frames).toHaveLength(people.length);
    }
    expect(sizes[0]).toBeGreaterThan(sizes[1] * 1.5);
  });
});
