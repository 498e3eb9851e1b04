import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AgentStore, outboxCapFor, SCHEMA_VERSION } from '../agent/store.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camstream-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const seg = (id: string, bytes = 100) => ({ segmentId: id, cameraId: 'cam0', meta: { id, frames: 10 }, data: Buffer.alloc(bytes, 7) });

test('opens in WAL with synchronous FULL and migrates via user_version', () => {
  const path = join(dir, 'sub/agent.db');
  const s = new AgentStore(path);
  expect(s.schemaVersion).toBe(SCHEMA_VERSION);
  s.close();
  const db = new Database(path);
  expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
  expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
  db.close();
  // reopening does not re-run migrations
  const s2 = new AgentStore(path);
  expect(s2.schemaVersion).toBe(SCHEMA_VERSION);
  s2.close();
});

test('refuses a database from a newer schema', () => {
  const path = join(dir, 'agent.db');
  new AgentStore(path).close();
  const db = new Database(path);
  db.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
  db.close();
  expect(() => new AgentStore(path)).toThrow(/newer than this code/);
});

test('config versions: save, latest, list newest first with when/who/reason', () => {
  const s = new AgentStore(join(dir, 'a.db'));
  expect(s.latestConfigVersion()).toBeUndefined();
  const a = s.saveConfigVersion('deviceId: a\n', 'file', 'startup');
  const b = s.saveConfigVersion('deviceId: b\n', 'mqtt:alice', 'lower qp');
  expect(b).toBeGreaterThan(a);
  expect(s.latestConfigVersion()).toMatchObject({ id: b, who: 'mqtt:alice', reason: 'lower qp', text: 'deviceId: b\n' });
  const list = s.listConfigVersions(10);
  expect(list.map((v) => v.id)).toEqual([b, a]);
  expect(typeof list[0].tsMs).toBe('number');
  expect(s.listConfigVersions(1)).toHaveLength(1);
  expect(s.getConfigVersion(a)?.text).toBe('deviceId: a\n');
  s.close();
});

test('outbox: enqueue is idempotent, pending oldest first, ack, depth, bytes', () => {
  const s = new AgentStore(join(dir, 'a.db'));
  const id1 = s.enqueue(seg('s1', 100));
  const id2 = s.enqueue(seg('s2', 50));
  expect(s.enqueue(seg('s1', 999))).toBe(id1);
  expect(id2).toBeGreaterThan(id1);
  expect(s.depth()).toBe(2);
  expect(s.bytesPending()).toBe(150);
  const p = s.pending(10);
  expect(p.map((r) => r.segmentId)).toEqual(['s1', 's2']);
  expect(p[0].data.equals(Buffer.alloc(100, 7))).toBe(true);
  expect(p[0].meta).toEqual({ id: 's1', frames: 10 });
  expect(p[0].cameraId).toBe('cam0');
  expect(s.pending(1)).toHaveLength(1);
  expect(s.ack('s1')).toBe(true);
  expect(s.ack('s1')).toBe(false);
  expect(s.ack('nope')).toBe(false);
  expect(s.isAcked('s1')).toBe(true);
  expect(s.isAcked('s2')).toBe(false);
  expect(s.isAcked('nope')).toBeUndefined();
  expect(s.depth()).toBe(1);
  expect(s.bytesPending()).toBe(50);
  // a late duplicate of an acked segment stays acked
  s.enqueue(seg('s1'));
  expect(s.isAcked('s1')).toBe(true);
  expect(s.depth()).toBe(1);
  expect(s.pruneAcked(Date.now() + 1)).toBe(1);
  expect(s.isAcked('s1')).toBeUndefined();
  // Uint8Array views are stored as their bytes only
  const big = new Uint8Array(10).map((_, i) => i);
  s.enqueue({ segmentId: 'u8', cameraId: 'cam0', meta: {}, data: big.subarray(2, 5) });
  expect([...s.pending(10).find((r) => r.segmentId === 'u8')!.data]).toEqual([2, 3, 4]);
  s.close();
});

test('outbox survives reopen', () => {
  const path = join(dir, 'a.db');
  const s = new AgentStore(path);
  s.enqueue(seg('x'));
  s.enqueue(seg('y'));
  s.ack('x');
  s.close();
  const s2 = new AgentStore(path);
  expect(s2.pending(10).map((r) => r.segmentId)).toEqual(['y']);
  s2.close();
});

