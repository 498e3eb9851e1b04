/**
 * @jest-environment ./test/helpers/ort-env.cjs
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { oneAdaptProxy, oneAdaptProxyGraph, accmpegProxy, reduceToMacroblocks, saliencyToFrame, weightByPixelDiff, inputSaliency } from '../server/dnngrad.ts';
import { rng } from '../numeric/random.ts';
import { deflateRawSync } from 'node:zlib';
import { encodeMbMap, decodeMbMap, mbMapWireBytes, mbMapErrorBound } from '../wire/mbmap.ts';
import { Detector } from '../detector/detector.ts';
import { letterboxFor, preprocess } from '../detector/preprocess.ts';
import { postprocess, ROW, PERSON_CLASSES, ROAD_CLASSES } from '../detector/postprocess.ts';
import { ProxyGradModel, finiteDifferenceCheck } from '../server/onnxgrad/index.ts';
import { decodeModel, encodeModel } from '../server/onnxgrad/proto.ts';
import { SegmentAnalyzer } from '../server/analyzer.ts';
import { mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { loadFrames, IMAGES, VIDEOS, DETECTOR_MODEL, requireFile } from '../testdata/fixtures.ts';

const S = 416, P = S * S;


describe('proxy seeds vs finite differences on the real detector output (dog.jpg)', () => {
  let raw: Float32Array;
  let letterbox: ReturnType<typeof letterboxFor>;
  beforeAll(async () => {
    const det = await Detector.load(requireFile(DETECTOR_MODEL), { device: 'cpu' });
    const r = await det.detect(loadFrames(IMAGES.dog, 1)[0]);
    raw = Float32Array.from(r.raw);
    letterbox = r.letterbox;
    await det.release();
  });

  function fd(f: (x: Float32Array) => number, x: Float32Array, i: number, eps: number): number {
    const v0 = x[i];
    try {
      x[i] = v0 + eps; const hp = x[i] - v0; const fp = f(x);
      x[i] = v0 - eps; const hm = v0 - x[i]; const fm = f(x);
      return (fp - fm) / (hp + hm);
    } finally { x[i] = v0; }
  }

  function indicesToCheck(dets: { cell: number; classId: number }[], n: number): number[] {
    const idx: number[] = [];
    for (const d of dets) idx.push(d.cell * ROW + 4, d.cell * ROW + 5 + d.classId, d.cell * ROW + 5 + ((d.classId + 1) % 80));
    const r = rng(7);
    for (let k = 0; k < n; k++) { const cell = Math.floor(r() * 3549); idx.push(cell * ROW + 4, cell * ROW + 5 + Math.floor(r() * 80)); }
    return idx;
  }

  test('OneAdapt proxy O = Σ over candidate cells of sigmoid(20(obj·cls − 0.3)), road classes (the F1 definition)', () => {
    const dets = postprocess(raw, letterbox, { confThreshold: 0.25 });
    const { value, seed } = oneAdaptProxy(raw);
    // independent direct evaluation of the value: road classes, candidates with score ≥ 0.1
    let direct = 0;
    let candidates = 0;
    for (let c = 0; c < 3549; c++) for (const k of ROAD_CLASSES) {
      const score = raw[c * ROW + 4] * raw[c * ROW + 5 + k];
      if (score < 0.1) continue;
      candidates++;
      direct += 1 / (1 + Math.exp(-20 * (score - 0.3)));
    }
    expect(candidates).toBeGreaterThan(0);
    expect(candidates).toBeLessThan(500); // a few hundred candidate pairs out of 3549 × 7
    expect(value).toBeCloseTo(direct, 6);
    const f = (x: Float32Array) => oneAdaptProxy(x).value;
    let checkedLarge = 0;
    for (const d of dets.filter((d) => ROAD_CLASSES.includes(d.classId))) {
      for (const i of [d.cell * ROW + 4, d.cell * ROW + 5 + d.classId]) {
        const g = fd(f, raw, i, 1e-3);
        expect(Math.abs(seed[i] - g)).toBeLessThanOrEqual(1e-3 + 2e-2 * Math.abs(g));
        if (Math.abs(g) > 0.1) checkedLarge++;
      }
    }
    expect(checkedLarge).toBeGreaterThan(1); // the check covered cells where the gradient matters
    // non-road classes and box coordinates get no gradient
    for (let c = 0; c < 3549; c++) for (let k = 0; k < 80; k++) if (!ROAD_CLASSES.includes(k) && seed[c * ROW + 5 + k] !== 0) throw new Error(`class ${k} got gradient`);
    for (const d of dets) for (let j = 0; j < 4; j++) expect(seed[d.cell * ROW + j]).toBe(0);
    // Hutchinson probes: with signs ε, the value is Σ ε σ and the seed its gradient (finite differences again)
    let draws = 0;
    const alternating = () => (draws++ % 2 ? -1 : 1);
    const probe = oneAdaptProxy(raw, { sign: alternating });
    expect(draws).toBe(candidates); // one sign per candidate pair
    expect(Math.abs(probe.value)).toBeLessThan(value);
    const fs = (x: Float32Array) => { draws = 0; return oneAdaptProxy(x, { sign: alternating }).value; };
    for (const d of dets.filter((d) => ROAD_CLASSES.includes(d.classId)).slice(0, 3)) {
      const i = d.cell * ROW + 5 + d.classId;
      const g = fd(fs, raw, i, 1e-3);
      expect(Math.abs(probe.seed[i] - g)).toBeLessThanOrEqual(1e-3 + 2e-2 * Math.abs(g));
    }
  });

  test('OneAdapt proxy of an empty scene is exactly 0 with no gradient (no tail of near-zero cells)', () => {
    const empty = Float32Array.from(raw);
    for (let c = 0; c < 3549; c++) empty[c * ROW + 4] = Math.min(empty[c * ROW + 4], 0.05); // every score < 0.05
    const { value, seed } = oneAdaptProxy(empty);
    expect(value).toBe(0);
    expect(seed.every((v) => v === 0)).toBe(true);
    // without the candidate gate the same frame sums a tail (what the old proxy did)
    expect(oneAdaptProxy(empty, { candidateScore: 0, classes: Array.from({ length: 80 }, (_, i) => i) }).value).toBeGreaterThan(0.1);
  });

  test('OneAdapt proxy with a class filter only touches those classes', () => {
    const { value, seed } = oneAdaptProxy(raw, { classes: PERSON_CLASSES });
    const all = oneAdaptProxy(raw).value; // road classes ⊃ person
    expect(value).toBeLessThan(all);
    for (let c = 0; c < 3549; c++) for (let k = 1; k < 80; k++) if (seed[c * ROW + 5 + k] !== 0) throw new Error(`class ${k} got gradient`);
    const f = (x: Float32Array) => oneAdaptProxy(x, { classes: PERSON_CLASSES }).value;
    for (const i of indicesToCheck([], 6)) expect(Math.abs(seed[i] - fd(f, raw, i, 1e-3))).toBeLessThanOrEqual(1e-3 + 2e-2 * Math.abs(seed[i]));
  });

  test('AccMPEG proxy S = Σ scores of detections with score > 0.3', () => {
    const dets = postprocess(raw, letterbox, { confThreshold: 0.2 });
    const kept = dets.filter((d) => d.score > 0.3);
    expect(dets.length).toBeGreaterThan(kept.length); // some detections between 0.2 and 0.3 must be excluded
    const { value, seed } = accmpegProxy(raw, dets);
    expect(value).toBeCloseTo(kept.reduce((s, d) => s + d.score, 0), 5);
    const f = (x: Float32Array) => accmpegProxy(x, dets).value;
    for (const d of dets) {
      const o = d.cell * ROW;
      if (d.score > 0.3) {
        expect(seed[o + 4]).toBeCloseTo(raw[o + 5 + d.classId], 6);
        expect(seed[o + 5 + d.classId]).toBeCloseTo(raw[o + 4], 6);
      } else {
        expect(seed[o + 4]).toBe(0);
      }
    }
    for (const i of indicesToCheck(dets, 10)) expect(Math.abs(seed[i] - fd(f, raw, i, 1e-3))).toBeLessThan(1e-3);
    let nonzero = 0;
    for (let i = 0; i < seed.length; i++) if (seed[i] !== 0) nonzero++;
    expect(nonzero).toBe(2 * kept.length);
  });
});

describe('reduceToMacroblocks / saliencyToFrame', () => {
  test('square 416 frame: MB sums equal block sums of Σ|grad| over channels', () => {
    const lb = letterboxFor(416, 416);
    const g = new Float32Array(3 * P);
    const r = rng(1);
    for (let i = 0; i < g.length; i++) g[i] = r() * 2 - 1;
    const sum = reduceToMacroblocks(g, lb, 416, 416, { reduce: 'sum' });
    const mean = reduceToMacroblocks(g, lb, 416, 416);
    expect(sum.rows).toBe(26); expect(sum.cols).toBe(26);
    for (const [mr, mc] of [[0, 0], [3, 17], [25, 25]]) {
      let s = 0;
      for (let y = mr * 16; y < mr * 16 + 16; y++) for (let x = mc * 16; x < mc * 16 + 16; x++) s += Math.abs(g[y * S + x]) + Math.abs(g[P + y * S + x]) + Math.abs(g[2 * P + y * S + x]);
      expect(sum.data[mr * 26 + mc]).toBeCloseTo(s, 2);
      expect(mean.data[mr * 26 + mc]).toBeCloseTo(s / 256, 4);
    }
  });

  test('1280×720: a point gradient lands in the right MB of the original frame, padding is ignored', () => {
    const lb = letterboxFor(1280, 720); // scale 0.325, 416×234
    expect(lb.newH).toBe(234);
    const g = new Float32Array(3 * P);
    // input pixel (100, 50) → original ((100.5)·1280/416, (50.5)·720/234) = (309.2, 155.4) → MB row 9, col 19
    g[50 * S + 100] = -3; g[2 * P + 50 * S + 100] = 4;
    // large values in the padding (rows ≥ 234) must not count
    for (let y = 234; y < S; y++) for (let x = 0; x < S; x++) g[P + y * S + x] = 1000;
    const m = reduceToMacroblocks(g, lb, 1280, 720, { reduce: 'sum' });
    expect(m.rows).toBe(45); expect(m.cols).toBe(80);
    const nz = [...m.data.keys()].filter((i) => m.data[i] !== 0);
    expect(nz).toEqual([9 * 80 + 19]);
    expect(m.data[9 * 80 + 19]).toBeCloseTo(7);
    expect(reduceToMacroblocks(g, lb, 1280, 720).data[9 * 80 + 19]).toBeCloseTo(7 / 256);
  });

  test('uniform gradient: totals are conserved, per-MB mean is the same everywhere; pixel map agrees', () => {
    const W = 1280, H = 720; // 720 = 45 MBs exactly
    const lb = letterboxFor(W, H);
    const g = new Float32Array(3 * P).fill(1);
    const sum = reduceToMacroblocks(g, lb, W, H, { reduce: 'sum' });
    const total = sum.data.reduce((a, v) => a + v, 0);
    expect(total).toBeCloseTo(3 * lb.newW * lb.newH, 0);
    // each MB covers 16·416/1280 = 5.2 input columns and 16·234/720 = 5.2 rows → 5 or 6 of each
    for (const v of sum.data) { expect(v).toBeGreaterThanOrEqual(3 * 25); expect(v).toBeLessThanOrEqual(3 * 36); }
    const mean = reduceToMacroblocks(g, lb, W, H);
    const avg = (3 * lb.newW * lb.newH) / (W * H);
    const meanOfMeans = mean.data.reduce((a, v) => a + v, 0) / mean.data.length;
    expect(meanOfMeans).toBeCloseTo(avg, 6);
    const px = saliencyToFrame(g, lb, W, H);
    expect(px.length).toBe(W * H);
    for (const i of [0, 12345, W * H - 1]) expect(px[i]).toBeCloseTo(avg, 5);
  });

  test('odd-sized frame: edge MBs are averaged over their clipped area', () => {
    const W = 200, H = 100; // 13×7 MBs, last column 8 px wide, last row 4 px tall
    const lb = letterboxFor(W, H);
    const g = new Float32Array(3 * P).fill(1);
    const mean = reduceToMacroblocks(g, lb, W, H);
    expect(mbGrid(W, H)).toEqual({ rows: 7, cols: 13 });
    const density = (3 * lb.newW * lb.newH) / (W * H);
    // interior and clipped edge MBs have the same density (within the nearest-pixel assignment granularity)
    for (const i of [0, 12, 6 * 13, 6 * 13 + 12]) expect(Math.abs(mean.data[i] / density - 1)).toBeLessThan(0.15);
    expect(() => reduceToMacroblocks(g, lb, 202, 100)).toThrow(RangeError);
  });

  test('pixel map per-MB sums ≈ MB reduction on a real-looking gradient', () => {
    const W = 768, H = 576;
    const lb = letterboxFor(W, H);
    const g = new Float32Array(3 * P);
    for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) g[y * S + x] = Math.sin(x / 37) * Math.cos(y / 23) + (x > 200 && x < 260 && y > 100 && y < 140 ? 5 : 0);
    const px = saliencyToFrame(g, lb, W, H);
    const viaPx = weightByPixelDiffFree(px, W, H);
    const direct = reduceToMacroblocks(g, lb, W, H, { reduce: 'sum' });
    const tot = (a: Float32Array) => a.reduce((s, v) => s + v, 0);
    expect(Math.abs(tot(viaPx.data) / tot(direct.data) - 1)).toBeLessThan(0.02);
    // strongest MB is the same
    const argmax = (a: Float32Array) => a.indexOf(Math.max(...a));
    expect(Math.abs(viaPx.data[argmax(direct.data)] / direct.data[argmax(direct.data)] - 1)).toBeLessThan(0.35);
    const inSal = inputSaliency(g);
    expect(inSal[120 * S + 230]).toBeCloseTo(Math.abs(g[120 * S + 230]), 5);
  });
});

/** per-MB sum of a per-pixel map (via weightByPixelDiff with a constant |HQ−LQ| = 1) */
function weightByPixelDiffFree(px: Float32Array, W: number, H: number): MbMap {
  const hq: YuvFrame = { width: W, height: H, ptsMs: 0, data: new Uint8Array(W * H * 1.5) };
  const lq: YuvFrame = { width: W, height: H, ptsMs: 0, data: new Uint8Array(W * H * 1.5) };
  lq.data.fill(1, 0, W * H); // ΔY = 1, ΔU = ΔV = 0
  return weightByPixelDiff(px, hq, lq);
}

