/**
 * Analytics server entry point.
 *   node --import tsx server/main.ts --config config/examples/server.yaml
 * Receives agents' segments over WebSocket, decodes, detects, measures F1 against each segment's
 * high-quality reference frame, returns detections + DNNGrad, stores results (SQLite), and serves
 * /metrics (Prometheus) and /api/results on the same port as the WebSocket.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { rootLogger } from '../proc/log.ts';
import { z } from 'zod';
import { CameraTokens, requireBearer, TokenSet } from '../proc/auth.ts';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { configPathFromArgv, loadServerConfig } from '../config/load.ts';
import type { ServerSettings } from '../config/schema.ts';
import { SegmentAnalyzer } from './analyzer.ts';
import { LabelStore } from './label-store.ts';
import { f1FromCounts } from '../detector/accuracy.ts';
import { IngestServer } from './ingest.ts';
import { ServerStore } from './store.ts';
import { SdNotify } from '../proc/sdnotify.ts';
import { startFleetAsk } from './ask-setup.ts';
import { isMainModule } from '../proc/main-module.ts';

const ResultsQuerySchema = z.strictObject({
  camera: z.string().min(1).max(64).optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
});

export interface RunningServer {
  health(): { ok: boolean; reason?: string };
  port: number;
  store: ServerStore;
  ingest: IngestServer;
  stop(): Promise<void>;
}

export async function startServer(settings: ServerSettings, log = rootLogger('camstream-server')): Promise<RunningServer> {
  log.level = settings.log.level;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // what has been opened so far: closed in reverse order by stop(), or at once if a later step fails (port in
  // use, bad TLS file, …)
  const opened: (() => unknown)[] = [];
  try {
    return await startOpened(settings, log, registry, opened);
  } catch (e) {
    await closeAll(opened, true);
    throw e;
  }
}

/** Close in reverse order of opening; `quiet`: a failure to close is ignored (start-up is failing already). */
async function closeAll(opened: (() => unknown)[], quiet: boolean): Promise<void> {
  for (const close of [...opened].reverse()) {
    try {
      await close();
    } catch (e) {
      if (!quiet) throw e;
    }
  }
}

