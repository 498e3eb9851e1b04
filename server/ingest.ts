/**
 * Ingest: the server's WebSocket endpoint. Each connection's segments are processed in order,
 * one at a time (the socket is paused while a segment is processed, which is the back-pressure
 * the agent sees through its send window). Replies are stored before they are sent, so a segment
 * resent after a reconnect or a server restart is answered from the store, not processed twice.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { parseHello, ProtocolError, unpackSegment, wsFrameOverhead, type Reply, type SegmentHeader } from '../wire/protocol.ts';

export interface SegmentProcessor {
  process(header: SegmentHeader, video: Buffer, ref: Buffer | null): Promise<Omit<Reply, 'type' | 'duplicate'>>;
}

export interface ReplyStore {
  getReply(segmentId: string): Reply | null;
  saveReply(header: SegmentHeader, reply: Reply, wireBytes?: number): void;
  /** keep a segment the server could not process (raw message bytes), so rejecting it loses no data */
  saveFailure?(segmentId: string | undefined, cameraId: string | null, error: string, raw: Buffer): void;
}

export interface IngestOptions {
  host?: string;
  port: number;
  processor: SegmentProcessor;
  store: ReplyStore;
  maxPayloadBytes?: number;
  /** plain HTTP requests on the same port (e.g. /metrics); WebSocket upgrades go to ingest */
  httpHandler?: http.RequestListener;
}

/** What one segment cost on the wire, as received (uplink) and answered (downlink), WebSocket frame headers included. */
export interface WireCount {
  uplinkBytes: number;
  downlinkBytes: number;
}

export interface IngestEvents {
  segment: [SegmentHeader, Reply, WireCount];
  failed: [string, string | undefined];
  connection: [string];
}

export class IngestServer extends EventEmitter<IngestEvents> {
  private wss: WebSocketServer | null = null;
  processed = 0;

  constructor(private readonly opts: IngestOptions) {
    super();
  }

  private http: http.Server | null = null;

  async start(): Promise<number> {
    const server = http.createServer(this.opts.httpHandler ?? ((_req, res) => res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket endpoint\n')));
    const wss = new WebSocketServer({ server, maxPayload: this.opts.maxPayloadBytes ?? 64 << 20, perMessageDeflate: false });
    this.wss = wss;
    this.http = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => resolve());
    });
    wss.on('connection', (ws) => this.onConnection(ws));
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const wss = this.wss;
    const server = this.http;
    this.wss = null;
    this.http = null;
    if (!wss || !server) return;
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private onConnection(ws: WebSocket): void {
    let cameraId: string | null = null;
    let chain = Promise.resolve();
    ws.on('message', (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (!isBinary) {
        try {
          cameraId = parseHello(buf.toString('utf8')).cameraId;
          ws.send(JSON.stringify({ type: 'welcome', v: 1, serverId: `camstream-server-${process.pid}` }));
          this.emit('connection', cameraId);
        } catch (e) {
          ws.send(JSON.stringify({ type: 'error', error: (e as Error).message }));
        }
        return;
      }
      chain = chain.then(() => this.handleSegment(ws, buf, cameraId));
    });
  }

  private async handleSegment(ws: WebSocket, buf: Buffer, cameraId: string | null): Promise<void> {
    let header: SegmentHeader | undefined;
    try {
      const seg = unpackSegment(buf);
      header = seg.header;
      if (cameraId && header.cameraId !== cameraId) throw new ProtocolError(`segment from ${header.cameraId} on ${cameraId}'s connection`);
      const stored = this.opts.store.getReply(header.segmentId);
      let reply: Reply;
      if (stored) {
        reply = { ...stored, duplicate: true };
      } else {
        ws.pause();
        try {
          reply = { type: 'reply', duplicate: false, ...(await this.opts.processor.process(header, seg.video, seg.ref)) };
        } finally {
          ws.resume();
        }
        const text = JSON.stringify(reply);
        const uplinkBytes = buf.length + wsFrameOverhead(buf.length, true);
        this.opts.store.saveReply(header, reply, uplinkBytes);
        this.processed++;
        const downlink = Buffer.byteLength(text, 'utf8');
        this.emit('segment', header, reply, { uplinkBytes, downlinkBytes: downlink + wsFrameOverhead(downlink, false) });
      }
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(reply));
    } catch (e) {
      const msg = (e as Error).message;
      try {
        this.opts.store.saveFailure?.(header?.segmentId, header?.cameraId ?? cameraId, msg, buf);
      } catch {
        /* the store itself failing (e.g. closed during shutdown) must not kill the connection */
      }
      this.emit('failed', msg, header?.segmentId);
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'error', segmentId: header?.segmentId, error: msg }));
    }
  }
}
