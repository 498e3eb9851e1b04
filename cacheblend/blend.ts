/**
 * Prefill with reused chunk KV caches — full prefill, full reuse, prefix caching and CacheBlend are one loop:
 *
 * - The context is a list of segments (system prefix, event-log chunks, the question). A segment with a `hash`
 *   has K/V in the KvStore, computed alone at positions 0..L−1 (or, for a prefix cache, in place); at load its
 *   keys are re-rotated to where the segment now sits (rope.ts). Segments without a cache are always computed.
 * - Per layer, a set S of tokens is recomputed: their fresh K/V overwrite the cached rows, and each runs attention
 *   under the exact causal mask (a token at position p sees rows 0..p: fresh where recomputed, cached elsewhere),
 *   then the MLP. Tokens outside S keep their cached K/V; their hidden states are not needed.
 * - Without selection, S = the uncached tokens at every layer (full reuse, or prefix caching when only the prefix
 *   has a cache; full prefill when nothing has). With selection (CacheBlend), S = all tokens until the first
 *   check layer; at each check layer the K (or V) of the tokens in S is computed cheaply (`qkv` graph), compared
 *   with the cached one, and S shrinks to the `ratio` share of cached tokens that deviate most (HKVD), plus the
 *   uncached tokens. Several check layers with falling ratios = the paper's gradual filtering.
 * - Loading is pipelined layer by layer, as in LMCache's blender: a generator yields layer l's cached K/V (disk read,
 *   then RoPE fix) while the loop computes layer l−1.
 *
 * Unlike LMCache/CacheBlend's vLLM code, which use FlashAttention's bottom-right causal mask after selection, the
 * mask here is exact per kept token, so 100 % recompute is exactly full prefill.
 */
import type { BlendModel } from './model.ts';
import { rerotate, ropeInvFreq } from './rope.ts';
import type { ChunkReader, KvStore } from './store.ts';

export interface Segment {
  tokens: readonly number[];
  /** KV store key; absent = computed fresh */
  hash?: string;
  /** position the cached K/V were computed at (0 for chunks cached alone; the offset for a prefix cache) */
  cachedAt?: number;
}

export interface Selection {
  /** layers at which tokens are (re)selected, ascending; CacheBlend's default is [1] */
  checkLayers: number[];
  /** share of cached tokens kept at each check layer (same length as checkLayers) */
  ratios: number[];
  /** compare K (after RoPE; LMCache) or V (the original CacheBlend code) */
  by: 'k' | 'v';
}

export interface PrefillResult {
  /** logits of the last context token */
  logits: Float32Array;
  /** per layer K and V, [capacity, Hkv, hd]; rows ≥ n are free for decoding */
  k: Float32Array[];
  v: Float32Array[];
  n: number;
  capacity: number;
  /** tokens recomputed at each layer */
  recomputed: number[];
  /** tokens that had a cache */
  cachedTokens: number;
  /** ms spent waiting for cached K/V (load + RoPE) that compute did not hide */
  loadWaitMs: number;
}

/** CacheBlend's default: check at layer 1, keep 15 % of the cached tokens, compare keys. */
export const DEFAULT_SELECTION: Selection = { checkLayers: [1], ratios: [0.15], by: 'k' };

export function validateSelection(s: Selection, layers: number): void {
  if (s.checkLayers.length === 0 || s.checkLayers.length !== s.ratios.length) throw new RangeError('selection needs one ratio per check layer');
  s.checkLayers.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 1 || l >= layers) throw new RangeError(`check layer ${l} outside 1..${layers - 1}`);
    if (i > 0 && l <= s.checkLayers[i - 1]) throw new RangeError('check layers must be ascending');
  });
  for (const r of s.ratios) if (!(r >= 0 && r <= 1)) throw new RangeError(`ratio ${r} outside [0, 1]`);
}

/** Causal mask rows for tokens at `pos` over `cap` context rows: row r visible iff r ≤ pos. */
function causalMask(pos: readonly number[], cap: number): Float32Array {
  const m = new Float32Array(pos.length * cap).fill(-Infinity);
  pos.forEach((p, t) => m.fill(0, t * cap, t * cap + p + 1));
  return m;
}

