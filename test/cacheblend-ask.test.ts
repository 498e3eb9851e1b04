/** The ask stack: detections → event-log chunks, CacheBlend answers streamed over HTTP and MQTT, the fleet page in Chromium. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connectAsync } from 'mqtt';
import { ServerSettingsSchema } from '../config/schema.ts';
import { AskService, type AskEvent } from '../cacheblend/ask.ts';
import { cameraNames, selectChunks, summarise, type SegmentEvents } from '../cacheblend/eventlog.ts';
import { BlendModel } from '../cacheblend/model.ts';
import { KvStore } from '../cacheblend/store.ts';
import { AskMqttBridge } from '../server/ask-mqtt.ts';
import { FleetApi } from '../server/fleet-api.ts';
import { segmentWireBytes, type Reply, type SegmentHeader } from '../wire/protocol.ts';
import { ServerStore } from '../server/store.ts';
import { Mosquitto } from './helpers/mosquitto.ts';
import { withChromiumTab } from './helpers/chromium.ts';

const T0 = Date.UTC(2026, 0, 5, 14, 0, 0); // 14:00 UTC
const det = (cls: number, score = 0.9): number[] => [0, 0, 10, 10, score, cls];

describe('event-log summariser', () => {
  test('count changes per class become enter/leave events in 10-minute windows, in the model vocabulary', async () => {
    const segs: SegmentEvents[] = [
      { cameraId: 'gate-1', capturedAt: T0 + 60_000, detections: [[det(7)], [det(7), det(0, 0.3)]] }, // 14:01 truck (the person is below 0.5)
      { cameraId: 'gate-1', capturedAt: T0 + 3 * 60_000, detections: [[]] }, // 14:03 truck gone
      { cameraId: 'gate-1', capturedAt: T0 + 12 * 60_000, detections: [[det(0), det(0), det(2)]] }, // 14:12
      { cameraId: 'Front Door!', capturedAt: T0 + 5 * 60_000, detections: [[det(56)]] }, // chair: not an event class
    ];
    const chunks = summarise(segs);
    expect(chunks.map((c) => c.text)).toEqual([
      'camera cam 1 from 14 :00 to 14 :10 . nothing .',
      'camera gate 1 from 14 :00 to 14 :10 . 14 :01 1 truck enter . 14 :03 1 truck leave .',
      'camera gate 1 from 14 :10 to 14 :20 . 14 :12 2 person enter . 14 :12 1 car enter .',
    ]);
    const model = await BlendModel.load(undefined, 1);
    for (const c of chunks) expect(model.tokenize(c.text)).not.toContain(model.id('<unk>'));
    await model.release();
    expect(cameraNames(['dock_3', 'weird', 'cam-2'])).toEqual(new Map([['cam-2', 'cam 1'], ['dock_3', 'dock 3'], ['weird', 'cam 2']]));
    // the last windows with data, newest kept first under the budget
    expect(selectChunks(chunks, { windows: 1 }).map((c) => c.start)).toEqual([T0 + 10 * 60_000]);
    expect(selectChunks(chunks, { maxTokens: 25 }).length).toBe(1);
  });
});

function header(cameraId: string, seq: number, capturedAt: number, knobs: Record<string, number>): SegmentHeader {
  return { type: 'segment', v: 1, segmentId: `${cameraId}-${seq}`, cameraId, seq, codec: 'h264', width: 640, height: 360, fps: 10, frameCount: 10, ptsMs: [], capturedAt, knobs, videoBytes: 20_000 + seq, ref: { frameIndex: 9, codec: 'h264', width: 640, height: 360, bytes: 5000 } };
}
function reply(h: SegmentHeader, dets: number[][][], f1: number): Reply {
  return { type: 'reply', segmentId: h.segmentId, seq: h.seq, detections: dets as Reply['detections'], f1: { frameIndex: 9, f1, tp: 1, fp: 0, fn: 0 }, dnngrad: null, timings: { decodeMs: 1, detectMs: 1, gradMs: 0 } } as Reply;
}

describe('ask API', () => {
  let dir: string;
  let store: ServerStore;
  let kv: KvStore;
  let model: BlendModel;
  let service: AskService;
  let server: http.Server;
  let url: string;
  const TOKEN = 'test-token-0123456789abcdef';
  const authorize = (req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    if (req.headers.authorization === `Bearer ${TOKEN}`) return true;
    res.writeHead(401).end();
    return false;
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'cb-ask-'));
    store = new ServerStore(path.join(dir, 'server.db'));
    // three cameras, 30 minutes: a truck passes gate 1 then dock 2; people come and go at the lobby
    const plan: [string, number, number[][]][] = [
      ['gate-1', 1, [det(7)]], ['gate-1', 4, []], ['gate-1', 15, [det(2)]], ['gate-1', 22, []],
      ['dock-2', 6, [det(7)]], ['dock-2', 9, []], ['dock-2', 25, [det(0)]],
      ['lobby-3', 2, [det(0), det(0)]], ['lobby-3', 12, [det(0)]], ['lobby-3', 28, []],
    ];
    plan.forEach(([cam, minute, dets], i) => {
      const h = header(cam, i, T0 + minute * 60_000, { 'oneadapt.qp': 30 + i, 'cheapModel.threshold': 0.2 });
      store.saveReply(h, reply(h, [dets], 0.8 + i * 0.01));
    });
    model = await BlendModel.load(undefined, 1);
    kv = new KvStore(path.join(dir, 'kv'));
    service = new AskService(model, kv, () => store.segmentEvents(T0 - 3600_000));
    const api = new FleetApi({ source: store, asker: service, authorize });
    server = http.createServer((req, res) => {
      void api.handle(req, res).then((done) => {
        if (!done) res.writeHead(404).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((r) => server.close(r));
    store.close();
    kv.close();
    await model.release();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the store summarises the fleet: bytes on the wire, F1, knobs, last segment', () => {
    const f = store.fleet();
    expect(f.map((c) => c.cameraId)).toEqual(['dock-2', 'gate-1', 'lobby-3']);
    const gate = f.find((c) => c.cameraId === 'gate-1')!;
    expect(gate.segments).toBe(4);
    const wire = (i: number): number => segmentWireBytes(header('gate-1', i, T0 + [1, 4, 15, 22][i] * 60_000, { 'oneadapt.qp': 30 + i, 'cheapModel.threshold': 0.2 })).total;
    expect(gate.bytes).toBe(wire(0) + wire(1) + wire(2) + wire(3));
    expect(gate.bytes).toBeGreaterThan(4 * 25_000); // video + reference + headers
    expect(gate.f1).toBeCloseTo((0.8 + 0.81 + 0.82 + 0.83) / 4, 6);
    expect(gate.knobs).toEqual({ 'oneadapt.qp': 33, 'cheapModel.threshold': 0.2 });
    expect(gate.last).toEqual({ seq: 3, capturedAt: T0 + 22 * 60_000, bytes: wire(3), f1: expect.closeTo(0.83, 9) });
    expect(store.segmentEvents(T0 + 20 * 60_000).map((s) => s.cameraId)).toEqual(['gate-1', 'dock-2', 'lobby-3']);
  });

  test('a camera clock in the far future does not move the ask window (latestCapture ignores it)', () => {
    expect(store.latestCapture()).toBe(T0 + 28 * 60_000);
    const own = new ServerStore(':memory:');
    const good = header('gate-1', 1, T0, {});
    own.saveReply(good, reply(good, [[]], 1));
    const rogue = header('rogue-9', 99, 1e15, {});
    own.saveReply(rogue, reply(rogue, [[]], 1));
    expect(own.latestCapture()).toBe(T0);
    expect(own.latestCapture(1e15)).toBe(1e15); // a server whose own clock is there sees it
    // a camera whose clock runs two hours ahead does not hide the rest of the fleet from questions; a few minutes of skew are fine
    const ahead = header('dock-2', 5, T0 + 2 * 3600_000, {});
    own.saveReply(ahead, reply(ahead, [[]], 1));
    expect(own.latestCapture(T0)).toBe(T0);
    const slightly = header('lobby-3', 6, T0 + 3 * 60_000, {});
    own.saveReply(slightly, reply(slightly, [[]], 1));
    expect(own.latestCapture(T0)).toBe(T0 + 3 * 60_000);
    own.close();
  });

  test('AskService streams the chunks, then words, then a summary; chunk caches are reused on the next question', async () => {
    const collect = async (q: string): Promise<AskEvent[]> => {
      const out: AskEvent[] = [];
      for await (const e of service.ask(q)) out.push(e);
      return out;
    };
    const a = await collect('Which cameras saw a truck?');
    expect(a[0].type).toBe('chunks');
    const chunks = (a[0] as Extract<AskEvent, { type: 'chunks' }>).chunks;
    // dock 2 sent nothing between 14:10 and 14:20: no chunk for that window
    expect(chunks.map((c) => c.camera)).toEqual(['dock 2', 'dock 2', 'gate 1', 'gate 1', 'gate 1', 'lobby 3', 'lobby 3', 'lobby 3']);
    expect(chunks.every((c) => !c.cached)).toBe(true);
    expect(chunks[0].text).toBe('camera dock 2 from 14 :00 to 14 :10 . 14 :06 1 truck enter . 14 :09 1 truck leave .');
    const done = a[a.length - 1] as Extract<AskEvent, { type: 'done' }>;
    expect(done.type).toBe('done');
    expect(done.answer).toBe(a.filter((e) => e.type === 'token').map((e) => (e as { text: string }).text).join(' '));
    expect(done.recomputed[0]).toBe(done.contextTokens);
    expect(done.recomputed[1]).toBeLessThan(done.contextTokens / 2);
    const b = await collect('which camera saw a truck first ?');
    expect((b[0] as Extract<AskEvent, { type: 'chunks' }>).chunks.every((c) => c.cached)).toBe(true);
    await expect(collect('what is the meaning of life ?')).rejects.toThrow(/unknown words: what, is/);
    await expect(collect('   ')).rejects.toThrow(RangeError);
  });

  test('a question that fails part-way (the disk fills while a chunk is written) still leaves the caches under the budget', async () => {
    const d3 = mkdtempSync(path.join(os.tmpdir(), 'cb-ask-full-'));
    let failAfter = Infinity;
    class FillingStore extends KvStore {
      override put(...a: Parameters<KvStore['put']>): void {
        if (failAfter-- <= 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        super.put(...a);
      }
    }
    const kv3 = new FillingStore(d3, 0);
    try {
      let events: SegmentEvents[] = [{ cameraId: 'gate-1', capturedAt: T0 + 60_000, detections: [[det(7)]] }];
      for await (const e of new AskService(model, kv3, () => events).ask('which cameras saw a truck ?')) void e;
      const budget = kv3.stats().bytes; // exactly what the first question left
      expect(budget).toBeGreaterThan(0);
      // new cameras bring new chunks; the disk "fills" after the first new one is written
      events = [...events, ...['dock-2', 'lobby-3', 'yard-4'].map((cameraId, i) => ({ cameraId, capturedAt: T0 + (2 + i) * 60_000, detections: [[det(7)]] }))];
      failAfter = 1;
      const small = new AskService(model, kv3, () => events, undefined, budget);
      await expect((async () => { for await (const e of small.ask('which cameras saw a truck ?')) void e; })()).rejects.toThrow(/ENOSPC/);
      expect(kv3.stats().bytes).toBeLessThanOrEqual(budget);
      expect(kv3.stats().chunks).toBeGreaterThan(0);
    } finally {
      kv3.close();
      rmSync(d3, { recursive: true, force: true });
    }
  });

  test('the chunk caches stay under the disk budget, recently used ones kept; bad selections are refused', async () => {
    const d2 = mkdtempSync(path.join(os.tmpdir(), 'cb-ask-budget-'));
    const kv2 = new KvStore(d2, 0);
    try {
      const budget = 400_000; // a few chunks' worth (each ≈ 3 kB per token with 6 layers): a question's eight do not all fit
      const small = new AskService(model, kv2, () => store.segmentEvents(T0 - 3600_000), undefined, budget);
      for (const q of ['which cameras saw a truck ?', 'which camera saw a truck first ?']) for await (const e of small.ask(q)) void e;
      const st = kv2.stats();
      expect(st.bytes).toBeLessThanOrEqual(budget);
      expect(st.chunks).toBeGreaterThan(0);
      // what is left is part of what the last question used: asked again, some chunks come from the cache and
      // the evicted rest is recomputed
      const events: AskEvent[] = [];
      for await (const e of small.ask('which cameras saw a truck ?')) events.push(e);
      const used = (events[0] as Extract<AskEvent, { type: 'chunks' }>).chunks;
      expect(used.some((c) => c.cached)).toBe(true);
      expect(used.some((c) => !c.cached)).toBe(true);
      expect(kv2.stats().bytes).toBeLessThanOrEqual(budget);
      expect(() => new AskService(model, kv2, () => [], { checkLayers: [model.shape.layers], ratios: [0.1], by: 'k' })).toThrow(RangeError);
    } finally {
      kv2.close();
      rmSync(d2, { recursive: true, force: true });
    }
    // the server config validates the selection before any model is loaded
    const AskSchema = ServerSettingsSchema.shape.ask;
    const ok = AskSchema.parse({ selection: { checkLayers: [1, 2], ratios: [0.3, 0.15] } });
    expect(ok.selection).toEqual({ checkLayers: [1, 2], ratios: [0.3, 0.15], by: 'k' });
    expect(ok.cache).toEqual({ ramMiB: 64, diskMiB: 1024 });
    expect(AskSchema.parse({}).selection).toEqual({ checkLayers: [1], ratios: [0.15], by: 'k' });
    expect(() => AskSchema.parse({ selection: { checkLayers: [2, 1], ratios: [0.3, 0.15] } })).toThrow(/ascending/);
    expect(() => AskSchema.parse({ selection: { checkLayers: [1], ratios: [0.3, 0.15] } })).toThrow(/one ratio per check layer/);
  });

  test('HTTP: token required; fleet JSON; ask streams NDJSON; bad requests get clear errors', async () => {
    expect((await fetch(url + '/api/fleet')).status).toBe(401);
    expect((await fetch(url + '/api/ask', { method: 'POST', body: '{"question":"which cameras saw a truck ?"}' })).status).toBe(401);
    const auth = { authorization: `Bearer ${TOKEN}` };
    const fleet = (await (await fetch(url + '/api/fleet', { headers: auth })).json()) as { cameraId: string }[];
    expect(fleet.map((c) => c.cameraId)).toEqual(['dock-2', 'gate-1', 'lobby-3']);
    const r = await fetch(url + '/api/ask', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ question: 'which cameras saw a truck ?' }) });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/x-ndjson');
    const events = (await r.text()).trim().split('\n').map((l) => JSON.parse(l) as AskEvent);
    expect(events[0].type).toBe('chunks');
    expect(events[events.length - 1].type).toBe('done');
    const bad = async (body: string): Promise<{ status: number; error: string }> => {
      const res = await fetch(url + '/api/ask', { method: 'POST', headers: auth, body });
      return { status: res.status, error: ((await res.json()) as { error: string }).error };
    };
    expect(await bad('not json')).toMatchObject({ status: 400 });
    expect(await bad('{"question": 5}')).toMatchObject({ status: 400, error: expect.stringContaining('question') });
    expect(await bad('{"question": "hello there"}')).toMatchObject({ status: 400, error: expect.stringContaining('unknown words') });
    expect(await bad(JSON.stringify({ question: 'x'.repeat(5000) }))).toMatchObject({ status: 413 });
    expect(await bad(JSON.stringify({ question: 'x'.repeat(400) }))).toMatchObject({ status: 400 });
    expect((await fetch(url + '/api/ask', { headers: auth })).status).toBe(405);
    const page = await fetch(url + '/fleet');
    expect(page.status).toBe(200);
    expect(await page.text()).not.toContain('gate-1'); // the page holds no data; its script fetches it with the token
  });

  test('the fleet page in headless Chromium: cameras at a glance, a streamed answer and the chunks it used', async () => {
    await withChromiumTab(async (tab, errors) => {
    await tab.goto(`${url}/fleet#token=${TOKEN}`);
    await tab.waitForSelector('#fleet tbody tr[data-camera="gate-1"]', { timeout: 15_000 });
    const row = await tab.locator('#fleet tbody tr[data-camera="gate-1"]').innerText();
    expect(row).toMatch(/10\d\.\d kB/); // 4 × (25 kB + headers)
    expect(row).toContain('oneadapt.qp=33');
    expect(row).toContain('#3 at 14:22 UTC');
    expect(row).toContain('0.815'); // mean F1
    expect(tab.url()).not.toContain('token'); // the fragment is dropped from the address bar
    await tab.fill('#q', 'where did the truck go after gate 1 ?');
    await tab.click('#go');
    await tab.waitForSelector('#answer[data-done="1"]', { timeout: 30_000 });
    expect(await tab.locator('#chunks li').count()).toBe(8);
    expect(await tab.locator('#chunks li').first().innerText()).toContain('camera dock 2 from 14 :00');
    expect(await tab.locator('#stats').innerText()).toMatch(/first token after \d+ ms/);
    // a word the model does not know: the page shows the server's error
    await tab.fill('#q', 'hello ?');
    await tab.click('#go');
    await tab.waitForFunction(() => document.getElementById('err')!.textContent!.includes('unknown words'), undefined, { timeout: 10_000 });
    expect(errors).toEqual([]);
    });
  });

  test('MQTT camstream/server/ask: answers stream on the reply topic; bad token and bad requests answer an error', async () => {
    const broker = await Mosquitto.start();
    const bridge = new AskMqttBridge({ url: broker.url, baseTopic: 'camstream', asker: service, authorized: (t) => t === TOKEN });
    await bridge.start();
    const client = await connectAsync(broker.url);
    try {
      await client.subscribeAsync('camstream/server/ask/+', { qos: 1 });
      const got = new Map<string, { type: string; error?: string }[]>();
      client.on('message', (topic, payload) => {
        const id = topic.split('/').pop()!;
        got.set(id, [...(got.get(id) ?? []), JSON.parse(payload.toString()) as { type: string }]);
      });
      await client.publishAsync('camstream/server/ask', 'not json', { qos: 1 });
      await client.publishAsync('camstream/server/ask', JSON.stringify({ id: 'q1', question: 'which cameras saw a truck ?', token: TOKEN }), { qos: 1 });
      await client.publishAsync('camstream/server/ask', JSON.stringify({ id: 'q2', question: 'which cameras saw a truck ?', token: 'wrong-token-wrong-token' }), { qos: 1 });
      await client.publishAsync('camstream/server/ask', JSON.stringify({ id: 'q3', question: 'hello ?', token: TOKEN }), { qos: 1 });
      const deadline = Date.now() + 30_000;
      while (!(got.get('q3')?.length && got.get('q1')?.some((e) => e.type === 'done')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(got.get('q1')!.map((e) => e.type)[0]).toBe('chunks');
      expect(got.get('q1')!.map((e) => e.type).at(-1)).toBe('done');
      expect(got.get('q2')).toEqual([{ type: 'error', error: 'missing or invalid token' }]);
      expect(got.get('q3')![0]).toMatchObject({ type: 'error', error: expect.stringContaining('unknown words') });
    } finally {
      await client.endAsync();
      await bridge.stop();
      await broker.stop();
    }
  });
});
