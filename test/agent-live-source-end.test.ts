/**
 * A live source (RTSP camera, V4L2 device) whose ffmpeg exits cleanly (exit 0: the camera closed the session) is
 * retried like a failing one, with the same backoff; a file source that ends stays ended. ffmpeg and ffprobe are
 * replaced on PATH by scripts that answer a 64×48 10 fps stream of 12 frames and then exit 0 — and report
 * FFmpeg 4.4 (libavformat 58), so the RTSP socket timeout must be passed as -stimeout.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { PipelineStageError, SourceSupervisor } from '../agent/source-supervisor.ts';
import { SourceSchema, type SourceSettings } from '../config/schema.ts';
import { resetFfmpegVersion } from '../media/capture.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'live-end-'));
const calls = path.join(dir, 'calls.log');
const FRAME = (64 * 48 * 3) / 2;
const savedPath = process.env.PATH;

beforeAll(() => {
  writeFileSync(path.join(dir, 'ffmpeg'), `#!/bin/sh
case "$*" in
  *-version*) printf 'ffmpeg version 4.4.2-0ubuntu0.22.04.1 Copyright (c) 2000-2021 the FFmpeg developers\\nlibavformat    58. 76.100 / 58. 76.100\\n'; exit 0;;
esac
echo "$*" >> '${calls}'
head -c ${12 * FRAME} /dev/zero
exit 0
`);
  writeFileSync(path.join(dir, 'ffprobe'), `#!/bin/sh\necho "probe $*" >> '${calls}'\necho '64,48,10/1'\n`);
  chmodSync(path.join(dir, 'ffmpeg'), 0o755);
  chmodSync(path.join(dir, 'ffprobe'), 0o755);
  writeFileSync(path.join(dir, 'video0'), ''); // the "V4L2 device" and the "file" exist
  process.env.PATH = `${dir}:${savedPath}`;
  resetFfmpegVersion();
});
afterAll(() => {
  process.env.PATH = savedPath;
  resetFfmpegVersion();
  rmSync(dir, { recursive: true, force: true });
});

const captureRuns = (): string[] => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n').filter((l) => l && !l.startsWith('probe ')) : []);

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A supervisor over `source` (5-frame segments); `onSegment` runs before a segment's length is recorded in `segs`. */
function supervisor(source: { kind: string; uri: string; loop?: boolean }, onSegment?: (frames: unknown[], segs: number[]) => Promise<void>) {
  const segs: number[] = [];
  const logs: string[] = [];
  // the schema wants /dev/videoN for V4L2: the fake device is a file in the temp dir
  const settings = { ...SourceSchema.parse({ fps: 10, ...source, kind: 'file' }), kind: source.kind } as SourceSettings;
  const sup = new SourceSupervisor({
    logger: pino({ level: 'info' }, { write: (l: string) => void logs.push(l) }),
    settings: () => ({ source: settings, segmentFrames: 5 }),
    onSegment: async (frames) => {
      await onSegment?.(frames, segs);
      segs.push(frames.length);
    },
    retryMs: 100,
  });
  return { sup, segs, logs };
}
const fileSource = () => ({ kind: 'file', uri: path.join(dir, 'video0'), loop: false });

beforeEach(() => rmSync(calls, { force: true }));

test.each([
  ['rtsp', { kind: 'rtsp', uri: 'rtsp://admin:pw@cam.invalid:554/stream' }],
  ['v4l2', { kind: 'v4l2', uri: path.join(dir, 'video0') }],
] as const)('a live %s source that ends cleanly is retried with backoff', async (_kind, source) => {
  const { sup, segs, logs } = supervisor(source);
  sup.start();
  try {
    await waitFor(() => captureRuns().length >= 3);
    expect(segs.slice(0, 3)).toEqual([5, 5, 2]); // the whole stream, then a new session
    await waitFor(() => sup.failures >= 2);
    const ended = logs.map((l) => JSON.parse(l)).filter((l) => l.msg === 'source failed; pipeline restarts');
    expect(ended.length).toBeGreaterThanOrEqual(2);
    expect(ended[0]).toMatchObject({ level: 50, component: 'capture', err: expect.stringMatching(/live stream ended/), frame: 12, retryMs: 100 });
    expect(ended[1]).toMatchObject({ retryMs: 100 }); // segments came in between: the backoff starts over, as after an error
    expect(logs.join('')).not.toContain('admin:pw');
  } finally {
    await sup.stop();
  }
  const n = captureRuns().length;
  await new Promise((r) => setTimeout(r, 400));
  expect(captureRuns().length).toBe(n); // no retries after stop()
});

