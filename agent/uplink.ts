/**
 * Uplink: drains the store-and-forward outbox to the server over WebSocket.
 *
 * - A segment leaves the outbox only when the server's reply for it arrives (at-least-once;
 *   the server deduplicates by segmentId, so a resend after a reconnect is harmless).
 * - Back-pressure: at most `window` segments in flight and no send while the socket's
 *   buffered amount is above `maxBufferedBytes`.
 * - Reconnect with exponential backoff; on reconnect everything unacknowledged is resent in order
 *   (resume), because in-flight state is forgotten with the old socket.
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
  window?: number;
  maxBufferedBytes?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface UplinkEvents {
  /** the reply and what it cost on the downlink (message + WebSocket frame header) */
  reply: [Reply, number];
  connected: [];
  disconnected: [string];
  serverError: [string, string | undefined];
}

export class Uplink extends EventEmitter<UplinkEvents> {
  private ws: WebSocket | null = null;
  private inflight = new Set<string>();
  private running = false;
  private backoff: number;
  private timer: NodeJS.Timeout | null = null;
  connected = false;
  sentCount = 0;

  constructor(private readonly outbox: Outbox, private readonly opts: UplinkOptions) {
    super();
    this.backoff = opts.minBackoffMs ?? 250;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
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
    const ws = new WebSocket(this.opts.url, { perMessageDeflate: false, handshakeTimeout: 5000 });
    this.ws = ws;
    ws.on('open', () => {
      this.connected = true;
      this.backoff = this.opts.minBackoffMs ?? 250;
      ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, cameraId: this.opts.cameraId }));
      this.emit('connected');
      this.pump();
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      let msg;
      try {
        msg = parseServerMessage(data.toString());
      } catch (e) {
        this.emit('serverError', (e as Error).message, undefined);
        return;
      }
      if (msg.type === 'reply') {
        this.outbox.ack(msg.segmentId);
        this.inflight.delete(msg.segmentId);
        const n = typeof data === 'string' ? Buffer.byteLength(data) : Buffer.isBuffer(data) ? data.length : Array.isArray(data) ? data.reduce((a, b) => a + b.length, 0) : data.byteLength;
        this.emit('reply', msg, n + wsFrameOverhead(n, false));
        this.pump();
      } else if (msg.type === 'error') {
        // A segment the server cannot process (e.g. corrupt) is reported, not retried forever:
        // the server acknowledges it with an error, so it leaves the outbox.
        if (msg.segmentId) {
          this.outbox.ack(msg.segmentId);
          this.inflight.delete(msg.segmentId);
        }
        this.emit('serverError', msg.error, msg.segmentId);
        this.pump();
      }
    });
    ws.on('error', () => { /* 'close' follows and handles it */ });
    ws.on('close', (_code, reason) => {
      const was = this.connected;
      this.connected = false;
      this.inflight.clear();
      if (this.ws === ws) this.ws = null;
      if (was) this.emit('disconnected', reason.toString() || 'closed');
      if (!this.running) return;
      this.timer = setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, this.opts.maxBackoffMs ?? 10_000);
    });
  }

  private pump(): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const window = this.opts.window ?? 4;
    const maxBuffered = this.opts.maxBufferedBytes ?? 8 << 20;
    if (this.inflight.size >= window) return;
    for (const item of this.outbox.pending(window + this.inflight.size)) {
      if (this.inflight.size >= window || ws.bufferedAmount > maxBuffered) break;
      if (this.inflight.has(item.segmentId)) continue;
      this.inflight.add(item.segmentId);
      this.sentCount++;
      ws.send(item.data, { binary: true });
    }
    // socket buffer was full: try again shortly
    if (ws.bufferedAmount > maxBuffered && this.inflight.size < window) setTimeout(() => this.pump(), 50).unref();
  }
}
