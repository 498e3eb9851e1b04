/**
 * The operators' fleet page and the ask API (served on the server's HTTP port, wired in server/main.ts):
 *
 *   GET  /fleet          self-contained HTML (no data in it): the fleet at a glance and an ask box; open it as
 *                        /fleet#token=<API token> — its script sends the token with every request
 *   GET  /api/fleet      per camera: bytes on the wire, segments, F1, knobs, last segment (JSON)
 *   POST /api/ask        {"question": "..."} → NDJSON stream of AskEvents: the chunks used, each answer word, done
 *
 * Both /api routes go through the server's bearer-token check (`authorize`). Questions are answered by
 * cacheblend/ask.ts (CacheBlend over the event logs summarised from the stored detections).
 */
import type http from 'node:http';
import { z } from 'zod';
import type { AskEvent } from '../cacheblend/ask.ts';

export interface CameraSummary {
  cameraId: string;
  segments: number;
  /** bytes on the uplink: video, reference frames, headers (wire/protocol.ts segmentWireBytes) */
  bytes: number;
  /** mean of the segments' F1 (null when none was measured) */
  f1: number | null;
  knobs: Record<string, number>;
  last: { seq: number; capturedAt: number; bytes: number; f1: number | null } | null;
}

export interface FleetSource {
  fleet(): CameraSummary[];
}

export interface Asker {
  ask(question: string): AsyncGenerator<AskEvent>;
}

const AskBodySchema = z.strictObject({ question: z.string().min(1).max(300) });
const MAX_BODY = 4096;
/** questions waiting or being answered over HTTP; beyond, 503 at once (as ask over MQTT): a waiting request holds an
 * ingest connection slot, trusted and never evicted */
export const MAX_HTTP_ASKS = 16;

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  res.end(JSON.stringify(body));
}

