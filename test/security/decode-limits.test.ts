/**
 * A segment is decoded within what its header declares: a few kB of H.264 skip frames that would decode to
 * hundreds of full frames (or a frame larger than declared) are a rejected segment, not an allocation that grows
 * with the stream (found by a review: 30 kB decoded to 345 MB before the limits).
 */
import { encodeSegment, scaleFrame } from '../../encoder/index.ts';
import { SegmentAnalyzer, SegmentDecodeError } from '../../server/analyzer.ts';
import { PROTOCOL_VERSION, type SegmentHeader } from '../../wire/protocol.ts';
import { DETECTOR_MODEL, VIDEOS, loadFrames } from '../../testdata/fixtures.ts';

const still = scaleFrame(loadFrames(VIDEOS.highway, 1, { startS: 5 })[0], 256, 144);
const header = (over: Partial<SegmentHeader>): SegmentHeader => ({
  type: 'segment', v: PROTOCOL_VERSION, segmentId: 'cam-1-0', cameraId: 'cam', seq: 0, codec: 'h264', width: 256, height: 144, fps: 10,
  frameCount: 2, ptsMs: [0, 100], capturedAt: 1_764_640_000_000, knobs: {}, videoBytes: 1, ...over,
});

let an: SegmentAnalyzer;
beforeAll(async () => {
  an = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, threads: 1, dnngrad: false });
});
afterAll(() => an.close());

test('more frames than the header declares: SegmentDecodeError naming the limit', async () => {
  const many = Array.from({ length: 300 }, () => still);
  const seg = await encodeSegment(many, many.map(() => null), { baseQp: 30, gop: 300 });
  expect(seg.data.length).toBeLessThan(40_000);
  const err = await an.process(header({ frameCount: 2 }), Buffer.from(seg.data), null).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(SegmentDecodeError);
  expect((err as Error).message).toMatch(/more than 2 frames/);
});

test('a larger frame than declared, and a reference frame that is a whole stream: rejected', async () => {
  const two = [still, still];
  const seg = await encodeSegment(two, two.map(() => null), { baseQp: 30 });
  const big = await an.process(header({ width: 128, height: 72 }), Buffer.from(seg.data), null).catch((e: unknown) => e);
  expect(big).toBeInstanceOf(SegmentDecodeError);
  expect((big as Error).message).toMatch(/exceeds the limit/);
  const ref = { frameIndex: 1, codec: 'h264' as const, width: 256, height: 144, bytes: seg.data.length };
  const r = await an.process(header({ ref }), Buffer.from(seg.data), Buffer.from(seg.data)).catch((e: unknown) => e);
  expect(r).toBeInstanceOf(SegmentDecodeError); // the reference holds 2 frames: it must be one
  expect((r as Error).message).toMatch(/more than 1 frames/);
  // what the header declares decodes as before
  const ok = await an.process(header({}), Buffer.from(seg.data), null);
  expect(ok.detections).toHaveLength(2);
});
