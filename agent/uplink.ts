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
 * - Liveness: a server that stops answering (hung, or a half-open TCP connection) is detected: with segments
 *   in flight, no server message (reply or error) for `replyTimeoutMs` after the last progress (a send flushed,
 *   a reply received); idle, no message, ping or pong for `replyTimeoutMs` (the uplink pings after half of it);
 *   no welcome within `replyTimeoutMs` of the hello. The socket is then terminated, and the usual reconnect and
 *   resume resend what was not acknowledged (it never left the outbox). Pongs do not count while segments are in
 *   flight: the server answers pings by itself even when its processing is stuck.
 * - Local failures (the SQLite outbox throwing inside a socket callback, e.g. SQLITE_FULL on ack) never escape a
 *   callback: they are emitted as `localError`, the segment stays in the outbox and is resent after a backoff.
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
  /**
   * Unacknowledged segments, oldest first, at most `limit`, leaving out the ids in `exclude` (in flight, deferred,
   * too large): the uplink sends what comes back without checking those again.
   */
  pending(limit: number, exclude?: ReadonlySet<string>): OutboxItem[];
  ack(segmentId: string): void;
  depth(): number;
  /** which of these ids are still unacknowledged in the outbox (optional: lets the uplink forget deferrals of
   * segments that left the outbox, e.g. dropped by its cap) */
  pendingIds?(segmentIds: Iterable<string>): Set<string>;
}

/** default `replyTimeoutMs` */
export const DEFAULT_REPLY_TIMEOUT_MS = 120_000;
/** default `maxReplyBytes`: the largest legit reply is ~4 MB (300 frames × 300 detections × ~40 B of JSON, the
 * agent's segmentFrames and the detector's maxDetections caps, + a base64 DNNGrad map of ≤ 512×512 codes,
 * ≤ 0.4 MB); 16 MiB also covers the protocol's 1000-frame limit */
