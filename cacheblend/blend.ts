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
 *   check layer; at each check layer the K (or V) of the tokens in S is computed cheaply (a K-only or V-only probe graph), compared
 *   with the cached one, and S shrinks to the `ratio` share of cached tokens that deviate most (HKVD), plus the
 *   uncached tokens. Several check layers with falling ratios = the paper's gradual filtering.
 * - Loading is pipelined layer by layer, as in LMCache's blender: a generator yields layer l's cached K/V (disk read,
 *   then RoPE fix) while the loop computes layer l−1.
 *
 * Unlike LMCache/CacheBlend's vLLM code, which use FlashAttention's bottom-right causal mask after selection, the
 * mask here is exact per kept token, so 100 % recompute is exactly full prefill.
 */
import type { BlendModel, LayerOut } from './model.ts';
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

export interface PrefillOptions {
  /** rows left free after the context in the returned K/V buffers, for decoding (default 16) */
  extra?: number;
  /** reused buffers (see PrefillWorkspace); without one, buffers are allocated for this call */
  ws?: PrefillWorkspace;
  /**
   * How cached layers are read from disk: 'chunk' (default) = one vectored read per chunk for every needed layer,
   * issued before the embedding; 'layer' = one read per chunk and layer, layer l+1's issued while layer l
   * computes (LMCache's granularity). Both apply the RoPE fix layer by layer just before use.
   */
  loadBy?: 'chunk' | 'layer';
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
  return causalMaskInto(new Float32Array(pos.length * cap), pos, cap);
}

/**
 * Squared distance per token between fresh and cached K (or V): fresh rows [have.length, W] hold the tokens `have`
 * (ascending), the cached buffer [cap, W] holds every row; the result has one entry per token of `want`, a
 * subsequence of `have` (so a fused probe over more rows needs no repacking).
 */
function deviation(fresh: Float32Array, have: readonly number[], cached: Float32Array, want: readonly number[], W: number): Float64Array {
  const out = new Float64Array(want.length);
  const at = indexIn(have, want);
  for (let t = 0; t < want.length; t++) {
    let s = 0;
    for (let c = 0, f = at[t] * W, k = want[t] * W; c < W; c++) {
      const d = fresh[f + c] - cached[k + c];
      s += d * d;
    }
    out[t] = s;
  }
  return out;
}

/** For each row of `want`, its index in `have` (both ascending, want ⊆ have); throws if a row is missing. */
function indexIn(have: readonly number[], want: readonly number[]): Int32Array {
  const at = new Int32Array(want.length);
  let j = 0;
  for (let t = 0; t < want.length; t++) {
    while (have[j] !== want[t]) if (++j >= have.length) throw new Error(`row ${want[t]} missing (not among the rows computed)`);
    at[t] = j;
  }
  return at;
}

/**
 * Indices (ascending) of the `keep` largest values, ties broken towards lower indices — the same set as sorting by
 * (value desc, index asc) and taking the first `keep`, via one native numeric sort for the threshold instead of a
 * comparator sort (a JS comparator over ~500 tokens cost ~0.4 ms per question).
 */
export function topK(values: Float64Array, keep: number): number[] {
  const n = values.length;
  if (keep <= 0) return [];
  if (keep >= n) return Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < n; i++) if (Number.isNaN(values[i])) throw new RangeError('NaN deviation');
  const thr = Float64Array.from(values).sort()[n - keep]; // the keep-th largest
  let above = 0;
  for (let i = 0; i < n; i++) if (values[i] > thr) above++;
  let ties = keep - above; // values equal to the threshold taken, lowest indices first
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (values[i] > thr) out.push(i);
    else if (values[i] === thr && ties > 0) {
      out.push(i);
      ties--;
    }
  }
  return out;
}

/**
 * Buffers a prefill reuses instead of allocating them per call: each layer's K/V [cap, W], the hidden states and
 * the attention mask. Fresh memory costs a page fault per 4 KiB page on first touch — 3–15 µs each measured on the
 * 2-core CI VM, i.e. milliseconds per question for the ~5 MB a prefill touches — which is why vLLM and LMCache
 * work in preallocated KV memory. A prefill's K/V views stay valid until the workspace's next prefill, so one
 * workspace serves one prefill (and its decoding) at a time; `prefill` refuses a workspace that is in use.
 */
export class PrefillWorkspace {
  private k: Float32Array[] = [];
  private v: Float32Array[] = [];
  private hiddenBuf: Float32Array = new Float32Array(0);
  private maskBuf: Float32Array = new Float32Array(0);
  inUse = false;

  /** Per-layer K/V views of exactly cap·W floats. */
  kv(layers: number, cap: number, W: number): { k: Float32Array[]; v: Float32Array[] } {
    const need = cap * W;
    for (let l = 0; l < layers; l++) {
      this.k[l] = atLeast(this.k[l], need);
      this.v[l] = atLeast(this.v[l], need);
    }
    return { k: this.k.slice(0, layers).map((b) => b.subarray(0, need)), v: this.v.slice(0, layers).map((b) => b.subarray(0, need)) };
  }

