/**
 * The local accuracy monitor (monitor.source local): the camera runs the server's detector on its own original
 * frames and scores the server's detections on what it received against them; nothing is uploaded for it.
 */
import { AgentSettingsSchema } from '../config/schema.ts';
import { EdgePipeline } from '../agent/pipeline.ts';
import { Detector } from '../detector/detector.ts';
import type { YuvFrame } from '../encoder/frame.ts';
import { OneAdaptController } from '../oneadapt/adapt.ts';
import type { Reply } from '../wire/protocol.ts';
import { DETECTOR_MODEL, VIDEOS, loadFrames } from '../testdata/fixtures.ts';

const W = 640, H = 360;
let det: Detector;
beforeAll(async () => {
  det = await Detector.load(DETECTOR_MODEL, { device: 'cpu', threads: 1 });
});
afterAll(async () => det.release());

const reply = (out: { segmentId: string; seq: number }, detections: Reply['detections']): Reply => ({
  type: 'reply', segmentId: out.segmentId, seq: out.seq, detections, f1: null, duplicate: false, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 }, dnngrad: null,
});

test('a monitored segment uploads no reference; its F1 is the server detections (scaled from the streamed size) against the camera\'s own', async () => {
  const frames: YuvFrame[] = loadFrames(VIDEOS.highway, 10, { startS: 5, width: W, height: H });
  const s = AgentSettingsSchema.parse({
    deviceId: 'cam', source: { kind: 'file', uri: VIDEOS.highway, fps: 10 }, server: { url: 'ws://127.0.0.1:1/ingest', token: 'x'.repeat(16) },
    cheapModel: { enabled: false }, monitor: { source: 'local', detectorModel: DETECTOR_MODEL, referenceEvery: 1, localFrames: [0, 4, 8, 30] },
  });
  const scored: { f1: number; segment: number }[] = [];
  let next: (() => void) | null = null;
  const p = new EdgePipeline({ probes: null, onLocalF1: (f1, segment) => { scored.push({ f1, segment }); next?.(); } });
  p.localDetector = { detect: async (f) => (await det.detect(f)).detections };
  // stream at half the source size, 5 fps: frames 0, 2, 4, 6, 8 are sent
  p.oneadapt = new OneAdaptController({ enabled: ['resolution', 'fps', 'qp'], start: { resolution: 0.5, fps: 5, qp: 30 } });
  const copy = (): YuvFrame[] => frames.map((f) => ({ ...f, data: f.data.slice() }));
  const a = await p.process(copy(), 10, s);
  expect(a.rendered.encoded.width).toBe(W / 2);
  expect(a.header.ref).toBeUndefined();
  expect(a.refBytes).toBe(0);
  // the server saw what the camera sees, at half size: per sent frame, the camera's detections × 0.5
  const cars: Reply['detections'] = [];
  for (const i of a.rendered.sent) cars.push((await det.detect(frames[i])).detections.map((d) => [d.x1 / 2, d.y1 / 2, d.x2 / 2, d.y2 / 2, d.score, d.classId]));
  expect(cars.flat().length).toBeGreaterThan(3); // the highway has cars
  let done = new Promise<void>((r) => (next = r));
  p.onReply(reply(a, cars), s);
  await done;
  expect(scored).toEqual([{ f1: 1, segment: a.seq }]);
  // a server that found nothing scores 0; a reply for a segment already scored (or unknown) changes nothing
  const b = await p.process(copy(), 10, s);
  done = new Promise<void>((r) => (next = r));
  p.onReply(reply(b, b.rendered.sent.map(() => [])), s);
  await done;
  expect(scored[1]).toEqual({ f1: 0, segment: b.seq });
  p.onReply(reply(a, []), s);
  p.onReply(reply({ segmentId: 'cam-other-run', seq: 9 }, []), s);
  await new Promise((r) => setTimeout(r, 200));
  expect(scored).toHaveLength(2);
}, 60_000);

test('monitor.source local needs the detector model in the config', () => {
  const base = { deviceId: 'cam', source: { kind: 'file', uri: VIDEOS.highway }, server: { url: 'ws://127.0.0.1:1/ingest', token: 'x'.repeat(16) } };
  const r = AgentSettingsSchema.safeParse({ ...base, monitor: { source: 'local' } });
  expect(r.success).toBe(false);
  expect(JSON.stringify(r.error!.issues)).toMatch(/detectorModel/);
  expect(AgentSettingsSchema.parse({ ...base, monitor: { source: 'local', detectorModel: DETECTOR_MODEL } }).monitor.localFrames).toEqual([0, 4, 8]);
  expect(AgentSettingsSchema.parse(base).monitor.source).toBe('upload');
});

test('a detector that falls behind does not pile frames up: beyond one running and one waiting scoring, replies are skipped; the start-time source holds across reloads', async () => {
  const frames: YuvFrame[] = loadFrames(VIDEOS.highway, 10, { startS: 5, width: 320, height: 180 });
  const s = AgentSettingsSchema.parse({
    deviceId: 'cam', source: { kind: 'file', uri: VIDEOS.highway, fps: 10 }, server: { url: 'ws://127.0.0.1:1/ingest', token: 'x'.repeat(16) },
    cheapModel: { enabled: false }, monitor: { source: 'local', detectorModel: DETECTOR_MODEL, referenceEvery: 1 },
  });
  let release!: () => void;
  const slow = new Promise<void>((r) => (release = r));
  const scored: number[] = [];
  const p = new EdgePipeline({ probes: null, onLocalF1: (_f1, seg) => scored.push(seg) });
  p.localDetector = { detect: async () => { await slow; return []; } };
  p.monitorSource = 'local';
  const outs = [];
  for (let i = 0; i < 4; i++) outs.push(await p.process(frames.map((f) => ({ ...f, data: f.data.slice() })), 10, s));
  for (const o of outs) p.onReply(reply(o, o.rendered.sent.map(() => [])), s);
  expect(p.localSkipped).toBe(2);
  release();
  await p.localIdle();
  expect(scored).toEqual([outs[0].seq, outs[1].seq]);
  // replies out of order: the older segment's F1 does not replace the newer one's
  p.localDetector = { detect: async () => [] };
  const x = await p.process(frames.map((f) => ({ ...f, data: f.data.slice() })), 10, s);
  const y = await p.process(frames.map((f) => ({ ...f, data: f.data.slice() })), 10, s);
  p.onReply(reply(y, y.rendered.sent.map(() => [])), s);
  p.onReply(reply(x, x.rendered.sent.map(() => [])), s);
  await p.localIdle();
  expect(scored.slice(2)).toEqual([y.seq]);
  // a reload to 'upload' does not switch a running agent (restart-only): still no reference frame uploaded
  const reloaded = AgentSettingsSchema.parse({ ...s, monitor: { ...s.monitor, source: 'upload' } });
  expect((await p.process(frames.map((f) => ({ ...f, data: f.data.slice() })), 10, reloaded)).refBytes).toBe(0);
}, 60_000);
