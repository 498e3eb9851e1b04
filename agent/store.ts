/**
 * AgentStore: the agent's durable state in one SQLite file (better-sqlite3, synchronous API).
 *
 *  - config versions (who changed the settings, when, why, and the full text);
 *  - store-and-forward outbox of encoded segments, kept until the server acknowledges them;
 *  - metric history (name, time, value) with pruning;
 *  - results by segment (generic enough for the server to reuse).
 *
 * Durability: WAL journal + synchronous=FULL by default, so a transaction that returned has been
 * fsynced and survives a power cut, not only a process crash (with WAL, NORMAL survives process
 * crashes but may lose the last commits on power loss; pass `synchronous: 'NORMAL'` where that
 * trade is acceptable). Schema changes are numbered migrations tracked in PRAGMA user_version.
 *
 * Outbox cap: after each enqueue, while the unacknowledged rows exceed `maxRows` or their bytes
 * exceed `maxBytes`, the OLDEST unacknowledged rows are dropped (never the one just enqueued).
 * Each drop is logged with its count (logger.warn) and added to `droppedTotal`.
 * Acked rows keep their segment id (so a late duplicate enqueue stays acked) but lose their data;
 * `pruneAcked(olderThanMs)` deletes them for good.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export interface StoreLogger {
  warn(obj: object, msg?: string): void;
}

export interface AgentStoreOptions {
  /** outbox cap in bytes of unacknowledged segment data (default 512 MiB) */
  maxBytes?: number;
  /** outbox cap in unacknowledged rows (default 100 000) */
  maxRows?: number;
  /** default FULL (see module comment) */
  synchronous?: 'FULL' | 'NORMAL';
  logger?: StoreLogger;
  /** called after rows were dropped by the cap */
  onDrop?: (dropped: { count: number; bytes: number; segmentIds: string[] }) => void;
}

export interface ConfigVersion {
  id: number;
  tsMs: number;
  who: string;
  reason: string;
  text: string;
}

export interface SegmentInput {
  segmentId: string;
  cameraId: string;
  meta: object;
  data: Buffer | Uint8Array;
}

export interface OutboxRow {
  id: number;
  segmentId: string;
  cameraId: string;
  meta: unknown;
  data: Buffer;
  bytes: number;
  createdMs: number;
}

export interface MetricPoint {
  tsMs: number;
  value: number;
}

export interface ResultRow {
  segmentId: string;
  cameraId: string;
  tsMs: number;
  result: unknown;
}

/** Numbered schema migrations; index i takes user_version i → i+1. Append only. */
const MIGRATIONS: string[] = [
  `CREATE TABLE config_versions (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     ts_ms INTEGER NOT NULL,
     who TEXT NOT NULL,
     reason TEXT NOT NULL,
     text TEXT NOT NULL
   );
   CREATE TABLE outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     segment_id TEXT NOT NULL UNIQUE,
     camera_id TEXT NOT NULL,
     meta TEXT NOT NULL,
     data BLOB,
     bytes INTEGER NOT NULL,
     created_ms INTEGER NOT NULL,
     acked_ms INTEGER
   );
   CREATE INDEX outbox_pending ON outbox(id) WHERE acked_ms IS NULL;
   CREATE TABLE metrics (
     name TEXT NOT NULL,
     ts_ms INTEGER NOT NULL,
     value REAL NOT NULL
   );
   CREATE INDEX metrics_name_ts ON metrics(name, ts_ms);
   CREATE INDEX metrics_ts ON metrics(ts_ms);
   CREATE TABLE results (
     segment_id TEXT PRIMARY KEY,
     camera_id TEXT NOT NULL,
     ts_ms INTEGER NOT NULL,
     json TEXT NOT NULL
   );`,
  // answered MQTT commands by transaction (a repeated id gets the same answer, across restarts)
  `CREATE TABLE command_responses (
     key TEXT PRIMARY KEY,
     ts_ms INTEGER NOT NULL,
     json TEXT NOT NULL
   );
   CREATE INDEX command_responses_ts ON command_responses(ts_ms);`,
  // the outbox's depth (rows, bytes) from an index: the bytes column sits after the data BLOB, so the table scan
  // read every unsent segment's overflow pages (~0.3 s per call at the 512 MiB cap; /healthz calls it, unauthenticated)
  `CREATE INDEX outbox_pending_bytes ON outbox(bytes, acked_ms) WHERE acked_ms IS NULL;`,
];

/** config versions kept (newest) */
const MAX_CONFIG_VERSIONS = 500;

