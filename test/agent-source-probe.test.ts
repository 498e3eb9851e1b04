/**
 * Opening a camera that accepts the connection and never answers does not freeze the agent: the supervisor probes
 * asynchronously (start() returns at once, timers keep firing — uplink, MQTT, status page and watchdog run on
 * them), and stop()/restart (MQTT stop_source, restart_pipeline) aborts the probe instead of waiting out its timeout.
 */
import net from 'node:net';
import { pino } from 'pino';
import { PipelineStageError, SourceSupervisor } from '../agent/source-supervisor.ts';
import { SourceSchema } from '../config/schema.ts';

test('a hanging camera: start() returns at once, the event loop turns, stop() aborts the probe', async () => {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => void sockets.push(s)); // accepts, never answers the RTSP OPTIONS
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const sup = new SourceSupervisor({
    logger: pino({ level: 'silent' }),
    settings: () => ({ source: SourceSchema.parse({ kind: 'rtsp', uri: `rtsp://admin:pw@127.0.0.1:${port}/stream` }), segmentFrames: 5 }),
    onSegment: async () => {},
  });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 50);
  try {
    const t0 = Date.now();
    sup.start(); // the probe's timeout is 10 s + 2 s
    expect(Date.now() - t0).toBeLessThan(500);
    await new Promise((r) => setTimeout(r, 1500));
    expect(ticks).toBeGreaterThanOrEqual(15);
    expect(sockets.length).toBeGreaterThan(0); // ffprobe is connected and waiting
    expect(sup.capturing).toBe(false);
    expect(sup.stuck(5000)).toBeNull(); // an attempt to open is progress (stallMs is ≥ 30 s in the agent)
    expect(sup.stuck(500)).toMatch(/\(opening the source\)$/);
    const t1 = Date.now();
    await sup.stop();
    expect(Date.now() - t1).toBeLessThan(3000);
    expect(sup.failures).toBe(0); // stopped while probing: not a failure of the source
    expect(sup.retrying).toBe(false);
  } finally {
    clearInterval(timer);
    await sup.stop();
    for (const s of sockets) s.destroy();
    server.close();
  }
});

test('close(): nothing starts capture again (a command queued before the agent stopped, a retry timer)', async () => {
  const sup = new SourceSupervisor({
    logger: pino({ level: 'silent' }),
    settings: () => ({ source: SourceSchema.parse({ kind: 'rtsp', uri: 'rtsp://127.0.0.1:1/none' }), segmentFrames: 5 }),
    onSegment: async () => {},
    retryMs: 50,
  });
  sup.start();
  await new Promise((r) => setTimeout(r, 300)); // refused connection: failures, retries scheduled
  await sup.close();
  sup.start(); // e.g. an MQTT start_source that was already queued
  await new Promise((r) => setTimeout(r, 300));
  expect(sup.capturing).toBe(false);
  expect(sup.retrying).toBe(false);
  expect(sup.health(10).ok).toBe(true); // not wanted: nothing to report
});

test('an encoder that keeps failing past stallMs is stuck, also between retries (a restart may clear it; a camera that is down is covered by agent-health-watchdog)', async () => {
  let encoderBroken = true;
  const sup = new SourceSupervisor({
    logger: pino({ level: 'silent' }),
    settings: () => ({ source: SourceSchema.parse({ kind: 'file', uri: 'samples/people-indoor-432p.mp4', loop: true }), segmentFrames: 5 }),
    onSegment: async () => { if (encoderBroken) throw new PipelineStageError('encoder', new Error('no hardware session')); },
    retryMs: 50,
  });
  try {
    sup.start();
    // between attempts (a retry scheduled) the reason names the encoder (right after an attempt opens, the attempt
    // itself counts as progress for a moment, as for any source)
    const seen: (string | null)[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 3000 && !seen.some((r) => r?.startsWith('encoder failing'))) {
      await new Promise((r) => setTimeout(r, 20));
      if (Date.now() - t0 > 700) seen.push(sup.stuck(500));
    }
    expect(seen.some((r) => /^encoder failing for \d+ s: encoder: no hardware session|no hardware session/.test(r ?? ''))).toBe(true);
    encoderBroken = false;
    await new Promise((r) => setTimeout(r, 1500));
    expect(sup.stuck(500)).toBeNull(); // segments flow again
  } finally {
    await sup.close();
  }
});
