/**
 * Chunk KV store: each text chunk's K/V (all layers, computed alone at positions 0..L−1) keyed by a hash of the
 * model and the chunk's token ids. Two tiers: RAM (LRU by bytes) and disk (one file per chunk, layer-major so a
 * single layer is one positioned read), with the index (hash, sizes, file, text, last use) in SQLite.
 *
 * File layout: for layer l, K [L, Hkv, hd] then V [L, Hkv, hd], float32 little-endian; layer l starts at byte
 * 2·l·L·W·4 (W = Hkv·hd).
 *
 * The index rows are memoised in a Map and chunk files stay open in a small LRU of file descriptors (as LMCache's
 * disk backend keeps its index in memory): a question touches ~15 chunks, and a SQLite lookup + open + close per
 * chunk cost ~0.4 ms of its time to first token on the CI VM. The memo is kept in step with every write/eviction
 * of this process; the store assumes it is the only writer of its folder.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readv, rmSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../config/atomic-file.ts';
import path from 'node:path';

export interface ChunkMeta {
  hash: string;
  tokens: number;
  layers: number;
  width: number;
  bytes: number;
  text: string;
}

interface FdEntry {
  fd: number;
  refs: number;
  doomed: boolean;
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
  private readonly metaStmt: Database.Statement;
  private readonly metas = new Map<string, ChunkMeta>();
  /**
   * Open chunk files, least recently used first; `refs` = readers using the fd (an fd is closed only at 0). A file
   * that is replaced or evicted leaves the map at once (new readers open the new file); its fd is `doomed` and
   * closes when its last reader releases it.
   */
  private readonly fds = new Map<string, FdEntry>();

  /** `dir` holds index.sqlite and the .kv files; `ramBytes` = RAM tier budget (0 disables it). */
  constructor(
    readonly dir: string,
    private readonly ramBudget = 64 << 20,
    /** most chunk files kept open while no reader uses them */
    private readonly maxOpenFiles = 128,
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
    this.metaStmt = this.db.prepare('SELECT hash, tokens, layers, width, bytes, text FROM chunks WHERE hash = ?');
  }

  private file(hash: string): string {
    return path.join(this.dir, `${hash}.kv`);
  }

  meta(hash: string): ChunkMeta | null {
    const known = this.metas.get(hash);
    if (known) return known;
    const r = this.metaStmt.get(hash) as ChunkMeta | undefined;
    if (r) this.metas.set(hash, r);
    return r ?? null;
  }

  /**
   * Whether a chunk's KV is stored and usable. A file that is missing or not the size its row says (power loss
   * after the row was committed, a hand-deleted file) drops the row, so the caller recomputes the chunk instead of
   * every question failing on a short read.
   */
  has(hash: string): boolean {
    const m = this.meta(hash);
    if (!m) return false;
    if (this.ram.has(hash)) return true;
    let size = -1;
    try {
      size = statSync(this.file(hash)).size;
    } catch { /* missing */ }
    if (size === m.bytes) return true;
    this.drop(hash);
    return false;
  }

  /** Forget a chunk: its row, its file, its fd and its RAM copy. */
  private drop(hash: string): void {
    this.db.prepare('DELETE FROM chunks WHERE hash = ?').run(hash);
    this.metas.delete(hash);
    this.forgetFile(hash);
    rmSync(this.file(hash), { force: true });
    const inRam = this.ram.get(hash);
    if (inRam) {
      this.ram.delete(hash);
      this.ramBytes -= inRam.byteLength;
    }
  }

  /** Store a chunk's KV (layer-major, as described above); written to disk before the index row. */
  put(hash: string, text: string, tokens: number, layers: number, width: number, kv: Float32Array): void {
    if (kv.length !== layers * 2 * tokens * width) throw new RangeError(`KV has ${kv.length} floats, expected ${layers * 2 * tokens * width}`);
    this.forgetFile(hash); // a replaced file must not be read through an fd of the old one
    // a power loss or full disk never leaves a short file under the key
    writeFileAtomic(this.file(hash), new Uint8Array(kv.buffer, kv.byteOffset, kv.byteLength));
    this.metas.delete(hash);
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
   * Open a reader for a set of chunks (`readLayers` below). Close it when done. Files are opened and closed
   * synchronously (a few µs for a page-cached file) and read with the callback API: FileHandle's promise API cost
   * ~40 µs of main-thread time per read in bench:cacheblend's time-to-first-token.
   */
  async reader(hashes: readonly string[]): Promise<ChunkReader> {
    const metas = hashes.map((h) => {
      const m = this.meta(h);
      if (!m) throw new Error(`chunk ${h} not in the KV store`);
      return m;
    });
    const fds: (number | null)[] = [];
    const held: FdEntry[] = [];
    try {
      for (const m of metas) {
        if (this.ram.has(m.hash)) fds.push(null);
        else {
          const e = this.acquire(m.hash);
          held.push(e);
          fds.push(e.fd);
        }
      }
    } catch (e) {
      held.forEach((h) => this.release(h));
      throw e;
    }
    return new ChunkReader(metas, fds, metas.map((m) => this.ram.get(m.hash) ?? null), () => held.forEach((h) => this.release(h)));
  }

  /** An open fd for a chunk's file (from the LRU, or opened now), held until `release`. */
  private acquire(hash: string): FdEntry {
    let e = this.fds.get(hash);
    if (e) this.fds.delete(hash); // re-inserted below: most recently used last
    else e = { fd: openSync(this.file(hash), 'r'), refs: 0, doomed: false };
    e.refs++;
    this.fds.set(hash, e);
    return e;
  }

  private release(e: FdEntry): void {
    e.refs--;
    if (e.refs === 0 && e.doomed) closeSync(e.fd);
    else this.trimFds();
  }

  /** Close idle fds beyond the limit, least recently used first (fds in use are never closed). */
  private trimFds(): void {
    let idle = 0;
    for (const e of this.fds.values()) if (e.refs === 0) idle++;
    for (const [h, e] of this.fds) {
      if (idle <= this.maxOpenFiles) break;
      if (e.refs > 0) continue;
      this.fds.delete(h);
      closeSync(e.fd);
      idle--;
    }
  }

  /** Drop a chunk's fd from the LRU: closed now if idle, else when its last reader releases it. */
  private forgetFile(hash: string): void {
    const e = this.fds.get(hash);
    if (!e) return;
    this.fds.delete(hash);
    if (e.refs === 0) closeSync(e.fd);
    else e.doomed = true;
  }

  /** Remove least-recently-used chunks until the disk tier holds at most `maxBytes`. */
  evict(maxBytes: number): number {
    const rows = this.db.prepare('SELECT hash, bytes FROM chunks ORDER BY last_used DESC').all() as { hash: string; bytes: number }[];
    let total = 0;
    let removed = 0;
    for (const r of rows) {
      total += r.bytes;
      if (total > maxBytes) {
        this.drop(r.hash);
        removed++;
      }
    }
    return removed;
  }

  stats(): { chunks: number; bytes: number; ramChunks: number; ramBytes: number } {
    const r = this.db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM chunks').get() as { n: number; b: number };
    return { chunks: r.n, bytes: r.b, ramChunks: this.ram.size, ramBytes: this.ramBytes };
  }

  /** Close the index and every idle chunk file (files still used by a reader close when it does). */
  close(): void {
    for (const h of [...this.fds.keys()]) this.forgetFile(h);
    this.metas.clear();
    this.db.close();
  }
}

