import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Uplink } from '../agent/uplink.ts';
import { IngestServer, type SegmentProcessor } from '../server/ingest.ts';
import { packSegment, unpackSegment, ProtocolError, type SegmentHeader, type Reply } from '../wire/protocol.ts';
import { ServerStore } from '../server/store.ts';
import { CameraTokens, hashToken } from '../proc/auth.ts';
import { SegmentDecodeError } from '../server/analyzer.ts';
import { MemOutbox } from './helpers/mem-outbox.ts';

const TOKEN = 'cam1-secret-token-for-tests';
const auth = new CameraTokens({ cam1: hashToken(TOKEN) });

function header(seq: number, videoBytes: number): SegmentHeader {
  return { type: 'segment', v: 1, segmentId: `cam1-${seq}`, cameraId: 'cam1', seq, codec: 'h264', width: 64, height: 48, fps: 10, frameCount: 10, ptsMs: [], capturedAt: Date.now(), knobs: { qp: 30 }, videoBytes };
}

/** Counts how often each segment is really processed; checks the payload arrives intact. */
class CountingProcessor implements SegmentProcessor {
  seen = new Map<string, number>();
  async process(h: SegmentHeader, video: Buffer) {
    expect(video.length).toBe(h.videoBytes);
    expect(video[0]).toBe(h.seq % 256);
    this.seen.set(h.segmentId, (this.seen.get(h.segmentId) ?? 0) + 1);
    await new Promise((r) => setTimeout(r, 5));
    return { segmentId: h.segmentId, seq: h.seq, detections: [], f1: null, dnngrad: null, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 } };
  }
}

const waitFor = async (cond: () => boolean, ms = 15000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('pack/unpack round trip and malformed messages are rejected with a clear error', () => {
  const h = { ...header(3, 5), ref: { frameIndex: 9, codec: 'h264' as const, width: 64, height: 48, bytes: 2 } };
  const buf = packSegment(h, Buffer.from([1, 2, 3, 4, 5]), Buffer.from([7, 8]));
  const u = unpackSegment(buf);
  expect(u.header).toEqual(h);
  expect([...u.video]).toEqual([1, 2, 3, 4, 5]);
  expect([...u.ref!]).toEqual([7, 8]);
  expect(() => unpackSegment(buf.subarray(0, buf.length - 1))).toThrow(/payload is 6 bytes, header says 5\+2/);
  expect(() => unpackSegment(Buffer.from([0, 0, 0, 2, 123, 125]))).toThrow(ProtocolError);
  expect(() => unpackSegment(Buffer.from([0, 0, 0, 3, 1, 2, 3]))).toThrow(/not JSON/);
});

test('server killed and restarted mid-stream: every segment is answered and stored exactly once', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'transport-'));
  const dbFile = path.join(dir, 'server.db');
  const proc = new CountingProcessor();
  let store = new ServerStore(dbFile);
  let server = new IngestServer({ host: '127.0.0.1', port: 0, processor: proc, store, auth });
  const port = await server.start();

  const outbox = new MemOutbox();
  const uplink = new Uplink(outbox, { url: `ws://127.0.0.1:${port}`, cameraId: 'cam1', token: TOKEN, window: 3, minBackoffMs: 50, maxBackoffMs: 200 });
  const replies: Reply[] = [];
  uplink.on('reply', (r) => replies.push(r));
  uplink.start();
  const N = 30;
  for (let i = 0; i < N; i++) {
    const video = Buffer.alloc(1000 + i, i % 256);
    outbox.items.push({ segmentId: `cam1-${i}`, data: packSegment(header(i, video.length), video) });
    uplink.kick();
    if (i === 12) {
      // hard stop: connections terminated, in-flight segments lost on the wire
      await waitFor(() => replies.length >= 5);
      await server.stop();
      store.close();
      await new Promise((r) => setTimeout(r, 300));
      store = new ServerStore(dbFile);
      server = new IngestServer({ host: '127.0.0.1', port, processor: proc, store, auth });
      await server.start();
    }
  }
  await waitFor(() => outbox.depth() === 0);
  await uplink.stop();
  await server.stop();
  const ids = store.results('cam1').map((r) => r.seq);
  expect(ids).toEqual([...Array(N).keys()]);
  // at-least-once: only the segment being processed when the server died may be processed again
  const twice = [...proc.seen.values()].filter((n) => n > 1).length;
  expect(twice).toBeLessThanOrEqual(1);
  expect(Math.max(...proc.seen.values())).toBeLessThanOrEqual(2);
  expect(proc.seen.size).toBe(N);
  store.close();
});

