/**
 * Local status page of the edge agent (node:http, no framework, no CDN).
 *
 *   GET /               self-contained HTML: knobs, bitrate and F1 charts (inline SVG), latest frame
 *                       with its QP map; refreshes itself every `refreshMs`
 *   GET /metrics        Prometheus text exposition (from the metrics source, if given)
 *   GET /api/state      provider.getState() as JSON
 *   GET /api/history    provider.getHistory() as JSON: [{ t, bitrateKbps, f1, knobs }]
 *   GET /api/frame.png  latest frame's luma in grey, QP offsets tinted over it (404 before the first frame)
 *   GET /healthz        {"status":"ok"} (503 {"status":"unhealthy","reason":…} when provider.getHealth() says otherwise;
 *                       open, so only the coarse reason, never `detail`, and URL credentials are redacted)
 *
 * Everything under /api/ and /metrics (unless `metricsPublic`) needs `Authorization: Bearer <token>`
 * (auth/tokens.ts); the page itself holds no data: open it as `http://host:8081/#token=<token>` and
 * its script sends the token with every request (the fragment never leaves the browser).
 *
 * It only knows the `StatusProvider` interface, so it is testable without the rest of the agent.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { PNG } from 'pngjs';
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { HttpError, send, sendError, sendJson } from '../proc/http.ts';
import type { AgentState } from './mqtt.ts';
import { requireBearer, type TokenSet } from '../proc/auth.ts';
import { redactUri } from '../media/capture.ts';

export interface HistoryPoint {
  /** ms since epoch */
  t: number;
  bitrateKbps: number | null;
  f1: number | null;
  knobs: Record<string, number>;
}

export interface LatestFrame {
  frame: YuvFrame;
  /** QP offsets per macroblock (negative = finer quality); null when no map was applied */
  qpMap: MbMap | null;
}

export interface StatusProvider {
  getState(): AgentState;
  getHistory(): HistoryPoint[];
  getLatestFrame(): LatestFrame | null;
  /** optional health check for /healthz: `reason` is shown there (keep it coarse), `detail` never is */
  getHealth?(): { ok: boolean; reason?: string; detail?: string };
}

/** Anything with prom-client's exposition API (an AgentMetrics or a prom-client Registry). */
export interface MetricsSource {
  metrics(): Promise<string>;
  contentType: string;
}

export interface StatusPageOptions {
  provider: StatusProvider;
  /** bearer tokens accepted for /api/* and /metrics (an empty set disables them) */
  tokens: TokenSet;
  /** serve /metrics without a token */
  metricsPublic?: boolean;
  metrics?: MetricsSource;
  host?: string; // default 127.0.0.1
  port?: number; // default 0 (ephemeral)
  /** browser refresh period; default 2000 ms */
  refreshMs?: number;
  title?: string;
  /** frames wider than this are downscaled (integer factor) for /api/frame.png; default 1280 */
  frameMaxWidth?: number;
  /** a server error after listening (e.g. EMFILE on accept); default: ignored (the page keeps serving) */
  onError?: (err: Error) => void;
  /** serve over https:// (PEM contents) */
  tls?: { cert: Buffer; key: Buffer };
}

/** most connections one address may hold on the status page (64 in all) */
export const PER_ADDRESS = 16;

/** Bounded in-memory history for the charts (the controller pushes one point per segment). */
export class StatusHistory {
  private readonly points: HistoryPoint[] = [];
  constructor(readonly capacity = 600) {}
  push(p: HistoryPoint): void {
    this.points.push(p);
    if (this.points.length > this.capacity) this.points.splice(0, this.points.length - this.capacity);
  }
  list(): HistoryPoint[] {
    return this.points.slice();
  }
}

/**
 * Render a frame's luma as greyscale RGB and tint the per-macroblock QP offsets over it:
 * negative offsets (finer quality) in orange, positive (coarser) in blue, opacity ∝ |offset|.
 * The map is stretched to the frame, so it works for any grid (normally ceil(w/16)×ceil(h/16)).
 */
