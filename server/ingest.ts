/**
 * Ingest: the server's WebSocket endpoint (ws:// or wss://).
 *
 * Connection rules (a hostile client can neither crash the process nor hold much of it):
 *  - every socket and the server have 'error' handlers: a protocol violation (unmasked frame,
 *    invalid UTF-8, oversized message) closes that connection only;
 *  - messages are capped at `maxPayloadBytes`; before the hello at most `preHelloBytes` may be buffered;
 *  - the first message must be a hello with the camera's token, within `helloTimeoutMs`; a second
 *    hello, a binary message before hello, a bad token or a segment of another camera closes the
 *    connection with a final error naming the reason;
 *  - ping/pong liveness every `pingIntervalMs`; a message must complete within `partialTimeoutMs`
 *    of its first byte; a connection without messages for `idleTimeoutMs` is closed;
 *  - at most `maxConnections` TCP connections in all and `maxConnectionsPerAddress` per address; when the
 *    total is reached, a new connection evicts the oldest one that has not authenticated after
 *    `EVICT_AFTER_MS` (a camera sends its hello at once), so a few addresses holding silent connections
 *    cannot keep real cameras out; likewise at an address's limit, among that address's connections (cameras
 *    behind one NAT address share it with whatever else is there).
 *
 * Segments: each connection's segments are processed in order, one at a time (the socket is paused
 * while one is processed: the back-pressure the agent sees through its send window). Replies are
 * stored (keyed by camera and segment id) before they are sent, so a resent segment is answered from
 * the store, not processed twice. Every error reply says whether the agent may retry (see protocol.ts).
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { InvalidSegmentError, parseHello, PROTOCOL_VERSION, unpackSegment, wsFrameOverhead, type ErrorCode, type Reply, type SegmentHeader } from '../wire/protocol.ts';

export interface SegmentProcessor {
  /** throw InvalidSegmentError when the segment itself is bad (final); any other error is retryable */
  process(header: SegmentHeader, video: Buffer, ref: Buffer | null, cancelled?: () => boolean): Promise<Omit<Reply, 'type' | 'duplicate'>>;
}

export interface ReplyStore {
  getReply(cameraId: string, segmentId: string): Reply | null;
  saveReply(header: SegmentHeader, reply: Reply, wireBytes?: number): void;
  /** keep a segment the server could not process (raw message bytes), so rejecting it loses no data */
  saveFailure?(segmentId: string | undefined, cameraId: string | null, error: string, raw: Buffer): void;
}

/** Who may upload: true when `token` is this camera's. */
export interface CameraAuthenticator {
  verify(cameraId: string, token: string): boolean;
}

export interface IngestLimits {
  /** largest message (a segment with its reference frame); default 8 MiB */
  maxPayloadBytes: number;
  /** bytes a connection may buffer before its hello; default 64 KiB */
  preHelloBytes: number;
  helloTimeoutMs: number;
  pingIntervalMs: number;
  idleTimeoutMs: number;
  partialTimeoutMs: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
}

export const DEFAULT_INGEST_LIMITS: IngestLimits = {
  maxPayloadBytes: 8 << 20,
  preHelloBytes: 64 << 10,
  helloTimeoutMs: 5_000,
  pingIntervalMs: 15_000,
  idleTimeoutMs: 300_000,
  partialTimeoutMs: 60_000,
  maxConnections: 64,
  maxConnectionsPerAddress: 8,
};

export interface IngestOptions {
  host?: string;
  port: number;
  processor: SegmentProcessor;
  store: ReplyStore;
  auth: CameraAuthenticator;
  limits?: Partial<IngestLimits>;
  /** serve wss:// and https:// (PEM contents) */
  tls?: { cert: string | Buffer; key: string | Buffer };
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
  /** error message, segment id, whether the agent will retry it */
  failed: [string, string | undefined, boolean];
  connection: [string];
  /** a connection closed by the server's rules: reason, remote address, camera (when known) */
  rejected: [string, string, string | null];
}

