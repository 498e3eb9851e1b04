/** @jest-environment ./test/helpers/ort-env.cjs */
import { GraceModel, loadLadder, loadTables } from '../grace/model.ts';
import { yuvToRgbPlanar } from '../grace/color.ts';
import { NetEm } from '../grace/netem.ts';
import { GraceReceiver, GraceSender, type ReceivedFrame } from '../grace/session.ts';
import dgram from 'node:dgram';
import { GraceUdpReceiver, GraceUdpSender, T_MEDIA } from '../grace/transport.ts';
import { loadFrames, sharedPath } from '../testdata/fixtures.ts';

// the clip held out of Grace++ training
const HELD_OUT = sharedPath('videos', 'parking-person-bicycle-432p.mp4');
const W = 480, H = 272;

const same = (a: Float32Array, b: Float32Array): boolean => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

let models: GraceModel[];
const tables = loadTables();
let rgb: Float32Array[];
// Both sides start from a flat grey reference (a cold start), so the first P-frames must code the whole
// picture: their latents are dense and losing packets visibly changes the reconstruction.
const grey = new Float32Array(3 * W * H).fill(0.5);

beforeAll(async () => {
  const ladder = loadLadder();
  models = await Promise.all(ladder.rungs.map((n) => GraceModel.load(n)));
  rgb = loadFrames(HELD_OUT, 10, { width: W, height: H, fps: 5, startS: 5 }).map(yuvToRgbPlanar);
});
afterAll(async () => {
  await Promise.all(models.map((m) => m.release()));
});

describe('Grace++ reference synchronisation', () => {
  test('after burst loss with delayed feedback, the sender re-derives the receiver\'s references bit for bit', async () => {
    const o = { width: W, height: H, minPackets: 6 };
    const tx = new GraceSender(models, tables, o);
    const rx = new GraceReceiver(models, tables, o);
    tx.start(grey);
    rx.start(grey);
    const net = new NetEm({ loss: { kind: 'ge', p: 0.3, burst: 3 }, rttMs: 0, bandwidthKbps: 0, seed: 4 });
    const clean = new GraceReceiver(models, tables, o); // gets every packet
    clean.start(grey);
    let differs = 0;
    const got: ReceivedFrame[] = [];
    const fbDelay = 2; // feedback of frame f reaches the sender after it encoded f+1 and f+2
    const optimistic = new Map<number, boolean>();
    for (let i = 1; i < rgb.length; i++) {
      const f = await tx.encode(rgb[i], i % models.length);
      const arrived = f.packets.filter(() => net.send(0, 1000) !== null);
      const r = await rx.decode(f.frameId, arrived);
      const c = await clean.decode(f.frameId, f.packets);
      if (!same(r.rgb, c.rgb)) differs++;
      got.push(r);
      optimistic.set(f.frameId, arrived.length === f.packets.length);
      const due = got[got.length - 1 - fbDelay];
      if (due) await tx.onFeedback(due.frameId, due.received);
    }
    for (const r of got.slice(-fbDelay)) await tx.onFeedback(r.frameId, r.received);
    expect(tx.acknowledged).toBe(rgb.length - 1);
    const partial = got.filter((r) => r.rendered && r.received.some((v) => !v)).length;
    const none = got.filter((r) => !r.rendered).length;
    expect(partial).toBeGreaterThan(0); // the test must exercise partial subsets
    for (const r of got) expect(same(tx.exactState(r.frameId)!, r.rgb)).toBe(true);
    // and the sync is needed: losses made the receiver's references differ from a lossless decode
    expect(differs).toBeGreaterThan(0);
    const lossy = got.find((r) => r.rendered && r.received.some((v) => !v))!;
    expect(optimistic.get(lossy.frameId)).toBe(false);
    expect(none).toBeLessThan(got.length);
  });

  test('the same subset decodes to identical pixels twice (deterministic single-thread onnxruntime)', async () => {
    const tx = new GraceSender(models, tables, { width: W, height: H });
    tx.start(grey);
    const f = await tx.encode(rgb[1], 0);
    const a = new GraceReceiver(models, tables, { width: W, height: H });
    const b = new GraceReceiver(models, tables, { width: W, height: H });
    a.start(grey);
    b.start(grey);
    const sub = f.packets.filter((_, i) => i % 3 !== 1);
    const ra = await a.decode(1, sub);
    const rb = await b.decode(1, [...sub].reverse());
    expect(same(ra.rgb, rb.rgb)).toBe(true);
    const full = await new GraceReceiver(models, tables, { width: W, height: H });
    full.start(grey);
    expect(same((await full.decode(1, f.packets)).rgb, ra.rgb)).toBe(false);
  });
});

describe('Grace++ receiver errors', () => {
  test('a decoder failure (onnxruntime, not the packets) is thrown, not taken for a lost frame', async () => {
    const o = { width: W, height: H, minPackets: 6 };
    const tx = new GraceSender(models, tables, o);
    tx.start(grey);
    const f = await tx.encode(rgb[1], 0);
    const failing = models.map((m) => new Proxy(m, {
      get: (t, k) => (k === 'decode' ? async () => { throw new Error('onnxruntime: failed to allocate memory'); } : ((v) => (typeof v === 'function' ? v.bind(t) : v))(Reflect.get(t, k))),
    }));
    const rx = new GraceReceiver(failing, tables, o);
    rx.start(grey);
    await expect(rx.decode(1, f.packets)).rejects.toThrow(/failed to allocate/);
    // packets that are not decodable are still a loss, as before
    const rx2 = new GraceReceiver(models, tables, o);
    rx2.start(grey);
    const r = await rx2.decode(1, f.packets.map((p) => p.slice(0, 12)));
    expect(r.rendered).toBe(false);
  });
});

