/**
 * Findings 1 and 7 of issue #13: one hostile packet must not take the server down, and idle,
 * stalled or excess connections must not hold it. Exact bytes over a real socket.
 */
import net from 'node:net';
import WebSocket from 'ws';
import { FleetApi } from '../../server/fleet-api.ts';
import { EVICT_AFTER_MS } from '../../server/ingest.ts';
import { ServerStore } from '../../server/store.ts';
import { parseServerMessage } from '../../wire/protocol.ts';
import { RawWs, segment, startIngest, TOKENS, waitFor } from './helpers.ts';

/** An authenticated client (the real `ws` library) uploads one segment and returns the reply. */
async function upload(url: string, camera: 'camA' | 'camB', seg: Buffer) {
  const ws = new WebSocket(url);
  const msgs: ReturnType<typeof parseServerMessage>[] = [];
  ws.on('message', (d) => msgs.push(parseServerMessage(d.toString())));
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  ws.send(JSON.stringify({ type: 'hello', v: 1, cameraId: camera, token: TOKENS[camera] }));
  ws.send(seg);
  await waitFor(() => msgs.some((m) => m.type !== 'welcome'));
  ws.close();
  return msgs.find((m) => m.type !== 'welcome')!;
}

const hello = (camera: 'camA' | 'camB') => Buffer.from(JSON.stringify({ type: 'hello', v: 1, cameraId: camera, token: TOKENS[camera] }));

describe('finding 1: protocol violations close one connection, never the server', () => {
  test.each([
    ['unmasked binary frame 82 03 01 02 03', (c: RawWs) => c.write([0x82, 0x03, 0x01, 0x02, 0x03])],
    ['text frame with invalid UTF-8 7b ff fe 7d', (c: RawWs) => c.frame(1, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))],
    ['frame header announcing more than maxPayload', (c: RawWs) => c.write([0x82, 0xff, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4])],
  ])('%s', async (_name, attack) => {
    const s = await startIngest({ maxPayloadBytes: 1 << 20 });
    try {
      for (let i = 0; i < 6; i++) {
        // more than StartLimitBurst=5 in a row
        const c = await RawWs.connect(s.port);
        attack(c);
        await waitFor(() => c.closed);
      }
      expect(s.rejected.filter((r) => /protocol violation/.test(r))).toHaveLength(6);
      // the server is still up and serves an authenticated camera
      const reply = await upload(s.url, 'camA', segment('camA', 'camA-seg-1', 0, 7));
      expect(reply).toMatchObject({ type: 'reply', segmentId: 'camA-seg-1', duplicate: false });
    } finally {
      await s.server.stop();
    }
  });
});

/** One raw HTTP/1.1 request over TCP; resolves with the status line (rejects after 5 s without an answer). */
function rawHttp(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.setTimeout(5000, () => sock.destroy(new Error('no answer within 5 s')));
    let buf = '';
    sock.on('data', (d) => (buf += d.toString('latin1')));
    sock.on('error', reject);
    sock.on('close', () => resolve(buf.split('\r\n')[0]));
    sock.write(request);
  });
}