test('outbox cap drops the oldest unacknowledged rows, logs the count, keeps the newest', () => {
  const warnings: { obj: object; msg?: string }[] = [];
  const drops: number[] = [];
  const s = new AgentStore(join(dir, 'a.db'), {
    maxRows: 3,
    maxBytes: 1000,
    logger: { warn: (obj, msg) => warnings.push({ obj, msg }) },
    onDrop: (d) => drops.push(d.count),
  });
  for (const id of ['a', 'b', 'c']) s.enqueue(seg(id, 100));
  s.ack('a'); // acked rows do not count against the cap
  s.enqueue(seg('d', 100));
  expect(s.depth()).toBe(3);
  expect(warnings).toHaveLength(0);
  s.enqueue(seg('e', 100));
  expect(s.pending(10).map((r) => r.segmentId)).toEqual(['c', 'd', 'e']);
  expect(warnings).toHaveLength(1);
  expect(warnings[0].obj).toMatchObject({ dropped: 1 });
  expect(warnings[0].msg).toMatch(/dropped 1 oldest/);
  // byte cap: one 900-byte segment pushes out the two oldest (1200 -> 1000 bytes, cap is 1000)
  s.enqueue(seg('big', 900));
  expect(s.pending(10).map((r) => r.segmentId)).toEqual(['e', 'big']);
  expect(s.bytesPending()).toBe(1000);
  // a segment bigger than the whole cap is still kept (never drop the one just enqueued)
  s.enqueue(seg('huge', 5000));
  expect(s.pending(10).map((r) => r.segmentId)).toEqual(['huge']);
  expect(drops).toEqual([1, 2, 2]);
  expect(s.droppedTotal).toBe(5);
  expect(s.isAcked('a')).toBe(true);
  s.close();
});

test('metrics: record, history since, prune by retention', () => {
  const s = new AgentStore(join(dir, 'a.db'));
  const now = Date.now();
  s.recordMetric('camstream_segment_bytes', 10, now - 10_000);
  s.recordMetric('camstream_segment_bytes', 20, now - 5_000);
  s.recordMetric('camstream_segment_bytes', 30, now);
  s.recordMetric('other', 1, now);
  expect(s.metricHistory('camstream_segment_bytes', now - 6_000)).toEqual([
    { tsMs: now - 5_000, value: 20 },
    { tsMs: now, value: 30 },
  ]);
  expect(s.pruneMetrics(7_000, now)).toBe(1);
  expect(s.metricHistory('camstream_segment_bytes', 0).map((p) => p.value)).toEqual([20, 30]);
  s.recordMetric('implicit_ts', 5);
  expect(s.metricHistory('implicit_ts', now - 1000)).toHaveLength(1);
  s.close();
});

test('results: upsert JSON per segment and list by camera', () => {
  const s = new AgentStore(join(dir, 'a.db'));
  s.saveResult('s1', 'cam0', { boxes: [1, 2] }, 100);
  s.saveResult('s1', 'cam0', { boxes: [3] }, 200);
  s.saveResult('s2', 'cam1', { boxes: [] }, 150);
  expect(s.getResult('s1')).toEqual({ segmentId: 's1', cameraId: 'cam0', tsMs: 200, result: { boxes: [3] } });
  expect(s.listResults('cam0').map((r) => r.segmentId)).toEqual(['s1']);
  expect(s.getResult('zz')).toBeUndefined();
  expect(s.integrityCheck()).toBe('ok');
  s.close();
  s.close(); // idempotent
});

test('the outbox depth is read from a covering index, not the segment blobs (/healthz calls it unauthenticated)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'store-depth-'));
  const s = new AgentStore(join(dir, 'agent.db'));
  try {
    const plan = (s as unknown as { db: { prepare(q: string): { all(): { detail: string }[] } } }).db
      .prepare('EXPLAIN QUERY PLAN SELECT COUNT(*) AS n, COALESCE(SUM(bytes), 0) AS b FROM outbox WHERE acked_ms IS NULL').all();
    expect(plan.map((r) => r.detail).join(' ')).toMatch(/COVERING INDEX outbox_pending_bytes/);
  } finally {
    s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('on a small volume the outbox is capped at half its free space (never above the configured cap); the WAL is size-limited', () => {
  const MiB = 1 << 20;
  expect(outboxCapFor(512 * MiB, 2 * MiB)).toBe(1 * MiB); // a 2 MB tmpfs: 1 MB of segments, the rest for the WAL and acks
  expect(outboxCapFor(512 * MiB, 10 * MiB, 4 * MiB)).toBe(7 * MiB); // what the outbox already holds counts as room
  expect(outboxCapFor(512 * MiB, 100 * 1024 * MiB)).toBe(512 * MiB); // a big disk: the configured cap
  expect(outboxCapFor(512 * MiB, 0)).toBe(MiB); // a full disk: a floor, not zero
  expect(outboxCapFor(200_000, 50e9)).toBe(200_000); // never above what is configured, even under the floor
  const big = new AgentStore(join(dir, 'wal-big.db'));
  expect(Number(big['db'].pragma('journal_size_limit', { simple: true }))).toBe(1000 * 4096); // SQLite's default checkpoint size
  big.close();
  const small = new AgentStore(join(dir, 'wal-small.db'), { maxBytes: MiB });
  expect(Number(small['db'].pragma('wal_autocheckpoint', { simple: true }))).toBe(64); // a quarter of 1 MiB in 4 KiB pages
  expect(Number(small['db'].pragma('journal_size_limit', { simple: true }))).toBe(MiB / 4);
  small.close();
});