export function renderFramePng(frame: YuvFrame, qpMap: MbMap | null, maxWidth = 1280): Buffer {
  const { width: fw, height: fh, data } = frame;
  if (data.length < fw * fh) throw new RangeError(`frame ${fw}x${fh} has ${data.length} bytes, fewer than its luma plane`);
  const step = Math.max(1, Math.ceil(fw / maxWidth));
  const w = Math.max(1, Math.floor(fw / step));
  const h = Math.max(1, Math.floor(fh / step));
  const png = new PNG({ width: w, height: h });
  const out = png.data;
  let maxAbs = 0;
  if (qpMap) {
    if (qpMap.data.length < qpMap.rows * qpMap.cols) throw new RangeError(`qpMap ${qpMap.rows}x${qpMap.cols} has only ${qpMap.data.length} values`);
    for (let i = 0; i < qpMap.rows * qpMap.cols; i++) maxAbs = Math.max(maxAbs, Math.abs(qpMap.data[i]));
  }
  const fine = [255, 120, 0];
  const coarse = [40, 110, 255];
  for (let y = 0; y < h; y++) {
    const sy = y * step;
    const mbRow = qpMap ? Math.min(qpMap.rows - 1, Math.floor((sy * qpMap.rows) / fh)) : 0;
    for (let x = 0; x < w; x++) {
      const sx = x * step;
      const luma = data[sy * fw + sx];
      let r = luma;
      let g = luma;
      let b = luma;
      if (qpMap && maxAbs > 0) {
        const mbCol = Math.min(qpMap.cols - 1, Math.floor((sx * qpMap.cols) / fw));
        const v = qpMap.data[mbRow * qpMap.cols + mbCol];
        if (v !== 0 && Number.isFinite(v)) {
          const a = 0.55 * Math.min(1, Math.abs(v) / maxAbs);
          const c = v < 0 ? fine : coarse;
          r = r * (1 - a) + c[0] * a;
          g = g * (1 - a) + c[1] * a;
          b = b * (1 - a) + c[2] * a;
        }
      }
      const o = (y * w + x) * 4;
      out[o] = r;
      out[o + 1] = g;
      out[o + 2] = b;
      out[o + 3] = 255;
    }
  }
  return PNG.sync.write(png, { colorType: 2, deflateLevel: 3 });
}

export class StatusPage {
  private readonly opts: StatusPageOptions;
  private server: http.Server | null = null;
  private pngCache: { frame: YuvFrame; qpMap: MbMap | null; png: Buffer } | null = null;

  constructor(opts: StatusPageOptions) {
    this.opts = opts;
  }

  get port(): number {
    const a = this.server?.address();
    return a && typeof a === 'object' ? (a as AddressInfo).port : 0;
  }

