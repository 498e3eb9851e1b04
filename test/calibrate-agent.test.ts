/**
 * The agent re-calibrates AccMPEG's α from the server's DNNGrad replies: with a cheap model that under-scores this
 * camera's objects, α falls until the mask covers them; the knobs then carry the calibrated α.
 */
import { AgentSettingsSchema } from '../config/schema.ts';
import { EdgePipeline } from '../agent/pipeline.ts';
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { encodeMbMap } from '../wire/mbmap.ts';
import type { Reply } from '../wire/protocol.ts';
import { importanceMask } from '../cheapmodel/qpmap.ts';
import { VIDEOS, loadFrames } from '../testdata/fixtures.ts';

const W = 128, H = 96, rows = 6, cols = 8;
// eight one-MB objects far apart: the floor (5% = 3 MBs) plus one MB of dilation cannot cover them all
const objects = new Set([0, 4, 7, 18, 22, 32, 36, 47]);
// this camera's objects get only P = 0.18 from the model: the shipped α (0.5) marks nothing there
const under: MbMap = { rows, cols, data: Float32Array.from({ length: rows * cols }, (_, i) => (objects.has(i) ? 0.18 : 0.02)) };
const serverGrad: MbMap = { rows, cols, data: Float32Array.from({ length: rows * cols }, (_, i) => (objects.has(i) ? 5e-3 : 1e-5)) };

const reply = (out: { segmentId: string; seq: number }, grad: MbMap | null): Reply => ({
  type: 'reply', segmentId: out.segmentId, seq: out.seq, detections: [], f1: null, duplicate: false, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 },
  dnngrad: grad ? { frameIndex: 9, rows: grad.rows, cols: grad.cols, width: W, height: H, proxy: 1, data: encodeMbMap(grad).toString('base64') } : null,
});

test('α falls to cover the objects the server labels, after minSamples replies; off by default', async () => {
  const frames: YuvFrame[] = loadFrames(VIDEOS.people, 10, { startS: 20, width: W, height: H });
  const s = AgentSettingsSchema.parse({ deviceId: 'cam', source: { kind: 'file', uri: VIDEOS.people, fps: 10 }, server: { url: 'ws://127.0.0.1:1/ingest', token: 'x'.repeat(16) }, cheapModel: { calibrate: { enabled: true, minSamples: 2 } } });
  const p = new EdgePipeline({ probes: null });
  p.cheap = { importance: async () => under };
  expect(p.knobs(s).threshold).toBe(s.cheapModel.threshold);
  expect([...importanceMask(under, { threshold: s.cheapModel.threshold, smooth: false })].some((v) => v)).toBe(false);
  const a = await p.process(frames.map((f) => ({ ...f, data: f.data.slice() })), 10, s);
  p.onReply(reply(a, serverGrad), s);
  expect(p.calibratedThreshold).toBeNull(); // one sample < minSamples
  const b = await p.process(frames.map((f) => ({ ...f, data: f.data.slice() })), 10, s);
  p.onReply(reply(b, null), s); // a reply without DNNGrad is no sample
  expect(p.calibratedThreshold).toBeNull();
  const c = await p.process(frames.map((f) => ({ ...f, data: f.data.slice() })), 10, s);
  p.onReply(reply(c, serverGrad), s);
  const alpha = p.calibratedThreshold!;
  expect(alpha).toBeLessThan(0.18);
  expect(p.knobs(s).threshold).toBe(alpha);
  // the next segment's QP map gives the objects the high-quality QP
  const d = await p.process(frames.map((f) => ({ ...f, data: f.data.slice() })), 10, s);
  for (const i of objects) expect(d.rendered.qpMap!.data[i]).toBe(s.cheapModel.highQp);
  // a reply for a segment it has no map of (already used, or another run's with the same seq) changes nothing
  p.onReply(reply(c, { rows, cols, data: new Float32Array(rows * cols).fill(1) }), s);
  p.onReply(reply({ segmentId: 'cam-previous-run', seq: d.seq }, { rows, cols, data: new Float32Array(rows * cols).fill(1) }), s);
  expect(p.calibratedThreshold).toBe(alpha);
  // calibration off (the default): the configured α stays
  const off = AgentSettingsSchema.parse({ ...s, cheapModel: { ...s.cheapModel, calibrate: { ...s.cheapModel.calibrate, enabled: false } } });
  expect(p.knobs(off).threshold).toBe(off.cheapModel.threshold);
}, 60_000);
