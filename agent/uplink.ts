/**
 * Uplink: drains the store-and-forward outbox to the server over WebSocket.
 *
 * - A segment leaves the outbox only when the server's reply for it arrives (at-least-once;
 *   the server deduplicates by segmentId, so a resend after a reconnect is harmless).
 * - Back-pressure: at most `window` segments in flight and no send while the socket's
 *   buffered amount is above `maxBufferedBytes`.
 * - Reconnect with exponential backoff; on reconnect everything unacknowledged is resent in order
 *   (resume), because in-flight state is forgotten with the old socket.
 * - Error replies (protocol.ts): a retryable one (server store/disk/processor trouble) leaves the
 *   segment in the outbox and resends it after a per-segment backoff; a final one for a bad segment
 *   (`invalid_segment`, the server kept its bytes) drops it; a final connection error (bad token,
 *   identity mismatch, protocol) STOPS the uplink with `fatal` and deletes nothing.
 */
import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { PROTOCOL_VERSION, parseServerMessage, wsFrameOverhead, type Reply } from '../wire/protocol.ts';

export interface OutboxItem {
  segmentId: string;
  data: Buffer;
}

/** What the uplink needs from the store (AgentStore implements it). */
export interface Outbox {
  pending(limit: number): OutboxItem[];
  ack(segmentId: string): void;
  depth(): number;
}

export interface UplinkOptions {
  url: string;
  cameraId: string;
  /** this camera's secret; without one the uplink does not connect (segments stay in the outbox) */
  token?: string;
  /** wss://: CA certificate(s) (PEM) to trust, optional client certificate and key */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** first delay before resending a segment the server could not process (doubles, max 60 s); default 1000 */
  retryMs?: number;
  window?: number;
  maxBufferedBytes?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * the largest message the server accepts (its `ingest.maxPayloadBytes`; default 8 MiB, the server's default).
   * A larger segment is kept in the outbox but not sent, so it cannot block the ones behind it; a close with
   * code 1009 (message too big) also lowers this to below the largest segment that was in flight.
   */
  maxMessageBytes?: number;
}

export interface UplinkEvents {
  /** the reply and what it cost on the downlink (message + WebSocket frame header) */
  reply: [Reply, number];
  connected: [];
  disconnected: [string];
  /** error message, segment id, whether the segment stays in the outbox */
  serverError: [string, string | undefined, boolean];
  /** the server refused this camera (token, identity, protocol): the uplink has stopped */
  fatal: [string];
}

export class Uplink extends EventEmitter<UplinkEvents> {
  private ws: WebSocket | null = null;
  /** segments in flight, with their bytes (the largest one is over the server's limit after a 1009 close) */
  private inflight = new Map<string, number>();
  /** the server's message limit as learnt from 1009 closes */
  private learntMaxBytes = Infinity;
  /** segments too large to send, already reported on this connection */
  private oversize = new Set<string>();
  private running = false;
  private backoff: number;
  private timer: NodeJS.Timeout | null = null;
  /** segments the server could not process yet: not resent before `at` */
  private deferred = new Map<string, { at: number; delayMs: number }>();
  private deferTimer: NodeJS.Timeout | null = null;
  connected = false;
  sentCount = 0;
  /** why the uplink stopped for good (bad token, identity mismatch), or null */
  fatalError: string | null = null;
  /** last socket-level error (connection refused, certificate not trusted), for logs and health */
  lastError: string | null = null;

  constructor(private readonly outbox: Outbox, private readonly opts: UplinkOptions) {
    super();
    this.backoff = opts.minBackoffMs ?? 250;
  }