/** answered commands kept for repeated transaction ids */
const MAX_COMMAND_RESPONSES = 1000;

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * The outbox byte cap for a volume with `freeBytes` free (besides what the outbox already holds): at most half of
 * it, so the queue (and its write-ahead log, which briefly holds a segment twice) cannot fill the disk and leave no
 * room for the acknowledgements that empty it; never more than the configured cap, and (below that) never under 1 MiB.
 */
export function outboxCapFor(configured: number, freeBytes: number, heldBytes = 0): number {
  return Math.min(configured, Math.max(1 << 20, Math.floor((freeBytes + heldBytes) / 2)));
}

export class AgentStore {
  readonly path: string;
  /** rows dropped by the outbox cap since open */
  droppedTotal = 0;
  private readonly db: Database.Database;
  private readonly maxBytes: number;
  private readonly maxRows: number;
  private readonly logger?: StoreLogger;
  private readonly onDrop?: AgentStoreOptions['onDrop'];
  private readonly st: ReturnType<AgentStore['prepare']>;

  constructor(path: string, opts: AgentStoreOptions = {}) {
    this.path = path;
    this.maxBytes = opts.maxBytes ?? 512 * 1024 * 1024;
    this.maxRows = opts.maxRows ?? 100_000;
    this.logger = opts.logger;
    this.onDrop = opts.onDrop;
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    // the write-ahead log is checkpointed at a quarter of the outbox cap (SQLite's default, 1000 pages = 4 MB, at
    // most) and cut back to that size afterwards: on a small volume the WAL of a burst of segments must not take the
    // space the acknowledgements that empty the outbox need (a 2 MB volume filled up with a 2 MB WAL and never recovered)
    const walPages = Math.max(16, Math.min(1000, Math.floor(this.maxBytes / 4 / 4096)));
    this.db.pragma(`wal_autocheckpoint = ${walPages}`);
    this.db.pragma(`journal_size_limit = ${walPages * 4096}`);
    this.db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    this.st = this.prepare();
  }

  /** PRAGMA user_version after migrations. */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw new Error(`${this.path}: database schema v${current} is newer than this code (v${MIGRATIONS.length})`);
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  private prepare() {
    const db = this.db;
    return {
      saveConfig: db.prepare('INSERT INTO config_versions (ts_ms, who, reason, text) VALUES (?, ?, ?, ?)'),
      latestConfig: db.prepare('SELECT id, ts_ms AS tsMs, who, reason, text FROM config_versions ORDER BY id DESC LIMIT 1'),
      getConfig: db.prepare('SELECT id, ts_ms AS tsMs, who, reason, text FROM config_versions WHERE id = ?'),
      listConfig: db.prepare('SELECT id, ts_ms AS tsMs, who, reason, text FROM config_versions ORDER BY id DESC LIMIT ?'),
      insertSeg: db.prepare(
        'INSERT INTO outbox (segment_id, camera_id, meta, data, bytes, created_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(segment_id) DO NOTHING',
      ),
      segIdOf: db.prepare('SELECT id FROM outbox WHERE segment_id = ?'),
      pending: db.prepare(
        'SELECT id, segment_id AS segmentId, camera_id AS cameraId, meta, data, bytes, created_ms AS createdMs FROM outbox WHERE acked_ms IS NULL ORDER BY id LIMIT ?',
      ),
      // the same, leaving out a JSON array of segment ids (the uplink's in-flight and deferred ones): their rows,
      // blobs included, are not read
      pendingExcept: db.prepare(
        'SELECT id, segment_id AS segmentId, camera_id AS cameraId, meta, data, bytes, created_ms AS createdMs FROM outbox WHERE acked_ms IS NULL AND segment_id NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?',
      ),
      pendingIds: db.prepare('SELECT segment_id AS segmentId FROM outbox WHERE acked_ms IS NULL AND segment_id IN (SELECT value FROM json_each(?))'),
      ack: db.prepare('UPDATE outbox SET acked_ms = ?, data = NULL WHERE segment_id = ? AND acked_ms IS NULL'),
      isAcked: db.prepare('SELECT acked_ms AS ackedMs FROM outbox WHERE segment_id = ?'),
      stats: db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM outbox WHERE acked_ms IS NULL'),
      oldestPending: db.prepare('SELECT id, segment_id AS segmentId, bytes FROM outbox WHERE acked_ms IS NULL AND id <> ? ORDER BY id LIMIT ?'),
      deleteId: db.prepare('DELETE FROM outbox WHERE id = ?'),
      pruneAcked: db.prepare('DELETE FROM outbox WHERE acked_ms IS NOT NULL AND acked_ms < ?'),
      recordMetric: db.prepare('INSERT INTO metrics (name, ts_ms, value) VALUES (?, ?, ?)'),
      metricHistory: db.prepare('SELECT ts_ms AS tsMs, value FROM metrics WHERE name = ? AND ts_ms >= ? ORDER BY ts_ms'),
      pruneMetrics: db.prepare('DELETE FROM metrics WHERE ts_ms < ?'),
      saveResult: db.prepare(
        'INSERT INTO results (segment_id, camera_id, ts_ms, json) VALUES (?, ?, ?, ?) ON CONFLICT(segment_id) DO UPDATE SET camera_id = excluded.camera_id, ts_ms = excluded.ts_ms, json = excluded.json',
      ),
      getResult: db.prepare('SELECT segment_id AS segmentId, camera_id AS cameraId, ts_ms AS tsMs, json FROM results WHERE segment_id = ?'),
      listResults: db.prepare(
        'SELECT segment_id AS segmentId, camera_id AS cameraId, ts_ms AS tsMs, json FROM results WHERE camera_id = ? AND ts_ms >= ? ORDER BY ts_ms LIMIT ?',
      ),
    };
  }