describe('HTTP on the ingest port: a request line no URL parser accepts', () => {
  test('answers 400 and the server keeps serving (it was an unhandled rejection that ended the process)', async () => {
    // the server's own route handler (server/main.ts → FleetApi.handle parses the URL first)
    const api = new FleetApi({ source: { fleet: () => [] }, asker: null, authorize: () => false });
    const handler = async (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): Promise<void> => {
      if (await api.handle(req, res)) return;
      new URL(req.url ?? '/', 'http://localhost'); // as server/main.ts does next
      res.writeHead(404).end();
    };
    const s = await startIngest({}, undefined, undefined, handler);
    try {
      const status = await rawHttp(s.port, 'GET http://[/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(status).toBe('HTTP/1.1 400 Bad Request');
      expect(s.rejected.some((r) => /http handler: .*Invalid URL/.test(r))).toBe(true);
      expect(await rawHttp(s.port, 'GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toBe('HTTP/1.1 404 Not Found');
      const reply = await upload(s.url, 'camA', segment('camA', 'camA-seg-9', 0, 7));
      expect(reply).toMatchObject({ type: 'reply', segmentId: 'camA-seg-9' });
    } finally {
      await s.server.stop();
    }
  });
});

describe('finding 7: connections are bounded', () => {
  test('no hello within the deadline: closed with a retryable error (the camera reconnects; a slow link is not a refusal)', async () => {
    const s = await startIngest({ helloTimeoutMs: 300 });
    try {
      const c = await RawWs.connect(s.port);
      await waitFor(() => c.closed, 3000);
      expect(JSON.parse(c.texts()[0])).toEqual({ type: 'error', error: 'no hello within 300 ms', code: 'protocol', retryable: true });
    } finally {
      await s.server.stop();
    }
  });

  test('connection limits: per address and in total', async () => {
    const s = await startIngest({ maxConnectionsPerAddress: 3, maxConnections: 100 });
    const conns: RawWs[] = [];
    try {
      for (let i = 0; i < 3; i++) conns.push(await RawWs.connect(s.port));
      await expect(RawWs.connect(s.port)).rejects.toThrow(/upgrade refused/);
      expect(s.rejected).toContain('per-address connection limit reached');
      conns.pop()!.end();
      await waitFor(() => s.server.connectionCount === 2);
      conns.push(await RawWs.connect(s.port)); // a slot freed up
    } finally {
      conns.forEach((c) => c.end());
      await s.server.stop();
    }
    const t = await startIngest({ maxConnectionsPerAddress: 10, maxConnections: 2 });
    const more: RawWs[] = [];
    try {
      for (let i = 0; i < 2; i++) more.push(await RawWs.connect(t.port));
      await expect(RawWs.connect(t.port)).rejects.toThrow(/upgrade refused/);
      expect(t.rejected).toContain('connection limit reached');
    } finally {
      more.forEach((c) => c.end());
      await t.server.stop();
    }
  });

  test('at the connection limit, a silent connection older than EVICT_AFTER_MS makes room; an authenticated one never does', async () => {
    const s = await startIngest({ maxConnectionsPerAddress: 10, maxConnections: 2 });
    const silent = await RawWs.connect(s.port); // never says hello
    // camera A authenticates and stays connected
    const a = new WebSocket(s.url);
    const welcomed = new Promise<void>((r) => a.on('message', (d) => { if (parseServerMessage(d.toString()).type === 'welcome') r(); }));
    await new Promise((r, j) => { a.once('open', r); a.once('error', j); });
    a.send(hello('camA').toString());
    await welcomed;
    try {
      // both slots taken, the silent one too young to evict: refused as before
      await expect(RawWs.connect(s.port)).rejects.toThrow(/upgrade refused/);
      await new Promise((r) => setTimeout(r, EVICT_AFTER_MS + 200));
      // now camera B gets in by evicting the silent connection, not camera A
      const reply = await upload(s.url, 'camB', segment('camB', 'camB-seg-1', 0, 3));
      expect(reply).toMatchObject({ type: 'reply', segmentId: 'camB-seg-1' });
      await waitFor(() => silent.closed);
      expect(s.rejected.some((r) => /^evicted: connection limit reached and no hello after \d+ ms$/.test(r))).toBe(true);
      expect(a.readyState).toBe(WebSocket.OPEN);
    } finally {
      a.close();
      silent.end();
      await s.server.stop();
    }
  });

  test('at an address\'s limit, its own silent connection older than EVICT_AFTER_MS makes room for a camera behind the same address', async () => {
    const s = await startIngest({ maxConnectionsPerAddress: 2, maxConnections: 100 });
    const silent = [await RawWs.connect(s.port), await RawWs.connect(s.port)]; // same address (127.0.0.1), never say hello
    try {
      await expect(RawWs.connect(s.port)).rejects.toThrow(/upgrade refused/); // too young to evict
      await new Promise((r) => setTimeout(r, EVICT_AFTER_MS + 200));
      const reply = await upload(s.url, 'camB', segment('camB', 'camB-seg-9', 0, 3));
      expect(reply).toMatchObject({ type: 'reply', segmentId: 'camB-seg-9' });
      await waitFor(() => silent[0].closed);
      expect(silent[1].closed).toBe(false); // only the oldest went
      expect(s.rejected.some((r) => /^evicted: per-address connection limit reached and no hello after \d+ ms$/.test(r))).toBe(true);
    } finally {
      silent.forEach((c) => c.end());
      await s.server.stop();
    }
  });

  test('before hello at most 64 KiB may be buffered', async () => {
    const s = await startIngest({ maxPayloadBytes: 4 << 20 });
    try {
      const c = await RawWs.connect(s.port);
      // first 100 KiB of a 3 MiB binary frame, then silence
      c.write(Buffer.concat([Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0x30, 0, 0, 1, 2, 3, 4]), Buffer.alloc(100 << 10)]));
      await waitFor(() => c.closed, 3000);
      expect(s.rejected.some((r) => /before hello/.test(r))).toBe(true);
    } finally {
      await s.server.stop();
    }
  });

  test('a message stalled halfway is dropped after partialTimeoutMs; a peer that never answers pings is dropped', async () => {
    const s = await startIngest({ maxPayloadBytes: 4 << 20, partialTimeoutMs: 400, pingIntervalMs: 60_000 });
    try {
      const c = await RawWs.connect(s.port);
      c.frame(1, hello('camA'));
      await waitFor(() => c.texts().length === 1);
      expect(JSON.parse(c.texts()[0])).toMatchObject({ type: 'welcome', cameraId: 'camA' });
      // 1 MiB of a 3 MiB frame, then stall
      c.write(Buffer.concat([Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0x30, 0, 0, 1, 2, 3, 4]), Buffer.alloc(1 << 20)]));
      const t0 = Date.now();
      await waitFor(() => c.closed, 5000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
      expect(s.rejected).toContain('message not completed within 400 ms');
    } finally {
      await s.server.stop();
    }
    const p = await startIngest({ pingIntervalMs: 200 });
    try {
      const c = await RawWs.connect(p.port);
      c.frame(1, hello('camA')); // RawWs never answers pings
      await waitFor(() => c.closed, 5000);
      expect(p.rejected).toContain('no pong: peer is gone');
      // the real client answers pings and stays
      const ws = new WebSocket(p.url);
      await new Promise((r) => ws.once('open', r));
      ws.send(hello('camB').toString());
      await new Promise((r) => setTimeout(r, 1000));
      expect(ws.readyState).toBe(WebSocket.OPEN);
      ws.close();
    } finally {
      await p.server.stop();
    }
  });

  test('a segment that takes longer than the ping interval to process does not cost the connection', async () => {
    const s = await startIngest({ pingIntervalMs: 100, idleTimeoutMs: 300, partialTimeoutMs: 300 });
    s.processor.delayMs = 1200; // a loaded server: the socket is paused meanwhile, pongs wait in the kernel
    try {
      const reply = await upload(s.url, 'camA', segment('camA', 'camA-slow', 0));
      expect(reply).toMatchObject({ type: 'reply', segmentId: 'camA-slow' });
      expect(s.rejected).toEqual([]);
    } finally {
      await s.server.stop();
    }
  });

  test('idle connections are closed', async () => {
    const s = await startIngest({ idleTimeoutMs: 300, pingIntervalMs: 100 });
    try {
      const ws = new WebSocket(s.url);
      await new Promise((r) => ws.once('open', r));
      ws.send(hello('camA').toString());
      await new Promise((r) => ws.once('close', r));
      expect(s.rejected).toContain('idle for 300 ms');
    } finally {
      await s.server.stop();
    }
  });

  test('hello first and once: a segment before hello, or a second hello as another camera, is refused and nothing stored', async () => {
    const s = await startIngest();
    try {
      const a = await RawWs.connect(s.port);
      a.frame(2, segment('camA', 'camA-x', 0));
      await waitFor(() => a.closed);
      expect(JSON.parse(a.texts()[0])).toMatchObject({ code: 'protocol', error: 'segment before hello', retryable: false });
      const b = await RawWs.connect(s.port);
      b.frame(1, hello('camA'));
      b.frame(1, hello('camB'));
      b.frame(2, segment('camB', 'camB-x', 0));
      await waitFor(() => b.closed);
      expect(JSON.parse(b.texts()[1])).toMatchObject({ code: 'protocol', error: 'second hello on one connection' });
      expect((s.store as ServerStore).results()).toEqual([]);
      expect(s.processor.seen).toEqual([]);
    } finally {
      await s.server.stop();
    }
  });

  test('garbage and lying headers are rejected as final; the failures table is capped and expires', async () => {
    const store = new ServerStore(':memory:', { failures: { maxRows: 5, maxBytes: 1 << 20, retentionMs: 60_000 } });
    const s = await startIngest({}, store);
    try {
      // a header that says 100 video bytes with 50 attached
      const lying = segment('camA', 'camA-lie', 0).subarray(0, -50);
      const r = await upload(s.url, 'camA', lying);
      expect(r).toMatchObject({ type: 'error', segmentId: 'camA-lie', code: 'invalid_segment', retryable: false });
      expect((r as { error: string }).error).toMatch(/payload is 50 bytes, header says 100\+0/);
      for (let i = 0; i < 20; i++) await upload(s.url, 'camA', Buffer.alloc(1000, i));
      const f = store.failures();
      expect(f).toHaveLength(5);
      expect(f.every((x) => x.cameraId === 'camA')).toBe(true);
      expect(store.results()).toEqual([]);
    } finally {
      await s.server.stop();
    }
    const expiring = new ServerStore(':memory:', { failures: { maxRows: 100, maxBytes: 1 << 20, retentionMs: 50 } });
    expiring.saveFailure('x', 'camA', 'bad', Buffer.alloc(10));
    await new Promise((r) => setTimeout(r, 100));
    expiring.saveFailure('y', 'camA', 'bad', Buffer.alloc(10));
    expect(expiring.failures().map((x) => x.segmentId)).toEqual(['y']);
    // the byte cap holds too
    const bytesCapped = new ServerStore(':memory:', { failures: { maxRows: 100, maxBytes: 25, retentionMs: 60_000 } });
    for (let i = 0; i < 5; i++) bytesCapped.saveFailure(`s${i}`, 'camA', 'bad', Buffer.alloc(10));
    expect(bytesCapped.failures().map((x) => x.segmentId)).toEqual(['s3', 's4']);
  });
});