export const DEFAULT_MAX_REPLY_BYTES = 16 << 20;

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
  /**
   * liveness limit (default 120 000): with segments in flight, the longest wait for a server message after the last
   * progress; idle, the longest silence (no message, ping or pong; the uplink pings after half of it); also the
   * longest wait for the welcome. Past it the socket is terminated and the uplink reconnects and resends what was
   * not acknowledged. Must exceed the server's processing time of one segment.
   */
  replyTimeoutMs?: number;
  /** the largest server message accepted (the socket's maxPayload; default DEFAULT_MAX_REPLY_BYTES) */
  maxReplyBytes?: number;
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
  /** a local failure while handling the connection (the outbox store threw, e.g. SQLITE_FULL), and the segment it
   * concerns; nothing was dropped: an unacknowledged segment stays in the outbox and is resent later */
  localError: [string, string | undefined];
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
  /** liveness timer of the current socket */
  private liveTimer: NodeJS.Timeout | null = null;
  /** retry of a pump whose outbox read failed */
  private pumpRetry: NodeJS.Timeout | null = null;
  private lastPrune = 0;
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
    if (this.pumpRetry) clearTimeout(this.pumpRetry);
    this.deferTimer = null;
    this.pumpRetry = null;
    this.stopLiveness();
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
    const ws = new WebSocket(this.opts.url, {
      perMessageDeflate: false,
      handshakeTimeout: 5000,
      maxPayload: this.opts.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES,
      ca: tls.ca,
      cert: tls.cert,
      key: tls.key,
    });
    this.ws = ws;
    const conn = { welcomed: false };
    let liveTimer: NodeJS.Timeout | null = null;
    /** why this uplink terminated the socket (reported on close) */
    let deadReason: string | null = null;
    const limit = this.opts.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS;
    /** liveness clocks of this socket: opened, last ping/pong, last progress (send written or flushed), last message */
    const live = { openedAt: 0, lastHeard: 0, lastProgress: 0, lastMessage: 0, pingedAt: 0, buffered: 0 };
    const heard = (): void => {
      live.lastHeard = Date.now();
    };
    const dead = (why: string): void => {
      if (deadReason) return;
      deadReason = why;
      this.lastError = why;
      ws.terminate(); // 'close' follows: reconnect with backoff, resend what is not acknowledged
    };
    ws.on('open', () => {
      live.openedAt = live.lastHeard = live.lastProgress = Date.now();
      ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, cameraId: this.opts.cameraId, token: this.opts.token }));
      liveTimer = setInterval(() => {
        if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
        const now = Date.now();
        if (!conn.welcomed) {
          if (now - live.openedAt > limit) dead(`no welcome from the server within ${limit} ms of the hello: connection presumed dead; reconnecting`);
          return;
        }
        if (this.inflight.size > 0) {
          // a send still draining to a slow link is progress; a buffer that does not shrink is not
          if (ws.bufferedAmount < live.buffered) live.lastProgress = now;
          live.buffered = ws.bufferedAmount;
          const since = Math.max(live.lastProgress, live.lastMessage);
          if (now - since > limit) dead(`no reply from the server for ${now - since} ms with ${this.inflight.size} segment(s) in flight (limit ${limit} ms): connection presumed dead; reconnecting, they stay in the outbox`);
          return;
        }
        const quiet = now - Math.max(live.lastHeard, live.lastMessage);
        if (quiet > limit) {
          dead(`nothing from the server for ${quiet} ms (no message, ping or pong; limit ${limit} ms): connection presumed dead; reconnecting`);
        } else if (quiet > limit / 2 && live.pingedAt < Math.max(live.lastHeard, live.lastMessage)) {
          live.pingedAt = now;
          try {
            ws.ping();
          } catch {
            /* closing: 'close' follows */
          }
        }
      }, Math.max(10, Math.min(1000, limit / 10)));
      liveTimer.unref();
      this.liveTimer = liveTimer;
    });
    ws.on('ping', heard);
    ws.on('pong', heard);
    this.sentFlushed = () => {
      live.lastProgress = Date.now();
    };
    ws.on('message', (data, isBinary) => {
      live.lastMessage = Date.now();
      if (isBinary) return;
      try {
        this.onMessage(ws, data, conn);
      } catch (e) {
        // never out of a socket callback: an uncaught exception here would end the process
        this.localError(`handling a server message failed: ${(e as Error).message}`, undefined);
        this.pump();
      }
    });
    ws.on('error', (err) => {
      this.lastError = err.message; // e.g. TLS verification; 'close' follows and reconnects
    });
    ws.on('close', (code, reason) => {
      if (liveTimer) clearInterval(liveTimer);
      if (this.liveTimer === liveTimer) this.liveTimer = null;
      const was = this.connected;
      this.connected = false;
      if (code === 1009 && this.inflight.size) {
        // message too big: the largest segment in flight is over the server's limit
        this.learntMaxBytes = Math.min(this.learntMaxBytes, Math.max(...this.inflight.values()) - 1);
      }
      this.inflight.clear();
      this.oversize.clear();
      if (this.ws === ws) this.ws = null;
      if (was) this.emit('disconnected', deadReason ?? (reason.toString() || 'closed'));
      if (!this.running) return;
      this.timer = setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 10_000);
    });
  }

  /** the current socket's liveness hook: a segment was sent or its bytes were flushed */
  private sentFlushed: () => void = () => {};

  private stopLiveness(): void {
    if (this.liveTimer) clearInterval(this.liveTimer);
    this.liveTimer = null;
  }

  private localError(message: string, segmentId: string | undefined): void {
    this.lastError = message;
    // a caller that does not listen for local errors still hears of it (and logs it) as a kept segment
    if (this.listenerCount('localError') > 0) this.emit('localError', message, segmentId);
    else this.emit('serverError', message, segmentId, true);
  }

  /**
   * The server answered this segment (reply, or a final error for a bad segment): take it out of the outbox. When
   * the store cannot (SQLITE_FULL, I/O error) the segment stays there and is resent after a backoff (the server
   * answers a resend from its store); false then.
   */
  private acked(segmentId: string): boolean {
    try {
      this.outbox.ack(segmentId);
    } catch (e) {
      this.localError(`outbox: cannot acknowledge segment ${segmentId}: ${(e as Error).message}; it stays in the outbox and is sent again`, segmentId);
      this.defer(segmentId);
      return false;
    }
    this.inflight.delete(segmentId);
    this.deferred.delete(segmentId);
    return true;
  }

  private onMessage(ws: WebSocket, data: WebSocket.RawData, conn: { welcomed: boolean }): void {
    let msg;
    try {
      msg = parseServerMessage(data.toString());
    } catch (e) {
      this.emit('serverError', (e as Error).message, undefined, true);
      return;
    }
    if (msg.type === 'welcome') {
      if (conn.welcomed) return;
      conn.welcomed = true;
      this.lastError = null;
      this.connected = true;
      this.backoff = this.opts.minBackoffMs ?? 250;
      this.emit('connected');
      this.pruneDeferred();
      this.pump();
    } else if (msg.type === 'reply') {
      // passed on only once the segment left the outbox: if the ack failed, the resend's (duplicate) reply is
      // the one passed on, so OneAdapt and the metrics see each segment's reply once
      if (this.acked(msg.segmentId)) {
        const n = typeof data === 'string' ? Buffer.byteLength(data) : Buffer.isBuffer(data) ? data.length : Array.isArray(data) ? data.reduce((a, b) => a + b.length, 0) : data.byteLength;
        this.emit('reply', msg, n + wsFrameOverhead(n, false));
      }
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
        const gone = this.acked(msg.segmentId);
        this.emit('serverError', msg.error, msg.segmentId, !gone);
      } else {
        // the server refuses this camera: stop, keep everything, say why
        let depth: number | string;
        try {
          depth = this.outbox.depth();
        } catch {
          depth = 'all';
        }
        this.fatalError = `server refused camera ${this.opts.cameraId} (${msg.code}): ${msg.error}; uplink stopped, ${depth} segment(s) kept in the outbox`;
        this.running = false;
        this.emit('fatal', this.fatalError);
        ws.close();
        return;
      }
      this.pump();
    }
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
    let next = Infinity;
    for (const d of this.deferred.values()) if (d.at < next) next = d.at;
    this.deferTimer = setTimeout(() => {
      this.deferTimer = null;
      if (Date.now() - this.lastPrune >= 1000) this.pruneDeferred();
      this.pump();
      this.scheduleDeferred();
    }, Math.max(10, next - Date.now()));
    this.deferTimer.unref();
  }

  /**
   * Forget the deferrals of segments no longer in the outbox (dropped by its cap, acknowledged elsewhere). Runs on
   * each welcome and when a deferral falls due (at most once a second); needs `Outbox.pendingIds`.
   */
  pruneDeferred(): void {
    this.lastPrune = Date.now();
    if (this.deferred.size === 0 || !this.outbox.pendingIds) return;
    let still: Set<string>;
    try {
      still = this.outbox.pendingIds(this.deferred.keys());
    } catch (e) {
      this.localError(`outbox: cannot check deferred segments: ${(e as Error).message}`, undefined);
      return;
    }
    for (const id of [...this.deferred.keys()]) if (!still.has(id)) this.deferred.delete(id);
  }

  /** segments the server asked to resend later */
  get deferredCount(): number {
    return this.deferred.size;
  }

  /** Never throws (it runs in socket and timer callbacks): an outbox that cannot be read is reported and retried. */
  private pump(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.connected) return;
    const window = this.opts.window ?? 4;
    const maxBuffered = this.opts.maxBufferedBytes ?? 8 << 20;
    if (this.inflight.size >= window) return;
    const now = Date.now();
    const cap = Math.min(this.opts.maxMessageBytes ?? 8 << 20, this.learntMaxBytes);
    // what not to read: in flight, deferred and not due yet, known to be too large (left out in SQL by AgentStore,
    // so a long backlog of deferred segments is not read again, blobs and all, on every pump)
    const exclude = new Set<string>(this.inflight.keys());
    for (const id of this.oversize) exclude.add(id);
    for (const [id, d] of this.deferred) if (d.at > now) exclude.add(id);
    let items: OutboxItem[];
    try {
      items = this.outbox.pending(window - this.inflight.size, exclude);
    } catch (e) {
      this.localError(`outbox: cannot read pending segments: ${(e as Error).message}; retrying`, undefined);
      if (!this.pumpRetry) {
        this.pumpRetry = setTimeout(() => {
          this.pumpRetry = null;
          this.pump();
        }, this.opts.retryMs ?? 1000);
        this.pumpRetry.unref();
      }
      return;
    }
    let skippedNew = false;
    for (const item of items) {
      if (this.inflight.size >= window || ws.bufferedAmount > maxBuffered) break;
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
      const flushed = this.sentFlushed;
      flushed();
      ws.send(item.data, { binary: true }, (err) => {
        if (!err) flushed();
      });
    }
    // a newly skipped segment took a place in this round's list: look further down it
    if (skippedNew) return this.pump();
    // socket buffer was full: try again shortly
    if (ws.bufferedAmount > maxBuffered && this.inflight.size < window) setTimeout(() => this.pump(), 50).unref();
  }
}
