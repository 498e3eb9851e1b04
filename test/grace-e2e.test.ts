/** @jest-environment ./test/helpers/ort-env.cjs */
/**
 * The agent's Grace++ switch end to end: `encoder.codec: grace` makes the agent upload Grace++
 * segments, and the server decodes and analyses them like H.264 ones (detections per frame, F1
 * against the HQ reference frame).
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.ts';
import { AgentSettingsSchema, ServerSettingsSchema } from '../config/schema.ts';
import { startServer } from '../server/main.ts';
import { DETECTOR_MODEL, VIDEOS } from '../testdata/fixtures.ts';
import { hashToken } from '../proc/auth.ts';

const CAM_TOKEN = 'grace-cam-secret-token-0123456789';

test('agent streams Grace++ segments; the server decodes, detects and scores them', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'grace-e2e-'));
  const log = pino({ level: 'silent' });
  const server = await startServer(ServerSettingsSchema.parse({ listen: { host: '127.0.0.1', port: 0 }, auth: { cameras: { 'grace-cam': hashToken(CAM_TOKEN) } }, detector: { modelPath: DETECTOR_MODEL }, storage: { dir: path.join(dir, 'srv') }, log: { level: 'silent' } }), log);
  const settings = AgentSettingsSchema.parse({
    deviceId: 'grace-cam',
    source: { kind: 'file', uri: VIDEOS.campus, fps: 10, width: 480, height: 360 },
    encoder: { codec: 'grace', graceKbps: 300, segmentFrames: 4 },
    cheapModel: { enabled: false },
    monitor: { referenceEvery: 1 }, // an HQ reference (and so an F1) with every segment
    server: { url: `ws://127.0.0.1:${server.port}/ingest`, token: CAM_TOKEN },
    storage: { dir: path.join(dir, 'agent') },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
  });
  const agent = new Agent(settings, { logger: log, maxSegments: 2 });
  await agent.start();
  await agent.finished();
  expect(await agent.drained(120_000)).toBe(true);
  await agent.stop();
  const rows = server.store.results('grace-cam');
  await server.stop();

  expect(rows.map((r) => r.seq)).toEqual([0, 1]);
  expect(rows.every((r) => r.bytes > 1000 && r.f1 !== null)).toBe(true);
  expect(agent.replies).toHaveLength(2);
  for (const r of agent.replies) {
    expect(r.detections).toHaveLength(4); // every frame decoded and analysed
    expect(r.detections.flat().length).toBeGreaterThan(0);
  }
});
