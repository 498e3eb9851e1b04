/**
 * Reporting must not take the agent down or grow without bound:
 *  - the in-memory server replies are a bounded window (each carries detections and a base64 DNNGrad map);
 *  - SQLITE_FULL (or any store error) in the hourly housekeeping, in recordMetric('f1') on a server reply, or in
 *    recordMetric('bitrate_kbps') after a segment is logged and the agent goes on: no crash, no capture restart,
 *    every segment in the outbox.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.ts';
import { AgentMetrics } from '../agent/metrics.ts';
import { AgentStore } from '../agent/store.ts';
import { AgentTelemetry, REPLIES_KEPT } from '../agent/telemetry.ts';
import { AgentSettingsSchema } from '../config/schema.ts';
import type { Reply } from '../wire/protocol.ts';
import { VIDEOS } from '../testdata/fixtures.ts';

const reply = (seq: number, f1: number | null = null): Reply => ({
  type: 'reply', segmentId: `cam-${seq}`, seq, detections: [], duplicate: false,
  f1: f1 === null ? null : { frameIndex: 0, f1, tp: 1, fp: 0, fn: 0 }, dnngrad: null, timings: { decodeMs: 1, detectMs: 1, gradMs: 1 },
});

const full = (): Error => Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });

function settingsFor(deviceId: string, source: object) {
  return AgentSettingsSchema.parse({
    deviceId,
    source,
    cheapModel: { enabled: false },
    server: { url: 'ws://127.0.0.1:1/ingest' },
    storage: { dir: mkdtempSync(path.join(os.tmpdir(), `${deviceId}-`)) },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'error' },
  });
}

const waitFor = async (cond: () => boolean, ms = 60_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

test(`the agent keeps the last ${REPLIES_KEPT} server replies, oldest first, and counts them all`, () => {
  const metrics = new AgentMetrics();
  const t = new AgentTelemetry(metrics, () => null);
  for (let i = 0; i < 250; i++) t.reply(reply(i, 0.5), 100);
  expect(t.replies).toHaveLength(REPLIES_KEPT);
  expect(t.replies[0].seq).toBe(250 - REPLIES_KEPT);
  expect(t.replies.at(-1)!.seq).toBe(249);
  expect(t.repliesReceived).toBe(250);
  expect(t.lastF1).toBe(0.5);
  metrics.close();
});

test('SQLITE_FULL in housekeeping and in recordMetric(f1) on a reply: logged, no throw', async () => {
  const s = settingsFor('cam-full', { kind: 'rtsp', uri: 'rtsp://127.0.0.1:1/stream' });
  const store = new AgentStore(path.join(s.storage.dir, 'cam-full.db'));
  store.pruneMetrics = () => { throw full(); };
  store.recordMetric = () => { throw full(); };
  const lines: string[] = [];
  const agent = new Agent(s, { logger: pino({ level: 'error' }, { write: (l: string) => void lines.push(l) }), store, retryMs: 60_000 });
  try {
    await agent.start(); // runs housekeeping once
    const internals = agent as unknown as { housekeeping(): void; onReply(r: Reply, bytes: number): void };
    expect(() => internals.housekeeping()).not.toThrow(); // what the hourly timer calls
    expect(() => internals.onReply(reply(1, 0.8), 100)).not.toThrow(); // what the uplink's 'reply' event calls
    expect(() => internals.onReply(reply(2, 0.9), 100)).not.toThrow();
    expect(agent.replies.map((r) => r.seq)).toEqual([1, 2]);
    expect(agent.state().f1).toBe(0.9);
    expect(lines.filter((l) => /housekeeping failed/.test(l) && /database or disk is full/.test(l)).length).toBeGreaterThanOrEqual(2);
    expect(lines.filter((l) => /"what":"record f1"/.test(l) && /database or disk is full/.test(l))).toHaveLength(1); // once a minute
  } finally {
    await agent.stop();
    store.close();
  }
});

test('SQLITE_FULL in recordMetric(bitrate_kbps) after each segment: capture goes on, every segment is in the outbox', async () => {
  const s = settingsFor('cam-full-seg', { kind: 'file', uri: VIDEOS.people, fps: 10 });
  const store = new AgentStore(path.join(s.storage.dir, 'cam-full-seg.db'));
  store.recordMetric = () => { throw full(); };
  const lines: string[] = [];
  const agent = new Agent(s, { logger: pino({ level: 'error' }, { write: (l: string) => void lines.push(l) }), store, retryMs: 100, maxSegments: 3 });
  try {
    await agent.start();
    await waitFor(() => agent.segmentsEncoded >= 3);
    await agent.finished();
    expect(agent.captureFailures).toBe(0); // a metrics row is not a reason to restart the capture
    expect(store.depth()).toBe(agent.segmentsEncoded); // server unreachable: all of them wait in the outbox
    expect(lines.some((l) => /"what":"record bitrate_kbps"/.test(l))).toBe(true);
  } finally {
    await agent.stop();
    store.close();
  }
});

test('segments the outbox cap dropped are counted in /metrics, not only logged', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-drop-'));
  const store = new AgentStore(path.join(dir, 'a.db'), { maxRows: 2, maxBytes: 1 << 20, logger: { warn: () => undefined } });
  const metrics = new AgentMetrics();
  try {
    for (const id of ['a', 'b', 'c', 'd', 'e']) store.enqueue({ segmentId: id, cameraId: 'cam0', meta: { id }, data: Buffer.alloc(10) });
    const t = new AgentTelemetry(metrics, () => store);
    t.outboxGauges();
    const text = await metrics.metrics();
    expect(text).toMatch(/^camstream_outbox_dropped_segments 3$/m);
    expect(text).toMatch(/^camstream_queue_depth_segments 2$/m);
  } finally {
    metrics.close();
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
