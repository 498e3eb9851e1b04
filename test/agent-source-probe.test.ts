/**
 * Opening a camera that accepts the connection and never answers does not freeze the agent: the supervisor probes
 * asynchronously (start() returns at once, timers keep firing — uplink, MQTT, status page and watchdog run on
 * them), and stop()/restart (MQTT stop_source, restart_pipeline) aborts the probe instead of waiting out its timeout.
 */
import net from 'node:net';
import { pino } from 'pino';
import { SourceSupervisor } from '../agent/source-supervisor.ts';
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