describe('weightByPixelDiff', () => {
  test('Σ saliency·|ΔY|+|ΔU|+|ΔV| per MB, known answer', () => {
    const W = 32, H = 32;
    const mk = () => ({ width: W, height: H, ptsMs: 0, data: new Uint8Array(W * H * 1.5).fill(100) });
    const hq = mk(), lq = mk();
    lq.data[5 * W + 20] = 110; // ΔY = 10 at (20,5) → MB (0,1)
    lq.data[W * H + 8 * 16 + 1] = 97; // ΔU = 3 at chroma (1,8) → luma (2..3, 16..17) → MB (1,0), 4 pixels
    const sal = new Float32Array(W * H).fill(2);
    const m = weightByPixelDiff(sal, hq, lq);
    expect(Array.from(m.data)).toEqual([0, 20, 24, 0]);
    expect(Array.from(weightByPixelDiff(undefined, hq, lq).data)).toEqual([0, 10, 12, 0]);
    expect(weightByPixelDiff(undefined, hq, lq, { reduce: 'mean' }).data[1]).toBeCloseTo(10 / 256);
    expect(() => weightByPixelDiff(new Float32Array(3), hq, lq)).toThrow(RangeError);
  });
});

describe('MB map wire format', () => {
  function checkRoundTrip(map: MbMap, floorRatio?: number) {
    const buf = encodeMbMap(map, { floorRatio });
    const back = decodeMbMap(buf);
    expect(back.rows).toBe(map.rows); expect(back.cols).toBe(map.cols);
    let max = 0, signed = false;
    for (const v of map.data) { max = Math.max(max, Math.abs(v)); if (v < 0) signed = true; }
    const bound = mbMapErrorBound(max, floorRatio, signed);
    for (let i = 0; i < map.data.length; i++) {
      const v = map.data[i], e = Math.abs(back.data[i] - v);
      const allowed = Math.max(bound.absFloor, Math.abs(v) * bound.relative) * (1 + 1e-5);
      if (e > allowed) throw new Error(`value ${v} decoded as ${back.data[i]} (err ${e} > ${allowed})`);
      if (v !== 0 && back.data[i] !== 0) expect(Math.sign(back.data[i])).toBe(Math.sign(v));
    }
    return buf;
  }
  test('round trip of a log-uniform saliency map within the stated bound; bytes per frame', () => {
    const r = rng(3);
    const map: MbMap = { rows: 45, cols: 80, data: new Float32Array(45 * 80) };
    for (let i = 0; i < map.data.length; i++) map.data[i] = r() < 0.2 ? 0 : 10 ** (r() * 8 - 6);
    const buf = checkRoundTrip(map);
    expect(mbMapErrorBound(1).relative).toBeLessThan(0.02);
    expect(buf.length).toBe(mbMapWireBytes(map));
    expect(buf.length).toBeLessThan(45 * 80); // < 1 byte per MB even for noisy data
    // a sparse map (typical saliency) compresses far better
    const sparse: MbMap = { rows: 45, cols: 80, data: new Float32Array(45 * 80) };
    for (let i = 0; i < 200; i++) sparse.data[(i * 37) % sparse.data.length] = 0.01 * (1 + (i % 5));
    expect(checkRoundTrip(sparse).length).toBeLessThan(300);
  });
  test('signed maps, zeros, coarse floor, bad input', () => {
    const r = rng(9);
    const signed: MbMap = { rows: 7, cols: 13, data: Float32Array.from({ length: 91 }, () => (r() - 0.5) * 10 ** (r() * 4)) };
    checkRoundTrip(signed);
    checkRoundTrip(signed, 1e-2);
    const zeros: MbMap = { rows: 3, cols: 4, data: new Float32Array(12) };
    expect(Array.from(decodeMbMap(encodeMbMap(zeros)).data)).toEqual(new Array(12).fill(0));
    expect(() => encodeMbMap({ rows: 2, cols: 2, data: new Float32Array(3) })).toThrow(RangeError);
    expect(() => encodeMbMap({ rows: 1, cols: 1, data: Float32Array.of(NaN) })).toThrow(RangeError);
    const bad = Buffer.from(encodeMbMap(zeros)); bad[0] = 0;
    expect(() => decodeMbMap(bad)).toThrow(/magic/);
  });
  test('hostile maps: a small body that inflates past rows×cols, a huge declared grid, a NaN scale', () => {
    const good = encodeMbMap({ rows: 3, cols: 4, data: Float32Array.from({ length: 12 }, (_, i) => i + 1) });
    // 64 MiB of zeros deflate to ~64 kB: with the header's 3×4 grid only 12 bytes may be inflated
    const bomb = Buffer.concat([good.subarray(0, 16), deflateRawSync(Buffer.alloc(64 << 20), { level: 9 })]);
    expect(bomb.length).toBeLessThan(100_000);
    expect(() => decodeMbMap(bomb)).toThrow(/does not inflate to 3x4/);
    // 65535×65535 declared: rejected by the header (more than the largest frame's grid) before inflating, not a 4 GB allocation
    const huge = Buffer.from(good); huge.writeUInt16LE(65535, 4); huge.writeUInt16LE(65535, 6);
    expect(() => decodeMbMap(huge)).toThrow(/declares 65535x65535 = \d+ cells, more than/);
    expect(() => decodeMbMap(huge, { rows: 3, cols: 4 })).toThrow(/MB map is 65535x65535, expected 3x4/);
    const nan = Buffer.from(good); nan.writeFloatLE(NaN, 8);
    expect(() => decodeMbMap(nan)).toThrow(/scale out of range/);
    const rho = Buffer.from(good); rho.writeFloatLE(0, 12);
    expect(() => decodeMbMap(rho)).toThrow(/scale out of range/);
    expect(Array.from(decodeMbMap(good).data).every((v, i) => Math.abs(v - (i + 1)) <= 0.05 * (i + 1))).toBe(true);
  });
});

