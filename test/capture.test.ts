import { mkdtempSync, openSync, readSync, writeFileSync, closeSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CaptureError, FfmpegSource, readAhead, TruncatedStreamError, segments } from '../media/capture.ts';
import { VIDEOS } from '../testdata/fixtures.ts';

async function collect(src: FfmpegSource, max = Infinity) {
  const out = [];
  for await (const f of src) {
    out.push(f);
    if (out.length >= max) { src.stop(); }
  }
  return out;
}

describe('FfmpegSource', () => {
  test('reads real frames from a file at the requested rate and size', async () => {
    const src = new FfmpegSource({ kind: 'file', uri: VIDEOS.people, durationS: 1.0 });
    expect([src.width, src.height]).toEqual([768, 432]);
    const frames = await collect(src);
    expect(frames.length).toBe(10); // 10 fps clip, 1 s
    expect(frames[0].data.length).toBe(768 * 432 * 1.5);
    // real content: luma is not constant and frames differ over time
    const y0 = frames[0].data.subarray(0, 768 * 432);
    const mean = y0.reduce((a, b) => a + b, 0) / y0.length;
    expect(mean).toBeGreaterThan(20);
    expect(mean).toBeLessThan(235);
    expect(frames[9].ptsMs).toBe(900);
  });

  test('scales and resamples', async () => {
    const src = new FfmpegSource({ kind: 'file', uri: VIDEOS.highway, width: 640, height: 360, fps: 5, durationS: 2 });
    const frames = await collect(src);
    expect(frames.length).toBe(10);
    expect(frames[3].data.length).toBe(640 * 360 * 1.5);
  });

  test('stop() ends the iteration cleanly and kills ffmpeg', async () => {
    const src = new FfmpegSource({ kind: 'file', uri: VIDEOS.people, loop: true });
    const frames = await collect(src, 5);
    expect(frames.length).toBe(5);
  });

  test('segments() groups frames', async () => {
    const src = new FfmpegSource({ kind: 'file', uri: VIDEOS.people, durationS: 2.5 });
    const segs = [];
    for await (const s of segments(src, 10)) segs.push(s.length);
    expect(segs).toEqual([10, 10, 5]);
  });

  test('missing file → CaptureError naming it', () => {
    expect(() => new FfmpegSource({ kind: 'file', uri: '/nonexistent/cam.mp4' })).toThrow(/\/nonexistent\/cam.mp4: file not found/);
  });

  test('bad RTSP URL → CaptureError', () => {
    expect(() => new FfmpegSource({ kind: 'rtsp', uri: 'http://x' })).toThrow(CaptureError);
    // well-formed URL, nothing listening: ffprobe fails quickly with connection refused
    expect(() => new FfmpegSource({ kind: 'rtsp', uri: 'rtsp://127.0.0.1:1/stream', timeoutMs: 2000 })).toThrow(/cannot open video stream/);
  });

  test('truncated stream → TruncatedStreamError after the frames that were readable', async () => {
    // MS-MPEG4 AVI cut in the middle: the frames before the cut decode, then the error names the frame
    const dir = mkdtempSync(path.join(os.tmpdir(), 'cap-'));
    const cut = path.join(dir, 'cut.avi');
    const n = Math.floor(statSync(VIDEOS.campus).size * 0.1);
    const buf = Buffer.alloc(n);
    const fd = openSync(VIDEOS.campus, 'r');
    readSync(fd, buf, 0, n, 0);
    closeSync(fd);
    writeFileSync(cut, buf);
    const src = new FfmpegSource({ kind: 'file', uri: cut });
    let frames = 0;
    let err: unknown;
    try {
      for await (const _ of src) frames++;
    } catch (e) { err = e; }
    expect(frames).toBeGreaterThan(10);
    expect(err).toBeInstanceOf(TruncatedStreamError);
    expect((err as TruncatedStreamError).framesRead).toBe(frames);
    expect(String((err as Error).message)).toContain('cut.avi');
  });
});

describe('readAhead', () => {
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  test('the source produces the next item while the consumer works on the current one', async () => {
    const log: string[] = [];
    async function* source() {
      for (let i = 0; i < 3; i++) {
        await sleep(20);
        log.push(`made ${i}`);
        yield i;
      }
    }
    const got: number[] = [];
    for await (const v of readAhead(source(), 1)) {
      log.push(`start ${v}`);
      await sleep(60); // longer than the source needs for the next item
      log.push(`end ${v}`);
      got.push(v);
    }
    expect(got).toEqual([0, 1, 2]);
    // item 1 was made while item 0 was being processed (without read-ahead it would come after `end 0`)
    expect(log.indexOf('made 1')).toBeLessThan(log.indexOf('end 0'));
    expect(log.indexOf('made 2')).toBeLessThan(log.indexOf('end 1'));
  });

  test('a source error reaches the consumer at the item where it happened; stopping early closes the source', async () => {
    async function* failing() {
      yield 1;
      throw new Error('stream cut');
    }
    const seen: number[] = [];
    await expect((async () => { for await (const v of readAhead(failing())) seen.push(v); })()).rejects.toThrow('stream cut');
    expect(seen).toEqual([1]);
    let closed = false;
    async function* endless() {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        closed = true;
      }
    }
    for await (const v of readAhead(endless(), 2)) if (v === 3) break;
    expect(closed).toBe(true);
  });

  test('a real capture read ahead in segments yields the same frames', async () => {
    const plain = await collect(new FfmpegSource({ kind: 'file', uri: VIDEOS.people, durationS: 2.0 }));
    const segs: number[] = [];
    let k = 0;
    for await (const seg of readAhead(segments(new FfmpegSource({ kind: 'file', uri: VIDEOS.people, durationS: 2.0 }), 7))) {
      segs.push(seg.length);
      for (const f of seg) expect(Buffer.compare(f.data, plain[k++].data)).toBe(0);
    }
    expect(segs).toEqual([7, 7, 6]);
  });
});
