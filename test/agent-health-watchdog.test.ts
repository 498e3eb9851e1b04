/**
 * The systemd watchdog is fed while the process is live, and /healthz tells operators what is down without
 * leaking the camera's credentials:
 *  - a camera that is down with a retry scheduled is NOT stuck: WATCHDOG=1 keeps going (restarting the agent
 *    cannot bring a camera back, and a restart loop leaves the unit failed by StartLimitBurst), while /healthz
 *    answers 503 'source down' and STATUS= carries the redacted detail;
 *  - a capture that is open but produces no segment, with no retry scheduled, is stuck;
 *  - rtsp://user:pass@ never reaches /healthz, STATUS=, /api/state or the CaptureError message.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../agent/agent.ts';
import { SourceSupervisor } from '../agent/source-supervisor.ts';
import { AgentSettingsSchema, SourceSchema } from '../config/schema.ts';
import { CaptureError, FfmpegSource, redactUri } from '../media/capture.ts';
import { hashToken } from '../proc/auth.ts';
import { VIDEOS } from '../testdata/fixtures.ts';
import { fakeSystemd } from './helpers/fake-systemd.ts';

const PASSWORD = 'S3cretPa55';
const CAMERA = `rtsp://admin:${PASSWORD}@127.0.0.1:1/stream`; // nothing listens on port 1
const API_TOKEN = 'status-page-token-0123456789';

const waitFor = async (cond: () => boolean, ms = 20_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('redactUri removes user-info from URLs and the given URI\'s password elsewhere', () => {
  expect(redactUri(`capture ${CAMERA}: ${CAMERA}: Connection refused`, CAMERA)).toBe('capture rtsp://***@127.0.0.1:1/stream: rtsp://***@127.0.0.1:1/stream: Connection refused');
  expect(redactUri('rtsps://u:p%40ss@cam/x and rtsp://plain-host/x')).toBe('rtsps://***@cam/x and rtsp://plain-host/x');
  expect(redactUri('auth failed for password p@ss', 'rtsp://u:p%40ss@cam/x')).not.toContain('p@ss');
  expect(redactUri('/var/video/cam.mp4: file not found')).toBe('/var/video/cam.mp4: file not found');
});

test('a CaptureError for an RTSP URL with credentials (ffprobe stderr included) holds no password', () => {
  let err: unknown;
  try {
    new FfmpegSource({ kind: 'rtsp', uri: CAMERA, timeoutMs: 2000 });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CaptureError);
  const e = err as CaptureError;
  expect(e.message).toMatch(/cannot open video stream/);
  expect(e.message).toContain('rtsp://***@127.0.0.1:1/stream');
  expect(e.message).not.toContain(PASSWORD);
  expect(e.source).not.toContain(PASSWORD);
  expect(JSON.stringify({ ...e, message: e.message, stack: e.stack })).not.toContain(PASSWORD);
});

test('camera down with a retry scheduled: watchdog still fed, /healthz 503 "source down", no password anywhere', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-health-'));
  const sd = fakeSystemd(dir);
  const settings = AgentSettingsSchema.parse({
    deviceId: 'cam-down',
    source: { kind: 'rtsp', uri: CAMERA },
    cheapModel: { enabled: false },
    server: { url: 'ws://127.0.0.1:1/ingest', token: 'a-token-of-sixteen-chars' },
    storage: { dir },
    http: { host: '127.0.0.1', port: 0, tokens: [hashToken(API_TOKEN)] },
    log: { level: 'silent' },
  });
  // stallMs far below the outage: only a scheduled retry keeps the watchdog fed
  const agent = new Agent(settings, { logger: pino({ level: 'silent' }), retryMs: 100, stallMs: 300 });
  try {
    await agent.start();
    await waitFor(() => agent.captureFailures >= 3);
    await new Promise((r) => setTimeout(r, 600)); // beyond stallMs, several watchdog periods
    const n = sd.got.length;
    await waitFor(() => sd.got.slice(n).includes('WATCHDOG=1'), 2000); // still fed now, after the outage began
    // between attempts a retry is scheduled; during one the probe runs (asynchronously): live either way
    expect(agent.liveness()).toEqual({ ok: true });
    await waitFor(() => (agent.state().extra as { retrying?: boolean }).retrying === true, 2000);
    expect(agent.liveness()).toEqual({ ok: true });

    const page = (agent as unknown as { page: { url: string } }).page;
    const h = await fetch(page.url + '/healthz');
    expect(h.status).toBe(503);
    const body = await h.text();
    expect(JSON.parse(body)).toEqual({ status: 'unhealthy', reason: 'source down' });

    // the authenticated view has the detail, redacted
    const st = await fetch(page.url + '/api/state', { headers: { authorization: `Bearer ${API_TOKEN}` } });
    expect(st.status).toBe(200);
    const state = await st.text();
    expect(JSON.parse(state).extra.health).toMatch(/^source: capture rtsp:\/\/\*\*\*@127\.0\.0\.1:1\/stream: cannot open video stream/);

    const status = sd.got.filter((m) => m.includes('STATUS='));
    expect(status).toContain('READY=1\nSTATUS=streaming rtsp://***@127.0.0.1:1/stream');
    expect(status.some((m) => /^STATUS=unhealthy: source: capture rtsp:\/\/\*\*\*@.*cannot open video stream/.test(m))).toBe(true);
    for (const text of [body, state, ...sd.got]) expect(text).not.toContain(PASSWORD);
  } finally {
    await agent.stop();
    sd.restore();
  }
});

test('a capture that is open but yields no segment, with no retry scheduled, is stuck (watchdog not fed)', async () => {
  let release!: () => void;
  const hung = new Promise<void>((r) => (release = r));
  const sup = new SourceSupervisor({
    logger: pino({ level: 'silent' }),
    settings: () => ({ source: SourceSchema.parse({ kind: 'file', uri: VIDEOS.people, fps: 10 }), segmentFrames: 5 }),
    onSegment: () => hung, // the first segment never finishes (a hung encoder)
  });
  sup.start();
  try {
    expect(sup.stuck(1000)).toBeNull();
    await new Promise((r) => setTimeout(r, 1800));
    expect(sup.running).toBe(true);
    expect(sup.retrying).toBe(false);
    expect(sup.stuck(1000)).toMatch(/^pipeline stuck: no segment for \d+ s \(capture open\)/);
    expect(sup.health(1000)).toMatchObject({ ok: false, stage: 'pipeline' });
  } finally {
    release();
    await sup.stop();
  }
});

test('a source that cannot open is down but not stuck while its retry is scheduled', async () => {
  const sup = new SourceSupervisor({
    logger: pino({ level: 'silent' }),
    settings: () => ({ source: SourceSchema.parse({ kind: 'file', uri: '/nonexistent/cam.mp4' }), segmentFrames: 5 }),
    onSegment: async () => {},
    retryMs: 200,
  });
  sup.start();
  try {
    await new Promise((r) => setTimeout(r, 700));
    expect(sup.failures).toBeGreaterThanOrEqual(2);
    expect(sup.retrying).toBe(true);
    expect(sup.stuck(100)).toBeNull();
    expect(sup.health(100)).toMatchObject({ ok: false, stage: 'source', reason: expect.stringMatching(/^source: capture \/nonexistent\/cam\.mp4: file not found/) });
  } finally {
    await sup.stop();
  }
});