describe('DNNGrad graph: forward, OneAdapt proxy and backward in one session (real frames)', () => {
  // campus-576p.avi (OpenCV sample): a street scene with people and cars, letterboxed as the server does
  const frames = loadFrames(VIDEOS.campus, 2, { startS: 60, fps: 2 });
  let det: Detector;
  let model: ProxyGradModel;
  let cacheDir: string;
  beforeAll(async () => {
    cacheDir = mkdtempSync(join(tmpdir(), 'dnngrad-cache-'));
    det = await Detector.load(requireFile(DETECTOR_MODEL), { device: 'cpu', threads: 2 });
    model = await ProxyGradModel.load(DETECTOR_MODEL, { proxy: oneAdaptProxyGraph(), intraOpNumThreads: 2, cacheDir });
  });
  afterAll(async () => {
    await det?.release();
    await model?.release();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  test('one run gives the detector output, the proxy of that output, and a gradient that matches finite differences of the product proxy', async () => {
    const { input } = preprocess(frames[0]);
    const r = await model.run(input);
    const raw = await det.runRaw(Float32Array.from(input));
    let maxDiff = 0;
    for (let i = 0; i < raw.length; i++) maxDiff = Math.max(maxDiff, Math.abs(r.output[i] - raw[i]));
    expect(maxDiff).toBeLessThan(1e-3); // same network (raw box offsets are O(1..10), scores in [0,1])
    const js = oneAdaptProxy(raw);
    expect(js.value).toBeGreaterThan(1); // confident detections in this frame
    expect(Math.abs(r.proxy - js.value) / js.value).toBeLessThan(1e-3); // float32 graph sum vs float64 JS sum
    // f = the product's proxy (JS, float64) on the plain detector's output: independent of the gradient graph
    const f = async (x: Float32Array): Promise<number> => oneAdaptProxy(await det.runRaw(x)).value;
    const opts = { directions: 4, coordinates: 2, eps: 0.01, coordEps: 0.5 };
    const ok = await finiteDifferenceCheck(f, input, r.gradInput, opts);
    console.log(`DNNGrad graph vs FD on campus frame: relErr=${ok.relErr.toExponential(2)} checks=${JSON.stringify(ok.checks)}`);
    expect(ok.checks.every((c) => Math.abs(c.analytic) > 1e-4)).toBe(true);
    expect(ok.relErr).toBeLessThan(1e-2);
    // negative control on the same frame: wrong gradients must fail the same check
    const S = 416 * 416;
    const other = (await model.run(preprocess(frames[1]).input)).gradInput;
    const wrong: Record<string, Float32Array> = {
      'scaled by 1.1': r.gradInput.map((g) => 1.1 * g),
      'B and R planes swapped': r.gradInput.map((_, i) => r.gradInput[(i + 2 * S) % (3 * S)]),
      'of another frame': other,
    };
    for (const [what, g] of Object.entries(wrong)) {
      const bad = await finiteDifferenceCheck(f, input, g, { ...opts, directions: 2, coordinates: 0 });
      if (!(bad.relErr > 3e-2)) throw new Error(`checker accepted a gradient ${what} (relErr ${bad.relErr})`);
    }
  }, 400_000);

  test('class and size filters: in-graph proxy equals the JS proxy', async () => {
    const { input } = preprocess(frames[0]);
    const raw = await det.runRaw(Float32Array.from(input));
    for (const o of [{ classes: ROAD_CLASSES }, { classes: PERSON_CLASSES, minBoxArea: 400 }, { minBoxArea: 2000, sharpness: 10, centre: 0.4 }]) {
      const m = await ProxyGradModel.load(DETECTOR_MODEL, { proxy: oneAdaptProxyGraph(o), intraOpNumThreads: 2 });
      try {
        const r = await m.run(input);
        const js = oneAdaptProxy(raw, o).value;
        expect(js).toBeGreaterThan(0.5);
        expect(Math.abs(r.proxy - js) / js).toBeLessThan(1e-3);
        // the gradient is that of the filtered proxy: it differs from the unfiltered one
        expect(r.gradInput.some((g, i) => Math.abs(g) > 1e-6)).toBe(true);
      } finally {
        await m.release();
      }
    }
    expect(() => oneAdaptProxyGraph({ classes: [80] })).toThrow(RangeError);
  }, 300_000);

  test('the generated graph is cached on disk by detector hash and transform version, and rebuilt when invalid', async () => {
    expect(model.fromCache).toBe(false);
    const files = readdirSync(cacheDir).filter((f) => f.endsWith('.onnx'));
    expect(files).toHaveLength(1);
    const again = await ProxyGradModel.load(DETECTOR_MODEL, { proxy: oneAdaptProxyGraph(), intraOpNumThreads: 2, cacheDir });
    const { input } = preprocess(frames[0]);
    try {
      expect(again.fromCache).toBe(true);
      const [a, b] = [await model.run(input), await again.run(input)];
      expect(b.proxy).toBe(a.proxy);
      expect(b.gradInput).toEqual(a.gradInput);
    } finally {
      await again.release();
    }
    // another proxy is another key; a different detector file is another key
    const roads = await ProxyGradModel.load(DETECTOR_MODEL, { proxy: oneAdaptProxyGraph({ classes: PERSON_CLASSES }), cacheDir });
    expect(roads.fromCache).toBe(false);
    await roads.release();
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.onnx'))).toHaveLength(2);
    const pm = decodeModel(new Uint8Array(readFileSync(DETECTOR_MODEL)));
    const w0 = pm.graph.initializer.find((t: { rawData?: Uint8Array }) => (t.rawData?.length ?? 0) > 16);
    w0.rawData[0] ^= 1; // one weight's lowest mantissa bit: same graph, different file
    const tweaked = encodeModel(pm);
    const m2 = await ProxyGradModel.fromBytes(tweaked, { proxy: oneAdaptProxyGraph(), cacheDir });
    expect(m2.fromCache).toBe(false);
    await m2.release();
    // a corrupt cache file is rebuilt, not trusted
    const file = join(cacheDir, files[0]);
    writeFileSync(file, Buffer.from('not a model'));
    const m3 = await ProxyGradModel.load(DETECTOR_MODEL, { proxy: oneAdaptProxyGraph(), cacheDir });
    expect(m3.fromCache).toBe(false);
    expect((await m3.run(input)).proxy).toBeCloseTo((await model.run(input)).proxy, 3);
    await m3.release();
  }, 300_000);

  test('SegmentAnalyzer: DNNGrad detections are the detector\'s, and close() releases both sessions', async () => {
    const an = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, threads: 2, cacheDir });
    expect(an.gradFromCache).toBe(true);
    const g = await an.dnnGrad(frames[0]);
    const d = await det.detect(frames[0]);
    expect(g.detections.map((x) => x.classId)).toEqual(d.detections.map((x) => x.classId));
    expect(g.map.rows).toBe(36); expect(g.map.cols).toBe(48);
    await an.close();
    await expect(an.dnnGrad(frames[0])).rejects.toThrow();
    await expect(an.detector.detect(frames[0])).rejects.toThrow();
  });
});

test('a cache folder that cannot be written (full disk, a file in its place): the graph runs from memory, the reason is reported', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dnngrad-nocache-'));
  try {
    writeFileSync(join(dir, 'not-a-folder'), 'x');
    const errors: Error[] = [];
    const m = await ProxyGradModel.load(DETECTOR_MODEL, { proxy: oneAdaptProxyGraph(), cacheDir: join(dir, 'not-a-folder', 'cache'), onCacheError: (e) => errors.push(e) });
    try {
      expect(m.fromCache).toBe(false);
      expect(errors).toHaveLength(1);
      expect(errors[0].message).toMatch(/cannot write the gradient model cache .*not-a-folder/);
      const r = await m.run(new Float32Array(3 * 416 * 416).fill(114));
      expect(r.gradInput.length).toBe(3 * 416 * 416);
    } finally {
      await m.release();
    }
    expect(readdirSync(dir)).toEqual(['not-a-folder']); // nothing half-written left behind
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);
