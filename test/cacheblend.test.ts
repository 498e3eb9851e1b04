/** CacheBlend core on the committed model and a held-out event-log question: exactness, reuse, RoPE, the KV store. */
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlendModel } from '../cacheblend/model.ts';
import { chunkKv, decode, prefill, prefillAlone, PrefillWorkspace, topK, validateSelection, type PrefillResult } from '../cacheblend/blend.ts';
import { ensureAll, ensureChunk, segmentsFor } from '../cacheblend/context.ts';
import { rerotate, ropeInvFreq } from '../cacheblend/rope.ts';
import { chunkHash, KvStore } from '../cacheblend/store.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const evalFile = path.resolve(here, '..', 'training', 'cacheblend', 'questions', 'eval.jsonl');
const example = JSON.parse(readFileSync(evalFile, 'utf8').split('\n')[0]) as { chunks: { text: string }[]; question: string; answer: string };
const chunks = example.chunks.map((c) => c.text);

const maxAbsDiff = (a: Float32Array, b: Float32Array): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

let model: BlendModel;
let dir: string;
let store: KvStore;
let full: PrefillResult;

beforeAll(async () => {
  model = await BlendModel.load(undefined, 1);
  dir = mkdtempSync(path.join(os.tmpdir(), 'cb-'));
  store = new KvStore(dir, 0); // no RAM tier: every cached layer is read from disk
  await ensureAll(model, store, chunks);
  full = await prefill(model, store, segmentsFor(model, 'full_prefill', chunks, example.question), null);
});

afterAll(async () => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
  await model.release();
});

test('per-layer ONNX graphs reproduce PyTorch (export reference prompt, last-token logits)', async () => {
  const ref = model.meta.reference;
  const pre = await prefillAlone(model, ref.tokens);
  expect(maxAbsDiff(pre.logits, Float32Array.from(ref.last_logits))).toBeLessThanOrEqual(1e-4);
});

test('CacheBlend with 100% recompute equals full prefill; with 0% it equals full reuse, which differs', async () => {
  const segs = segmentsFor(model, 'cacheblend', chunks, example.question);
  const all = await prefill(model, store, segs, { checkLayers: [1], ratios: [1], by: 'k' });
  expect(maxAbsDiff(all.logits, full.logits)).toBeLessThanOrEqual(1e-4);
  expect(all.recomputed).toEqual(Array(model.shape.layers).fill(full.n));

  const reuse = await prefill(model, store, segs, null);
  const none = await prefill(model, store, segs, { checkLayers: [1], ratios: [0], by: 'v' });
  expect(maxAbsDiff(none.logits, reuse.logits)).toBeLessThanOrEqual(1e-4);
  const q = segs[segs.length - 1].tokens.length;
  expect(reuse.recomputed).toEqual(Array(model.shape.layers).fill(q));
  expect(maxAbsDiff(reuse.logits, full.logits)).toBeGreaterThan(1e-3); // reusing caches as is changes the output
});

test('CacheBlend at 15% recomputes the question plus 15% of cached tokens after the check layer, nearer full prefill than full reuse', async () => {
  const segs = segmentsFor(model, 'cacheblend', chunks, example.question);
  const q = segs[segs.length - 1].tokens.length;
  const blend = await prefill(model, store, segs, { checkLayers: [1], ratios: [0.15], by: 'k' });
  const keep = Math.round(0.15 * blend.cachedTokens);
  expect(blend.recomputed).toEqual([full.n, ...Array(model.shape.layers - 1).fill(q + keep)]);
  const reuse = await prefill(model, store, segs, null);
  // KV of the last layer: blended cache is closer to the full-prefill cache than the reused one
  const L = model.shape.layers - 1;
  const dist = (k: Float32Array): number => k.subarray(0, full.n * model.shape.kvWidth).reduce((s, v, i) => s + (v - full.k[L][i]) ** 2, 0);
  expect(dist(blend.k[L])).toBeLessThan(dist(reuse.k[L]));
  // gradual filtering narrows layer by layer
  const grad = await prefill(model, store, segs, { checkLayers: [1, 2, 3], ratios: [0.3, 0.2, 0.15], by: 'k' });
  expect(grad.recomputed.slice(0, 4)).toEqual([full.n, q + Math.round(0.3 * grad.cachedTokens), q + Math.round(0.2 * grad.cachedTokens), q + keep]);
});

