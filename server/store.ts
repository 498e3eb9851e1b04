/**
 * Server-side results store (SQLite, WAL): one row per processed segment with its reply,
 * so a resent segment is answered without reprocessing, and results survive restarts.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { segmentWireBytes, type Reply, type SegmentHeader } from '../wire/protocol.ts';
import type { ReplyStore } from './ingest.ts';
import type { SegmentEvents } from '../cacheblend/eventlog.ts';
import type { CameraSummary } from './fleet-api.ts';

export interface StoredResult {
  segmentId: string;
  cameraId: string;
  seq: number;
  bytes: number;
  f1: number | null;
  createdAt: number;
}

export interface FailureLimits {
  /** rows kept in the failures table (oldest dropped beyond); default 1000 */
  maxRows: number;
  /** bytes of raw segments kept (oldest dropped beyond); default 256 MiB */
  maxBytes: number;
  /** failures older than this are deleted; default 7 days */
  retentionMs: number;
}

export const DEFAULT_FAILURE_LIMITS: FailureLimits = { maxRows: 1000, maxBytes: 256 << 20, retentionMs: 7 * 24 * 3600_000 };

/** Numbered schema migrations (PRAGMA user_version); index i takes version i → i+1. Append only. */
const MIGRATIONS: string[] = [
  `CREATE TABLE IF NOT EXISTS results (
      segment_id TEXT PRIMARY KEY,
      camera_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      bytes INTEGER NOT NULL,
      f1 REAL,
      header TEXT NOT NULL,
      reply TEXT NOT NULL,
      created_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS failures (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      segment_id TEXT,
      camera_id TEXT,
      error TEXT NOT NULL,
      data BLOB NOT NULL,
      created_at INTEGER NOT NULL
    );`,
  // dedup keyed by (camera, segment): one camera can never claim another's segment id
  `CREATE TABLE results_v2 (
      camera_id TEXT NOT NULL,
      segment_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      bytes INTEGER NOT NULL,
      f1 REAL,
      header TEXT NOT NULL,
      reply TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      PRIMARY KEY (camera_id, segment_id)
    );
    INSERT INTO results_v2 SELECT camera_id, segment_id, seq, bytes, f1, header, reply, created_at FROM results;
    DROP TABLE results;
    ALTER TABLE results_v2 RENAME TO results;
    CREATE INDEX results_camera ON results(camera_id, created_at);
    CREATE INDEX failures_created ON failures(created_at);`,
  // capture time as a column (the ask window and latestCapture scanned every header's JSON), and indexes for the
  // fleet page's last segment per camera and for retention
  `ALTER TABLE results ADD COLUMN captured_at INTEGER;
    UPDATE results SET captured_at = json_extract(header, '$.capturedAt');
    CREATE INDEX results_captured ON results(captured_at);
    CREATE INDEX results_camera_seq ON results(camera_id, seq);
    CREATE INDEX results_created ON results(created_at);`,
];

export class ServerStore implements ReplyStore {
  private db: Database.Database;
  private readonly failureLimits: FailureLimits;

  constructor(file: string, opts: { failures?: Partial<FailureLimits> } = {}) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.failureLimits = { ...DEFAULT_FAILURE_LIMITS, ...opts.failures };
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL'); // a reply is only sent after its row is durable
    const current = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  getReply(cameraId: string, segmentId: string): Reply | null {
    const row = this.db.prepare('SELECT reply FROM results WHERE camera_id = ? AND segment_id = ?').get(cameraId, segmentId) as { reply: string } | undefined;
    return row ? (JSON.parse(row.reply) as Reply) : null;
  }

  /** `wireBytes`: what the segment cost on the uplink (video, reference frame, headers); default: the header's account */
  saveReply(header: SegmentHeader, reply: Reply, wireBytes?: number): void {
    this.db
      .prepare('INSERT OR IGNORE INTO results (camera_id, segment_id, seq, bytes, f1, header, reply, created_at, captured_at) VALUES (?,?,?,?,?,?,?,?,?)')
      .run(header.cameraId, header.segmentId, header.seq, wireBytes ?? segmentWireBytes(header).total, reply.f1?.f1 ?? null, JSON.stringify(header), JSON.stringify(reply), Date.now(), header.capturedAt);
  }

  /**
   * Retention: delete results stored before `beforeMs`, at most `batch` rows per transaction (a long delete must
   * not hold the write lock that ingest needs). Returns the number deleted.
   */
  pruneResults(beforeMs: number, batch = 5000): number {
    const del = this.db.prepare('DELETE FROM results WHERE rowid IN (SELECT rowid FROM results WHERE created_at < ? LIMIT ?)');
    let total = 0;
    for (;;) {
      const n = del.run(beforeMs, batch).changes;
      total += n;
      if (n < batch) return total;
    }
  }