  start(): void {
    if (this.running) return;
    if (!this.opts.token) {
      this.fatalError = 'server.token is not set: this camera cannot authenticate; segments stay in the outbox';
      this.emit('fatal', this.fatalError);
      return;
    }
    this.running = true;
    this.fatalError = null;
    this.connect();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    if (this.deferTimer) clearTimeout(this.deferTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close();
        setTimeout(() => { ws.terminate(); resolve(); }, 1000).unref();
      });
    }
  }

  /** Call after enqueueing a segment. */
  kick(): void {
    this.pump();
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  private connect(): void {
    if (!this.running) return;
    const tls = this.opts.tls ?? {};
    const ws = new WebSocket(this.opts.url, { perMessageDeflate: false, handshakeTimeout: 5000, ca: tls.ca, cert: tls.cert, key: tls.key });
    this.ws = ws;
    let welcomed = false;
    ws.on('open', () => {
      ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, cameraId: this.opts.cameraId, token: this.opts.token }));
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let msg;
      try {
        msg = parseServerMessage(data.toString());
      } catch (e) {
        this.emit('serverError', (e as Error).message, undefined, true);
        return;
      }
      if (msg.type === 'welcome') {
        if (welcomed) return;
        welcomed = true;
        this.lastError = null;
        this.connected = true;
        this.backoff = this.opts.minBackoffMs ?? 250;
        this.emit('connected');
        this.pump();
      } else if (msg.type === 'reply') {
        this.outbox.ack(msg.segmentId);
        this.inflight.delete(msg.segmentId);
        this.deferred.delete(msg.segmentId);
        const n = typeof data === 'string' ? Buffer.byteLength(data) : Buffer.isBuffer(data) ? data.length : Array.isArray(data) ? data.reduce((a, b) => a + b.length, 0) : data.byteLength;
        this.emit('reply', msg, n + wsFrameOverhead(n, false));
        this.pump();
      } else if (msg.type === 'error') {
        // the server answers one connection's segments in order: an error that could not name its
        // segment (unparseable message) is about the oldest one in flight
        if (!msg.segmentId && msg.code !== 'auth' && msg.code !== 'protocol' && msg.code !== 'identity') msg.segmentId = this.inflight.keys().next().value;
        if (msg.retryable) {
          // not the segment's fault: it stays in the outbox and is resent later
          if (msg.segmentId) this.defer(msg.segmentId);
          this.emit('serverError', msg.error, msg.segmentId, true);
        } else if (msg.code === 'invalid_segment' && msg.segmentId) {
          // the segment itself is bad and the server kept its bytes: nothing to resend
          this.outbox.ack(msg.segmentId);
          this.inflight.delete(msg.segmentId);
          this.deferred.delete(msg.segmentId);
          this.emit('serverError', msg.error, msg.segmentId, false);
        } else {
          // the server refuses this camera: stop, keep everything, say why
          this.fatalError = `server refused camera ${this.opts.cameraId} (${msg.code}): ${msg.error}; uplink stopped, ${this.outbox.depth()} segment(s) kept in the outbox`;
          this.running = false;
          this.emit('fatal', this.fatalError);
          ws.close();
          return;
        }
        this.pump();
      }
    });
    ws.on('error', (err) => {
      this.lastError = err.message; // e.g. TLS verification; 'close' follows and reconnects
    });
    ws.on('close', (code, reason) => {
      const was = this.connected;
      this.connected = false;
      if (code === 1009 && this.inflight.size) {
        // message too big: the largest segment in flight is over the server's limit
        this.learntMaxBytes = Math.min(this.learntMaxBytes, Math.max(...this.inflight.values()) - 1);
      }
      this.inflight.clear();
      this.oversize.clear();
      if (this.ws === ws) this.ws = null;
      if (was) this.emit('disconnected', reason.toString() || 'closed');
      if (!this.running) return;
      this.timer = setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 10_000);
    });
  }

  /** Resend this segment later (per-segment exponential backoff); the others keep flowing. */
  private defer(segmentId: string): void {
    this.inflight.delete(segmentId);
    const prev = this.deferred.get(segmentId);
    const delayMs = prev ? Math.min(prev.delayMs * 2, 60_000) : (this.opts.retryMs ?? 1000);
    this.deferred.set(segmentId, { at: Date.now() + delayMs, delayMs });
    this.scheduleDeferred();
  }

  private scheduleDeferred(): void {
    if (this.deferTimer || this.deferred.size === 0) return;
    const next = Math.min(...[...this.deferred.values()].map((d) => d.at));
    this.deferTimer = setTimeout(() => {
      this.deferTimer = null;
      this.pump();
      this.scheduleDeferred();
    }, Math.max(10, next - Date.now()));
    this.deferTimer.unref();
  }

  /** segments the server asked to resend later */
  get deferredCount(): number {
    return this.deferred.size;
  }

  private pump(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.connected) return;
    const window = this.opts.window ?? 4;
    const maxBuffered = this.opts.maxBufferedBytes ?? 8 << 20;
    if (this.inflight.size >= window) return;
    const now = Date.now();
    const cap = Math.min(this.opts.maxMessageBytes ?? 8 << 20, this.learntMaxBytes);
    let skippedNew = false;
    for (const item of this.outbox.pending(window + this.inflight.size + this.deferred.size + this.oversize.size)) {
      if (this.inflight.size >= window || ws.bufferedAmount > maxBuffered) break;
      if (this.inflight.has(item.segmentId)) continue;
      const d = this.deferred.get(item.segmentId);
      if (d && d.at > now) continue;
      if (item.data.length > cap) {
        // the server would close the connection on it, again at every reconnect: keep it, send the rest
        if (!this.oversize.has(item.segmentId)) {
          this.oversize.add(item.segmentId);
          this.lastError = `segment ${item.segmentId} is ${item.data.length} bytes, more than the server accepts (${cap}); kept in the outbox, not sent`;
          this.emit('serverError', this.lastError, item.segmentId, true);
          skippedNew = true;
        }
        continue;
      }
      this.inflight.set(item.segmentId, item.data.length);
      this.sentCount++;
      ws.send(item.data, { binary: true });
    }
    // a newly skipped segment took a place in this round's list: look further down it
    if (skippedNew) return this.pump();
    // socket buffer was full: try again shortly
    if (ws.bufferedAmount > maxBuffered && this.inflight.size < window) setTimeout(() => this.pump(), 50).unref();
  }
}