  get url(): string {
    const host = this.opts.host ?? '127.0.0.1';
    const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
    return `${this.opts.tls ? 'https' : 'http'}://${h.includes(':') ? `[${h}]` : h}:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const handler: http.RequestListener = (req, res) => {
      this.handle(req, res).catch((err: unknown) => sendError(res, err));
    };
    // headersTimeout is enforced only every connectionsCheckingInterval (Node's default 30 s): check every second,
    // and give a TLS handshake 10 s (default 120 s), so slow clients cannot hold slots for half a minute or more
    const serverOpts = { connectionsCheckingInterval: 1000 };
    const server = this.opts.tls ? https.createServer({ ...serverOpts, cert: this.opts.tls.cert, key: this.opts.tls.key, handshakeTimeout: 10_000 }, handler) : http.createServer(serverOpts, handler);
    // slow or silent clients cannot pile up (the page may be bound beyond localhost on a 2 GB board)
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.maxConnections = 64;
    // at most PER_ADDRESS connections from one address, so one host cannot hold every slot and lock operators
    // and health monitors out
    const perAddress = new Map<string, number>();
    server.on('connection', (socket) => {
      const a = socket.remoteAddress ?? '?';
      const n = perAddress.get(a) ?? 0;
      if (n >= PER_ADDRESS) return void socket.destroy();
      perAddress.set(a, n + 1);
      socket.once('close', () => {
        const left = (perAddress.get(a) ?? 1) - 1;
        if (left <= 0) perAddress.delete(a);
        else perAddress.set(a, left);
      });
    });
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    // after listening, an accept error (EMFILE…) must not be an uncaught exception
    server.on('error', (err) => this.opts.onError?.(err));
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' });
      res.end();
      return;
    }
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const p = this.opts.provider;
    const open = path === '/' || path === '/index.html' || path === '/healthz' || path === '/favicon.ico' || (path === '/metrics' && this.opts.metricsPublic);
    if (!open && (path.startsWith('/api/') || path === '/metrics') && !requireBearer(req, res, this.opts.tokens)) return;
    switch (path) {
      case '/':
      case '/index.html':
        return send(res, 200, 'text/html; charset=utf-8', pageHtml(this.opts.title ?? `camstream ${safeDeviceId(p)}`, this.opts.refreshMs ?? 2000), {
          'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        });
      case '/metrics': {
        if (!this.opts.metrics) throw new HttpError(404, 'no metrics registry configured');
        return send(res, 200, this.opts.metrics.contentType, await this.opts.metrics.metrics());
      }
      case '/api/state':
        return sendJson(res, p.getState());
      case '/api/history':
        return sendJson(res, p.getHistory());
      case '/api/frame.png': {
        const latest = p.getLatestFrame();
        if (!latest) throw new HttpError(404, 'no frame captured yet');
        return send(res, 200, 'image/png', this.framePng(latest));
      }
      case '/favicon.ico':
        res.writeHead(204, { 'cache-control': 'max-age=86400' });
        res.end();
        return;
      case '/healthz': {
        const h = p.getHealth?.() ?? { ok: true };
        // unauthenticated: the coarse reason only (a provider's detail may name the camera URL), redacted again to be sure
        return send(res, h.ok ? 200 : 503, 'application/json; charset=utf-8', JSON.stringify(h.ok ? { status: 'ok' } : { status: 'unhealthy', reason: redactUri(h.reason ?? 'unknown') }));
      }
      default:
        throw new HttpError(404, `no such page: ${path}`);
    }
  }

  /** Re-encode only when the frame or map object changed. */
  private framePng(latest: LatestFrame): Buffer {
    const c = this.pngCache;
    if (c && c.frame === latest.frame && c.qpMap === latest.qpMap) return c.png;
    const png = renderFramePng(latest.frame, latest.qpMap, this.opts.frameMaxWidth ?? 1280);
    this.pngCache = { frame: latest.frame, qpMap: latest.qpMap, png };
    return png;
  }
}

function safeDeviceId(p: StatusProvider): string {
  try {
    return p.getState().deviceId;
  } catch {
    return 'agent';
  }
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

/** The whole page: markup, style and script inline; data comes from the JSON endpoints (relative URLs). */
function pageHtml(title: string, refreshMs: number): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#111;color:#ddd}
 header{padding:8px 16px;background:#1d1d1d;display:flex;gap:16px;align-items:baseline;flex-wrap:wrap}
 h1{font-size:18px;margin:0} .muted{color:#888} .bad{color:#f66} .good{color:#6c6}
 main{display:grid;grid-template-columns:minmax(280px,1fr) minmax(320px,2fr);gap:16px;padding:16px}
 section{background:#1a1a1a;border-radius:6px;padding:12px} h2{font-size:14px;margin:0 0 8px;color:#aaa}
 table{border-collapse:collapse;width:100%} td{padding:2px 6px;border-bottom:1px solid #262626} td.v{text-align:right;font-variant-numeric:tabular-nums}
 svg.chart{width:100%;height:140px;background:#141414;border-radius:4px}
 #frame{max-width:100%;image-rendering:pixelated;border-radius:4px;display:block}
 .legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
</style></head>
<body>
<header><h1>${escapeHtml(title)}</h1><span id="summary" class="muted">loading…</span><span id="updated" class="muted"></span></header>
<main>
 <div>
  <section><h2>Knobs</h2><table id="knobs"><tbody></tbody></table></section>
  <section style="margin-top:16px"><h2>State</h2><table id="state"><tbody></tbody></table></section>
 </div>
 <div>
  <section><h2>Bitrate (kbit/s)</h2><svg id="chart-bitrate" class="chart" viewBox="0 0 600 140" preserveAspectRatio="none"></svg></section>
  <section style="margin-top:16px"><h2>F1</h2><svg id="chart-f1" class="chart" viewBox="0 0 600 140" preserveAspectRatio="none"></svg></section>
  <section style="margin-top:16px"><h2>Latest frame with QP map</h2>
   <div class="legend muted"><span style="background:#ff7800"></span>finer (QP&minus;)<span style="background:#286eff"></span>coarser (QP+)</div>
   <img id="frame" alt="latest frame"><div id="frame-msg" class="muted"></div></section>
 </div>
</main>
<script>
"use strict";
const REFRESH_MS = ${Number(refreshMs) | 0};
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
function fmt(v, d) { return v === null || v === undefined ? "–" : (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(d ?? 3)) : String(v)); }
function fillTable(id, rows) {
  const tb = $(id).tBodies[0];
  tb.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"); a.textContent = k;
    const b = document.createElement("td"); b.className = "v"; b.textContent = v;
    tr.append(a, b); return tr;
  }));
}
function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
function drawChart(id, pts, fixedMin, fixedMax, color) {
  const svg = $(id), W = 600, H = 140, L = 44, R = 8, T = 8, B = 18;
  const data = pts.filter((p) => typeof p[1] === "number" && isFinite(p[1]));
  svg.replaceChildren();
  svg.dataset.points = String(data.length);
  if (data.length === 0) { svg.append(el("text", { x: W / 2, y: H / 2, fill: "#666", "text-anchor": "middle" }, "no data yet")); return; }
  let lo = fixedMin ?? Math.min(...data.map((p) => p[1])), hi = fixedMax ?? Math.max(...data.map((p) => p[1]));
  if (hi <= lo) { hi = lo + 1; }
  const t0 = data[0][0], t1 = Math.max(data[data.length - 1][0], t0 + 1);
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (const v of [lo, (lo + hi) / 2, hi]) {
    svg.append(el("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: "#2a2a2a" }));
    svg.append(el("text", { x: L - 4, y: Y(v) + 4, fill: "#888", "font-size": 11, "text-anchor": "end" }, fmt(v, 2)));
  }
  svg.append(el("text", { x: W - R, y: H - 4, fill: "#666", "font-size": 11, "text-anchor": "end" }, new Date(t1).toLocaleTimeString()));
  const line = el("polyline", { fill: "none", stroke: color, "stroke-width": 2, "vector-effect": "non-scaling-stroke",
    points: data.map((p) => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ") });
  svg.append(line);
  const last = data[data.length - 1];
  svg.append(el("circle", { cx: X(last[0]), cy: Y(last[1]), r: 3, fill: color }));
}
// the API token comes from the URL fragment (#token=…), kept for this tab only
const TOKEN = (() => {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) { sessionStorage.setItem("camstream-token", decodeURIComponent(m[1])); window.history.replaceState(null, "", location.pathname); }
  return sessionStorage.getItem("camstream-token") ?? "";
})();
function api(path) {
  return fetch(path, { cache: "no-store", headers: { authorization: "Bearer " + TOKEN } }).then((r) => {
    if (r.status === 401) throw new Error("unauthorized: open this page as …/#token=<API token>");
    return r;
  });
}
let frameUrl = null;
async function refreshFrame() {
  const r = await api("api/frame.png");
  if (!r.ok) { $("frame-msg").textContent = "no frame yet"; return; }
  const url = URL.createObjectURL(await r.blob());
  $("frame").src = url; $("frame-msg").textContent = "";
  if (frameUrl) URL.revokeObjectURL(frameUrl);
  frameUrl = url;
}
async function refresh() {
  try {
    const [state, history] = await Promise.all([
      api("api/state").then((r) => r.json()),
      api("api/history").then((r) => r.json()),
    ]);
    fillTable("knobs", Object.entries(state.knobs ?? {}).sort().map(([k, v]) => [k, fmt(v)]));
    fillTable("state", [
      ["source", state.sourceRunning ? "running" : "stopped"], ["pipeline", state.pipelineRunning ? "running" : "stopped"],
      ["uplink, every byte (kbit/s)", fmt(state.bitrateKbps, 1)],
      ...Object.entries((state.extra && state.extra.uplinkKbps) || {}).map(([k, v]) => ["  " + k + " (kbit/s)", fmt(v, 1)]),
      ["F1", fmt(state.f1)], ["queue depth", fmt(state.queueDepth)],
      ["fps", fmt(state.fps, 1)], ["segments", fmt(state.segmentsEncoded)],
    ]);
    $("summary").className = state.sourceRunning ? "good" : "bad";
    $("summary").textContent = (state.sourceRunning ? "running" : "source stopped") + " · " + fmt(state.bitrateKbps, 0) + " kbit/s · F1 " + fmt(state.f1, 2);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    drawChart("chart-bitrate", history.map((p) => [p.t, p.bitrateKbps]), 0, null, "#4fa3ff");
    drawChart("chart-f1", history.map((p) => [p.t, p.f1]), 0, 1, "#7ddf64");
    await refreshFrame();
    document.body.dataset.loaded = "1";
  } catch (err) {
    $("summary").className = "bad";
    $("summary").textContent = "agent unreachable: " + err;
  }
}
refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body></html>
`;
}