/** The request body, or null when it is over `max` bytes (then 413 has been answered and the socket is closed). */
function readBody(req: http.IncomingMessage, res: http.ServerResponse, max: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let n = 0;
    const parts: Buffer[] = [];
    const onData = (c: Buffer): void => {
      n += c.length;
      if (n <= max) return void parts.push(c);
      req.off('data', onData);
      res.writeHead(413, { 'content-type': 'application/json; charset=utf-8', connection: 'close' });
      res.end(JSON.stringify({ error: `request body over ${max} bytes` }), () => req.destroy());
      resolve(null);
    };
    req.on('data', onData);
    req.on('end', () => n <= max && resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

export class FleetApi {
  private asking = 0;
  constructor(
    private readonly o: {
      source: FleetSource;
      /** null: no CacheBlend model available; /api/ask answers 503 */
      asker: Asker | null;
      /** the server's API check: true to proceed; otherwise it has answered (401) */
      authorize: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
    },
  ) {}

  /** Handle the request if it is one of this module's routes; false otherwise (the caller goes on). */
  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const p = url.pathname;
    if (p !== '/fleet' && p !== '/api/fleet' && p !== '/api/ask') return false;
    if (p === '/fleet') {
      if (req.method !== 'GET') return void res.writeHead(405, { allow: 'GET' }).end(), true;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-security-policy': "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'", 'x-content-type-options': 'nosniff' });
      res.end(FLEET_HTML);
      return true;
    }
    if (p === '/api/fleet') {
      if (req.method !== 'GET') return void res.writeHead(405, { allow: 'GET' }).end(), true;
      if (!this.o.authorize(req, res)) return true;
      json(res, 200, this.o.source.fleet());
      return true;
    }
    if (req.method !== 'POST') return void res.writeHead(405, { allow: 'POST' }).end(), true;
    if (!this.o.authorize(req, res)) return true;
    let body: z.infer<typeof AskBodySchema>;
    try {
      const raw = await readBody(req, res, MAX_BODY);
      if (raw === null) return true;
      body = AskBodySchema.parse(JSON.parse(raw));
    } catch (e) {
      json(res, 400, { error: e instanceof z.ZodError ? e.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ') : (e as Error).message });
      return true;
    }
    if (!this.o.asker) {
      json(res, 503, { error: 'no CacheBlend model loaded on this server' });
      return true;
    }
    if (this.asking >= MAX_HTTP_ASKS) {
      json(res, 503, { error: `server busy: ${MAX_HTTP_ASKS} questions are waiting; ask again later` });
      return true;
    }
    this.asking++;
    try {
      return await this.answer(res, this.o.asker, body.question);
    } finally {
      this.asking--;
    }
  }

  private async answer(res: http.ServerResponse, asker: Asker, question: string): Promise<boolean> {
    const it = asker.ask(question);
    let first: IteratorResult<AskEvent>;
    try {
      first = await it.next(); // validation errors (unknown words, length) surface here, before any byte is sent
    } catch (e) {
      json(res, e instanceof RangeError ? 400 : 500, { error: (e as Error).message });
      return true;
    }
    res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    try {
      for (let r = first; !r.done; r = await it.next()) {
        if (res.destroyed) break;
        res.write(JSON.stringify(r.value) + '\n');
      }
    } catch (e) {
      res.write(JSON.stringify({ type: 'error', error: (e as Error).message }) + '\n');
    } finally {
      // closing the generator runs the service's cleanup (cache eviction), which may throw: the response ends anyway
      await Promise.resolve(it.return?.(undefined)).catch(() => undefined);
      res.end();
    }
    return true;
  }
}

const FLEET_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>camstream fleet</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.3rem; margin: 0 0 1rem; }
table { border-collapse: collapse; margin-bottom: 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .7rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#ask { display: flex; gap: .5rem; max-width: 44rem; }
#q { flex: 1; padding: .4rem; font-size: 1rem; }
#answer { font-size: 1.2rem; margin: .8rem 0; min-height: 1.5em; }
#chunks li { font-family: ui-monospace, monospace; font-size: 12px; margin: .2rem 0; }
.cached { color: #2a7; } .fresh { color: #c60; }
#err { color: #b00; }
</style></head><body>
<h1>camstream fleet</h1>
<div id="err"></div>
<table id="fleet"><thead><tr><th>camera</th><th>segments</th><th>bytes on the wire</th><th>F1 (mean)</th><th>knobs</th><th>last segment</th></tr></thead><tbody></tbody></table>
<h2>Ask the event logs</h2>
<form id="ask"><input id="q" name="q" autocomplete="off" placeholder="which cameras saw a truck ?"><button id="go" type="submit">Ask</button></form>
<div id="answer"></div>
<div id="stats"></div>
<ol id="chunks"></ol>
<script>
const TOKEN = (() => {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) { sessionStorage.setItem("camstream-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  return sessionStorage.getItem("camstream-token") ?? "";
})();
const auth = { authorization: "Bearer " + TOKEN };
const $ = (s) => document.querySelector(s);
const el = (tag, text, cls) => { const e = document.createElement(tag); e.textContent = text; if (cls) e.className = cls; return e; };
const kB = (b) => (b / 1000).toLocaleString("en", { maximumFractionDigits: 1 }) + " kB";
const hm = (ms) => new Date(ms).toISOString().slice(11, 16);
function showError(msg) { $("#err").textContent = msg; }
async function refresh() {
  try {
    const r = await fetch("/api/fleet", { cache: "no-store", headers: auth });
    if (r.status === 401) throw new Error("unauthorized: open this page as /fleet#token=<API token>");
    if (!r.ok) throw new Error("fleet: HTTP " + r.status);
    const rows = await r.json();
    const tb = $("#fleet tbody"); tb.replaceChildren();
    for (const c of rows) {
      const tr = document.createElement("tr"); tr.dataset.camera = c.cameraId;
      tr.append(el("td", c.cameraId), el("td", String(c.segments), "num"), el("td", kB(c.bytes), "num"),
        el("td", c.f1 === null ? "–" : c.f1.toFixed(3), "num"),
        el("td", Object.entries(c.knobs).map(([k, v]) => k + "=" + (Math.round(v * 1000) / 1000)).join(", ")),
        el("td", c.last ? "#" + c.last.seq + " at " + hm(c.last.capturedAt) + " UTC, " + kB(c.last.bytes) + (c.last.f1 === null ? "" : ", F1 " + c.last.f1.toFixed(3)) : "–"));
      tb.append(tr);
    }
    showError("");
  } catch (e) { showError(e.message); }
}
$("#ask").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const question = $("#q").value.trim();
  if (!question) return;
  $("#answer").textContent = ""; $("#stats").textContent = ""; $("#chunks").replaceChildren(); showError("");
  $("#go").disabled = true;
  try {
    const r = await fetch("/api/ask", { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: JSON.stringify({ question }) });
    if (!r.ok) { const e = await r.json().catch(() => ({ error: "HTTP " + r.status })); throw new Error(e.error ?? "HTTP " + r.status); }
    const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\\n")) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        if (!line) continue;
        const e = JSON.parse(line);
        if (e.type === "chunks") for (const c of e.chunks) $("#chunks").append(el("li", (c.cached ? "[cached] " : "[new] ") + c.text, c.cached ? "cached" : "fresh"));
        else if (e.type === "token") $("#answer").textContent += ($("#answer").textContent ? " " : "") + e.text;
        else if (e.type === "done") { $("#answer").dataset.done = "1"; $("#stats").textContent = "first token after " + e.ttftMs.toFixed(0) + " ms; " + e.contextTokens + " context tokens; recomputed per layer: " + e.recomputed.join(" / "); }
        else if (e.type === "error") throw new Error(e.error);
      }
    }
  } catch (e) { showError(e.message); }
  finally { $("#go").disabled = false; }
});
refresh(); setInterval(refresh, 5000);
</script>
</body></html>
`;