/** Close codes (RFC 6455 4000-4999 are for applications). */
const CLOSE_POLICY = 1008;

interface Conn {
  ws: WebSocket;
  socket: Socket;
  address: string;
  cameraId: string | null;
  alive: boolean;
  lastMessageAt: number;
  partialSince: number | null;
  helloTimer: NodeJS.Timeout;
  chain: Promise<void>;
  closing: boolean;
  /** a segment is being processed: the socket is paused (pongs and bytes wait in the kernel), so no timeouts apply */
  busy: boolean;
}

/** a connection still without a valid hello after this long may be evicted for a new one at the connection limit */
export const EVICT_AFTER_MS = 1000;

/** remote address:port, the same for a TLS socket and the TCP socket under it */
const peerKey = (socket: Socket): string => `${socket.remoteAddress ?? '?'}:${socket.remotePort}`;

export class IngestServer extends EventEmitter<IngestEvents> {
  private wss: WebSocketServer | null = null;
  private http: http.Server | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly conns = new Set<Conn>();
  private readonly perAddress = new Map<string, number>();
  private tcpCount = 0;
  /** TCP sockets not (yet) authenticated, in arrival order, by peerKey */
  private readonly unauthed = new Map<string, { socket: Socket; at: number }>();
  readonly limits: IngestLimits;
  processed = 0;

  constructor(private readonly opts: IngestOptions) {
    super();
    this.limits = { ...DEFAULT_INGEST_LIMITS, ...opts.limits };
  }

  get listening(): boolean {
    return this.http?.listening ?? false;
  }

  /** open WebSocket connections (authenticated or not) */
  get connectionCount(): number {
    return this.conns.size;
  }

