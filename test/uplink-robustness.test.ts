/**
 * Uplink robustness: a silent or half-open server is detected and the connection is rebuilt (the un-acked
 * segments stay in the SQLite outbox and are resent); a store error inside a socket callback never crashes the
 * process nor loses the segment; deferred segments are not re-read on every pump and are pruned once gone.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { Uplink, type OutboxItem } from '../agent/uplink.ts';
import { AgentStore } from '../agent/store.ts';
import { packSegment, unpackSegment, type SegmentHeader } from '../wire/protocol.ts';
import { MemOutbox } from './helpers/mem-outbox.ts';

const TOKEN = 'cam1-secret-token-for-tests';

function header(seq: number, videoBytes: number): SegmentHeader {
  return { type: 'segment', v: 1, segmentId: `cam1-${seq}`, cameraId: 'cam1', seq, codec: 'h264', width: 64, height: 48, fps: 10, frameCount: 10, ptsMs: [], capturedAt: Date.now(), knobs: { qp: 30 }, videoBytes };
}
const seg = (seq: number): OutboxItem => {
  const video = Buffer.alloc(200, seq % 256);
  return { segmentId: `cam1-${seq}`, data: packSegment(header(seq, video.length), video) };
};

const waitFor = async (cond: () => boolean, ms = 10_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timeout');
    await new Promise((r) => setTimeout(r, 20));
  }
};

type Mode = { welcome: boolean; answer: (segmentId: string) => 'reply' | 'retry' | 'silent' };

/** A scriptable server: welcomes (or not) and answers each segment with a reply, a retryable error, or nothing. */
async function fakeServer(mode: Mode, opts: { autoPong?: boolean } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, autoPong: opts.autoPong ?? true });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const port = (wss.address() as { port: number }).port;
  const conns: WebSocket[] = [];
  /** segment ids received, per connection */
  const received: string[][] = [];
  wss.on('connection', (ws) => {
    conns.push(ws);
    const mine: string[] = [];
    received.push(mine);
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        if (mode.welcome) ws.send(JSON.stringify({ type: 'welcome', v: 1, serverId: 'fake', cameraId: 'cam1' }));
        return;
      }
      const { header: h } = unpackSegment(data as Buffer);
      mine.push(h.segmentId);
      const a = mode.answer(h.segmentId);
      if (a === 'reply') ws.send(JSON.stringify({ type: 'reply', segmentId: h.segmentId, seq: h.seq, detections: [], f1: null, dnngrad: null, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 } }));
      else if (a === 'retry') ws.send(JSON.stringify({ type: 'error', segmentId: h.segmentId, error: 'disk full', code: 'server', retryable: true }));
    });
  });
  return {
    url: `ws://127.0.0.1:${port}`,
    conns,
    received,
    async close() {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
}

test('a server that welcomes and then goes silent: the uplink tears the connection down, reconnects and resends; nothing leaves the outbox', async () => {
  const srv = await fakeServer({ welcome: true, answer: () => 'silent' }); // pongs still come (ws answers pings itself)
  const store = new AgentStore(':memory:');
  for (let i = 0; i < 6; i++) store.enqueue({ segmentId: `cam1-${i}`, cameraId: 'cam1', meta: { seq: i }, data: seg(i).data });
  const up = new Uplink(store, { url: srv.url, cameraId: 'cam1', token: TOKEN, window: 4, replyTimeoutMs: 300, minBackoffMs: 50, maxBackoffMs: 100 });
  const disconnects: string[] = [];
  up.on('disconnected', (why) => disconnects.push(why));
  up.start();
  try {
    await waitFor(() => srv.received.length >= 2 && srv.received[1].length >= 4);
    // the window's four went out on the first connection, then nothing: the second connection resends them
    expect(srv.received[0]).toEqual(['cam1-0', 'cam1-1', 'cam1-2', 'cam1-3']);
    expect(srv.received[1].slice(0, 4)).toEqual(['cam1-0', 'cam1-1', 'cam1-2', 'cam1-3']);
    expect(disconnects[0]).toMatch(/no reply from the server/);
    expect(store.depth()).toBe(6);
    expect(store.droppedTotal).toBe(0);
  } finally {
    await up.stop();
    await srv.close();
    store.close();
  }
}, 20_000);

test('once the server answers again, everything drains', async () => {
  let answer: 'silent' | 'reply' = 'silent';
  const srv = await fakeServer({ welcome: true, answer: () => answer });
  const store = new AgentStore(':memory:');
  for (let i = 0; i < 5; i++) store.enqueue({ segmentId: `cam1-${i}`, cameraId: 'cam1', meta: { seq: i }, data: seg(i).data });
  const up = new Uplink(store, { url: srv.url, cameraId: 'cam1', token: TOKEN, replyTimeoutMs: 300, minBackoffMs: 50, maxBackoffMs: 100 });
  up.start();
  try {
    await waitFor(() => srv.received.length >= 1 && srv.received[0].length >= 4);
    answer = 'reply';
    await waitFor(() => store.depth() === 0);
    expect(srv.received.length).toBeGreaterThanOrEqual(2);
  } finally {
    await up.stop();
    await srv.close();
    store.close();
  }
}, 20_000);

test('a half-open connection while idle (no pongs) and a server that never welcomes are both torn down', async () => {
  const mute = await fakeServer({ welcome: true, answer: () => 'silent' }, { autoPong: false });
  const up = new Uplink(new MemOutbox(), { url: mute.url, cameraId: 'cam1', token: TOKEN, replyTimeoutMs: 300, minBackoffMs: 50, maxBackoffMs: 100 });
  up.start();
  try {
    await waitFor(() => mute.conns.length >= 2);
  } finally {
    await up.stop();
    await mute.close();
  }
  const rude = await fakeServer({ welcome: false, answer: () => 'silent' });
  const up2 = new Uplink(new MemOutbox(), { url: rude.url, cameraId: 'cam1', token: TOKEN, replyTimeoutMs: 300, minBackoffMs: 50, maxBackoffMs: 100 });
  up2.start();
  try {
    await waitFor(() => rude.conns.length >= 2);
    expect(up2.lastError).toMatch(/no welcome/);
  } finally {
    await up2.stop();
    await rude.close();
  }
}, 20_000);

test('an SQLite error in ack (inside the socket callback) does not crash and does not lose the segment', async () => {
  const srv = await fakeServer({ welcome: true, answer: () => 'reply' });
  const box = new MemOutbox();
  let full = true;
  const realAck = box.ack.bind(box);
  box.ack = (id: string) => {
    if (full) throw new Error('SQLITE_FULL: database or disk is full');
    realAck(id);
  };
  for (let i = 0; i < 3; i++) box.items.push(seg(i));
  const up = new Uplink(box, { url: srv.url, cameraId: 'cam1', token: TOKEN, retryMs: 50 });
  const errors: [string, string | undefined][] = [];
  up.on('localError', (e, id) => errors.push([e, id]));
  const replies: string[] = [];
  up.on('reply', (r) => replies.push(r.segmentId));
  up.start();
  try {
    await waitFor(() => errors.length >= 3);
    expect(errors[0][0]).toMatch(/SQLITE_FULL/);
    expect(errors[0][1]).toBe('cam1-0');
    expect(box.depth()).toBe(3); // nothing acked, nothing lost
    expect(replies).toEqual([]); // not passed on while the segment is still in the outbox
    full = false;
    await waitFor(() => box.depth() === 0);
    // the segments whose ack failed were sent again (the server answers a resend from its store)
    expect(srv.received.flat().filter((id) => id === 'cam1-0').length).toBeGreaterThanOrEqual(2);
    // and each segment's reply reached the agent once
    expect([...replies].sort()).toEqual(['cam1-0', 'cam1-1', 'cam1-2']);
  } finally {
    await up.stop();
    await srv.close();
  }
}, 20_000);

test('an SQLite error reading the outbox inside a callback is reported, then sending resumes', async () => {
  const srv = await fakeServer({ welcome: true, answer: () => 'reply' });
  const box = new MemOutbox();
  let broken = true;
  const realPending = box.pending.bind(box);
  box.pending = (limit: number, exclude?: ReadonlySet<string>) => {
    if (broken) throw new Error('SQLITE_IOERR: disk I/O error');
    return realPending(limit, exclude);
  };
  box.items.push(seg(0));
  const up = new Uplink(box, { url: srv.url, cameraId: 'cam1', token: TOKEN });
  const errors: string[] = [];
  up.on('localError', (e) => errors.push(e));
  up.start();
  try {
    await waitFor(() => errors.length >= 1);
    expect(errors[0]).toMatch(/SQLITE_IOERR/);
    broken = false;
    await waitFor(() => box.depth() === 0);
  } finally {
    await up.stop();
    await srv.close();
  }
}, 20_000);

test('deferred segments are left out of pending() in SQL, and pruned once they left the outbox', async () => {
  const store = new AgentStore(':memory:');
  for (let i = 0; i < 60; i++) store.enqueue({ segmentId: `cam1-${i}`, cameraId: 'cam1', meta: { seq: i }, data: seg(i).data });
  const skip = new Set(Array.from({ length: 50 }, (_, i) => `cam1-${i}`));
  // the next sendable ones, not the 50 deferred rows before them
  expect(store.pending(3, skip).map((r) => r.segmentId)).toEqual(['cam1-50', 'cam1-51', 'cam1-52']);
  expect(store.pending(3, new Set()).map((r) => r.segmentId)).toEqual(['cam1-0', 'cam1-1', 'cam1-2']);
  expect(store.pending(3).map((r) => r.segmentId)).toEqual(['cam1-0', 'cam1-1', 'cam1-2']);
  store.ack('cam1-1');
  expect([...store.pendingIds(['cam1-0', 'cam1-1', 'nope'])]).toEqual(['cam1-0']);
  store.close();

  // the uplink: the server cannot store the first 20 segments yet; the rest flow, and pending() is never asked
  // for the deferred ones
  const deferredIds = new Set(Array.from({ length: 20 }, (_, i) => `cam1-${i}`));
  const srv = await fakeServer({ welcome: true, answer: (id) => (deferredIds.has(id) ? 'retry' : 'reply') });
  const box = new MemOutbox();
  for (let i = 0; i < 40; i++) box.items.push(seg(i));
  const up = new Uplink(box, { url: srv.url, cameraId: 'cam1', token: TOKEN, window: 4, retryMs: 60_000 });
  up.start();
  try {
    await waitFor(() => box.depth() === 20 && up.deferredCount === 20);
    const late = box.calls.slice(-5);
    for (const c of late) {
      expect(c.limit).toBeLessThanOrEqual(4);
      for (const id of deferredIds) expect(c.exclude).toContain(id);
    }
    // the outbox dropped ten of them (its cap): their deferral is pruned
    box.items = box.items.filter((i) => !['cam1-0', 'cam1-1', 'cam1-2', 'cam1-3', 'cam1-4', 'cam1-5', 'cam1-6', 'cam1-7', 'cam1-8', 'cam1-9'].includes(i.segmentId));
    up.pruneDeferred();
    expect(up.deferredCount).toBe(10);
  } finally {
    await up.stop();
    await srv.close();
  }
}, 20_000);
