/**
 * An outbox error inside the uplink's socket callbacks (SQLITE_FULL on ack) reaches the agent's log as what it is:
 * an error of component 'uplink' naming the segment, not a "server could not process segment" line.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { WebSocketServer } from 'ws';
import { Agent, openAgentStore } from '../agent/agent.ts';
import { AgentSettingsSchema } from '../config/schema.ts';
import { packSegment, unpackSegment, type SegmentHeader } from '../wire/protocol.ts';

test("the agent logs the uplink's localError (outbox failure in a socket callback) as an uplink error", async () => {
  // a server that welcomes the camera and answers every segment
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
      if (!isBinary) return void ws.send(JSON.stringify({ type: 'welcome', v: 1, serverId: 'fake', cameraId: 'cam-local' }));
      const { header: h } = unpackSegment(data as Buffer);
      ws.send(JSON.stringify({ type: 'reply', segmentId: h.segmentId, seq: h.seq, detections: [], f1: null, dnngrad: null, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 } }));
    });
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-local-error-'));
  const settings = AgentSettingsSchema.parse({
    deviceId: 'cam-local',
    source: { kind: 'rtsp', uri: 'rtsp://127.0.0.1:1/stream' },
    cheapModel: { enabled: false },
    server: { url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/ingest`, token: 'a-token-of-sixteen-chars' },
    storage: { dir },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'info' },
  });
  const store = openAgentStore(settings, pino({ level: 'silent' }));
  store.ack = () => {
    throw new Error('SQLITE_FULL: database or disk is full');
  };
  const video = Buffer.alloc(100, 7);
  const header: SegmentHeader = { type: 'segment', v: 1, segmentId: 'cam-local-1', cameraId: 'cam-local', seq: 1, codec: 'h264', width: 64, height: 48, fps: 10, frameCount: 10, ptsMs: [], capturedAt: Date.now(), knobs: { qp: 30 }, videoBytes: video.length };
  store.enqueue({ segmentId: header.segmentId, cameraId: 'cam-local', meta: header, data: packSegment(header, video) });

  const lines: Record<string, unknown>[] = [];
  const agent = new Agent(settings, { logger: pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) }), store });
  const internals = agent as unknown as { store: unknown; makeUplink(s: unknown): { stop(): Promise<void> } };
  internals.store = store; // what start() sets; only the uplink runs in this test
  const up = internals.makeUplink(settings);
  try {
    const t0 = Date.now();
    while (!lines.some((l) => /SQLITE_FULL/.test(JSON.stringify(l)))) {
      if (Date.now() - t0 > 10_000) throw new Error('no outbox error logged');
      await new Promise((r) => setTimeout(r, 20));
    }
    const line = lines.find((l) => /SQLITE_FULL/.test(JSON.stringify(l)))!;
    expect(line).toMatchObject({ level: 50, component: 'uplink', segment: 'cam-local-1', error: expect.stringMatching(/outbox: cannot acknowledge segment cam-local-1: SQLITE_FULL/) });
    expect(String(line.msg)).toMatch(/outbox/);
    expect(lines.some((l) => /server could not process segment/.test(String(l.msg)))).toBe(false);
    expect(store.depth()).toBe(1); // kept for a resend
  } finally {
    await up.stop();
    store.close();
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((r) => wss.close(() => r()));
  }
});