test('prefills into a reused workspace give the same results as fresh buffers, one prefill at a time', async () => {
  const ws = new PrefillWorkspace();
  const segs = segmentsFor(model, 'cacheblend', chunks, example.question);
  const sel = { checkLayers: [1], ratios: [0.15], by: 'k' as const };
  const fresh = await prefill(model, store, segs, sel);
  // a larger prefill first leaves stale rows behind in the reused buffers
  const big = await prefill(model, store, segmentsFor(model, 'full_prefill', chunks, example.question), null, { extra: 64, ws });
  expect(maxAbsDiff(big.logits, full.logits)).toBeLessThanOrEqual(1e-5);
  const again = await prefill(model, store, segs, sel, { ws });
  expect(maxAbsDiff(again.logits, fresh.logits)).toBe(0);
  for (let l = 0; l < model.shape.layers; l++) expect(maxAbsDiff(again.k[l], fresh.k[l])).toBe(0);
  const a: number[] = [];
  for await (const t of decode(model, again)) a.push(t);
  const b: number[] = [];
  for await (const t of decode(model, fresh)) b.push(t);
  expect(a).toEqual(b);
  // reading the caches layer by layer (LMCache's granularity) loads the same K/V
  const perLayer = await prefill(model, store, segs, sel, { loadBy: 'layer' });
  expect(maxAbsDiff(perLayer.logits, fresh.logits)).toBe(0);
  const rows = fresh.n * model.shape.kvWidth; // (rows after the context hold what decoding wrote)
  for (let l = 0; l < model.shape.layers; l++) expect(maxAbsDiff(perLayer.v[l].subarray(0, rows), fresh.v[l].subarray(0, rows))).toBe(0);
  // a second prefill while the first still runs is refused, and the workspace is free again afterwards
  const first = prefill(model, store, segs, sel, { ws });
  await expect(prefill(model, store, segs, sel, { ws })).rejects.toThrow(/in use/);
  await first;
  await expect(prefill(model, store, segs, null, { ws })).resolves.toBeDefined();
});

test('the fused layer-0 graph emits layer 0 and layer 1\'s probes of its output, equal to the separate graphs', async () => {
  expect(model.hasFusedProbe(0)).toBe(true);
  const toks = model.tokenize(chunks[0]).slice(0, 12);
  const T = toks.length;
  const W = model.shape.kvWidth;
  const x = model.embedInto(toks, new Float32Array(T * model.shape.d));
  const at = toks.map((_, i) => i + 5);
  const causal = Float32Array.from({ length: T * (T + 5) }, (_, i) => (i % (T + 5) <= Math.floor(i / (T + 5)) + 5 ? 0 : -Infinity));
  const ctx = () => new Float32Array((T + 5) * W);
  const plain = await model.layer(0, x, at, at, ctx(), ctx(), causal);
  for (const by of ['k', 'v'] as const) {
    const fused = await model.layerProbe(0, x, at, at, ctx(), ctx(), causal, by);
    expect(maxAbsDiff(fused.y, plain.y)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(fused.k, plain.k)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(fused.probe, await model.probe(1, plain.y, at, by))).toBeLessThanOrEqual(1e-5);
  }
  expect(model.hasFusedProbe(1)).toBe(false);
  await expect(model.layerProbe(1, x, at, at, ctx(), ctx(), causal, 'k')).rejects.toThrow(/no fused probe/);
});

test('the embedding table lookup equals the embedding graph', async () => {
  const toks = model.tokenize(chunks[0]);
  expect(maxAbsDiff(model.embedInto(toks, new Float32Array(toks.length * model.shape.d)), await model.embed(toks))).toBe(0);
  expect(() => model.embedInto([model.shape.vocab], new Float32Array(model.shape.d))).toThrow(RangeError);
});