  /**
   * Keep a rejected segment's bytes, within the failure limits: expired rows go first, then the oldest rows of the
   * camera that holds the most rows (or bytes, for the byte limit), so one camera (a buggy agent, a stolen token) sending junk pushes out its own
   * rows, not the segments other cameras' agents have already deleted as final.
   */
  saveFailure(segmentId: string | undefined, cameraId: string | null, error: string, raw: Buffer): void {
    const l = this.failureLimits;
    this.db.transaction(() => {
      this.db.prepare('INSERT INTO failures (segment_id, camera_id, error, data, created_at) VALUES (?,?,?,?,?)').run(segmentId ?? null, cameraId, error.slice(0, 1000), raw, Date.now());
      this.db.prepare('DELETE FROM failures WHERE created_at < ?').run(Date.now() - l.retentionMs);
      let { n, b } = this.db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(length(data)), 0) AS b FROM failures').get() as { n: number; b: number };
      // over the row limit: the camera with the most rows gives one up; over the byte limit: the one with the most bytes
      const mostRows = this.db.prepare('SELECT camera_id AS c FROM failures GROUP BY camera_id ORDER BY COUNT(*) DESC, SUM(length(data)) DESC LIMIT 1');
      const mostBytes = this.db.prepare('SELECT camera_id AS c FROM failures GROUP BY camera_id ORDER BY SUM(length(data)) DESC, COUNT(*) DESC LIMIT 1');
      const oldest = this.db.prepare('SELECT id, length(data) AS len FROM failures WHERE camera_id IS ? ORDER BY id LIMIT 1');
      const del = this.db.prepare('DELETE FROM failures WHERE id = ?');
      while (n > 1 && (n > l.maxRows || b > l.maxBytes)) {
        const { c } = (n > l.maxRows ? mostRows : mostBytes).get() as { c: string | null };
        const r = oldest.get(c) as { id: number; len: number };
        del.run(r.id);
        n--;
        b -= r.len;
      }
    })();
  }

  failures(): { segmentId: string | null; cameraId: string | null; error: string; bytes: number }[] {
    return (this.db.prepare('SELECT segment_id, camera_id, error, length(data) AS bytes FROM failures ORDER BY id').all() as Array<Record<string, unknown>>).map((r) => ({
      segmentId: r.segment_id as string | null,
      cameraId: r.camera_id as string | null,
      error: r.error as string,
      bytes: r.bytes as number,
    }));
  }

  /** Results, oldest first; one camera's when given; at most `limit` rows (the newest ones). */
  results(cameraId?: string, limit = 100_000): StoredResult[] {
    const cols = 'segment_id, camera_id, seq, bytes, f1, created_at';
    const rows = (cameraId
      ? this.db.prepare(`SELECT * FROM (SELECT ${cols}, rowid AS r FROM results WHERE camera_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?) ORDER BY seq, created_at, r`).all(cameraId, limit)
      : this.db.prepare(`SELECT * FROM (SELECT ${cols}, rowid AS r FROM results ORDER BY created_at DESC, rowid DESC LIMIT ?) ORDER BY camera_id, seq, created_at, r`).all(limit)) as Array<Record<string, unknown>>;
    return rows.map((r) => ({ segmentId: r.segment_id as string, cameraId: r.camera_id as string, seq: r.seq as number, bytes: r.bytes as number, f1: r.f1 as number | null, createdAt: r.created_at as number }));
  }

  /** Per camera: segments, bytes on the wire (the `bytes` column), mean F1, last segment's knobs (fleet page). */
  fleet(): CameraSummary[] {
    const rows = this.db
      .prepare(
        `SELECT camera_id, count(*) AS n, sum(bytes) AS wire, avg(f1) AS f1,
           (SELECT header FROM results l WHERE l.camera_id = r.camera_id ORDER BY seq DESC LIMIT 1) AS last_header,
           (SELECT f1 FROM results l WHERE l.camera_id = r.camera_id ORDER BY seq DESC LIMIT 1) AS last_f1,
           (SELECT bytes FROM results l WHERE l.camera_id = r.camera_id ORDER BY seq DESC LIMIT 1) AS last_bytes
         FROM results r GROUP BY camera_id ORDER BY camera_id`,
      )
      .all() as { camera_id: string; n: number; wire: number; f1: number | null; last_header: string; last_f1: number | null; last_bytes: number }[];
    return rows.map((r) => {
      const h = JSON.parse(r.last_header) as SegmentHeader;
      return {
        cameraId: r.camera_id,
        segments: r.n,
        bytes: r.wire,
        f1: r.f1,
        knobs: h.knobs,
        last: { seq: h.seq, capturedAt: h.capturedAt, bytes: r.last_bytes, f1: r.last_f1 },
      };
    });
  }

  /** Detections of every segment captured at or after `sinceMs` (the event logs' source). */
  segmentEvents(sinceMs: number): SegmentEvents[] {
    const rows = this.db
      .prepare(`SELECT camera_id, captured_at AS t, json_extract(reply, '$.detections') AS d FROM results WHERE captured_at >= ? ORDER BY captured_at`)
      .all(sinceMs) as { camera_id: string; t: number; d: string }[];
    return rows.map((r) => ({ cameraId: r.camera_id, capturedAt: r.t, detections: JSON.parse(r.d) as number[][][] }));
  }

  /**
   * capturedAt of the newest segment (ms), or null when there is none. Times past `nowMs + maxSkewMs` are
   * ignored: capturedAt is the camera's claim, and one camera whose clock runs ahead must not move every later
   * question's window (an hour) away from the fleet's real data; 5 minutes of skew are tolerated.
   */
  latestCapture(nowMs = Date.now(), maxSkewMs = 5 * 60_000): number | null {
    const r = this.db.prepare('SELECT max(captured_at) AS t FROM results WHERE captured_at <= ?').get(nowMs + maxSkewMs) as { t: number | null };
    return r.t;
  }

  close(): void {
    this.db.close();
  }
}