test('RTSP on FFmpeg 4.x gets the socket timeout as -stimeout (capture and probe)', async () => {
  const { sup } = supervisor({ kind: 'rtsp', uri: 'rtsp://cam.invalid:554/stream' });
  sup.start();
  try {
    await waitFor(() => captureRuns().length >= 1);
  } finally {
    await sup.stop();
  }
  const lines = readFileSync(calls, 'utf8').trim().split('\n');
  for (const l of lines) {
    expect(l).toMatch(/-rtsp_transport tcp -stimeout 10000000 /);
    expect(l).not.toMatch(/-timeout /);
  }
  expect(lines.some((l) => l.startsWith('probe '))).toBe(true);
});

test('a file source that ends cleanly stays ended (no retry)', async () => {
  const { sup, segs, logs } = supervisor(fileSource());
  sup.start();
  try {
    await waitFor(() => !sup.running && segs.length === 3 && captureRuns().length === 1);
    await new Promise((r) => setTimeout(r, 500)); // several retry periods
    expect(captureRuns()).toHaveLength(1);
    expect(sup.retrying).toBe(false);
    expect(sup.failures).toBe(0);
    // finished, not stuck: health stays ok and the watchdog stays fed long after the last segment
    await new Promise((r) => setTimeout(r, 300));
    expect(sup.health(100)).toEqual({ ok: true });
    expect(sup.stuck(100)).toBeNull();
    expect(logs.map((l) => JSON.parse(l).msg)).toContain('file source finished; capture stopped (loop: false)');
  } finally {
    await sup.stop();
  }
});

test('a segment that fails after capture (the store is full) does not end the file: the next run resumes at the same point', async () => {
  // the first segment goes through; then the store is full for two attempts (the second one after a resume)
  let calls = 0;
  const { sup, logs } = supervisor(fileSource(), async () => {
    calls++;
    if (calls === 2 || calls === 3) throw new PipelineStageError('store', new Error('database or disk is full'));
  });
  sup.start();
  try {
    await waitFor(() => calls >= 4, 5000); // failed at the resume point too, and was retried there again
    expect(logs.join('')).not.toContain('capture finished');
    expect(sup.health(60_000).ok).toBe(true);
  } finally {
    await sup.stop();
  }
});

test('a non-looped file stopped on purpose (restart_pipeline, a config change) continues where it stopped, not from its start', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let inPipeline = false;
  const { sup, segs } = supervisor(fileSource(), async (_frames, done) => {
    inPipeline = true;
    if (done.length === 0) await gate; // the first segment is in the pipeline when the restart comes
  });
  sup.start();
  try {
    await waitFor(() => inPipeline);
    const stopping = sup.stop();
    release();
    await stopping;
    const delivered = segs.reduce((a, b) => a + b, 0);
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThan(12);
    sup.start();
    await waitFor(() => captureRuns().length === 2);
    expect(captureRuns()[0]).not.toMatch(/-ss /);
    expect(captureRuns()[1]).toContain(`-ss ${delivered / 10} `);
    // a file replaced at the same path starts from its beginning
    await sup.stop();
    writeFileSync(path.join(dir, 'video0'), 'x');
    sup.start();
    await waitFor(() => captureRuns().length === 3);
    expect(captureRuns()[2]).not.toMatch(/-ss /);
    writeFileSync(path.join(dir, 'video0'), '');
  } finally {
    await sup.stop();
  }
});

test('stop() then start() at once (a config change overlapping start_source): the file is not taken as finished, and restart(true) leaves a stopped source stopped', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let inPipeline = false;
  const { sup, logs } = supervisor(fileSource(), async () => {
    if (!inPipeline) { inPipeline = true; await gate; }
  });
  sup.start();
  try {
    await waitFor(() => inPipeline);
    const stopping = sup.stop();
    sup.start(); // before the loop has ended
    release();
    await stopping;
    await waitFor(() => captureRuns().length === 2); // it started again, resuming
    expect(captureRuns()[1]).toMatch(/-ss (0\.5|1) /); // after the segment(s) delivered before the stop
    // the first run counted as stopped, not finished (the second one, of the fake 12-frame "file", finishes)
    const msgs = logs.map((l) => JSON.parse(l).msg as string);
    expect(msgs).toContain('resuming the file where it stopped');
    const finished = msgs.indexOf('file source finished; capture stopped (loop: false)');
    expect(finished === -1 || finished > msgs.indexOf('resuming the file where it stopped')).toBe(true);
    await sup.stop();
    const runs = captureRuns().length;
    await sup.restart(true); // a config change while stopped: stays stopped
    await new Promise((r) => setTimeout(r, 300));
    expect(captureRuns()).toHaveLength(runs);
  } finally {
    await sup.stop();
  }
});