test('a cached key re-rotated to a new position equals the key computed fresh there', async () => {
  // layer 0's K depends only on token and position, so the full prefill's layer-0 K of chunk j is the fresh key
  const W = model.shape.kvWidth;
  const inv = ropeInvFreq(model.shape.headDim, model.shape.ropeTheta);
  let offset = model.tokenize('<bos> log :').length;
  let worst = 0;
  for (const c of chunks.slice(0, 4)) {
    const toks = model.tokenize(c);
    const kv = await chunkKv(model, toks); // layer 0 K = first L·W floats, computed at positions 0..L−1
    const k0 = kv.slice(0, toks.length * W);
    rerotate(k0, 0, toks.length, model.shape.kvHeads, model.shape.headDim, offset, inv);
    worst = Math.max(worst, maxAbsDiff(k0, full.k[0].subarray(offset * W, (offset + toks.length) * W)));
    // without the rotation they differ
    expect(maxAbsDiff(kv.subarray(0, toks.length * W), full.k[0].subarray(offset * W, (offset + toks.length) * W))).toBeGreaterThan(1e-2);
    offset += toks.length;
  }
  expect(worst).toBeLessThanOrEqual(1e-5);
  // every layer's K projection: rotating K(pos) by δ = K(pos + δ) for arbitrary hidden states
  const T = 7;
  const x = Float32Array.from({ length: T * model.shape.d }, (_, i) => Math.sin(i * 0.37));
  const at = [0, 1, 2, 3, 4, 5, 6];
  const causal = Float32Array.from({ length: T * T }, (_, i) => (i % T <= Math.floor(i / T) ? 0 : -Infinity));
  for (let l = 0; l < model.shape.layers; l++) {
    const a = await model.probe(l, x, at, 'k');
    const b = await model.probe(l, x, at.map((p) => p + 300), 'k');
    const k = a.slice();
    rerotate(k, 0, T, model.shape.kvHeads, model.shape.headDim, 300, inv);
    expect(maxAbsDiff(k, b)).toBeLessThanOrEqual(1e-5);
    // the check layer's probes compute exactly the K and V the layer itself writes
    const full = await model.layer(l, x, at, at, new Float32Array(T * W), new Float32Array(T * W), causal);
    expect(maxAbsDiff(a, full.k)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(await model.probe(l, x, at, 'v'), full.v)).toBeLessThanOrEqual(1e-6);
  }
});

test('greedy decoding from a 100% blend equals decoding from full prefill', async () => {
  const segs = segmentsFor(model, 'cacheblend', chunks, example.question);
  const a: number[] = [];
  for await (const t of decode(model, await prefill(model, store, segs, { checkLayers: [1], ratios: [1], by: 'k' }))) a.push(t);
  const b: number[] = [];
  for await (const t of decode(model, await prefill(model, store, segmentsFor(model, 'full_prefill', chunks, example.question), null))) b.push(t);
  expect(a).toEqual(b);
  expect(a.length).toBeGreaterThan(0);
});

