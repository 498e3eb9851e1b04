/**
 * Findings 2, 3 and the identity half of 5 (issue #13): server-side trouble never deletes a segment on
 * the camera; an identity or token problem stops the uplink and keeps everything; segment ids cannot be
 * pre-claimed by another camera.
 */
import { Uplink } from '../../agent/uplink.ts';
import { newSegmentId, type Reply, type SegmentHeader } from '../../wire/protocol.ts';
import { ServerStore } from '../../server/store.ts';
import { segment, startIngest, TOKENS, waitFor } from './helpers.ts';
import { MemOutbox } from '../helpers/mem-outbox.ts';

/** The server's store on a full disk: every write fails with ENOSPC until `full` is cleared. */
class FullDiskStore extends ServerStore {
  full = true;
  override saveReply(h: SegmentHeader, r: Reply): void {
    if (this.full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    super.saveReply(h, r);
  }
  override saveFailure(...a: Parameters<ServerStore['saveFailure']>): void {
    if (this.full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    super.saveFailure(...a);
  }
}

test('finding 2: a full disk on the server keeps every segment in the outbox until it can be stored', async () => {
  const store = new FullDiskStore(':memory:');
  const s = await startIngest({}, store);
  const outbox = new MemOutbox();
  const N = 34;
  for (let i = 0; i < N; i++) outbox.items.push({ segmentId: `camA-${i}`, data: segment('camA', `camA-${i}`, i) });
  // one garbage message too: rejecting it needs the disk as well, so it must not be dropped either
  outbox.items.push({ segmentId: 'camA-garbage', data: Buffer.alloc(50, 1) });
  const up = new Uplink(outbox, { url: s.url, cameraId: 'camA', token: TOKENS.camA, retryMs: 100 });
  const kept: boolean[] = [];
  up.on('serverError', (_e, _id, k) => kept.push(k));
  up.start();
  try {
    await waitFor(() => kept.length >= 40);
    expect(kept.every((k) => k)).toBe(true); // every error said "retryable"
    expect(outbox.depth()).toBe(N + 1); // nothing deleted
    store.full = false; // disk freed
    await waitFor(() => outbox.depth() === 0, 20_000);
    expect(store.results('camA').map((r) => r.seq)).toEqual([...Array(N).keys()]);
    expect(store.failures()).toHaveLength(1); // garbage: kept on the server, then dropped by the agent
  } finally {
    await up.stop();
    await s.server.stop();
  }
});

test('finding 2: a processor error (out of memory) is retryable; the segment is processed later', async () => {
  const s = await startIngest();
  s.processor.failNext = 3;
  const outbox = new MemOutbox();
  outbox.items.push({ segmentId: 'camA-0', data: segment('camA', 'camA-0', 0) });
  const up = new Uplink(outbox, { url: s.url, cameraId: 'camA', token: TOKENS.camA, retryMs: 50 });
  const errors: string[] = [];
  up.on('serverError', (e) => errors.push(e));
  up.start();
  try {
    await waitFor(() => outbox.depth() === 0);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/will be retried.*out of memory/);
    expect(s.processor.seen).toEqual(['camA/camA-0']);
  } finally {
    await up.stop();
    await s.server.stop();
  }
});

test('finding 5: a segment of another identity stops the uplink with a clear error and deletes nothing', async () => {
  const s = await startIngest();
  const outbox = new MemOutbox();
  // what a hot-reloaded deviceId used to produce: segments naming camB on camA's connection
  for (let i = 0; i < 17; i++) outbox.items.push({ segmentId: `camB-${i}`, data: segment('camB', `camB-${i}`, i) });
  const up = new Uplink(outbox, { url: s.url, cameraId: 'camA', token: TOKENS.camA });
  const fatal: string[] = [];
  up.on('fatal', (e) => fatal.push(e));
  up.start();
  try {
    await waitFor(() => fatal.length === 1);
    expect(fatal[0]).toMatch(/server refused camera camA \(identity\): segment camB-0 names camera "camB" but this connection authenticated as "camA"; uplink stopped, 17 segment\(s\) kept/);
    await new Promise((r) => setTimeout(r, 500)); // no reconnect loop, no deletion
    expect(outbox.depth()).toBe(17);
    expect(outbox.dropped).toEqual([]);
    expect(up.connected).toBe(false);
    expect((s.store as ServerStore).results()).toEqual([]);
  } finally {
    await up.stop();
    await s.server.stop();
  }
});

test('a wrong token or no token: nothing uploaded, nothing deleted, the reason is stated', async () => {
  const s = await startIngest();
  const outbox = new MemOutbox();
  outbox.items.push({ segmentId: 'camA-0', data: segment('camA', 'camA-0', 0) });
  const wrong = new Uplink(outbox, { url: s.url, cameraId: 'camA', token: TOKENS.camB });
  const fatal: string[] = [];
  wrong.on('fatal', (e) => fatal.push(e));
  wrong.start();
  const none = new Uplink(outbox, { url: s.url, cameraId: 'camA' });
  none.on('fatal', (e) => fatal.push(e));
  none.start();
  try {
    await waitFor(() => fatal.length === 2);
    expect(fatal).toContain('server.token is not set: this camera cannot authenticate; segments stay in the outbox');
    expect(fatal.find((f) => /\(auth\)/.test(f))).toMatch(/authentication failed for camera "camA": unknown camera or wrong token/);
    expect(outbox.depth()).toBe(1);
    expect(s.processor.seen).toEqual([]);
  } finally {
    await wrong.stop();
    await s.server.stop();
  }
});

test('finding 3: segment ids are random, and another camera cannot pre-claim them', async () => {
  const ids = new Set(Array.from({ length: 1000 }, () => newSegmentId('camA')));
  expect(ids.size).toBe(1000);
  for (const id of ids) expect(id).toMatch(/^camA-[0-9a-f]{32}$/);

  const s = await startIngest();
  const store = s.store as ServerStore;
  const real = newSegmentId('camA');
  // the attacker (camB, with its own valid token) sends camA's future id first, with its own content (fill 99)
  const attacker = new MemOutbox();
  attacker.items.push({ segmentId: real, data: segment('camB', real, 0, 99) });
  const upB = new Uplink(attacker, { url: s.url, cameraId: 'camB', token: TOKENS.camB });
  upB.start();
  await waitFor(() => attacker.depth() === 0);
  // … and cannot send it as camA at all (identity bound to the token)
  attacker.items.push({ segmentId: `${real}-2`, data: segment('camA', `${real}-2`, 1, 99) });
  const fatal: string[] = [];
  upB.on('fatal', (e) => fatal.push(e));
  upB.kick();
  await waitFor(() => fatal.length === 1);
  expect(fatal[0]).toMatch(/\(identity\)/);
  // camA's real segment is processed, with camA's content, not answered as a duplicate
  const outbox = new MemOutbox();
  outbox.items.push({ segmentId: real, data: segment('camA', real, 0, 5) });
  const up = new Uplink(outbox, { url: s.url, cameraId: 'camA', token: TOKENS.camA });
  const replies: Reply[] = [];
  up.on('reply', (r) => replies.push(r));
  up.start();
  try {
    await waitFor(() => replies.length === 1);
    expect(replies[0].duplicate).toBe(false);
    expect(replies[0].detections[0][0][4]).toBeCloseTo(5 / 255);
    expect(s.processor.seen).toEqual([`camB/${real}`, `camA/${real}`]);
    expect(store.results('camA').map((r) => r.segmentId)).toEqual([real]);
    expect(store.results('camB').map((r) => r.segmentId)).toEqual([real]);
  } finally {
    await up.stop();
    await upB.stop();
    await s.server.stop();
  }
});

test('a segment larger than the server accepts is kept in the outbox and skipped; the ones behind it are delivered', async () => {
  // the server's limit is 64 KiB; the agent does not know it and learns it from the 1009 close
  const store = new ServerStore(':memory:');
  const s = await startIngest({ maxPayloadBytes: 64 << 10 }, store);
  const outbox = new MemOutbox();
  outbox.items.push({ segmentId: 'camA-0', data: segment('camA', 'camA-0', 0) });
  outbox.items.push({ segmentId: 'camA-big', data: segment('camA', 'camA-big', 1, 7, 100 << 10) });
  for (let i = 2; i < 6; i++) outbox.items.push({ segmentId: `camA-${i}`, data: segment('camA', `camA-${i}`, i) });
  const up = new Uplink(outbox, { url: s.url, cameraId: 'camA', token: TOKENS.camA, window: 1, minBackoffMs: 50 });
  const errors: [string, string | undefined, boolean][] = [];
  up.on('serverError', (e, id, kept) => errors.push([e, id, kept]));
  up.start();
  try {
    await waitFor(() => outbox.depth() === 1, 20_000);
    expect(outbox.items.map((i) => i.segmentId)).toEqual(['camA-big']); // kept, not lost
    expect(store.results('camA').map((r) => r.seq)).toEqual([0, 2, 3, 4, 5]);
    expect(errors.some(([e, id, kept]) => id === 'camA-big' && kept && /more than the server accepts/.test(e))).toBe(true);
    // told the agent's own limit up front, it never sends it at all
    const s2 = await startIngest({ maxPayloadBytes: 64 << 10 });
    const box2 = new MemOutbox();
    box2.items.push({ segmentId: 'camA-big', data: segment('camA', 'camA-big', 1, 7, 100 << 10) }, { segmentId: 'camA-7', data: segment('camA', 'camA-7', 7) });
    const up2 = new Uplink(box2, { url: s2.url, cameraId: 'camA', token: TOKENS.camA, maxMessageBytes: 64 << 10 });
    let disconnects = 0;
    up2.on('disconnected', () => disconnects++);
    up2.start();
    await waitFor(() => box2.depth() === 1, 20_000);
    expect(disconnects).toBe(0);
    await up2.stop();
    await s2.server.stop();
  } finally {
    await up.stop();
    await s.server.stop();
  }
});
