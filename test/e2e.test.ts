/**
 * Agent and server end to end, in one process, on real video: segments are encoded, queued,
 * streamed, decoded, detected, scored against the reference frame and answered with DNNGrad,
 * which drives OneAdapt's knob updates.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.ts';
import { AgentSettingsSchema, ServerSettingsSchema } from '../config/schema.ts';
import { startServer } from '../server/main.ts';
import { DETECTOR_MODEL, VIDEOS } from '../testdata/fixtures.ts';

test('agent streams real segments; server stores F1 and returns DNNGrad; OneAdapt steps', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-'));
  const log = pino({ level: 'silent' });
  const server = await startServer(ServerSettingsSchema.parse({ listen: { host: '127.0.0.1', port: 0 }, detector: { modelPath: DETECTOR_MODEL }, storage: { dir: path.join(dir, 'srv') }, log: { level: 'silent' } }), log);
  const settings = AgentSettingsSchema.parse({
    deviceId: 'e2e-cam',
    source: { kind: 'file', uri: VIDEOS.people, fps: 10 },
    oneadapt: { enabled: true, lambdaBw: 1, lr: 0.1 },
    server: { url: `ws://127.0.0.1:${server.port}/ingest` },
    storage: { dir: path.join(dir, 'agent') },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
  });
  const agent = new Agent(settings, { logger: log, maxSegments: 4 });
  await agent.start();
  await agent.finished();
  expect(await agent.drained(60_000)).toBe(true);
  await agent.stop();
  const rows = server.store.results('e2e-cam');
  await server.stop();

  expect(rows.map((r) => r.seq)).toEqual([0, 1, 2, 3]);
  expect(rows.every((r) => r.bytes > 1000 && r.f1 !== null && r.f1 >= 0 && r.f1 <= 1)).toBe(true);
  expect(agent.replies).toHaveLength(4);
  for (const r of agent.replies) {
    expect(r.dnngrad).not.toBeNull();
    expect([r.dnngrad!.rows, r.dnngrad!.cols]).toEqual([27, 48]); // 768×432 in 16-px macroblocks
    expect(r.detections.length).toBeGreaterThan(0);
  }
  // DNNGrad of segment k drives the knob update on a later segment
  expect(agent.decisions.length).toBeGreaterThanOrEqual(1);
  // AccMPEG is on by default (bundled cheap model), so the threshold knob adapts too
  expect(Object.keys(agent.decisions[0].grads).sort()).toEqual(['fps', 'qp', 'resolution', 'threshold']);
});
