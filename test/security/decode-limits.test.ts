/**
 * A segment is decoded within what its header declares: a few kB of H.264 skip frames that would decode to
 * hundreds of full frames (or a frame larger than declared) are a rejected segment, not an allocation that grows
 * with the stream (found by a review: 30 kB decoded to 345 MB before the limits).
 */
import { EncoderError, EncoderUnavailableError, InvalidInputError, encodeSegment, scaleFrame } from '../../encoder/index.ts';
import { GraceModelError } from '../../grace/model.ts';
import { GraceSegmentError } from '../../grace/segment.ts';
import { SegmentAnalyzer, SegmentDecodeError, isSegmentFault } from '../../server/analyzer.ts';
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

test('a header declaring more decoded bytes than the server allows is refused before any decoding, as retryable', async () => {
  const small = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, threads: 1, dnngrad: false, maxDecodedBytes: 16 << 20 });
  try {
    // 1000 frames of 8192×8192 would be ~100 GB; the bytes are not even looked at
    const err = await small.process(header({ width: 8192, height: 8192, frameCount: 1000 }), Buffer.from('not video'), null).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    // a server setting, not the segment's fault: not an InvalidSegmentError, so the camera keeps the segment
    expect(err).not.toBeInstanceOf(SegmentDecodeError);
    expect((err as Error).message).toMatch(/more than this server's limit of 16 MiB: raise ingest.maxDecodedBytes/);
  } finally {
    await small.close();
  }
});

test('failures that are not the segment\'s fault are not final (the agent keeps and resends the segment)', () => {
  expect(isSegmentFault(new EncoderError('decode', 'Invalid data found when processing input'))).toBe(true);
  expect(isSegmentFault(new EncoderError('decode limit', 'more than 2 frames'))).toBe(true);
  expect(isSegmentFault(new GraceSegmentError('not a Grace++ segment'))).toBe(true);
  expect(isSegmentFault(new InvalidInputError('empty bytestream'))).toBe(true);
  for (const e of [new EncoderError('alloc frame', 'Cannot allocate memory'), new EncoderError('internal', 'std::bad_alloc'), new EncoderError('find decoder', 'hevc'),
    new EncoderUnavailableError('/x/camstream_encoder.node'), new GraceModelError('grace_mid.onnx does not load'), new Error('onnxruntime: failed to allocate')]) {
    expect(isSegmentFault(e)).toBe(false);
  }
});

test('a segment whose connection closed while it waited for a slot is not processed', async () => {
  const two = [still, still];
  const seg = await encodeSegment(two, two.map(() => null), { baseQp: 30 });
  const one = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, threads: 1, dnngrad: false, maxConcurrent: 1 });
  try {
    let closed = false;
    const first = one.process(header({ segmentId: 'cam-1-a' }), Buffer.from(seg.data), null);
    const second = one.process(header({ segmentId: 'cam-1-b' }), Buffer.from(seg.data), null, () => closed).catch((e: unknown) => e);
    closed = true; // its connection goes while the first one runs
    expect((await first).detections).toHaveLength(2);
    expect(String(await second)).toMatch(/not processed: its connection closed while it waited/);
  } finally {
    await one.close();
  }
});

test('two segments at most are analysed at once, whatever the number of connections', async () => {
  const two = [still, still];
  const seg = await encodeSegment(two, two.map(() => null), { baseQp: 30 });
  const limited = await SegmentAnalyzer.create({ modelPath: DETECTOR_MODEL, threads: 1, dnngrad: false, maxConcurrent: 2 });
  let running = 0;
  let peak = 0;
  const orig = limited.detector.detect.bind(limited.detector);
  limited.detector.detect = async (f) => { running++; peak = Math.max(peak, running); try { await new Promise((r) => setTimeout(r, 20)); return await orig(f); } finally { running--; } };
  try {
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => limited.process(header({ segmentId: `cam-1-${i}`, seq: i }), Buffer.from(seg.data), null)));
    expect(results.every((r) => r.detections.length === 2)).toBe(true);
    expect(peak).toBe(2);
  } finally {
    await limited.close();
  }
});