describe('KvStore', () => {
  test('disk and RAM tiers return the same layers; the SQLite index survives reopening; LRU eviction', async () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'cbs-'));
    try {
      const s = new KvStore(d, 1 << 20);
      const kv = Float32Array.from({ length: 3 * 2 * 5 * 4 }, (_, i) => i * 0.5);
      const h = chunkHash('m', [1, 2, 3, 4, 5]);
      expect(h).not.toBe(chunkHash('m', [1, 2, 3, 4, 6]));
      expect(h).not.toBe(chunkHash('other-model', [1, 2, 3, 4, 5]));
      s.put(h, 'five words of text', 5, 3, 4, kv);
      expect(() => s.put(h, 'x', 5, 3, 4, kv.subarray(1))).toThrow(RangeError);
      // layers 1..2 read straight into per-layer context buffers at row 3, from RAM and then from disk
      for (const ram of [true, false]) {
        if (!ram) s.clearRam();
        expect(s.inRam(h)).toBe(ram);
        const r = await s.reader([h]);
        const K = [0, 1, 2].map(() => new Float32Array(9 * 4).fill(-1));
        const V = [0, 1, 2].map(() => new Float32Array(9 * 4).fill(-1));
        await r.readLayers(1, 3, K, V, [3], 4);
        await r.close();
        for (const l of [1, 2]) {
          expect(Array.from(K[l].subarray(12, 32))).toEqual(Array.from(kv.subarray(2 * l * 20, (2 * l + 1) * 20)));
          expect(Array.from(V[l].subarray(12, 32))).toEqual(Array.from(kv.subarray((2 * l + 1) * 20, (2 * l + 2) * 20)));
          expect(K[l][11]).toBe(-1); // rows outside the chunk untouched
          expect(V[l][32]).toBe(-1);
        }
        expect(K[0].every((x) => x === -1)).toBe(true); // layer 0 not asked for, not read
        await expect(r.readLayers(1, 3, K, V, [3], 4)).rejects.toThrow(/closed/);
        const r2 = await s.reader([h]);
        await expect(r2.readLayers(1, 3, K, V, [7], 4)).rejects.toThrow(/does not fit/);
        await expect(r2.readLayers(2, 4, K, V, [3], 4)).rejects.toThrow(RangeError);
        await r2.close();
      }
      s.close();
      const s2 = new KvStore(d, 0);
      expect(s2.meta(h)).toMatchObject({ tokens: 5, layers: 3, width: 4, bytes: kv.byteLength, text: 'five words of text' });
      const h2 = chunkHash('m', [9]);
      s2.put(h2, 'nine', 1, 3, 4, new Float32Array(24));
      s2.touch([h2]);
      expect(s2.evict(kv.byteLength)).toBe(1); // only one fits: the older is dropped
      expect(s2.has(h)).toBe(false);
      await expect(s2.reader([h])).rejects.toThrow(/not in the KV store/);
      s2.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('open chunk files stay within the LRU limit, never mix chunks up, and an evicted chunk still reads for a reader that holds it', async () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'cbf-'));
    const openFds = (): number => readdirSync('/proc/self/fd').length;
    try {
      const s = new KvStore(d, 0, 2); // at most 2 idle files kept open
      const base = openFds();
      const kvOf = (c: number): Float32Array => Float32Array.from({ length: 2 * 2 * 3 * 4 }, (_, i) => c * 1000 + i);
      const hs = [0, 1, 2, 3, 4].map((c) => {
        const h = chunkHash('m', [c]);
        s.put(h, `chunk ${c}`, 3, 2, 4, kvOf(c));
        return h;
      });
      const readAll = async (hashes: string[]): Promise<Float32Array[]> => {
        const r = await s.reader(hashes);
        const K = [0, 1].map(() => new Float32Array(hashes.length * 3 * 4));
        const V = [0, 1].map(() => new Float32Array(hashes.length * 3 * 4));
        await r.readLayers(0, 2, K, V, hashes.map((_, i) => 3 * i), 4);
        await r.close();
        return K;
      };
      for (let round = 0; round < 3; round++) {
        for (const [c, h] of hs.entries()) {
          const K = await readAll([h]);
          expect(Array.from(K[1])).toEqual(Array.from(kvOf(c).subarray(24, 36))); // layer 1's K of chunk c
          expect(openFds() - base).toBeLessThanOrEqual(2);
        }
      }
      const K = await readAll([hs[3], hs[1], hs[4]]); // several at once, in any order
      expect(Array.from(K[0].subarray(12, 24))).toEqual(Array.from(kvOf(1).subarray(0, 12)));
      // a reader holding chunk 0 while it is evicted still reads it; new readers are refused; its fd closes after
      const held = await s.reader([hs[0]]);
      s.touch(hs.slice(1));
      expect(s.evict(4 * kvOf(0).byteLength)).toBe(1);
      const K0 = [0, 1].map(() => new Float32Array(12));
      await held.readLayers(0, 2, K0, [new Float32Array(12), new Float32Array(12)], [0], 4);
      expect(Array.from(K0[1])).toEqual(Array.from(kvOf(0).subarray(24, 36)));
      await expect(s.reader([hs[0]])).rejects.toThrow(/not in the KV store/);
      // stored again (new content under the same key) while the old reader is open: new readers see the new file
      s.put(hs[0], 'chunk 0 again', 3, 2, 4, kvOf(9));
      const K9 = await readAll([hs[0]]);
      expect(Array.from(K9[1])).toEqual(Array.from(kvOf(9).subarray(24, 36)));
      await held.readLayers(0, 2, K0, [new Float32Array(12), new Float32Array(12)], [0], 4);
      expect(Array.from(K0[1])).toEqual(Array.from(kvOf(0).subarray(24, 36))); // the held reader keeps its file
      await held.close();
      expect(openFds() - base).toBeLessThanOrEqual(2);
      s.close();
      expect(openFds()).toBeLessThanOrEqual(base - 1); // the index closed too, and no chunk file left open
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('a chunk file that is short or missing (power loss, deleted by hand) is dropped and recomputed, not a failed question', async () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'cbs-short-'));
    try {
      const s = new KvStore(d, 0); // no RAM tier: reads come from the files
      const h = await ensureChunk(model, s, chunks[1]);
      const bytes = s.meta(h)!.bytes;
      const file = readdirSync(d).find((f) => f.startsWith(h));
      expect(file).toBeDefined();
      truncateSync(path.join(d, file!), Math.floor(bytes / 2));
      expect(s.has(h)).toBe(false); // the row went with the bad file
      expect(await ensureChunk(model, s, chunks[1])).toBe(h); // recomputed
      expect(s.has(h)).toBe(true);
      const r = await s.reader([h]);
      const W = model.shape.kvWidth;
      const T = s.meta(h)!.tokens;
      const K = Array.from({ length: model.shape.layers }, () => new Float32Array(T * W));
      const V = Array.from({ length: model.shape.layers }, () => new Float32Array(T * W));
      await r.readLayers(0, model.shape.layers, K, V, [0], W); // no short read
      await r.close();
      rmSync(path.join(d, file!));
      expect(s.has(h)).toBe(false);
      expect(readdirSync(d).filter((f) => f.endsWith('.tmp'))).toEqual([]);
      s.close();
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test('a chunk is computed once and found again by content', async () => {
    const before = store.stats().chunks;
    const h = await ensureChunk(model, store, chunks[0]);
    expect(store.stats().chunks).toBe(before);
    expect(store.meta(h)?.text).toBe(chunks[0]);
  });
});

