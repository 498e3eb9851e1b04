/**
 * The event-log language model as per-layer ONNX graphs (exported by training/cacheblend/export.py):
 * embed, per transformer layer a `layer{i}` graph and two probes `k{i}`/`v{i}`, and the LM head. Every call works on a
 * subset of tokens, so callers decide per layer which tokens are recomputed and which reuse cached K/V.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import { fromRoot } from '../encoder/root.ts';

/** The committed model (sources and compiled dist/ both find it at the package root). */
export const DEFAULT_MODEL_DIR = fromRoot('cacheblend', 'model');

const MetaSchema = z.object({
  config: z.object({
    vocab: z.number().int().positive(),
    d: z.number().int().positive(),
    layers: z.number().int().positive(),
    heads: z.number().int().positive(),
    kv_heads: z.number().int().positive(),
    ffn: z.number().int().positive(),
    rope_theta: z.number().positive(),
  }),
  vocab: z.array(z.string()),
  step: z.number().int().nullable().optional(),
  reference: z.object({ tokens: z.array(z.number().int()), last_logits: z.array(z.number()) }),
});
export type ModelMeta = z.infer<typeof MetaSchema>;

export interface ModelShape {
  layers: number;
  d: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  ropeTheta: number;
  /** floats per token per layer in K (and in V) */
  kvWidth: number;
}

export interface LayerOut {
  y: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

const f32 = (data: Float32Array, dims: number[]): ort.Tensor => new ort.Tensor('float32', data, dims);
/**
 * int64 copies of index arrays, memoised per array object: a prefill passes the same rows array (positions = row
 * indices) to every layer after the check layer, and BigInt conversion costs ~1 µs per element. Callers must not
 * mutate an array after passing it (blend.ts builds a new one whenever its selection changes).
 */
const i64Memo = new WeakMap<ArrayLike<number>, BigInt64Array>();
const i64 = (data: ArrayLike<number>, dims: number[]): ort.Tensor => {
  let a = i64Memo.get(data);
  if (!a || a.length !== data.length) {
    a = new BigInt64Array(data.length);
    for (let i = 0; i < data.length; i++) a[i] = BigInt(data[i]);
    i64Memo.set(data, a);
  }
  return new ort.Tensor('int64', a, dims);
};

export class BlendModel {
  readonly shape: ModelShape;
  readonly meta: ModelMeta;
  readonly words: readonly string[];
  private readonly ids: Map<string, number>;
  /** the embedding table [vocab, d], read once through embed.onnx: a lookup per token needs no graph run */
  private table: Float32Array = new Float32Array(0);

  private constructor(
    meta: ModelMeta,
    private readonly embedS: ort.InferenceSession,
    private readonly headS: ort.InferenceSession,
    private readonly layerS: ort.InferenceSession[],
    private readonly probeS: { k: ort.InferenceSession; v: ort.InferenceSession }[],
    /** layer{i}p graphs (layer i + layer i+1's probes), where exported; index = layer */
    private readonly fusedS: (ort.InferenceSession | null)[],
  ) {
    this.meta = meta;
    const c = meta.config;
    const headDim = c.d / c.heads;
    this.shape = { layers: c.layers, d: c.d, kvHeads: c.kv_heads, headDim, vocab: c.vocab, ropeTheta: c.rope_theta, kvWidth: c.kv_heads * headDim };
    this.words = meta.vocab;
    this.ids = new Map(meta.vocab.map((w, i) => [w, i]));
  }