  // ---- config versions -------------------------------------------------------------------

  /** Record a config text; returns its version id (increasing). */
  saveConfigVersion(text: string, who: string, reason: string): number {
    return this.db.transaction(() => {
      const id = Number(this.st.saveConfig.run(Date.now(), who, reason, text).lastInsertRowid);
      this.db.prepare('DELETE FROM config_versions WHERE id <= ?').run(id - MAX_CONFIG_VERSIONS); // bounded history
      return id;
    })();
  }

  latestConfigVersion(): ConfigVersion | undefined {
    return this.st.latestConfig.get() as ConfigVersion | undefined;
  }

  getConfigVersion(id: number): ConfigVersion | undefined {
    return this.st.getConfig.get(id) as ConfigVersion | undefined;
  }

  /** Newest first. */
  listConfigVersions(limit = 20): ConfigVersion[] {
    return this.st.listConfig.all(limit) as ConfigVersion[];
  }

  // ---- outbox --------------------------------------------------------------------------

  /**
   * Add a segment to the outbox; returns its row id. Idempotent on segmentId: a second enqueue of
   * the same id returns the existing row id and changes nothing (an acked segment stays acked).
   * Then applies the cap (drops oldest unacknowledged rows, logged; see module comment).
   */
  enqueue(seg: SegmentInput): number {
    const data = Buffer.isBuffer(seg.data) ? seg.data : Buffer.from(seg.data.buffer, seg.data.byteOffset, seg.data.byteLength);
    let dropped: { count: number; bytes: number; segmentIds: string[] } | undefined;
    const id = this.db.transaction(() => {
      const info = this.st.insertSeg.run(seg.segmentId, seg.cameraId, JSON.stringify(seg.meta), data, data.byteLength, Date.now());
      if (info.changes === 0) return (this.st.segIdOf.get(seg.segmentId) as { id: number }).id;
      const newId = Number(info.lastInsertRowid);
      dropped = this.applyCap(newId);
      return newId;
    })();
    if (dropped && dropped.count > 0) {
      this.droppedTotal += dropped.count;
      this.logger?.warn(
        { component: 'store', dropped: dropped.count, droppedBytes: dropped.bytes, droppedTotal: this.droppedTotal, maxBytes: this.maxBytes, maxRows: this.maxRows },
        `outbox cap reached: dropped ${dropped.count} oldest unacknowledged segment(s)`,
      );
      this.onDrop?.(dropped);
    }
    return id;
  }

  private applyCap(keepId: number): { count: number; bytes: number; segmentIds: string[] } {
    let { n, b } = this.st.stats.get() as { n: number; b: number };
    const out = { count: 0, bytes: 0, segmentIds: [] as string[] };
    while (n > this.maxRows || b > this.maxBytes) {
      const victims = this.st.oldestPending.all(keepId, 64) as { id: number; segmentId: string; bytes: number }[];
      if (victims.length === 0) break;
      for (const v of victims) {
        if (!(n > this.maxRows || b > this.maxBytes)) break;
        this.st.deleteId.run(v.id);
        n -= 1;
        b -= v.bytes;
        out.count += 1;
        out.bytes += v.bytes;
        out.segmentIds.push(v.segmentId);
      }
    }
    return out;
  }