/** Squared distance per token between fresh [T, W] and cached rows (at `rows`) of a [cap, W] buffer. */
function deviation(fresh: Float32Array, cached: Float32Array, rows: readonly number[], W: number): Float64Array {
  const out = new Float64Array(rows.length);
  rows.forEach((r, t) => {
    let s = 0;
    for (let j = 0; j < W; j++) {
      const d = fresh[t * W + j] - cached[r * W + j];
      s += d * d;
    }
    out[t] = s;
  });
  return out;
}

/**
 * Async generator over layers: layer l's cached K/V placed into [cap, W] buffers at the segments' offsets, keys
 * re-rotated from `cachedAt` to the new offset. Layers in `skip` (fully recomputed anyway) are not read.
 */
async function* cachedLayers(reader: ChunkReader | null, offsets: number[], cachedAt: number[], layers: number, cap: number, W: number, model: BlendModel, skip: (l: number) => boolean): AsyncGenerator<{ k: Float32Array; v: Float32Array }> {
  const { kvHeads, headDim, ropeTheta } = model.shape;
  const inv = ropeInvFreq(headDim, ropeTheta);
  for (let l = 0; l < layers; l++) {
    const k = new Float32Array(cap * W);
    const v = new Float32Array(cap * W);
    if (reader && !skip(l)) {
      const parts = await reader.layer(l);
      parts.forEach((p, i) => {
        k.set(p.k, offsets[i] * W);
        v.set(p.v, offsets[i] * W);
        rerotate(k, offsets[i] * W, p.k.length / W, kvHeads, headDim, offsets[i] - cachedAt[i], inv);
      });
    }
    yield { k, v };
  }
}

/**
 * Prefill `segments` with the model, reusing cached segments from `store`. `selection` = null: recompute only
 * uncached tokens (full reuse / prefix caching / full prefill); otherwise CacheBlend. `extra` rows are left free
 * in the returned K/V buffers for decoding.
 */
export async function prefill(model: BlendModel, store: KvStore | null, segments: readonly Segment[], selection: Selection | null, extra = 16): Promise<PrefillResult> {
  const { layers, d, kvWidth: W } = model.shape;
  if (selection) validateSelection(selection, layers);
  const tokens: number[] = [];
  const cachedRow: boolean[] = [];
  const offsets: number[] = [];
  const cachedAt: number[] = [];
  const hashes: string[] = [];
  for (const s of segments) {
    if (s.hash) {
      if (!store) throw new Error('a cached segment needs a KV store');
      hashes.push(s.hash);
      offsets.push(tokens.length);
      cachedAt.push(s.cachedAt ?? 0);
    }
    for (const t of s.tokens) {
      tokens.push(t);
      cachedRow.push(!!s.hash);
    }
  }
  const n = tokens.length;
  if (n === 0) throw new RangeError('empty context');
  if (!cachedRow[n - 1]) {
    /* the last token must be computed: its logits are the answer's first token */
  } else throw new RangeError('the last segment (the question) must not be cached');
  const cap = n + extra;
  const allRows = tokens.map((_, i) => i);
  const uncached = allRows.filter((i) => !cachedRow[i]);
  const cachedIdx = allRows.filter((i) => cachedRow[i]);
  const firstCheck = selection ? selection.checkLayers[0] : 0; // layers before it are recomputed for every token
  // S before the first check layer: every token under CacheBlend, else the uncached ones
  let S = selection ? allRows : uncached;
  let mask = causalMask(S, cap);

  const reader = hashes.length ? await store!.reader(hashes) : null;
  let loadWaitMs = 0;
  const recomputed: number[] = [];
  const K: Float32Array[] = [];
  const V: Float32Array[] = [];
  try {
    const gen = cachedLayers(reader, offsets, cachedAt, layers, cap, W, model, (l) => l < firstCheck);
    let pending = gen.next(); // start loading layer 0 before embedding
    const hidden = new Float32Array(n * d);
    hidden.set(await model.embed(tokens));
    for (let l = 0; l < layers; l++) {
      const t0 = performance.now();
      const cur = await pending;
      loadWaitMs += performance.now() - t0;
      if (cur.done) throw new Error('KV loader ended early');
      const { k, v } = cur.value;
      if (l + 1 < layers) pending = gen.next(); // load layer l+1 while layer l computes
      const ci = selection ? selection.checkLayers.indexOf(l) : -1;
      if (ci >= 0) {
        // HKVD: fresh K/V of the cached tokens still in S vs their cached K/V
        const cand = S.filter((i) => cachedRow[i]);
        const keep = Math.min(cand.length, Math.round(selection!.ratios[ci] * cachedIdx.length));
        let chosen: number[] = [];
        if (keep > 0) {
          const x = gather(hidden, cand, d);
          const fresh = await model.qkv(l, x, cand);
          const dev = deviation(selection!.by === 'k' ? fresh.k : fresh.v, selection!.by === 'k' ? k : v, cand, W);
          chosen = cand.map((row, t) => ({ row, dev: dev[t] })).sort((a, b) => b.dev - a.dev).slice(0, keep).map((c) => c.row);
        }
        const keepSet = new Set(chosen);
        S = allRows.filter((i) => !cachedRow[i] || keepSet.has(i));
        mask = causalMask(S, cap);
      }
      const out = await model.layer(l, gather(hidden, S, d), S, S, k, v, mask);
      S.forEach((row, t) => {
        hidden.set(out.y.subarray(t * d, (t + 1) * d), row * d);
        k.set(out.k.subarray(t * W, (t + 1) * W), row * W);
        v.set(out.v.subarray(t * W, (t + 1) * W), row * W);
      });
      recomputed.push(S.length);
      K.push(k);
      V.push(v);
    }
    const logits = await model.head(hidden.subarray((n - 1) * d, n * d), 1);
    return { logits, k: K, v: V, n, capacity: cap, recomputed, cachedTokens: cachedIdx.length, loadWaitMs };
  } finally {
    await reader?.close();
  }
}