  /** Load every graph of a model folder; `threads` = onnxruntime intra-op threads per graph. */
  static async load(dir = DEFAULT_MODEL_DIR, threads = 1): Promise<BlendModel> {
    const metaFile = path.join(dir, 'model.json');
    if (!existsSync(metaFile)) throw new Error(`no CacheBlend model in ${dir} (model.json missing)`);
    let meta: z.infer<typeof MetaSchema>;
    try {
      meta = MetaSchema.parse(JSON.parse(readFileSync(metaFile, 'utf8')));
    } catch (e) {
      throw new Error(`CacheBlend model ${metaFile} is unreadable: ${(e as Error).message}`);
    }
    const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' };
    const L = meta.config.layers;
    const files = ['embed.onnx', 'head.onnx', ...['layer', 'k', 'v'].flatMap((p) => Array.from({ length: L }, (_, i) => `${p}${i}.onnx`)),
      ...Array.from({ length: L }, (_, i) => `layer${i}p.onnx`).filter((f) => existsSync(path.join(dir, f)))];
    // every graph or none: a file that does not load is named, and the sessions already open are released
    const settled = await Promise.allSettled(files.map((f) => ort.InferenceSession.create(path.join(dir, f), opts)));
    const bad = settled.findIndex((r) => r.status === 'rejected');
    if (bad >= 0) {
      await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.release().catch(() => undefined) : undefined)));
      throw new Error(`CacheBlend model file ${path.join(dir, files[bad])} does not load: ${((settled[bad] as PromiseRejectedResult).reason as Error)?.message}`);
    }
    const sessions = new Map(files.map((f, i) => [f, (settled[i] as PromiseFulfilledResult<ort.InferenceSession>).value]));
    const get = (f: string): ort.InferenceSession => sessions.get(f)!;
    const [embedS, headS] = [get('embed.onnx'), get('head.onnx')];
    const rest = [...['layer', 'k', 'v'].flatMap((p) => Array.from({ length: L }, (_, i) => get(`${p}${i}.onnx`)))];
    const probes = Array.from({ length: L }, (_, i) => ({ k: rest[L + i], v: rest[2 * L + i] }));
    const fused = Array.from({ length: L }, (_, i) => sessions.get(`layer${i}p.onnx`) ?? null);
    const m = new BlendModel(meta, embedS, headS, rest.slice(0, L), probes, fused);
    m.table = await m.embed(Array.from({ length: meta.config.vocab }, (_, i) => i));
    return m;
  }

  /** Word-level tokenizer: whitespace split; unknown words map to <unk>. */
  tokenize(text: string): number[] {
    const unk = this.ids.get('<unk>') ?? 0;
    return text.split(/\s+/).filter(Boolean).map((w) => this.ids.get(w) ?? unk);
  }

  id(word: string): number {
    const i = this.ids.get(word);
    if (i === undefined) throw new Error(`word ${JSON.stringify(word)} not in the vocabulary`);
    return i;
  }

  detokenize(ids: readonly number[]): string {
    return ids.map((i) => this.words[i] ?? '<unk>').join(' ');
  }

  /** Embeddings of `tokens` written into `out` [T, d] (a table lookup); returns `out`. */
  embedInto(tokens: readonly number[], out: Float32Array): Float32Array {
    const { d, vocab } = this.shape;
    if (out.length !== tokens.length * d) throw new RangeError(`embedding buffer holds ${out.length} floats, ${tokens.length * d} needed`);
    tokens.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new RangeError(`token id ${t} outside the vocabulary`);
      out.set(this.table.subarray(t * d, (t + 1) * d), i * d);
    });
    return out;
  }

  /** Embeddings through the graph (the table's source, and a check of it in the tests). */
  async embed(tokens: readonly number[]): Promise<Float32Array> {
    const out = await this.embedS.run({ tokens: i64(tokens, [tokens.length]) });
    return out.x.data as Float32Array;
  }

  /** Final norm + LM head for T hidden states [T, d] -> logits [T, vocab]. */
  async head(x: Float32Array, T: number): Promise<Float32Array> {
    const out = await this.headS.run({ x: f32(x, [T, this.shape.d]) });
    return out.logits.data as Float32Array;
  }

  /**
   * Run layer `l` for T tokens: hidden x [T, d] at positions `pos`, occupying rows `idx` of the context, whose
   * K/V [N, Hkv, hd] the graph overwrites at `idx` with the tokens' fresh K/V before attending under `mask` [T, N].
   */
  async layer(l: number, x: Float32Array, pos: readonly number[], idx: readonly number[], kCtx: Float32Array, vCtx: Float32Array, mask: Float32Array): Promise<LayerOut> {
    const out = await this.layerS[l].run(this.layerFeeds(x, pos, idx, kCtx, vCtx, mask));
    return { y: out.y.data as Float32Array, k: out.k.data as Float32Array, v: out.v.data as Float32Array };
  }

  /** The inputs of a `layer{i}` (or `layer{i}p`) graph. */
  private layerFeeds(x: Float32Array, pos: readonly number[], idx: readonly number[], kCtx: Float32Array, vCtx: Float32Array, mask: Float32Array): Record<string, ort.Tensor> {
    const { d, kvHeads, headDim } = this.shape;
    const T = pos.length;
    const N = kCtx.length / (kvHeads * headDim);
    return {
      x: f32(x, [T, d]),
      pos: i64(pos, [T]),
      idx: i64(idx, [T]),
      k_ctx: f32(kCtx, [N, kvHeads, headDim]),
      v_ctx: f32(vCtx, [N, kvHeads, headDim]),
      mask: f32(mask, [T, N]),
    };
  }

  /** Whether layer `l` has a graph that also emits layer l+1's probes (used before a check layer). */
  hasFusedProbe(l: number): boolean {
    return !!this.fusedS[l];
  }

  /** `layer` plus layer l+1's probe (K after RoPE, or V) of the same T tokens from the layer's output, in one run. */
  async layerProbe(l: number, x: Float32Array, pos: readonly number[], idx: readonly number[], kCtx: Float32Array, vCtx: Float32Array, mask: Float32Array, by: 'k' | 'v'): Promise<LayerOut & { probe: Float32Array }> {
    const s = this.fusedS[l];
    if (!s) throw new Error(`layer ${l} has no fused probe graph`);
    const next = by === 'k' ? 'k_next' : 'v_next';
    const out = await s.run(this.layerFeeds(x, pos, idx, kCtx, vCtx, mask), ['y', 'k', 'v', next]);
    return { y: out.y.data as Float32Array, k: out.k.data as Float32Array, v: out.v.data as Float32Array, probe: out[next].data as Float32Array };
  }

  /** K (after RoPE) or V of layer `l` for T tokens, [T, Hkv, hd], without attention: the check layer's cheap probe. */
  async probe(l: number, x: Float32Array, pos: readonly number[], by: 'k' | 'v'): Promise<Float32Array> {
    const T = pos.length;
    const feeds: Record<string, ort.Tensor> = { x: f32(x, [T, this.shape.d]) };
    if (by === 'k') feeds.pos = i64(pos, [T]); // V has no rotation: its graph takes no positions
    const out = await this.probeS[l][by].run(feeds);
    return out[by].data as Float32Array;
  }

  async release(): Promise<void> {
    const fused = this.fusedS.filter((s): s is ort.InferenceSession => s !== null);
    await Promise.all([this.embedS, this.headS, ...this.layerS, ...this.probeS.flatMap((p) => [p.k, p.v]), ...fused].map((s) => s.release()));
  }
}