test('topK picks the same tokens as sorting by deviation (descending) with ties by position', () => {
  let seed = 7;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + Math.floor(rnd() * 60);
    const vals = Float64Array.from({ length: n }, () => Math.floor(rnd() * 6)); // few distinct values: many ties
    const keep = Math.floor(rnd() * (n + 2));
    const ref = Array.from({ length: n }, (_, i) => i)
      .sort((a, b) => vals[b] - vals[a] || a - b)
      .slice(0, keep)
      .sort((a, b) => a - b);
    expect(topK(vals, keep)).toEqual(ref);
  }
  expect(() => topK(Float64Array.from([1, NaN, 2]), 1)).toThrow(RangeError);
});

test('bad selections are refused', () => {
  expect(() => validateSelection({ checkLayers: [0], ratios: [0.1], by: 'k' }, 6)).toThrow(RangeError);
  expect(() => validateSelection({ checkLayers: [2, 1], ratios: [0.1, 0.1], by: 'k' }, 6)).toThrow(RangeError);
  expect(() => validateSelection({ checkLayers: [1], ratios: [1.5], by: 'k' }, 6)).toThrow(RangeError);
  expect(() => validateSelection({ checkLayers: [1], ratios: [], by: 'k' }, 6)).toThrow(RangeError);
});
