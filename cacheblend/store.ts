/**
 * Chunk KV store: each text chunk's K/V (all layers, computed alone at positions 0..L−1) keyed by a hash of the
 * model and the chunk's token ids. Two tiers: RAM (LRU by bytes) and disk (one file per chunk, layer-major so a
 * single layer is one positioned read), with the index (hash, sizes, file, text, last use) in SQLite.
 *
 * File layout: for layer l, K [L, Hkv, hd] then V [L, Hkv, hd], float32 little-endian; layer l starts at byte
 * 2·l·L·W·4 (W = Hkv·hd).
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

export interface ChunkMeta {
  hash: string;
  tokens: number;
  layers: number;
  width: number;
  bytes: number;
  text: string;
}

export function chunkHash(modelId: string, tokens: readonly number[]): string {
  const h = createHash('sha256');
  h.update(modelId);
  h.update(Buffer.from(Int32Array.from(tokens).buffer));
  return h.digest('hex');
}

export class KvStore {
  private readonly db: Database.Database;
  private readonly ram = new Map<string, Float32Array>(); // insertion order = LRU order
  private ramBytes = 0;

  /** `dir` holds index.sqlite and the .kv files; `ramBytes` = RAM tier budget (0 disables it). */
  constructor(
    readonly dir: string,
    private readonly ramBudget = 64 << 20,
  ) {
    mkdirSync(dir, { recursive: true });
    this.db = new Database(path.join(dir, 'index.sqlite'));
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS chunks (
      hash TEXT PRIMARY KEY,
      tokens INTEGER NOT NULL,
      layers INTEGER NOT NULL,
      width INTEGER NOT NULL,
      bytes INTEGER NOT NULL,
      text TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      last_used INTEGER NOT NULL
    )`);
  }

  private file(hash: string): string {
    return path.join(this.dir, `${hash}.kv`);
  }

  meta(hash: string): ChunkMeta | null {
    const r = this.db.prepare('SELECT hash, tokens, layers, width, bytes, text FROM chunks WHERE hash = ?').get(hash) as ChunkMeta | undefined;
    return r ?? null;
  }

  has(hash: string): boolean {
    return this.meta(hash) !== null;
  }

  /** Store a chunk's KV (layer-major, as described above); written to disk before the index row. */
  put(hash: string, text: string, tokens: number, layers: number, width: number, kv: Float32Array): void {
    if (kv.length !== layers * 2 * tokens * width) throw new RangeError(`KV has ${kv.length} floats, expected ${layers * 2 * tokens * width}`);
    writeFileSync(this.file(hash), Buffer.from(kv.buffer, kv.byteOffset, kv.byteLength));
    const now = Date.now();
    this.db
      .prepare('INSERT OR REPLACE INTO chunks (hash, tokens, layers, width, bytes, text, created_at, last_used) VALUES (?,?,?,?,?,?,?,?)')
      .run(hash, tokens, layers, width, kv.byteLength, text, now, now);
    this.remember(hash, kv);
  }

  private remember(hash: string, kv: Float32Array): void {
    if (this.ramBudget <= 0 || kv.byteLength > this.ramBudget) return;
    if (this.ram.has(hash)) return;
    this.ram.set(hash, kv);
    this.ramBytes += kv.byteLength;
    for (const [h, v] of this.ram) {
      if (this.ramBytes <= this.ramBudget) break;
      this.ram.delete(h);
      this.ramBytes -= v.byteLength;
    }
  }

  /** Drop the RAM tier (the next reads come from disk). */
  clearRam(): void {
    this.ram.clear();
    this.ramBytes = 0;
  }

  inRam(hash: string): boolean {
    return this.ram.has(hash);
  }

  touch(hashes: readonly string[]): void {
    const st = this.db.prepare('UPDATE chunks SET last_used = ? WHERE hash = ?');
    const now = Date.now();
    this.db.transaction(() => hashes.forEach((h) => st.run(now, h)))();
  }

  /**
   * Open a reader for a set of chunks: `layer(l)` resolves each chunk's K and V of layer l (from RAM, or one
   * positioned read per chunk from disk). Close it when done.
   */
  async reader(hashes: readonly string[]): Promise<ChunkReader> {
    const metas = hashes.map((h) => {
      const m = this.meta(h);
      if (!m) throw new Error(`chunk ${h} not in the KV store`);
      return m;
    });
    const handles = await Promise.all(metas.map((m) => (this.ram.has(m.hash) ? null : open(this.file(m.hash), 'r'))));
    return new ChunkReader(metas, handles, metas.map((m) => this.ram.get(m.hash) ?? null));
  }

  /** Remove least-recently-used chunks until the disk tier holds at most `maxBytes`. */
  evict(maxBytes: number): number {
    const rows = this.db.prepare('SELECT hash, bytes FROM chunks ORDER BY last_used DESC').all() as { hash: string; bytes: number }[];
    let total = 0;
    let removed = 0;
    for (const r of rows) {
      total += r.bytes;
      if (total > maxBytes) {
        this.db.prepare('DELETE FROM chunks WHERE hash = ?').run(r.hash);
        rmSync(this.file(r.hash), { force: true });
        const inRam = this.ram.get(r.hash);
        if (inRam) {
          this.ram.delete(r.hash);
          this.ramBytes -= inRam.byteLength;
        }
        removed++;
      }
    }
    return removed;
  }

  stats(): { chunks: number; bytes: number; ramChunks: number; ramBytes: number } {
    const r = this.db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM chunks').get() as { n: number; b: number };
    return { chunks: r.n, bytes: r.b, ramChunks: this.ram.size, ramBytes: this.ramBytes };
  }

  close(): void {
    this.db.close();
  }
}

export class ChunkReader {
  constructor(
    readonly metas: readonly ChunkMeta[],
    private readonly handles: (FileHandle | null)[],
    private readonly ram: (Float32Array | null)[],
  ) {}

  /** Layer l of every chunk: K and V, each [L_chunk, Hkv, hd]. */
  async layer(l: number): Promise<{ k: Float32Array; v: Float32Array }[]> {
    return Promise.all(
      this.metas.map(async (m, i) => {
        const n = m.tokens * m.width;
        const inRam = this.ram[i];
        if (inRam) return { k: inRam.subarray(2 * l * n, (2 * l + 1) * n), v: inRam.subarray((2 * l + 1) * n, (2 * l + 2) * n) };
        const f = new Float32Array(2 * n);
        const buf = Buffer.from(f.buffer);
        const { bytesRead } = await this.handles[i]!.read(buf, 0, buf.length, 2 * l * n * 4);
        if (bytesRead !== buf.length) throw new Error(`chunk ${m.hash}: short read of layer ${l}`);
        return { k: f.subarray(0, n), v: f.subarray(n) };
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.handles.map((h) => h?.close()));
  }
}
