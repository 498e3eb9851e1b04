/**
 * Finding 3 (read side) and the TLS deliverable of issue #13: the real server (detector loaded)
 * serves /api/results only to a bearer token, exact path and method, one camera when asked; it serves
 * wss:// and https:// from a certificate in its config, and the agent's uplink trusts a given CA.
 * The certificate is self-signed, made here with the openssl CLI.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Uplink } from '../../agent/uplink.ts';
import { hashToken } from '../../proc/auth.ts';
import { ServerSettingsSchema } from '../../config/schema.ts';
import { encodeSegment } from '../../encoder/index.ts';
import { startServer, type RunningServer } from '../../server/main.ts';
import { packSegment, type Reply } from '../../wire/protocol.ts';
import { DETECTOR_MODEL, loadFrames, VIDEOS } from '../../testdata/fixtures.ts';
import { header, TOKENS, waitFor } from './helpers.ts';
import { MemOutbox } from '../helpers/mem-outbox.ts';

const API_TOKEN = 'api-reader-token-0123456789abcdef';

let dir: string;
let server: RunningServer;
let seg: Buffer;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'camstream-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=camstream-test',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
  const settings = ServerSettingsSchema.parse({
    listen: { host: '127.0.0.1', port: 0, tls: { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') } },
    auth: { cameras: { camA: hashToken(TOKENS.camA), camB: hashToken(TOKENS.camB) }, apiTokens: [hashToken(API_TOKEN)] },
    detector: { modelPath: DETECTOR_MODEL },
    storage: { dir: path.join(dir, 'srv') },
    log: { level: process.env.DEBUG_LOG ? 'debug' : 'silent' },
  });
  server = await startServer(settings, pino({ level: process.env.DEBUG_LOG ? 'debug' : 'silent' }));
  const frames = loadFrames(VIDEOS.people, 2, { width: 320, height: 176 });
  const video = await encodeSegment(frames, [null, null], { baseQp: 30 });
  const h = { ...header('camA', 'camA-tls-0', 0, video.data.length), width: 320, height: 176, frameCount: 2 };
  seg = packSegment(h, video.data);
});
afterAll(async () => {
  await server?.stop();
});

function get(p: string, opts: { token?: string; method?: string; ca?: boolean } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: server.port, path: p, agent: false, method: opts.method ?? 'GET', ca: opts.ca === false ? undefined : readFileSync(path.join(dir, 'cert.pem')), headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {} },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('wss:// with the CA: a camera uploads and gets a real reply; without the CA nothing is sent and nothing lost', async () => {
  const untrusting = new MemOutbox();
  untrusting.items.push({ segmentId: 'camA-tls-0', data: seg });
  const bad = new Uplink(untrusting, { url: `wss://127.0.0.1:${server.port}/ingest`, cameraId: 'camA', token: TOKENS.camA, minBackoffMs: 100 });
  bad.start();
  await waitFor(() => bad.lastError !== null);
  expect(bad.lastError).toMatch(/self-signed certificate/);
  await bad.stop();
  expect(untrusting.depth()).toBe(1);

  const outbox = new MemOutbox();
  outbox.items.push({ segmentId: 'camA-tls-0', data: seg });
  const up = new Uplink(outbox, { url: `wss://127.0.0.1:${server.port}/ingest`, cameraId: 'camA', token: TOKENS.camA, tls: { ca: readFileSync(path.join(dir, 'cert.pem')) } });
  const replies: Reply[] = [];
  up.on('reply', (r) => replies.push(r));
  up.start();
  try {
    await waitFor(() => replies.length === 1, 60_000);
    expect(replies[0]).toMatchObject({ segmentId: 'camA-tls-0', duplicate: false });
    expect(replies[0].detections).toHaveLength(2);
    expect(outbox.depth()).toBe(0);
  } finally {
    await up.stop();
  }
});

test('/api/results and /metrics: token required, exact path, GET only, ?camera= honoured', async () => {
  await waitFor(() => server.store.results('camA').length === 1, 60_000);
  server.store.saveReply({ ...header('camB', 'camB-1', 0, 10) }, { type: 'reply', segmentId: 'camB-1', seq: 0, detections: [], f1: null, dnngrad: null, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 }, duplicate: false });
  expect((await get('/api/results')).status).toBe(401);
  expect((await get('/api/results', { token: 'not-the-token' })).status).toBe(401);
  expect((await get('/api/results', { token: TOKENS.camA })).status).toBe(401); // a camera token is not an API token
  expect((await get('/metrics')).status).toBe(401);
  expect((await get('/api/results', { token: API_TOKEN, method: 'POST' })).status).toBe(405);
  expect((await get('/api/resultsXYZ', { token: API_TOKEN })).status).toBe(404);
  const all = await get('/api/results', { token: API_TOKEN });
  expect(all.status).toBe(200);
  expect(JSON.parse(all.body).map((r: { cameraId: string }) => r.cameraId)).toEqual(['camA', 'camB']);
  const one = JSON.parse((await get('/api/results?camera=camB', { token: API_TOKEN })).body);
  expect(one.map((r: { segmentId: string }) => r.segmentId)).toEqual(['camB-1']);
  expect(JSON.parse((await get('/api/results?limit=1', { token: API_TOKEN })).body)).toHaveLength(1);
  expect((await get('/api/results?limit=0', { token: API_TOKEN })).status).toBe(400);
  expect((await get('/api/results?cam=camB', { token: API_TOKEN })).status).toBe(400);
  const m = await get('/metrics', { token: API_TOKEN });
  expect(m.body).toContain('camstream_server_segments_total 1');
});

test('the fleet page and ask API are served by the running server behind the same API token', async () => {
  await waitFor(() => server.store.results('camA').length >= 1, 60_000);
  expect((await get('/api/fleet')).status).toBe(401);
  expect((await get('/api/fleet', { token: TOKENS.camA })).status).toBe(401); // a camera token is not an API token
  expect((await get('/api/ask', { method: 'POST' })).status).toBe(401);
  const fleet = await get('/api/fleet', { token: API_TOKEN });
  expect(fleet.status).toBe(200);
  expect(JSON.parse(fleet.body).map((c: { cameraId: string }) => c.cameraId)).toContain('camA');
  // an authorised request without a question is refused with a clear 400 before any model is consulted
  const ask = await get('/api/ask', { token: API_TOKEN, method: 'POST' });
  expect(ask.status).toBe(400); // no body: the question is validated before the model is consulted
  expect((await get('/fleet')).status).toBe(200); // the page itself holds no data; it asks for the token
});