  async start(): Promise<number> {
    const inner = this.opts.httpHandler ?? ((_req, res) => res.writeHead(426, { 'content-type': 'text/plain' }).end('WebSocket endpoint\n'));
    // a handler that throws or rejects (e.g. on a request line no URL parser accepts) answers an error; it
    // never becomes an unhandled rejection that ends the process
    const handler: http.RequestListener = (req, res) => {
      const fail = (err: unknown): void => {
        const bad = (err as { code?: unknown })?.code === 'ERR_INVALID_URL';
        this.emit('rejected', `http handler: ${(err as Error)?.message ?? String(err)}`, req.socket.remoteAddress ?? '', null);
        if (!res.headersSent) res.writeHead(bad ? 400 : 500, { 'content-type': 'text/plain' });
        res.end(bad ? 'bad request\n' : 'internal error\n');
      };
      try {
        const r = inner(req, res) as unknown;
        if (r instanceof Promise) r.catch(fail);
      } catch (err) {
        fail(err);
      }
    };
    // headersTimeout is enforced only every connectionsCheckingInterval (Node's default 30 s): check every second,
    // and give a TLS handshake 10 s (default 120 s), so slow clients cannot hold slots for half a minute or more
    const serverOpts = { connectionsCheckingInterval: 1000 };
    const server = this.opts.tls ? https.createServer({ ...serverOpts, cert: this.opts.tls.cert, key: this.opts.tls.key, handshakeTimeout: 10_000 }, handler) : http.createServer(serverOpts, handler);
    // slow or silent HTTP clients: bounded header and request time
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.on('connection', (socket: Socket) => this.onTcp(socket));
    server.on('clientError', (_err, socket) => socket.destroy());
    const wss = new WebSocketServer({ server, maxPayload: this.limits.maxPayloadBytes, perMessageDeflate: false });
    wss.on('error', (err) => this.emit('rejected', `server error: ${err.message}`, '', null));
    this.wss = wss;
    this.http = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host ?? '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.emit('rejected', `server error: ${err.message}`, '', null));
    wss.on('connection', (ws, req) => this.onConnection(ws, req));
    const l = this.limits;
    const tick = Math.max(25, Math.min(l.pingIntervalMs, l.partialTimeoutMs, l.idleTimeoutMs, l.helloTimeoutMs) / 4);
    this.sweepTimer = setInterval(() => this.sweep(), tick);
    this.sweepTimer.unref();
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const wss = this.wss;
    const server = this.http;
    this.wss = null;
    this.http = null;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (!wss || !server) return;
    for (const c of this.conns) clearTimeout(c.helloTimer);
    for (const c of wss.clients) c.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** TCP-level limits, before any HTTP or WebSocket parsing. */
  private onTcp(socket: Socket): void {
    const address = socket.remoteAddress ?? '?';
    const n = this.perAddress.get(address) ?? 0;
    const full = this.tcpCount >= this.limits.maxConnections;
    const addressFull = n >= this.limits.maxConnectionsPerAddress;
    // connections that have not said hello may hold at most three quarters of the slots: the last quarter is the
    // cameras', however fast a peer opens and recycles silent sockets (they would otherwise never reach
    // EVICT_AFTER_MS). At that share a new connection evicts the oldest unauthenticated one whatever its age, so a
    // flood of handshakes (a fleet reconnecting at once) can cut a slow one short: it retries with backoff.
    const reserve = Math.floor(this.limits.maxConnections / 4);
    const unauthedFull = reserve > 0 && this.unauthed.size >= this.limits.maxConnections - reserve;
    let evicted = false;
    if (full || addressFull || unauthedFull) {
      // make room by closing the oldest connection that has had time to authenticate and has not — from this
      // address when the address is at its limit (so silent sockets from a shared NAT address cannot lock its
      // cameras out), else from any address (the unauthed map is in arrival order; 'close' counts it out as usual);
      // past the unauthenticated share, the oldest one whatever its age
      for (const [k, u] of this.unauthed) {
        if (addressFull && u.socket.remoteAddress !== address) continue;
        const age = Date.now() - u.at;
        if (age < EVICT_AFTER_MS && !unauthedFull) break; // the rest are younger
        this.unauthed.delete(k);
        this.emit('rejected', `evicted: ${addressFull ? 'per-address ' : ''}connection limit reached and no hello after ${age} ms`, u.socket.remoteAddress ?? '?', null);
        u.socket.destroy();
        evicted = true;
        break;
      }
    }
    if ((full || addressFull) && !evicted) {
      this.emit('rejected', full ? 'connection limit reached' : 'per-address connection limit reached', address, null);
      socket.destroy();
      return;
    }
    this.tcpCount++;
    this.perAddress.set(address, n + 1);
    const key = peerKey(socket);
    this.unauthed.set(key, { socket, at: Date.now() });
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      if (this.unauthed.get(key)?.socket === socket) this.unauthed.delete(key);
      this.tcpCount--;
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
  }

  /** An HTTP request on this socket carried valid credentials: it is no longer a candidate for eviction. */
  trust(socket: Socket): void {
    this.unauthed.delete(peerKey(socket));
  }

  private onConnection(ws: WebSocket, req: http.IncomingMessage): void {
    const address = req.socket.remoteAddress ?? '?';
    const conn: Conn = {
      ws,
      socket: req.socket,
      address,
      cameraId: null,
      alive: true,
      lastMessageAt: Date.now(),
      partialSince: null,
      helloTimer: setTimeout(() => this.reject(conn, 'protocol', `no hello within ${this.limits.helloTimeoutMs} ms`, { retryable: true }), this.limits.helloTimeoutMs),
      chain: Promise.resolve(),
      closing: false,
      busy: false,
    };
    this.conns.add(conn);
    // ws reports protocol violations (unmasked frame, invalid UTF-8, too big) here and closes the socket
    ws.on('error', (err) => {
      this.emit('rejected', `protocol violation: ${err.message}`, address, conn.cameraId);
      ws.terminate();
    });
    ws.on('close', () => {
      clearTimeout(conn.helloTimer);
      this.conns.delete(conn);
    });
    ws.on('pong', () => {
      conn.alive = true;
    });
    // runs after ws has parsed the chunk: anything it still buffers is a message in progress
    req.socket.on('data', () => {
      const buffered = receiverBuffered(ws);
      if (buffered === 0) conn.partialSince = null;
      else conn.partialSince ??= Date.now();
      // no graceful close for an unauthenticated peer: ws would go on reading its frame (up to maxPayloadBytes)
      // until the close handshake times out
      if (!conn.cameraId && buffered > this.limits.preHelloBytes) this.reject(conn, 'protocol', `more than ${this.limits.preHelloBytes} bytes before hello`, { terminate: true });
    });
    ws.on('message', (data, isBinary) => {
      conn.lastMessageAt = Date.now();
      if (conn.closing) return;
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (!isBinary) {
        this.onHello(conn, buf);
        return;
      }
      if (!conn.cameraId) {
        this.reject(conn, 'protocol', 'segment before hello');
        return;
      }
      const cameraId = conn.cameraId;
      conn.chain = conn.chain.then(() => this.handleSegment(conn, buf, cameraId));
    });
  }

  private onHello(conn: Conn, buf: Buffer): void {
    if (conn.cameraId) {
      this.reject(conn, 'protocol', 'second hello on one connection');
      return;
    }
    let hello;
    try {
      hello = parseHello(buf.toString('utf8'));
    } catch (e) {
      this.reject(conn, 'protocol', (e as Error).message);
      return;
    }
    if (!this.opts.auth.verify(hello.cameraId, hello.token)) {
      this.reject(conn, 'auth', `authentication failed for camera ${JSON.stringify(hello.cameraId)}: unknown camera or wrong token`);
      return;
    }
    clearTimeout(conn.helloTimer);
    conn.cameraId = hello.cameraId;
    this.unauthed.delete(peerKey(conn.socket));
    conn.ws.send(JSON.stringify({ type: 'welcome', v: PROTOCOL_VERSION, serverId: `camstream-server-${process.pid}`, cameraId: hello.cameraId }));
    this.emit('connection', hello.cameraId);
  }

  /** Final error for the connection, then close it. */
  /**
   * Close a connection with an error message; `retryable`: the peer did nothing wrong and should reconnect (an
   * idle camera, a hello lost on a slow link), else it is refused (and an agent stops until reconfigured).
   * `terminate`: drop the socket at once, no message and no close handshake.
   */
  private reject(conn: Conn, code: ErrorCode, error: string, opts: { retryable?: boolean; terminate?: boolean } = {}): void {
    if (conn.closing) return;
    conn.closing = true;
    clearTimeout(conn.helloTimer);
    this.emit('rejected', error, conn.address, conn.cameraId);
    const ws = conn.ws;
    const retryable = opts.retryable ?? false;
    if (ws.readyState === ws.OPEN && !opts.terminate) {
      ws.send(JSON.stringify({ type: 'error', error, code, retryable }));
      ws.close(CLOSE_POLICY, code);
      setTimeout(() => ws.terminate(), 2000).unref();
    } else ws.terminate();
  }

  private sweep(): void {
    const now = Date.now();
    const l = this.limits;
    for (const c of this.conns) {
      if (c.busy) continue;
      if (c.partialSince !== null && now - c.partialSince > l.partialTimeoutMs) {
        this.emit('rejected', `message not completed within ${l.partialTimeoutMs} ms`, c.address, c.cameraId);
        c.ws.terminate();
      } else if (now - c.lastMessageAt > l.idleTimeoutMs) {
        this.reject(c, 'protocol', `idle for ${l.idleTimeoutMs} ms`, { retryable: true }); // a camera with nothing to send: it reconnects when it has
      }
    }
    if (!this.lastPing || now - this.lastPing >= l.pingIntervalMs) {
      this.lastPing = now;
      for (const c of this.conns) {
        if (c.busy) continue;
        if (!c.alive) {
          this.emit('rejected', 'no pong: peer is gone', c.address, c.cameraId);
          c.ws.terminate();
          continue;
        }
        c.alive = false;
        try {
          c.ws.ping();
        } catch {
          c.ws.terminate();
        }
      }
    }
  }
  private lastPing = 0;

  private send(conn: Conn, msg: object): void {
    if (conn.ws.readyState === conn.ws.OPEN) conn.ws.send(JSON.stringify(msg));
  }

  private async handleSegment(conn: Conn, buf: Buffer, cameraId: string): Promise<void> {
    if (conn.closing) return;
    let seg: ReturnType<typeof unpackSegment>;
    try {
      seg = unpackSegment(buf);
    } catch (e) {
      const err = e as InvalidSegmentError;
      this.fail(conn, buf, cameraId, err.segmentId, err.message);
      return;
    }
    const header = seg.header;
    if (header.cameraId !== cameraId) {
      // never stored, never acknowledged: the agent stops and keeps the segment
      this.reject(conn, 'identity', `segment ${header.segmentId} names camera ${JSON.stringify(header.cameraId)} but this connection authenticated as ${JSON.stringify(cameraId)}`);
      return;
    }
    let reply: Reply;
    try {
      const stored = this.opts.store.getReply(cameraId, header.segmentId);
      if (stored) {
        reply = { ...stored, duplicate: true };
      } else {
        conn.ws.pause();
        conn.busy = true;
        try {
          reply = { type: 'reply', duplicate: false, ...(await this.opts.processor.process(header, seg.video, seg.ref, () => conn.closing || conn.ws.readyState !== conn.ws.OPEN)) };
        } finally {
          // the clocks restart when reading resumes
          conn.busy = false;
          conn.alive = true;
          conn.lastMessageAt = Date.now();
          if (conn.partialSince !== null) conn.partialSince = Date.now();
          conn.ws.resume();
        }
        const text = JSON.stringify(reply);
        const uplinkBytes = buf.length + wsFrameOverhead(buf.length, true);
        this.opts.store.saveReply(header, reply, uplinkBytes);
        this.processed++;
        const downlink = Buffer.byteLength(text, 'utf8');
        this.emit('segment', header, reply, { uplinkBytes, downlinkBytes: downlink + wsFrameOverhead(downlink, false) });
      }
    } catch (e) {
      if (e instanceof InvalidSegmentError) this.fail(conn, buf, cameraId, header.segmentId, e.message);
      else {
        // store full, disk error, processor crash: not the segment's fault, the agent keeps it and retries
        const msg = `server could not process segment ${header.segmentId} (will be retried): ${(e as Error).message}`;
        this.emit('failed', msg, header.segmentId, true);
        this.send(conn, { type: 'error', segmentId: header.segmentId, error: msg, code: 'server', retryable: true });
      }
      return;
    }
    this.send(conn, reply);
  }

  /** A bad segment: keep its bytes (failures table), then tell the agent it is final. If keeping fails, ask for a retry. */
  private fail(conn: Conn, buf: Buffer, cameraId: string, segmentId: string | undefined, error: string): void {
    try {
      this.opts.store.saveFailure?.(segmentId, cameraId, error, buf);
    } catch (e) {
      const msg = `segment rejected (${error}) and could not be kept (${(e as Error).message}); send it again later`;
      this.emit('failed', msg, segmentId, true);
      this.send(conn, { type: 'error', segmentId, error: msg, code: 'server', retryable: true });
      return;
    }
    this.emit('failed', error, segmentId, false);
    this.send(conn, { type: 'error', segmentId, error, code: 'invalid_segment', retryable: false });
  }
}

/** Bytes the ws receiver holds of an incomplete frame or fragmented message (ws internals, read-only). */
function receiverBuffered(ws: WebSocket): number {
  const rx = (ws as unknown as { _receiver?: { _bufferedBytes?: number; _fragments?: Buffer[] } })._receiver;
  if (!rx) return 0;
  const frags = rx._fragments?.reduce((a, f) => a + f.length, 0) ?? 0;
  return (rx._bufferedBytes ?? 0) + frags;
}