export class ChunkReader {
  private closed = false;

  constructor(
    readonly metas: readonly ChunkMeta[],
    private readonly fds: (number | null)[],
    private readonly ram: (Float32Array | null)[],
    /** hands the fds back to the store's LRU */
    private readonly onClose: () => void = () => undefined,
  ) {}

  /**
   * Layers [from, to) of every chunk read straight into context buffers [cap, W] per layer: chunk i's K and V of
   * layer l land at rows offsets[i].. of K[l] and V[l]. A chunk file holds its layers back to back, so this is one
   * vectored read per chunk (2 buffers per layer) on libuv's thread pool: no staging copy, no allocation.
   */
  async readLayers(from: number, to: number, K: readonly Float32Array[], V: readonly Float32Array[], offsets: readonly number[], W: number): Promise<void> {
    if (this.closed) throw new Error('chunk reader is closed');
    if (!(from >= 0 && to >= from && to <= K.length && K.length === V.length)) throw new RangeError(`layers ${from}..${to} outside 0..${K.length}`);
    // every destination checked before any read is issued (a failed check must not leave reads in flight)
    const plan = this.metas.map((m, i) => {
      if (m.width !== W) throw new RangeError(`chunk ${m.hash}: width ${m.width}, expected ${W}`);
      if (to > m.layers) throw new RangeError(`chunk ${m.hash}: ${m.layers} layers, layer ${to - 1} asked`);
      const n = m.tokens * W;
      const bufs: Float32Array[] = [];
      for (let l = from; l < to; l++) {
        const kDst = K[l].subarray(offsets[i] * W, offsets[i] * W + n);
        const vDst = V[l].subarray(offsets[i] * W, offsets[i] * W + n);
        if (kDst.length !== n || vDst.length !== n) throw new RangeError(`chunk ${m.hash} does not fit at row ${offsets[i]}`);
        bufs.push(kDst, vDst);
      }
      return { m, n, bufs };
    });
    const results = await Promise.allSettled( // settled, not all: a failed read must not leave the others in flight
      plan.map(({ m, n, bufs }, i) => {
        const inRam = this.ram[i];
        if (inRam) {
          bufs.forEach((b, j) => b.set(inRam.subarray((2 * from + j) * n, (2 * from + j + 1) * n)));
          return undefined;
        }
        if (bufs.length === 0) return undefined;
        return new Promise<void>((resolve, reject) => {
          readv(this.fds[i]!, bufs, 2 * from * n * 4, (err, bytesRead) => {
            if (err) reject(new Error(`chunk ${m.hash}: reading layers ${from}..: ${err.message}`));
            else if (bytesRead !== bufs.length * n * 4) reject(new Error(`chunk ${m.hash}: short read of layers ${from}..`));
            else resolve();
          });
        });
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Release the files (callers first await every read they started: an fd closed under a read may be reused). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }
}
