/** Status page + agent metrics: HTTP endpoints, PNG rendering, and the page in headless Chromium. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { PNG } from 'pngjs';
import { makeMbMap, mbGrid, yuvFrameSize, type YuvFrame } from '../encoder/frame.ts';
import { AgentMetrics, METRIC_NAMES } from '../agent/metrics.ts';
import type { AgentState } from '../agent/mqtt.ts';
import { hashToken, TokenSet } from '../proc/auth.ts';
import { PER_ADDRESS, renderFramePng, StatusHistory, StatusPage, type LatestFrame, type StatusProvider } from '../agent/status-page.ts';
import { withChromiumTab } from './helpers/chromium.ts';

function gradientFrame(width: number, height: number): YuvFrame {
  const data = new Uint8Array(yuvFrameSize(width, height)).fill(128);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = Math.round((x / (width - 1)) * 255);
  return { width, height, ptsMs: 1000, data };
}

function fixture(): { provider: StatusProvider; history: StatusHistory; latest: LatestFrame; state: AgentState } {
  const frame = gradientFrame(320, 240);
  const { rows, cols } = mbGrid(320, 240);
  const qpMap = makeMbMap(rows, cols, 0);
  for (let r = 3; r < 8; r++) for (let c = 4; c < 10; c++) qpMap.data[r * cols + c] = -8; // finer region
  qpMap.data[0] = 4; // one coarser MB top-left
  const latest: LatestFrame = { frame, qpMap };
  const history = new StatusHistory(100);
  const t0 = Date.now() - 30_000;
  for (let i = 0; i < 30; i++) {
    history.push({ t: t0 + i * 1000, bitrateKbps: 250 + 40 * Math.sin(i / 3), f1: 0.7 + 0.1 * Math.cos(i / 5), knobs: { 'oneadapt.targetKbps': 300, 'cheapModel.threshold': 0.2 + i * 0.001 } });
  }
  const state: AgentState = {
    deviceId: 'cam-page',
    t: Date.now(),
    sourceRunning: true,
    pipelineRunning: true,
    knobs: { 'oneadapt.targetKbps': 317, 'cheapModel.threshold': 0.229 },
    bitrateKbps: 281.4,
    f1: 0.774,
    queueDepth: 3,
    fps: 9.8,
    segmentsEncoded: 30,
  };
  const provider: StatusProvider = { getState: () => state, getHistory: () => history.list(), getLatestFrame: () => latest };
  return { provider, history, latest, state };
}

describe('renderFramePng', () => {
  test('grey luma with QP offsets tinted per macroblock', () => {
    const { latest } = fixture();
    const png = PNG.sync.read(renderFramePng(latest.frame, latest.qpMap));
    expect([png.width, png.height]).toEqual([320, 240]);
    const px = (x: number, y: number): number[] => Array.from(png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 3));
    const [r0, g0, b0] = px(200, 200); // untouched MB: grey
    expect(r0).toBe(g0);
    expect(g0).toBe(b0);
    const [r1, , b1] = px(5 * 16 + 3, 4 * 16 + 3); // finer MB: orange
    expect(r1).toBeGreaterThan(b1 + 60);
    const [r2, , b2] = px(3, 3); // coarser MB: blue
    expect(b2).toBeGreaterThan(r2);
    // no map: pure grey; large frames are downscaled
    const plain = PNG.sync.read(renderFramePng(latest.frame, null, 160));
    expect([plain.width, plain.height]).toEqual([160, 120]);
    expect(plain.data[(60 * 160 + 80) * 4]).toBe(plain.data[(60 * 160 + 80) * 4 + 2]);
  });
});

describe('event-loop lag metric', () => {
  test('a 150 ms block of the thread shows in the max and p99; the next scrape starts afresh', () => {
    // in a child process: jest's module sandbox does not see every event-loop turn of the thread
    const child = path.resolve(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'loop-lag-child.ts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', child], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    const { blocked, after } = JSON.parse(r.stdout) as Record<'blocked' | 'after', Record<string, number>>;
    expect(blocked['1']).toBeGreaterThan(0.12);
    expect(blocked['0.99']).toBeGreaterThan(0.12);
    expect(after['1']).toBeLessThan(0.12);
  });
});

const API_TOKEN = 'status-page-api-token-for-tests';

describe('StatusPage', () => {
  let page: StatusPage;
  let metrics: AgentMetrics;
  let ctx: ReturnType<typeof fixture>;

  beforeAll(async () => {
    ctx = fixture();
    metrics = new AgentMetrics({ defaultLabels: { device: 'cam-page' } });
    metrics.frameCaptured(25);
    metrics.segmentEncoded(36_000, 1);
    metrics.setKnobs(ctx.state.knobs);
    metrics.setQueueDepth(3);
    metrics.setF1(0.774);
    metrics.observeCheapModel(0.012);
    metrics.observeEncode(0.08);
    metrics.observeDnnGrad(0.2);
    metrics.observeServerReply(0.35);
    const stopTimer = metrics.time('encode');
    expect(stopTimer()).toBeGreaterThanOrEqual(0);
    page = new StatusPage({ provider: ctx.provider, metrics, refreshMs: 500, tokens: new TokenSet([hashToken(API_TOKEN)]) });
    await page.start();
  });
  afterAll(async () => {
    await page?.stop();
    metrics?.close();
  });

  test('a client that never finishes its headers is cut off after the 10 s header timeout, not after Node\'s 30 s check interval', async () => {
    const sock = net.connect(page.port, '127.0.0.1');
    sock.on('error', () => undefined);
    await new Promise((r) => sock.once('connect', r));
    const t0 = Date.now();
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now())));
    sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // and nothing more
    expect((await closed) - t0).toBeLessThan(14_000);
    sock.destroy();
  }, 40_000);

  test('JSON endpoints, metrics and health', async () => {
    const get = (p: string): Promise<Response> => fetch(page.url + p, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    // without the token: the data endpoints answer 401, the page and health stay open
    for (const p of ['/api/state', '/api/history', '/api/frame.png', '/metrics']) {
      expect((await fetch(page.url + p)).status).toBe(401);
      expect((await fetch(page.url + p, { headers: { authorization: 'Bearer wrong-token' } })).status).toBe(401);
    }
    expect((await fetch(page.url + '/')).status).toBe(200);
    const state = await (await get('/api/state')).json();
    expect(state.knobs['oneadapt.targetKbps']).toBe(317);
    const hist = await (await get('/api/history')).json();
    expect(hist).toHaveLength(30);
    expect(Object.keys(hist[0]).sort()).toEqual(['bitrateKbps', 'f1', 'knobs', 't']);
    const health = await get('/healthz');
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const png = await get('/api/frame.png');
    expect(png.headers.get('content-type')).toBe('image/png');
    expect(PNG.sync.read(Buffer.from(await png.arrayBuffer())).width).toBe(320);
    expect((await get('/nope')).status).toBe(404);
    expect((await fetch(page.url + '/api/state', { method: 'POST' })).status).toBe(405);

    const text = await (await get('/metrics')).text();
    for (const name of Object.values(METRIC_NAMES)) expect(text).toContain(name);
    expect(text).toContain('camstream_segment_bytes_total{device="cam-page"} 36000');
    expect(text).toContain('camstream_bitrate_bits_per_second{device="cam-page"} 288000');
    expect(text).toContain('camstream_knob_value{knob="oneadapt.targetKbps",device="cam-page"} 317');
    expect(text).toMatch(/camstream_cheapmodel_seconds_bucket\{le="0.025",device="cam-page"\} 1/);
    expect(text).toContain('process_cpu_user_seconds_total');
    // knobs that disappear are removed
    metrics.setKnobs({ 'oneadapt.targetKbps': 317 });
    expect(await metrics.metrics()).not.toContain('knob="cheapModel.threshold"');
    metrics.setKnobs(ctx.state.knobs);
  });

  test('one address holds at most PER_ADDRESS connections; responses carry nosniff and frame-ancestors', async () => {
    const socks: net.Socket[] = [];
    try {
      for (let i = 0; i < PER_ADDRESS; i++) {
        const c = net.connect(page.port, '127.0.0.1');
        await new Promise((r) => c.once('connect', r));
        socks.push(c);
      }
      const extra = net.connect(page.port, '127.0.0.1');
      const closed = await new Promise<boolean>((r) => { extra.once('close', () => r(true)); setTimeout(() => r(false), 2000); });
      expect(closed).toBe(true); // the 17th from 127.0.0.1 is closed at once
    } finally {
      socks.forEach((c) => c.destroy());
    }
    await new Promise((r) => setTimeout(r, 100));
    const home = await fetch(page.url + '/');
    expect(home.status).toBe(200); // slots freed
    expect(home.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect((await fetch(page.url + '/api/state')).headers.get('x-content-type-options')).toBe('nosniff');
  });

  test('over https:// with a certificate from the config: the token never crosses the network in clear', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'page-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=cam',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const tls = { cert: readFileSync(path.join(dir, 'cert.pem')), key: readFileSync(path.join(dir, 'key.pem')) };
    const p3 = new StatusPage({ provider: ctx.provider, tokens: new TokenSet([hashToken(API_TOKEN)]), tls });
    await p3.start();
    try {
      expect(p3.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const get = (ca?: Buffer): Promise<number> => new Promise((resolve, reject) => {
        https.get({ host: '127.0.0.1', port: p3.port, path: '/api/state', ca, headers: { authorization: `Bearer ${API_TOKEN}` } }, (res) => { res.resume(); resolve(res.statusCode!); }).on('error', reject);
      });
      expect(await get(tls.cert)).toBe(200);
      await expect(get()).rejects.toThrow(/self-signed/); // a client that does not trust the certificate
      const plain = await fetch(`http://127.0.0.1:${p3.port}/healthz`).then(() => 'answered', () => 'refused');
      expect(plain).toBe('refused'); // no plain-HTTP fallback
    } finally {
      await p3.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('no frame yet → 404, unhealthy → 503', async () => {
    const p2 = new StatusPage({
      provider: { ...ctx.provider, getLatestFrame: () => null, getHealth: () => ({ ok: false, reason: 'source stalled' }) },
      tokens: new TokenSet([hashToken(API_TOKEN)]),
      metricsPublic: true,
    });
    await p2.start();
    try {
      expect((await fetch(p2.url + '/api/frame.png', { headers: { authorization: `Bearer ${API_TOKEN}` } })).status).toBe(404);
      const h = await fetch(p2.url + '/healthz');
      expect(h.status).toBe(503);
      expect(await h.json()).toEqual({ status: 'unhealthy', reason: 'source stalled' });
      expect((await fetch(p2.url + '/metrics')).status).toBe(404);
    } finally {
      await p2.stop();
    }
  });

  test('renders in headless Chromium: knobs, charts, frame image; refreshes', async () => {
    await withChromiumTab(async (tab, errors) => {
    await tab.goto(page.url + `/#token=${API_TOKEN}`);
    await tab.waitForSelector('body[data-loaded="1"]', { timeout: 15_000 });
    const knobText = await tab.locator('#knobs').innerText();
    expect(knobText).toContain('oneadapt.targetKbps');
    expect(knobText).toContain('317');
    expect(knobText).toContain('cheapModel.threshold');
    expect(knobText).toContain('0.229');
    expect(await tab.getAttribute('#chart-bitrate', 'data-points')).toBe('30');
    expect(await tab.getAttribute('#chart-f1', 'data-points')).toBe('30');
    const polyPoints = await tab.getAttribute('#chart-bitrate polyline', 'points');
    expect(polyPoints!.split(' ')).toHaveLength(30);
    // the width of a loaded frame, read in the same tick as the wait (the page's polling swaps the image, and a
    // second read could see the next one still loading, naturalWidth 0)
    const loadedWidth = await tab.waitForFunction(() => (document.getElementById('frame') as HTMLImageElement).naturalWidth || false, undefined, { timeout: 15_000 });
    expect(await loadedWidth.jsonValue()).toBe(320);
    // the page polls: a new knob value shows up without reloading
    ctx.state.knobs['oneadapt.targetKbps'] = 412;
    await tab.waitForFunction(() => document.getElementById('knobs')!.textContent!.includes('412'), undefined, { timeout: 10_000 });
    const metricsText = await (await tab.request.get(page.url + '/metrics', { headers: { authorization: `Bearer ${API_TOKEN}` } })).text();
    expect(metricsText).toContain('camstream_segment_bytes_total');
    expect(metricsText).toContain('camstream_cheapmodel_seconds');
    expect(errors).toEqual([]);
    }, { consoleErrors: true });
  });
});