  /** Unacknowledged segments, oldest first, leaving out the segment ids in `exclude` (in SQL: their data is not read). */
  pending(limit = 100, exclude?: Iterable<string>): OutboxRow[] {
    const skip = exclude ? [...exclude] : [];
    const rows = (skip.length ? this.st.pendingExcept.all(JSON.stringify(skip), limit) : this.st.pending.all(limit)) as (Omit<OutboxRow, 'meta'> & { meta: string })[];
    return rows.map((r) => ({ ...r, meta: JSON.parse(r.meta) as unknown }));
  }

  /** Which of these segment ids are still unacknowledged (not acked, not dropped by the cap, not pruned). */
  pendingIds(segmentIds: Iterable<string>): Set<string> {
    const ids = [...segmentIds];
    if (ids.length === 0) return new Set();
    return new Set((this.st.pendingIds.all(JSON.stringify(ids)) as { segmentId: string }[]).map((r) => r.segmentId));
  }

  /** Mark a segment acknowledged (frees its data). Returns false if unknown or already acked. */
  ack(segmentId: string): boolean {
    return this.st.ack.run(Date.now(), segmentId).changes > 0;
  }

  /** true: acked; false: pending; undefined: never enqueued (or dropped by the cap / pruned). */
  isAcked(segmentId: string): boolean | undefined {
    const row = this.st.isAcked.get(segmentId) as { ackedMs: number | null } | undefined;
    return row === undefined ? undefined : row.ackedMs !== null;
  }

  /** Number of unacknowledged segments. */
  depth(): number {
    return (this.st.stats.get() as { n: number }).n;
  }

  /** Bytes of unacknowledged segment data. */
  bytesPending(): number {
    return (this.st.stats.get() as { b: number }).b;
  }

  /** Delete acked rows acked before `olderThanMs` (epoch ms). Returns the count. */
  pruneAcked(olderThanMs: number): number {
    return this.st.pruneAcked.run(olderThanMs).changes;
  }

  // ---- command responses (MQTT transaction ids) --------------------------------------------

  getCommandResponse(key: string): unknown {
    const r = this.db.prepare('SELECT json FROM command_responses WHERE key = ?').get(key) as { json: string } | undefined;
    return r ? (JSON.parse(r.json) as unknown) : undefined;
  }

  /** Keep one answer (bounded: the oldest beyond MAX_COMMAND_RESPONSES go). */
  putCommandResponse(key: string, response: unknown): void {
    this.db.transaction(() => {
      this.db.prepare('INSERT OR REPLACE INTO command_responses (key, ts_ms, json) VALUES (?, ?, ?)').run(key, Date.now(), JSON.stringify(response));
      this.db.prepare('DELETE FROM command_responses WHERE key IN (SELECT key FROM command_responses ORDER BY ts_ms DESC, rowid DESC LIMIT -1 OFFSET ?)').run(MAX_COMMAND_RESPONSES);
    })();
  }

  // ---- metrics -------------------------------------------------------------------------

  recordMetric(name: string, value: number, tsMs: number = Date.now()): void {
    this.st.recordMetric.run(name, Math.round(tsMs), value);
  }

  /** Points of one metric with ts >= sinceMs, oldest first. */
  metricHistory(name: string, sinceMs: number): MetricPoint[] {
    return this.st.metricHistory.all(name, sinceMs) as MetricPoint[];
  }

  /** Delete points older than now - retentionMs. Returns the count. */
  pruneMetrics(retentionMs: number, nowMs: number = Date.now()): number {
    return this.st.pruneMetrics.run(nowMs - retentionMs).changes;
  }

  // ---- results (server reuse) ----------------------------------------------------------

  /** Upsert a JSON result for a segment. */
  saveResult(segmentId: string, cameraId: string, result: unknown, tsMs: number = Date.now()): void {
    this.st.saveResult.run(segmentId, cameraId, tsMs, JSON.stringify(result));
  }

  getResult(segmentId: string): ResultRow | undefined {
    const r = this.st.getResult.get(segmentId) as (Omit<ResultRow, 'result'> & { json: string }) | undefined;
    return r && { segmentId: r.segmentId, cameraId: r.cameraId, tsMs: r.tsMs, result: JSON.parse(r.json) as unknown };
  }

  listResults(cameraId: string, sinceMs = 0, limit = 1000): ResultRow[] {
    const rows = this.st.listResults.all(cameraId, sinceMs, limit) as (Omit<ResultRow, 'result'> & { json: string })[];
    return rows.map((r) => ({ segmentId: r.segmentId, cameraId: r.cameraId, tsMs: r.tsMs, result: JSON.parse(r.json) as unknown }));
  }

  // ---- maintenance ---------------------------------------------------------------------

  /** PRAGMA integrity_check; 'ok' when healthy. */
  integrityCheck(): string {
    return (this.db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
