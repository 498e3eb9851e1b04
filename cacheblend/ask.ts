/**
 * Questions over the fleet's event logs, answered with CacheBlend: the chunks come from the detections the server
 * stored (eventlog.ts), each chunk's KV is computed once and kept in the KvStore, and a question reuses them all,
 * recomputing 15 % of the tokens. `ask()` streams: first the chunks used, then each answer word, then a summary.
 */
import { DEFAULT_SELECTION, decode, prefill, PrefillWorkspace, validateSelection, type Selection } from './blend.ts';
import { chunkKey, ensureChunk, PREFIX_TEXT, segmentsFor } from './context.ts';
import { selectChunks, summarise, type Chunk, type SegmentEvents } from './eventlog.ts';
import type { BlendModel } from './model.ts';
import type { KvStore } from './store.ts';

export type AskEvent =
  | { type: 'chunks'; chunks: { camera: string; cameraId: string; start: number; end: number; text: string; cached: boolean }[] }
  | { type: 'token'; text: string }
  | { type: 'done'; answer: string; ttftMs: number; totalMs: number; contextTokens: number; recomputed: number[] };

export const MAX_QUESTION_CHARS = 300;

export class AskService {
  private queue: Promise<unknown> = Promise.resolve();
  /** questions run one at a time, so one set of prefill buffers serves them all */
  private readonly ws = new PrefillWorkspace();

  constructor(
    private readonly model: BlendModel,
    private readonly store: KvStore,
    private readonly events: () => SegmentEvents[],
    private readonly selection: Selection = DEFAULT_SELECTION,
    /** disk budget of the chunk KV caches: least recently used chunks are evicted after each question, answered or not (0 = none) */
    private readonly diskBudgetBytes = 0,
  ) {
    validateSelection(selection, model.shape.layers);
  }

  /** Words of a question the model does not know (answers would be guesses); empty when all are known. */
  unknownWords(question: string): string[] {
    return question
      .split(/\s+/)
      .filter(Boolean)
      .filter((w) => !this.model.words.includes(w));
  }

  /** Normalise a typed question to the model's words: lower case, "?" and "," split off. */
  static normalise(question: string): string {
    return question
      .toLowerCase()
      .replace(/([?,])/g, ' $1 ')
      .replace(/\s+/g, ' ')
      .trim();
  }

  /** Answer one question; questions run one at a time (the model is not re-entrant per layer). */
  async *ask(question: string, maxNew = 12): AsyncGenerator<AskEvent> {
    const q = AskService.normalise(question);
    if (q.length === 0 || q.length > MAX_QUESTION_CHARS) throw new RangeError(`a question has 1..${MAX_QUESTION_CHARS} characters`);
    const unknown = this.unknownWords(q);
    if (unknown.length) throw new RangeError(`unknown words: ${unknown.slice(0, 5).join(', ')}`);
    let release!: () => void;
    const turn = this.queue;
    this.queue = new Promise<void>((r) => (release = r));
    await turn;
    try {
      yield* this.run(q, maxNew);
    } finally {
      release();
    }
  }

  private async *run(q: string, maxNew: number): AsyncGenerator<AskEvent> {
    const t0 = performance.now();
    const chunks: Chunk[] = selectChunks(summarise(this.events()));
    const texts = chunks.map((c) => c.text);
    const cached: boolean[] = [];
    let pre: Awaited<ReturnType<typeof prefill>>;
    let t1: number;
    try {
      await ensureChunk(this.model, this.store, PREFIX_TEXT);
      for (const t of texts) {
        const had = this.store.has(chunkKey(this.model, t));
        cached.push(had);
        if (!had) await ensureChunk(this.model, this.store, t);
      }
      yield { type: 'chunks', chunks: chunks.map((c, i) => ({ camera: c.camera, cameraId: c.cameraId, start: c.start, end: c.end, text: c.text, cached: cached[i] })) };
      t1 = performance.now();
      const segs = segmentsFor(this.model, 'cacheblend', texts, q);
      pre = await prefill(this.model, this.store, segs, this.selection, { ws: this.ws });
      this.store.touch(segs.flatMap((s) => (s.hash ? [s.hash] : [])));
    } finally {
      // the open window's chunk changes as segments arrive, so every question may add a cache: keep the disk
      // bounded, also when the question failed part-way (a full disk while writing a chunk) or was abandoned
      if (this.diskBudgetBytes > 0) this.store.evict(this.diskBudgetBytes);
    }
    const ttftMs = performance.now() - t1;
    const words: string[] = [];
    for await (const tok of decode(this.model, pre, maxNew)) {
      const w = this.model.words[tok];
      words.push(w);
      yield { type: 'token', text: w };
    }
    yield { type: 'done', answer: words.join(' '), ttftMs, totalMs: performance.now() - t0, contextTokens: pre.n, recomputed: pre.recomputed };
  }
}
