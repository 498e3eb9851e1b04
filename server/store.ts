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

export class ServerStore implements ReplyStore {
  private db: Database.Database;

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL'); // a reply is only sent after its row is durable
    this.db.exec(`CREATE TABLE IF NOT EXISTS results (
      segment_id TEXT PRIMARY KEY,
      camera_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      bytes INTEGER NOT NULL,
      f1 REAL,
      header TEXT NOT NULL,
      reply TEXT NOT NULL,
      created_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS results_camera ON results(camera_id, seq);
    CREATE TABLE IF NOT EXISTS failures (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      segment_id TEXT,
      camera_id TEXT,
      error TEXT NOT NULL,
      data BLOB NOT NULL,
      created_at INTEGER NOT NULL
    );`);
  }

  getReply(segmentId: string): Reply | null {
    const row = this.db.prepare('SELECT reply FROM results WHERE segment_id = ?').get(segmentId) as { reply: string } | undefined;
    return row ? (JSON.parse(row.reply) as Reply) : null;
  }

  /** `wireBytes`: what the segment cost on the uplink (video, reference frame, headers); default: the header's account */
  saveReply(header: SegmentHeader, reply: Reply, wireBytes?: number): void {
    this.db
      .prepare('INSERT OR IGNORE INTO results (segment_id, camera_id, seq, bytes, f1, header, reply, created_at) VALUES (?,?,?,?,?,?,?,?)')
      .run(header.segmentId, header.cameraId, header.seq, wireBytes ?? segmentWireBytes(header).total, reply.f1?.f1 ?? null, JSON.stringify(header), JSON.stringify(reply), Date.now());
  }

  saveFailure(segmentId: string | undefined, cameraId: string | null, error: string, raw: Buffer): void {
    this.db.prepare('INSERT INTO failures (segment_id, camera_id, error, data, created_at) VALUES (?,?,?,?,?)').run(segmentId ?? null, cameraId, error, raw, Date.now());
  }

  failures(): { segmentId: string | null; cameraId: string | null; error: string; bytes: number }[] {
    return (this.db.prepare('SELECT segment_id, camera_id, error, length(data) AS bytes FROM failures ORDER BY id').all() as Array<Record<string, unknown>>).map((r) => ({
      segmentId: r.segment_id as string | null,
      cameraId: r.camera_id as string | null,
      error: r.error as string,
      bytes: r.bytes as number,
    }));
  }

  results(cameraId?: string): StoredResult[] {
    const rows = (cameraId
      ? this.db.prepare('SELECT segment_id, camera_id, seq, bytes, f1, created_at FROM results WHERE camera_id = ? ORDER BY seq').all(cameraId)
      : this.db.prepare('SELECT segment_id, camera_id, seq, bytes, f1, created_at FROM results ORDER BY camera_id, seq').all()) as Array<Record<string, unknown>>;
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
      .prepare(`SELECT camera_id, json_extract(header, '$.capturedAt') AS t, json_extract(reply, '$.detections') AS d FROM results WHERE json_extract(header, '$.capturedAt') >= ? ORDER BY t`)
      .all(sinceMs) as { camera_id: string; t: number; d: string }[];
    return rows.map((r) => ({ cameraId: r.camera_id, capturedAt: r.t, detections: JSON.parse(r.d) as number[][][] }));
  }

  /** capturedAt of the newest segment (ms), or null when there is none. */
  latestCapture(): number | null {
    const r = this.db.prepare(`SELECT max(json_extract(header, '$.capturedAt')) AS t FROM results`).get() as { t: number | null };
    return r.t;
  }

  close(): void {
    this.db.close();
  }
}
