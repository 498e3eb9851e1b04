/** The server's results store: the capture-time column (migrated from the stored headers) and retention. */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ServerStore } from '../server/store.ts';
import { PROTOCOL_VERSION, type Reply, type SegmentHeader } from '../wire/protocol.ts';

const T0 = Date.UTC(2026, 0, 5, 14, 0, 0);
const header = (cameraId: string, seq: number, capturedAt: number): SegmentHeader => ({
  type: 'segment', v: PROTOCOL_VERSION, segmentId: `${cameraId}-${seq}`, cameraId, seq, codec: 'h264', width: 640, height: 360, fps: 10, frameCount: 10, ptsMs: [], capturedAt, knobs: {}, videoBytes: 1000,
});
const reply = (h: SegmentHeader): Reply => ({ type: 'reply', segmentId: h.segmentId, seq: h.seq, detections: [[[0, 0, 10, 10, 0.9, 2]]], f1: null, dnngrad: null, timings: { decodeMs: 1, detectMs: 1, gradMs: 0 } }) as Reply;

let dir: string;
beforeEach(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'server-store-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('a store from before the capture-time column is migrated: rows kept, capture times filled from their headers', () => {
  const file = path.join(dir, 'server.db');
  const s1 = new ServerStore(file);
  for (let i = 0; i < 3; i++) s1.saveReply(header('gate', i, T0 + i * 60_000), reply(header('gate', i, T0 + i * 60_000)));
  s1.close();
  // back to the previous schema version (no column, no new indexes), as an older server left it
  const db = new Database(file);
  const v = db.pragma('user_version', { simple: true }) as number;
  db.exec('DROP INDEX results_captured; DROP INDEX results_camera_seq; DROP INDEX results_created; ALTER TABLE results DROP COLUMN captured_at;');
  db.pragma(`user_version = ${v - 1}`);
  db.close();
  const s2 = new ServerStore(file);
  try {
    expect(s2.latestCapture(T0)).toBe(T0 + 2 * 60_000);
    expect(s2.segmentEvents(T0 + 60_000).map((e) => e.capturedAt)).toEqual([T0 + 60_000, T0 + 2 * 60_000]);
    expect(s2.results('gate')).toHaveLength(3);
  } finally {
    s2.close();
  }
});

test('pruneResults deletes what was stored before the cut-off, in batches, and nothing newer', () => {
  const s = new ServerStore(path.join(dir, 'server.db'));
  try {
    for (let i = 0; i < 7; i++) s.saveReply(header('dock', i, T0 + i), reply(header('dock', i, T0 + i)));
    const cut = Date.now() + 1; // every row so far is older
    expect(s.pruneResults(cut, 2)).toBe(7);
    while (Date.now() <= cut) { /* the next row is stored after the cut-off */ }
    s.saveReply(header('dock', 7, T0 + 7), reply(header('dock', 7, T0 + 7)));
    expect(s.pruneResults(cut, 2)).toBe(0);
    expect(s.results('dock').map((r) => r.seq)).toEqual([7]);
  } finally {
    s.close();
  }
});

test('kept failures stay within the limits, and a camera sending junk pushes out its own rows, not another camera\'s', () => {
  const s = new ServerStore(':memory:', { failures: { maxRows: 10, maxBytes: 1 << 20 } });
  try {
    s.saveFailure('camA-1', 'camA', 'cannot decode', Buffer.alloc(300, 1)); // already deleted on camA as final
    for (let i = 0; i < 50; i++) s.saveFailure(`camB-${i}`, 'camB', 'junk', Buffer.alloc(5, i));
    const kept = s.failures();
    expect(kept).toHaveLength(10);
    expect(kept.filter((f) => f.cameraId === 'camA').map((f) => f.segmentId)).toEqual(['camA-1']);
    expect(kept.filter((f) => f.cameraId === 'camB').map((f) => f.segmentId)).toEqual([...Array(9).keys()].map((i) => `camB-${41 + i}`));
    // the byte limit likewise: the largest holder loses its oldest rows first
    const t = new ServerStore(':memory:', { failures: { maxRows: 100, maxBytes: 1000 } });
    t.saveFailure('camA-1', 'camA', 'x', Buffer.alloc(400));
    t.saveFailure('camB-1', 'camB', 'x', Buffer.alloc(400));
    t.saveFailure('camB-2', 'camB', 'x', Buffer.alloc(400));
    expect(t.failures().map((f) => f.segmentId)).toEqual(['camA-1', 'camB-2']);
    t.close();
  } finally {
    s.close();
  }
});