test('a corrupt segment gets an error reply and does not block the queue', async () => {
  const store = new ServerStore(':memory:');
  const proc: SegmentProcessor = {
    async process(h) {
      if (h.seq === 1) throw new SegmentDecodeError('cam1-1', 'Invalid data');
      return { segmentId: h.segmentId, seq: h.seq, detections: [], f1: null, dnngrad: null, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 } };
    },
  };
  const server = new IngestServer({ host: '127.0.0.1', port: 0, processor: proc, store, auth });
  const port = await server.start();
  const outbox = new MemOutbox();
  const errors: string[] = [];
  const uplink = new Uplink(outbox, { url: `ws://127.0.0.1:${port}`, cameraId: 'cam1', token: TOKEN });
  uplink.on('serverError', (e) => errors.push(e));
  for (let i = 0; i < 3; i++) outbox.items.push({ segmentId: `cam1-${i}`, data: packSegment(header(i, 4), Buffer.alloc(4)) });
  uplink.start();
  await waitFor(() => outbox.depth() === 0);
  await uplink.stop();
  await server.stop();
  expect(errors).toEqual(['cannot decode segment cam1-1: Invalid data']);
  expect(store.results().map((r) => r.seq)).toEqual([0, 2]);
  // the rejected segment is kept on the server, bytes and reason, not dropped
  expect(store.failures()).toEqual([{ segmentId: 'cam1-1', cameraId: 'cam1', error: 'cannot decode segment cam1-1: Invalid data', bytes: packSegment(header(1, 4), Buffer.alloc(4)).length }]);
});

test('a camera the server closes for being idle reconnects and delivers what it captures later (not refused for good)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ingest-idle-'));
  const store = new ServerStore(path.join(dir, 'server.db'));
  const proc = new CountingProcessor();
  const server = new IngestServer({ host: '127.0.0.1', port: 0, processor: proc, store, auth, limits: { idleTimeoutMs: 300 } });
  const port = await server.start();
  const outbox = new MemOutbox();
  const uplink = new Uplink(outbox, { url: `ws://127.0.0.1:${port}`, cameraId: 'cam1', token: TOKEN, minBackoffMs: 50, maxBackoffMs: 200 });
  const rejected: string[] = [];
  server.on('rejected', (why: string) => rejected.push(why));
  uplink.start();
  const push = (i: number): void => {
    outbox.items.push({ segmentId: `cam1-${i}`, data: packSegment(header(i, 100), Buffer.alloc(100, i)) });
    uplink.kick();
  };
  push(0);
  await waitFor(() => outbox.depth() === 0);
  // the source is down for longer than the server's idle timeout: the server closes the quiet connection
  await waitFor(() => rejected.some((r) => r.startsWith('idle for')));
  push(1);
  await waitFor(() => outbox.depth() === 0);
  expect(uplink.fatalError).toBeNull();
  await uplink.stop();
  await server.stop();
  expect(store.results('cam1').map((r) => r.seq)).toEqual([0, 1]);
  store.close();
});

test('silent sockets opened and recycled faster than the eviction age cannot keep a camera out (they hold at most three quarters of the slots)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ingest-churn-'));
  const store = new ServerStore(path.join(dir, 'server.db'));
  const server = new IngestServer({ host: '127.0.0.1', port: 0, processor: new CountingProcessor(), store, auth, limits: { maxConnections: 8, maxConnectionsPerAddress: 100 } });
  const port = await server.start();
  // a peer runs 16 loops: connect, say nothing, hang up after 500 ms (before EVICT_AFTER_MS, 1 s) or when refused,
  // connect again at once — every slot that frees is taken again within moments
  let stopped = false;
  const silent = new Set<net.Socket>();
  const loop = (): void => {
    if (stopped) return;
    const c = net.connect(port, '127.0.0.1');
    silent.add(c);
    const t = setTimeout(() => c.destroy(), 500);
    c.on('error', () => undefined);
    c.once('close', () => { clearTimeout(t); silent.delete(c); setImmediate(loop); });
  };
  for (let i = 0; i < 16; i++) loop();
  const outbox = new MemOutbox();
  const uplink = new Uplink(outbox, { url: `ws://127.0.0.1:${port}`, cameraId: 'cam1', token: TOKEN, minBackoffMs: 50, maxBackoffMs: 200 });
  try {
    await new Promise((r) => setTimeout(r, 300));
    outbox.items.push({ segmentId: 'cam1-0', data: packSegment(header(0, 100), Buffer.alloc(100)) });
    uplink.start();
    await waitFor(() => outbox.depth() === 0, 8000);
    expect(store.results('cam1').map((r) => r.seq)).toEqual([0]);
  } finally {
    stopped = true;
    silent.forEach((c) => c.destroy());
    await uplink.stop();
    await server.stop();
    store.close();
  }
});

test('an unauthenticated peer streaming a large frame before its hello is cut off at once, not read up to maxPayloadBytes', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ingest-prehello-'));
  const store = new ServerStore(path.join(dir, 'server.db'));
  const server = new IngestServer({ host: '127.0.0.1', port: 0, processor: new CountingProcessor(), store, auth });
  const port = await server.start();
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => undefined);
  try {
    const upgraded = new Promise<string>((r) => sock.once('data', (d) => r(d.toString())));
    sock.write('GET /ingest HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    expect(await upgraded).toMatch(/^HTTP\/1.1 101/);
    // one masked binary frame declaring 4 MiB; 256 KiB of it sent, and the peer never answers a close frame
    const hdr = Buffer.alloc(14);
    hdr[0] = 0x82;
    hdr[1] = 0x80 | 127;
    hdr.writeBigUInt64BE(4n << 20n, 2);
    const closed = new Promise<number>((r) => sock.once('close', () => r(Date.now())));
    const t0 = Date.now();
    sock.write(hdr);
    sock.write(Buffer.alloc(256 << 10));
    expect((await closed) - t0).toBeLessThan(1500); // the old graceful close waited 2 s, reading on
  } finally {
    sock.destroy();
    await server.stop();
    store.close();
  }
});