async function startOpened(settings: ServerSettings, log: ReturnType<typeof rootLogger>, registry: Registry, opened: (() => unknown)[]): Promise<RunningServer> {
  const segs = new Counter({ name: 'camstream_server_segments_total', help: 'Segments processed', registers: [registry] });
  const bytes = new Counter({ name: 'camstream_server_segment_bytes_total', help: 'Video bytes received', registers: [registry] });
  // every uplink byte, by part (video, reference frames, headers incl. WebSocket framing); replies separately
  const uplink = new Counter({ name: 'camstream_server_uplink_bytes_total', help: 'Bytes received from agents, by part', labelNames: ['part'], registers: [registry] });
  const downlink = new Counter({ name: 'camstream_server_downlink_bytes_total', help: 'Reply bytes sent to agents (detections, F1, DNNGrad)', registers: [registry] });
  const f1 = new Gauge({ name: 'camstream_server_f1_ratio', help: 'F1 of the last segment vs its reference frame', labelNames: ['camera'], registers: [registry] });
  const stage = new Histogram({ name: 'camstream_server_stage_seconds', help: 'Processing time per segment by stage', labelNames: ['stage'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5], registers: [registry] });
  const failed = new Counter({ name: 'camstream_server_segments_failed_total', help: 'Segments rejected (corrupt, undecodable)', registers: [registry] });

  const labels = settings.labels.enabled
    ? await LabelStore.create({
      dir: path.join(settings.storage.dir, 'labels'), modelPath: settings.detector.modelPath, everyN: settings.labels.everyN, maxFramesPerCamera: settings.labels.maxFramesPerCamera,
      onError: (cameraId, err, stopped) => log.error({ component: 'labels', cameraId, err: err.message }, stopped ? 'label store failed; labelling stopped for this camera' : 'labelling one frame failed'),
    })
    : undefined;
  if (labels) opened.push(() => labels.close());
  // the DNNGrad graph (forward + proxy + backward) is built once per detector file and transform version, then read from here
  const analyzer = await SegmentAnalyzer.create({
    labels,
    modelPath: settings.detector.modelPath,
    device: settings.detector.device,
    cacheDir: path.join(settings.storage.dir, 'model-cache'),
    maxDecodedBytes: settings.ingest.maxDecodedBytes,
    maxConcurrent: settings.ingest.maxConcurrentSegments,
    onCacheError: (err) => log.warn({ component: 'dnngrad', err: err.message }, 'DNNGrad graph not cached on disk; running it from memory (rebuilt at the next start)'),
    onFallback: (model, reason) =>
      log.warn({ component: model, reason }, `CUDA execution provider unavailable for the ${model}: running on CPU (install onnxruntime-node's CUDA provider: deploy/jetson/README.md, "GPU")`),
  });
  opened.push(() => analyzer.close());
  log.info({ component: 'dnngrad', fromCache: analyzer.gradFromCache }, 'DNNGrad graph ready');
  const store = new ServerStore(path.join(settings.storage.dir, 'server.db'), {
    failures: { maxRows: settings.storage.failuresMaxRows, maxBytes: settings.storage.failuresMaxBytes, retentionMs: settings.storage.failuresRetentionHours * 3600_000 },
  });
  opened.push(() => store.close());
  // retention of the per-segment results: now, then hourly (a store error is logged; ingest goes on)
  const prune = (): void => {
    try {
      const n = store.pruneResults(Date.now() - settings.storage.metricsRetentionHours * 3600_000);
      if (n > 0) log.info({ component: 'store', deleted: n, retentionHours: settings.storage.metricsRetentionHours }, 'old results deleted');
    } catch (e) {
      log.error({ component: 'store', err: (e as Error).message }, 'deleting old results failed');
    }
  };
  prune();
  const pruneTimer = setInterval(prune, 3600_000);
  pruneTimer.unref();
  opened.push(() => clearInterval(pruneTimer));
  const apiTokens = new TokenSet(settings.auth.apiTokens);
  // a request with a valid API token marks its connection authenticated, so the ingest's eviction of silent
  // connections (at its connection limits) never cuts an operator's API or ask stream
  const bearer = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const ok = requireBearer(req, res, apiTokens);
    if (ok) ingest.trust(req.socket);
    return ok;
  };
  const cameras = new CameraTokens(settings.auth.cameras);
  if (cameras.size === 0) log.warn({ component: 'auth' }, 'auth.cameras is empty: no camera can upload (npm run token -- <camera> makes a token)');
  if (apiTokens.size === 0) log.warn({ component: 'auth' }, 'auth.apiTokens is empty: /api/* is disabled');
  // the fleet page and the ask API (CacheBlend) behind the same bearer-token check as /api/results
  const fleetAsk = await startFleetAsk({
    settings: settings.ask,
    storageDir: settings.storage.dir,
    store,
    authorize: (req, res) => bearer(req, res),
    tokenOk: (token) => apiTokens.has(token),
    log,
  });
  opened.push(() => fleetAsk.stop());
  let lastHealthLog = 0;
  /** the store answers and the listener is up (what /healthz and the systemd watchdog report) */
  const health = (): { ok: boolean; reason?: string } => {
    try {
      store.results('\u0000', 1);
    } catch (e) {
      // the open /healthz gets the coarse reason; the detail goes to the log, once a minute at most (anyone may poll)
      if (Date.now() - lastHealthLog > 60_000) {
        lastHealthLog = Date.now();
        log.error({ component: 'store', err: (e as Error).message }, 'health check: store failed');
      }
      return { ok: false, reason: 'store failed' };
    }
    return ingest.listening ? { ok: true } : { ok: false, reason: 'ingest: not listening' };
  };
  // /metrics and /api/results are served on the ingest port (plain HTTP next to the WebSocket upgrade)
  const httpHandler: http.RequestListener = async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') {
      const h = health();
      return void res.writeHead(h.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(h.ok ? { status: 'ok' } : { status: 'unhealthy', reason: h.reason }));
    }
    if (await fleetAsk.api.handle(req, res)) return;
    const known = url.pathname === '/metrics' || url.pathname === '/api/results';
    if (!known) return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    if (req.method !== 'GET') return void res.writeHead(405, { allow: 'GET' }).end();
    if (!(url.pathname === '/metrics' && settings.auth.metricsPublic) && !bearer(req, res)) return;
    if (url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(await registry.metrics());
      return;
    }
    // /api/results?camera=<id>&limit=<n> (newest n, default 1000, max 10000)
    const q = ResultsQuerySchema.safeParse(Object.fromEntries(url.searchParams));
    if (!q.success) return void res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: q.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') }));
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(store.results(q.data.camera, q.data.limit)));
  };
  const tls = settings.listen.tls ? { cert: readFileSync(settings.listen.tls.cert), key: readFileSync(settings.listen.tls.key) } : undefined;
  const ingest = new IngestServer({ host: settings.listen.host, port: settings.listen.port, processor: analyzer, store, auth: cameras, limits: settings.ingest, tls, httpHandler });
  opened.push(() => ingest.stop());
  ingest.on('rejected', (reason, address, camera) => log.warn({ component: 'ingest', address, camera, reason }, 'connection closed'));
  ingest.on('connection', (camera) => log.info({ component: 'ingest', camera }, 'agent connected'));
  ingest.on('failed', (error, segment, retryable) => {
    failed.inc();
    log.error({ component: 'ingest', segment, error, retryable }, retryable ? 'segment not processed; the agent will retry' : 'segment rejected');
  });
  // running detection counts per camera: the overall F1 next to each segment's
  const totals = new Map<string, { tp: number; fp: number; fn: number }>();
  ingest.on('segment', (h, r, wire) => {
    segs.inc();
    const tot = totals.get(h.cameraId) ?? { tp: 0, fp: 0, fn: 0 };
    if (r.f1) {
      tot.tp += r.f1.tp;
      tot.fp += r.f1.fp;
      tot.fn += r.f1.fn;
      totals.set(h.cameraId, tot);
    }
    const overallF1 = f1FromCounts(tot.tp, tot.fp, tot.fn);
    bytes.inc(h.videoBytes);
    const refBytes = h.ref?.bytes ?? 0;
    uplink.inc({ part: 'video' }, h.videoBytes);
    uplink.inc({ part: 'reference' }, refBytes);
    uplink.inc({ part: 'headers' }, wire.uplinkBytes - h.videoBytes - refBytes);
    downlink.inc(wire.downlinkBytes);
    if (r.f1) f1.set({ camera: h.cameraId }, r.f1.f1);
    stage.observe({ stage: 'decode' }, r.timings.decodeMs / 1000);
    stage.observe({ stage: 'detect' }, r.timings.detectMs / 1000);
    stage.observe({ stage: 'dnngrad' }, r.timings.gradMs / 1000);
    log.info(
      { component: 'ingest', camera: h.cameraId, segment: h.seq, bytes: h.videoBytes, wireBytes: wire.uplinkBytes, refBytes, replyBytes: wire.downlinkBytes, frames: h.frameCount, knobs: h.knobs, f1: r.f1?.f1 ?? null, overallF1: Number(overallF1.toFixed(4)), tp: r.f1?.tp, fp: r.f1?.fp, fn: r.f1?.fn, dnngradBytes: r.dnngrad ? Buffer.from(r.dnngrad.data, 'base64').length : 0, ms: Math.round(r.timings.decodeMs + r.timings.detectMs + r.timings.gradMs) },
      'segment processed',
    );
  });
  const port = await ingest.start();
  log.info({ component: 'server', port, tls: Boolean(tls), device: analyzer.detector.device, dnngradDevice: analyzer.gradDevice, model: settings.detector.modelPath }, 'server listening');
  return {
    health,
    port,
    store,
    ingest,
    stop: () => closeAll(opened, false),
  };
}

if (isMainModule(import.meta.url)) {
  (async () => {
    const file = configPathFromArgv(process.argv.slice(2), '/etc/camstream/server.yaml');
    const settings = loadServerConfig(file);
    const s = await startServer(settings);
    const sd = new SdNotify();
    await sd.ready(`listening on ${s.port}`);
    sd.watchdog(() => s.health());
    let stopping = false;
    const stop = async () => {
      // a second signal while stopping forces the exit instead of racing the first stop
      if (stopping) process.exit(1);
      stopping = true;
      await sd.stopping();
      sd.stopWatchdog();
      await s.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop());
    process.on('SIGINT', () => void stop());
    // systemctl reload: node's default for SIGHUP is to exit (129), which systemd takes as a clean stop and does
    // not restart; the server reads its config at start only, so say so instead
    process.on('SIGHUP', () => rootLogger('camstream-server').warn({ component: 'server', file }, 'SIGHUP: the server reads its config at start only; restart it to apply changes'));
  })().catch((e) => {
    console.error(`camstream-server: ${(e as Error).message}`);
    process.exit(1);
  });
}
