/**
 * Turning chunks + a question into prefill segments, and making sure every chunk's KV is in the store.
 * The prompt format is the one the model was trained on (training/cacheblend/eventlog.py, prompt_text):
 *   <bos> log : {chunk} {chunk} ... question : {question} answer :
 */
import { chunkKv, packKv, prefillAlone, type Segment } from './blend.ts';
import type { BlendModel } from './model.ts';
import { chunkHash, type KvStore } from './store.ts';

export const PREFIX_TEXT = '<bos> log :';

export function modelId(model: BlendModel): string {
  return `cacheblend-lm:${model.shape.layers}x${model.shape.d}:step${model.meta.step ?? 0}:${model.meta.reference.last_logits.slice(0, 4).join(',')}`;
}

/** The KV store key of a chunk's text. */
export function chunkKey(model: BlendModel, text: string): string {
  return chunkHash(modelId(model), model.tokenize(text));
}

/** Compute and store a text's KV (alone, from position 0) unless already stored; returns its hash. */
export async function ensureChunk(model: BlendModel, store: KvStore, text: string): Promise<string> {
  const tokens = model.tokenize(text);
  const hash = chunkKey(model, text);
  if (!store.has(hash)) {
    const { layers, kvWidth } = model.shape;
    store.put(hash, text, tokens.length, layers, kvWidth, await chunkKv(model, tokens));
  }
  return hash;
}

/** Prefix cache of `<bos> log : {first chunk}` computed in place (what a prefix-caching server would hold). */
export async function ensurePrefix(model: BlendModel, store: KvStore, firstChunk: string): Promise<{ hash: string; tokens: number[] }> {
  const tokens = model.tokenize(`${PREFIX_TEXT} ${firstChunk}`);
  const hash = chunkHash(`prefix:${modelId(model)}`, tokens);
  if (!store.has(hash)) {
    const pre = await prefillAlone(model, tokens);
    store.put(hash, `${PREFIX_TEXT} ${firstChunk}`, tokens.length, model.shape.layers, model.shape.kvWidth, packKv(pre, 0, tokens.length, model.shape.kvWidth));
  }
  return { hash, tokens };
}

export function questionText(question: string): string {
  return `question : ${question} answer :`;
}

export type Scheme = 'full_prefill' | 'full_reuse' | 'prefix_cache' | 'cacheblend';

/**
 * Segments for a scheme: full prefill caches nothing; prefix caching reuses only `<bos> log : chunk₁`; full reuse
 * and CacheBlend reuse the prefix and every chunk (each cached alone). Caches must already be in the store
 * (ensureChunk / ensurePrefix); hashes are recomputed from the text, so this does no model work.
 */
export function segmentsFor(model: BlendModel, scheme: Scheme, chunks: readonly string[], question: string): Segment[] {
  const q: Segment = { tokens: model.tokenize(questionText(question)) };
  const id = modelId(model);
  if (scheme === 'full_prefill') return [{ tokens: model.tokenize([PREFIX_TEXT, ...chunks].join(' ')) }, q];
  const seg = (text: string): Segment => {
    const tokens = model.tokenize(text);
    return { tokens, hash: chunkHash(id, tokens), cachedAt: 0 };
  };
  if (chunks.length === 0) return [seg(PREFIX_TEXT), q];
  if (scheme === 'prefix_cache') {
    const ptoks = model.tokenize(`${PREFIX_TEXT} ${chunks[0] ?? ''}`);
    const rest = model.tokenize(chunks.slice(1).join(' '));
    return [{ tokens: ptoks, hash: chunkHash(`prefix:${id}`, ptoks), cachedAt: 0 }, ...(rest.length ? [{ tokens: rest }] : []), q];
  }
  return [seg(PREFIX_TEXT), ...chunks.map(seg), q];
}

/** Make sure every cache a scheme's segments need is stored. */
export async function ensureAll(model: BlendModel, store: KvStore, chunks: readonly string[]): Promise<void> {
  await ensureChunk(model, store, PREFIX_TEXT);
  for (const c of chunks) await ensureChunk(model, store, c);
  if (chunks.length) await ensurePrefix(model, store, chunks[0]);
}