describe('Grace++ over UDP on loopback', () => {
  test('lossy link: every frame decodes by its deadline and both sides end with the same references', async () => {
    const o = { width: W, height: H, minPackets: 6 };
    const tx = new GraceSender(models, tables, o);
    const rx = new GraceReceiver(models, tables, o);
    tx.start(grey);
    rx.start(grey);
    const udpRx = new GraceUdpReceiver(rx, { net: { loss: { kind: 'none' }, rttMs: 30, bandwidthKbps: 0, seed: 1 }, slackMs: 40 });
    const port = await udpRx.bind();
    const udpTx = new GraceUdpSender(tx, { port, net: { loss: { kind: 'iid', p: 0.25 }, rttMs: 30, bandwidthKbps: 20000, seed: 8 } });
    await udpTx.bind();
    const frames: ReceivedFrame[] = [];
    const n = 7;
    const done = new Promise<void>((res) => udpRx.on('frame', (f: ReceivedFrame) => { frames.push(f); if (f.frameId === n) res(); }));
    // a third party on loopback forges media datagrams (frame id far ahead, count 1) and feedback: ignored
    const intruder = dgram.createSocket('udp4');
    await new Promise<void>((r) => intruder.bind(0, '127.0.0.1', () => r()));
    const forge = (frameId: number): Buffer => { const b = Buffer.alloc(5 + 40); b[0] = T_MEDIA; b[5 + 4] = 1; b.writeUInt32BE(frameId, 5 + 5); return b; };
    let forged = 0;
    for (let i = 1; i <= n; i++) {
      await udpTx.sendFrame(rgb[i], 0);
      if (i === 2 || i === 4) {
        for (const id of [i + 1, i + 5000]) { intruder.send(forge(id), port, '127.0.0.1'); forged++; }
      }
      await new Promise((r) => setTimeout(r, 60));
    }
    intruder.close();
    await done;
    await new Promise((r) => setTimeout(r, 150)); // last feedback crosses the emulated link
    await udpTx.settle();
    udpTx.close();
    udpRx.close();
    expect(frames.map((f) => f.frameId)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect(udpRx.rejected).toBe(forged);
    expect(frames.some((f) => f.received.some((v) => !v))).toBe(true);
    expect(tx.acknowledged).toBe(n);
    for (const f of frames) expect(same(tx.exactState(f.frameId)!, f.rgb)).toBe(true);
  });

  test('a lost packet is detected by what arrives after it, not by waiting for the deadline', async () => {
    const o = { width: W, height: H, minPackets: 6 };
    // frame 1 is coded against the start reference only, so a dry run gives its packet count
    const dry = new GraceSender(models, tables, o);
    dry.start(grey);
    const n1 = (await dry.encode(rgb[1], 0)).packets.length;
    const tx = new GraceSender(models, tables, o);
    const rx = new GraceReceiver(models, tables, o);
    tx.start(grey);
    rx.start(grey);
    const slackMs = 3000; // far longer than the test: a frame decoded at its deadline would fail it
    const udpRx = new GraceUdpReceiver(rx, { net: { loss: { kind: 'none' }, rttMs: 20, bandwidthKbps: 0, seed: 1 }, slackMs });
    const port = await udpRx.bind();
    // lost: frame 1's last packet (only frame 2's packets reveal it) and frame 2's second packet (its last reveals it)
    const udpTx = new GraceUdpSender(tx, { port, net: { loss: { kind: 'list', lost: [n1 - 1, n1 + 1] }, rttMs: 20, bandwidthKbps: 20000, seed: 1 } });
    await udpTx.bind();
    const got = new Map<number, ReceivedFrame & { at: number }>();
    const done = new Promise<void>((res) => udpRx.on('frame', (f: ReceivedFrame & { at: number }) => { got.set(f.frameId, f); if (f.frameId === 3) res(); }));
    const sentAt: number[] = [];
    for (let i = 1; i <= 3; i++) {
      const r = await udpTx.sendFrame(rgb[i], 0);
      sentAt[i] = performance.now();
      if (i === 1) expect(r.packets).toBe(n1);
      await new Promise((r) => setTimeout(r, 100));
    }
    await done;
    udpTx.close();
    udpRx.close();
    const f1 = got.get(1)!, f2 = got.get(2)!;
    expect(f1.received.map((v, i) => v || i)).toEqual(f1.received.map((_, i) => (i === n1 - 1 ? n1 - 1 : true)));
    expect(f2.received.filter((v) => !v)).toHaveLength(1);
    expect(f2.received[1]).toBe(false);
    // frame 1 waited for frame 2's first packet (sent 100 ms later), frame 2 for its own last packet
    expect(f1.at).toBeGreaterThanOrEqual(sentAt[2] - 1);
    expect(f1.at - sentAt[1]).toBeLessThan(slackMs / 2);
    expect(f2.at - sentAt[2]).toBeLessThan(slackMs / 2);
  });
});
