/**
 * Agent and server end to end, in one process, on real video: segments are encoded, queued,
 * streamed, decoded, detected, scored against the reference frame and answered with DNNGrad,
 * which drives OneAdapt's knob updates.
 */
import { readLabelDir } from '../cheapmodel/labels.ts';
import { mkdtempSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.ts';
import { AgentSettingsSchema, ServerSettingsSchema } from '../config/schema.ts';
import { startServer } from '../server/main.ts';
import { DETECTOR_MODEL, VIDEOS } from '../testdata/fixtures.ts';
import { hashToken } from '../proc/auth.ts';

const CAM_TOKEN = 'e2e-cam-secret-token-0123456789';
const API_TOKEN = 'e2e-api-reader-token-0123456789';

test('agent streams real segments; server stores F1 and returns DNNGrad; OneAdapt steps', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'e2e-'));
  const log = pino({ level: process.env.DEBUG_LOG ? 'info' : 'silent' });
  const server = await startServer(ServerSettingsSchema.parse({ listen: { host: '127.0.0.1', port: 0 }, auth: { cameras: { 'e2e-cam': hashToken(CAM_TOKEN) }, apiTokens: [hashToken(API_TOKEN)] }, detector: { modelPath: DETECTOR_MODEL }, storage: { dir: path.join(dir, 'srv') }, labels: { enabled: true, everyN: 2 }, log: { level: 'silent' } }), log);
  const settings = AgentSettingsSchema.parse({
    deviceId: 'e2e-cam',
    // scaled to 384×216 so the probes (2 extra encodes per knob) stay affordable on a loaded 2-core machine
    source: { kind: 'file', uri: VIDEOS.people, fps: 10, width: 384, height: 216 },
    oneadapt: { enabled: true },
    monitor: { referenceEvery: 2 },
    server: { url: `ws://127.0.0.1:${server.port}/ingest`, token: CAM_TOKEN },
    storage: { dir: path.join(dir, 'agent') },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
  });
  const agent = new Agent(settings, { logger: log, maxSegments: 4 });
  await agent.start();
  await agent.finished();
  expect(await agent.drained(60_000)).toBe(true);
  const adapting = agent.state().extra?.adapting;
  await agent.stop();
  const rows = server.store.results('e2e-cam');
  expect((await fetch(`http://127.0.0.1:${server.port}/metrics`)).status).toBe(401);
  const serverMetrics = await (await fetch(`http://127.0.0.1:${server.port}/metrics`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).text();
  await server.stop();

  expect(rows.map((r) => r.seq)).toEqual([0, 1, 2, 3]);
  // the accuracy monitor: a reference frame (and so an F1) on every 2nd segment only
  expect(rows.map((r) => r.f1 !== null)).toEqual([true, false, true, false]);
  expect(rows.every((r) => r.f1 === null || (r.f1 >= 0 && r.f1 <= 1))).toBe(true);
  // every uploaded byte counted, the same on both sides: the agent's video + reference + headers = the server's per-segment bytes
  const agentMetrics = await agent.metrics.registry.getSingleMetric('camstream_uplink_bytes_total')!.get();
  const part = (p: string): number => agentMetrics.values.find((v) => v.labels.part === p)!.value;
  expect(part('reference')).toBeGreaterThan(0);
  expect(part('headers')).toBeGreaterThan(4 * 200); // JSON header + length prefix + WebSocket frame, per segment
  expect(part('video') + part('reference') + part('headers')).toBe(rows.reduce((a, r) => a + r.bytes, 0));
  expect(serverMetrics).toMatch(/camstream_server_uplink_bytes_total\{part="reference"\} [1-9]/);
  expect(serverMetrics).toMatch(/camstream_server_downlink_bytes_total [1-9]/);
  expect(agent.replies).toHaveLength(4);
  for (const r of agent.replies) {
    // DNNGrad on the decoded streamed frame: its size and MB grid come back with it
    const d = r.dnngrad!;
    expect(d).not.toBeNull();
    expect([d.rows, d.cols]).toEqual([Math.ceil(d.height! / 16), Math.ceil(d.width! / 16)]);
    expect(d.width! <= 384 && d.height! <= 216).toBe(true);
    expect(r.detections.length).toBeGreaterThan(0);
  }
  // DNNGrad of segment k drives the knob update on a later segment
  expect(agent.decisions.length).toBeGreaterThanOrEqual(1);
  expect(Object.keys(agent.decisions[0].grads)).toEqual(expect.arrayContaining(['fps', 'qp', 'resolution']));
  // AccMPEG is on by default (bundled cheap model), so the threshold knob adapts too
  expect(adapting).toEqual(['resolution', 'fps', 'qp', 'threshold']);
  // the server's label store kept segments 0 and 2 (everyN 2), in the labelling CLI's format, per frame size
  const camDir = path.join(dir, 'srv', 'labels', 'e2e-cam');
  const sets = readdirSync(camDir).map((s) => readLabelDir(path.join(camDir, s)));
  expect(sets.flatMap((s) => s.meta.frames.map((f) => (f as unknown as { seq: number }).seq)).sort()).toEqual([0, 2]);
  // saliency exactly where the detector found something (S = Σ scores of its detections)
  for (const s of sets) {
    s.sal.forEach((m, i) => expect(m.data.some((v) => v > 0)).toBe((s.meta.frames[i] as unknown as { detections: number }).detections > 0));
  }
}, 400_000);
