/**
 * The native decoder against streams a camera could send (found by a review of encoder/native):
 * - an odd frame size in a chroma format that needs conversion (4:2:2, 4:4:4) made the conversion write past
 *   the output buffer (heap corruption: the server process aborted);
 * - a stream that switches to a larger size mid-way was decoded at that size (the pixel limit saw only the first
 *   frame) and silently rescaled.
 * Both are now a clean EncoderError, and the server rejects such a segment as final.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeSegment, EncoderError, encodeSegment, scaleFrameAsync } from '../../encoder/index.ts';
import type { YuvFrame } from '../../encoder/frame.ts';
import { isSegmentFault } from '../../server/analyzer.ts';
import { SegmentHeaderSchema } from '../../wire/protocol.ts';

let dir: string;
beforeAll(() => { dir = mkdtempSync(path.join(os.tmpdir(), 'decode-native-')); });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** a raw H.264 stream of `frames` test-pattern frames */
function h264(name: string, size: string, pixFmt: string, frames = 2): Buffer {
  const out = path.join(dir, `${name}.h264`);
  const r = spawnSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', `testsrc=size=${size}:rate=10`, '-frames:v', String(frames), '-pix_fmt', pixFmt, '-c:v', 'libx264', '-f', 'h264', out]);
  if (r.status !== 0) throw new Error(`ffmpeg: ${r.stderr.toString()}`);
  return readFileSync(out);
}

test('odd frame sizes in 4:2:2 and 4:4:4 are refused cleanly (they corrupted the heap), even ones still convert', async () => {
  for (const [size, fmt] of [['64x33', 'yuv422p'], ['33x33', 'yuv444p']] as const) {
    const err = await decodeSegment(h264(`odd-${fmt}-${size}`, size, fmt), 'h264').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EncoderError);
    expect((err as EncoderError).message).toMatch(/is not positive and even/);
    expect(isSegmentFault(err)).toBe(true); // the segment's fault: final, kept in the failures table
  }
  const ok = await decodeSegment(h264('even-422', '64x32', 'yuv422p'), 'h264');
  expect(ok.frames).toHaveLength(2);
  expect(ok.frames[0].data.length).toBe(64 * 32 * 1.5);
});

test('a stream that changes size mid-way is refused; the pixel limit holds for every frame', async () => {
  const both = Buffer.concat([h264('small', '16x16', 'yuv420p', 1), h264('big', '1920x1080', 'yuv420p', 2)]);
  const err = await decodeSegment(both, 'h264').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(EncoderError);
  expect((err as EncoderError).message).toMatch(/frame size changed mid-stream from 16x16 to 1920x1080/);
  // with the header's limit the big frames are not even decoded: only the small frame comes back
  const limited = await decodeSegment(both, 'h264', { maxPixels: 16 * 16 });
  expect(limited.frames).toHaveLength(1);
  expect(limited.warnings.length).toBeGreaterThan(0);
});

test('segment headers with odd sizes are malformed on the wire', () => {
  const h = { type: 'segment', v: 1, segmentId: 'c-1', cameraId: 'c', seq: 0, codec: 'h264', width: 64, height: 33, fps: 10, frameCount: 1, ptsMs: [0], capturedAt: 0, knobs: {}, videoBytes: 1 };
  expect(SegmentHeaderSchema.safeParse(h).success).toBe(false);
  expect(SegmentHeaderSchema.safeParse({ ...h, height: 32 }).success).toBe(true);
});

test('encode and scaleAsync copy their input up front: buffers transferred away while they run change nothing', async () => {
  const base = Array.from({ length: 6 }, (_, i) => decodeSegmentFrame(i));
  const copies = () => base.map((f) => ({ ...f, data: new Uint8Array(f.data) }));
  const settings = { baseQp: 30, threads: 1, fps: 10 };
  const expected = await encodeSegment(copies(), base.map(() => null), settings);
  const frames = copies();
  const running = encodeSegment(frames, frames.map(() => null), settings);
  // the memory moves to another owner, who overwrites it (what a worker thread given the buffer could do)
  for (const f of frames) new Uint8Array(structuredClone(f.data.buffer, { transfer: [f.data.buffer] })).fill(0);
  expect(frames[0].data.byteLength).toBe(0);
  expect(Buffer.compare(Buffer.from((await running).data), Buffer.from(expected.data))).toBe(0);

  const src = copies()[0];
  const want = await scaleFrameAsync(copies()[0], 32, 16);
  const scaling = scaleFrameAsync(src, 32, 16);
  new Uint8Array(structuredClone(src.data.buffer, { transfer: [src.data.buffer] })).fill(0);
  expect(Buffer.compare(Buffer.from((await scaling).data), Buffer.from(want.data))).toBe(0);
});

/** a 64x32 test frame whose pixels depend on i */
function decodeSegmentFrame(i: number): YuvFrame {
  const data = new Uint8Array(64 * 32 * 1.5);
  for (let k = 0; k < data.length; k++) data[k] = (k * 7 + i * 13) & 0xff;
  return { width: 64, height: 32, data, ptsMs: i * 100 };
}