  hidden(len: number): Float32Array {
    this.hiddenBuf = atLeast(this.hiddenBuf, len);
    return this.hiddenBuf.subarray(0, len);
  }

  mask(len: number): Float32Array {
    this.maskBuf = atLeast(this.maskBuf, len);
    return this.maskBuf.subarray(0, len);
  }
}

/** `buf` if it holds `len` floats, else a new buffer a quarter larger than asked (so slowly growing asks settle). */
function atLeast(buf: Float32Array | undefined, len: number): Float32Array {
  return buf && buf.length >= len ? buf : new Float32Array(Math.ceil(len * 1.25));
}

/** Causal mask rows for tokens at `pos` over `cap` context rows, written into `into` (row r visible iff r ≤ pos). */
function causalMaskInto(into: Float32Array, pos: readonly number[], cap: number): Float32Array {
  into.fill(-Infinity);
  pos.forEach((p, t) => into.fill(0, t * cap, t * cap + p + 1));
  return into;
}

/**
 * Async generator over layers: layer l's cached K/V, in the layer's [cap, W] buffers at the segments' offsets, keys
 * re-rotated from `cachedAt` to the new offset. Layers in `skip` (fully recomputed anyway) are not read. Stage 1,
 * loading: by 'chunk', one vectored read per chunk for every needed layer, issued at the first step (before the
 * embedding) and served by libuv's thread pool while the main thread computes the embedding and layer 0; by
 * 'layer', layer l+1's reads are issued when layer l is handed out. Stage 2, at layer l's step: the RoPE fix of
 * layer l, in place, just before the layer runs.
 */
async function* cachedLayers(reader: ChunkReader | null, offsets: number[], cachedAt: number[], K: Float32Array[], V: Float32Array[], W: number, model: BlendModel, skip: (l: number) => boolean, loadBy: 'chunk' | 'layer'): AsyncGenerator<{ k: Float32Array; v: Float32Array }> {
  const { kvHeads, headDim, ropeTheta } = model.shape;
  const inv = ropeInvFreq(headDim, ropeTheta);
  const L = K.length;
  let from = 0;
  while (from < L && skip(from)) from++;
  const reads: (Promise<void> | null)[] = Array(L).fill(null);
  const issue = (l: number): void => {
    if (!reader || l >= L || reads[l]) return;
    const to = loadBy === 'chunk' ? L : l + 1;
    const p = reader.readLayers(l, to, K, V, offsets, W);
    reads.fill(p, l, to);
  };
  try {
    issue(from);
    for (let l = 0; l < L; l++) {
      if (reader && l >= from) {
        await reads[l];
        issue(l + 1); // per-layer reads: the next layer's load overlaps this layer's compute
        reader.metas.forEach((m, i) => rerotate(K[l], offsets[i] * W, m.tokens, kvHeads, headDim, offsets[i] - cachedAt[i], inv));
      }
      yield { k: K[l], v: V[l] };
    }
  } finally {
    await Promise.allSettled(reads.filter((r): r is Promise<void> => r !== null)); // never leave a read in flight on a file about to be closed
  }
}

/**
 * Prefill `segments` with the model, reusing cached segments from `store`. `selection` = null: recompute only
 * uncached tokens (full reuse / prefix caching / full prefill); otherwise CacheBlend. `extra` rows are left free
 * in the returned K/V buffers for decoding. With a workspace, the result's K/V are views into it (valid until
 * its next prefill); without, into a workspace of this call's own.
 */