function gather(src: Float32Array, rows: readonly number[], w: number): Float32Array {
  const out = new Float32Array(rows.length * w);
  rows.forEach((r, t) => out.set(src.subarray(r * w, (r + 1) * w), t * w));
  return out;
}

export function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/**
 * Greedy decoding from a prefill's K/V: yields each new token id as soon as it is known (the first comes from
 * the prefill's logits), stopping at <eos> or after `maxNew` tokens or when the K/V buffers are full.
 */
export async function* decode(model: BlendModel, pre: PrefillResult, maxNew = 12): AsyncGenerator<number> {
  const eos = model.id('<eos>');
  const { layers, kvWidth: W } = model.shape;
  let tok = argmax(pre.logits);
  for (let t = 0; t < maxNew; t++) {
    if (tok === eos) return;
    yield tok;
    const p = pre.n + t;
    if (p >= pre.capacity || t + 1 >= maxNew) return;
    let x = await model.embed([tok]);
    const mask = causalMask([p], pre.capacity);
    for (let l = 0; l < layers; l++) {
      const out = await model.layer(l, x, [p], [p], pre.k[l], pre.v[l], mask);
      pre.k[l].set(out.k, p * W);
      pre.v[l].set(out.v, p * W);
      x = out.y;
    }
    tok = argmax(await model.head(x, 1));
  }
}

/** K/V of a text chunk computed alone at positions 0..L−1, packed layer-major for the KvStore. */
export async function chunkKv(model: BlendModel, tokens: readonly number[]): Promise<Float32Array> {
  const pre = await prefillAlone(model, tokens);
  return packKv(pre, 0, tokens.length, model.shape.kvWidth);
}

/** Full prefill of tokens with nothing cached (also used to build prefix caches). */
export async function prefillAlone(model: BlendModel, tokens: readonly number[]): Promise<PrefillResult> {
  return prefill(model, null, [{ tokens }], null, 0);
}

/** Rows [from, from+len) of a prefill's K/V, layer-major: layer l = K then V. */
export function packKv(pre: PrefillResult, from: number, len: number, W: number): Float32Array {
  const out = new Float32Array(pre.k.length * 2 * len * W);
  pre.k.forEach((k, l) => {
    out.set(k.subarray(from * W, (from + len) * W), 2 * l * len * W);
    out.set(pre.v[l].subarray(from * W, (from + len) * W), (2 * l + 1) * len * W);
  });
  return out;
}
