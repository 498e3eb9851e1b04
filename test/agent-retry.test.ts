/** An unattended agent must survive a camera that is down: it retries with backoff and stops cleanly. */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.ts';
import { AgentSettingsSchema } from '../config/schema.ts';

/** An agent whose camera (RTSP) and server are both unreachable. */
const downSettings = (deviceId: string, extra: object = {}) =>
  AgentSettingsSchema.parse({
    deviceId,
    source: { kind: 'rtsp', uri: 'rtsp://127.0.0.1:1/stream' },
    cheapModel: { enabled: false },
    server: { url: 'ws://127.0.0.1:1/ingest' },
    storage: { dir: mkdtempSync(path.join(os.tmpdir(), `${deviceId}-`)) },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
    ...extra,
  });

test('unreachable RTSP camera: the agent stays up, retries with backoff, and stop() ends the retries', async () => {
  const settings = downSettings('cam-down');
  const agent = new Agent(settings, { logger: pino({ level: 'silent' }), retryMs: 100 });
  await agent.start(); // does not throw: a camera that is down is an operating condition, not a crash
  const t0 = Date.now();
  while (agent.captureFailures < 3) {
    if (Date.now() - t0 > 20_000) throw new Error(`only ${agent.captureFailures} attempts`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const st = agent.state();
  expect(st.sourceRunning).toBe(false);
  expect(st.extra).toMatchObject({ retrying: true });
  await agent.stop();
  const n = agent.captureFailures;
  await new Promise((r) => setTimeout(r, 1000));
  expect(agent.captureFailures).toBe(n); // no retries after stop
});

test('a server reply the agent cannot use (malformed DNNGrad map) is logged and ignored, not a crash', async () => {
  const settings = downSettings('cam-reply', { oneadapt: { enabled: true } });
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
  const agent = new Agent(settings, { logger, retryMs: 60_000 });
  const reply = (data: string) => ({ type: 'reply' as const, segmentId: 'cam-reply-1', seq: 1, detections: [], f1: null, dnngrad: { frameIndex: 9, rows: 3, cols: 4, proxy: 1, data }, timings: { decodeMs: 1, detectMs: 1, gradMs: 1 }, duplicate: false });
  // the 'reply' handler the uplink calls (private: the uplink is not connected in this test)
  const onReply = (agent as unknown as { onReply(r: unknown): void }).onReply.bind(agent);
  expect(() => onReply(reply(Buffer.from('not a map at all').toString('base64')))).not.toThrow();
  expect(lines.some((l) => /server reply not usable; ignored/.test(l) && /bad magic/.test(l))).toBe(true);
  await agent.stop();
});

test('a config change accepted while the agent was still starting is applied once it has started', async () => {
  const settings = downSettings('cam-early-change');
  // the config manager already holds a newer file (accepted during start, before the agent listened)
  const newer = AgentSettingsSchema.parse({ ...settings, oneadapt: { ...settings.oneadapt, enabled: true } });
  const { EventEmitter } = await import('node:events');
  const config = Object.assign(new EventEmitter(), { current: newer });
  const agent = new Agent(settings, { logger: pino({ level: 'silent' }), retryMs: 60_000, config: config as never });
  await agent.start();
  try {
    expect(agent.state().extra).toMatchObject({ adapting: ['resolution', 'fps', 'qp'] });
  } finally {
    await agent.stop();
  }
});

test('a TLS file that cannot be read stops the start with the setting named, not a bare ENOENT', async () => {
  const settings = downSettings('cam-no-ca', { server: { url: 'wss://127.0.0.1:1/ingest', ca: '/nonexistent/camstream/ca.pem' } });
  const agent = new Agent(settings, { logger: pino({ level: 'silent' }), retryMs: 60_000 });
  await expect(agent.start()).rejects.toThrow(/^server\.ca: cannot read \/nonexistent\/camstream\/ca\.pem \(ENOENT\)/);
  await agent.stop();
});