export async function prefill(model: BlendModel, store: KvStore | null, segments: readonly Segment[], selection: Selection | null, opts: PrefillOptions = {}): Promise<PrefillResult> {
  const { extra = 16, loadBy = 'chunk' } = opts;
  const ws = opts.ws ?? new PrefillWorkspace(); // without one, this call's own buffers (the result keeps them)
  const { layers, d, kvWidth: W } = model.shape;
  if (selection) validateSelection(selection, layers);
  if (ws.inUse) throw new Error('prefill workspace is in use by another prefill');
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
  const maskFor = (rows: readonly number[]): Float32Array => causalMaskInto(ws.mask(rows.length * cap), rows, cap);
  let mask = maskFor(S);

  ws.inUse = true; // no await between the check above and here
  let reader: ChunkReader | null = null;
  let gen: AsyncGenerator<{ k: Float32Array; v: Float32Array }> | null = null;
  let pending: Promise<IteratorResult<{ k: Float32Array; v: Float32Array }>> | null = null;
  let loadWaitMs = 0;
  const recomputed: number[] = [];
  try {
    reader = hashes.length ? await store!.reader(hashes) : null;
    const { k: K, v: V } = ws.kv(layers, cap, W);
    for (let l = 0; l < layers; l++) {
      K[l].fill(0, n * W); // rows for decoding: no stale values from an earlier prefill
      V[l].fill(0, n * W);
    }
    gen = cachedLayers(reader, offsets, cachedAt, K, V, W, model, (l) => l < firstCheck, loadBy);
    pending = gen.next(); // issues the reads before the embedding
    // hidden states of the rows recomputed last, packed: h.data [h.rows.length, d]; starts as every row's embedding.
    // A layer whose S is the previous layer's S takes the previous output as is (no gather, no scatter back).
    let h: { rows: readonly number[]; data: Float32Array } = { rows: allRows, data: model.embedInto(tokens, ws.hidden(n * d)) };
    let ahead: { rows: readonly number[]; data: Float32Array } | null = null; // next check layer's probe, if fused
    for (let l = 0; l < layers; l++) {
      const t0 = performance.now();
      const cur = await pending!;
      loadWaitMs += performance.now() - t0;
      if (cur.done) throw new Error('KV loader ended early');
      const { k, v } = cur.value;
      if (l + 1 < layers) pending = gen.next(); // layer l+1's RoPE fix is ready when layer l has run
      const ci = selection ? selection.checkLayers.indexOf(l) : -1;
      if (ci >= 0) {
        // HKVD: fresh K/V of the cached tokens still in S vs their cached K/V
        const cand = S.filter((i) => cachedRow[i]);
        const keep = Math.min(cand.length, Math.round(selection!.ratios[ci] * cachedIdx.length));
        let chosen: number[] = [];
        if (keep > 0) {
          // the probe came with the previous layer's run (fused graph) for its rows S ⊇ cand, or runs now
          const probe = ahead ?? { rows: cand, data: await model.probe(l, subRows(h, cand, d), cand, selection!.by) };
          const dev = deviation(probe.data, probe.rows, selection!.by === 'k' ? k : v, cand, W);
          chosen = topK(dev, keep).map((t) => cand[t]); // most deviating; ties by position
        }
        const kept = new Uint8Array(n);
        for (const i of chosen) kept[i] = 1;
        S = allRows.filter((i) => !cachedRow[i] || kept[i] === 1);
        mask = maskFor(S);
      }
      ahead = null;
      const nextIsCheck = !!selection && selection.checkLayers.includes(l + 1);
      let out: LayerOut;
      if (nextIsCheck && model.hasFusedProbe(l)) {
        const r = await model.layerProbe(l, subRows(h, S, d), S, S, k, v, mask, selection!.by);
        ahead = { rows: S, data: r.probe };
        out = r;
      } else out = await model.layer(l, subRows(h, S, d), S, S, k, v, mask);
      h = { rows: S, data: out.y };
      scatter(k, out.k, S, W);
      scatter(v, out.v, S, W);
      recomputed.push(S.length);
    }
    const last = h.rows.length - 1; // the last token is uncached, so recomputed at every layer
    if (h.rows[last] !== n - 1) throw new Error('the last token was not recomputed');
    const logits = await model.head(h.data.subarray(last * d, (last + 1) * d), 1);
    return { logits, k: K, v: V, n, capacity: cap, recomputed, cachedTokens: cachedIdx.length, loadWaitMs };
  } finally {
    // after an error the loader may still have a read in flight: let it finish before its file closes
    await pending?.catch(() => undefined);
    await gen?.return(undefined).catch(() => undefined);
    await reader?.close();
    ws.inUse = false;
  }
}

/** Packed rows `want` of hidden states held for rows `h.rows` (want ⊆ h.rows, both ascending); the same buffer if equal. */
function subRows(h: { rows: readonly number[]; data: Float32Array }, want: readonly number[], w: number): Float32Array {
  if (want === h.rows) return h.data;
  const out = new Float32Array(want.length * w);
  indexIn(h.rows, want).forEach((j, t) => out.set(h.data.subarray(j * w, (j + 1) * w), t * w));
  return out;
}

/** Packed rows of `src` written to rows `rows` of `dst` (runs of consecutive rows as one block). */
function scatter(dst: Float32Array, src: Float32Array, rows: readonly number[], w: number): void {
  forRuns(rows, (t, r, len) => {
    if (len * w <= 256) for (let i = 0, a = t * w, b = r * w; i < len * w; i++) dst[b + i] = src[a + i]; // short runs: no subarray objects
    else dst.set(src.subarray(t * w, (t + len) * w), r * w);
  });
}

/** Calls f(packedIndex, firstRow, length) for each maximal run of consecutive rows. */
function forRuns(rows: readonly number[], f: (t: number, r: number, len: number) => void): void {
  for (let t = 0; t < rows.length; ) {
    let e = t + 1;
    while (e < rows.length && rows[e] === rows[e - 1] + 1) e++;
    f(t, rows[t], e - t);
    t = e;
  }
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
    let x = model.embedInto([tok], new Float32Array(model.shape.d));
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
  return prefill(model, null, [{ tokens }], null, { extra: 0 });
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
