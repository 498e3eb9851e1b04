/**
 * Finding 7, source part (issue #13): damaged input is reported with its frame position instead of being
 * streamed without a word; a truncated file with loop: true is reported; a retry after a failure resumes
 * where it stopped instead of replaying the file under new segment ids.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { AgentStore } from '../../agent/store.ts';
import { AgentSettingsSchema } from '../../config/schema.ts';
import { FfmpegSource, type DecodeIssue } from '../../media/capture.ts';
import type { SegmentHeader } from '../../wire/protocol.ts';
import { VIDEOS } from '../../testdata/fixtures.ts';
import { waitFor } from './helpers.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'camstream-src-'));
/** 4 s of the people clip (mp4, index at the front), then cut at 60%: ~2.4 s decode, the rest is missing */
const clip = path.join(dir, 'clip.mp4');
execFileSync('ffmpeg', ['-v', 'error', '-i', VIDEOS.people, '-t', '4', '-an', '-vf', 'scale=320:180', '-c:v', 'libx264', '-g', '10', '-movflags', '+faststart', '-y', clip]);
const whole = readFileSync(clip);
const truncated = path.join(dir, 'truncated.mp4');
writeFileSync(truncated, whole.subarray(0, Math.floor(whole.length * 0.6)));
/** random bytes over 10% of the file, in the middle */
const noisy = path.join(dir, 'noisy.mp4');
const n = Buffer.from(whole);
let seed = 7;
for (let i = Math.floor(n.length * 0.5); i < Math.floor(n.length * 0.6); i++) n[i] = (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 255;
writeFileSync(noisy, n);

async function read(uri: string, loop: boolean, maxFrames: number): Promise<{ frames: number; issues: DecodeIssue[]; err?: Error }> {
  const issues: DecodeIssue[] = [];
  const src = new FfmpegSource({ kind: 'file', uri, loop, fps: 10, onDecodeError: (i) => issues.push(i) });
  let frames = 0;
  try {
    for await (const _ of src) if (++frames >= maxFrames) src.stop();
  } catch (e) {
    return { frames, issues, err: e as Error };
  }
  return { frames, issues };
}

test('random bytes in the middle of a file: decoder errors reported with the frame position', async () => {
  const r = await read(noisy, false, 1000);
  expect(r.issues.length).toBeGreaterThan(0);
  // reported past the start of the 40 frames (the damage is in the middle; the position is the frames read when
  // ffmpeg's complaint arrives, and on a loaded machine stdout may have been drained to the end by then)
  expect(r.issues[0].frame).toBeGreaterThan(5);
  expect(r.issues[0].frame).toBeLessThanOrEqual(40);
  expect(r.issues[0].message).toMatch(/invalid|corrupt|error|NAL/i);
});

test('a truncated file with loop: true is reported on every pass, not looped silently', async () => {
  const r = await read(truncated, true, 80); // ~3 passes over the ~24 readable frames
  expect(r.err).toBeUndefined();
  expect(r.frames).toBe(80);
  expect(r.issues.some((i) => /partial file|corrupt/i.test(i.message))).toBe(true);
  const partial = r.issues.filter((i) => /partial file/i.test(i.message));
  expect(partial.length).toBeGreaterThanOrEqual(2); // once per pass
  expect(partial[0].frame).toBeGreaterThan(10);
});

test('a retry after truncation resumes where it stopped: no frame is sent twice under a new id', async () => {
  const settings = AgentSettingsSchema.parse({
    deviceId: 'cam-trunc',
    source: { kind: 'file', uri: truncated, loop: false, fps: 10 },
    cheapModel: { enabled: false },
    server: { url: 'ws://127.0.0.1:1/ingest', token: 'a-token-of-sixteen-chars' },
    storage: { dir },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
  });
  const store = new AgentStore(path.join(dir, 'trunc.db'));
  const agent = new Agent(settings, { logger: pino({ level: 'silent' }), store, retryMs: 200 });
  await agent.start();
  try {
    await waitFor(() => agent.captureFailures >= 2 && !agent.state().pipelineRunning && !(agent.state().extra as { retrying: boolean }).retrying, 60_000);
    await new Promise((r) => setTimeout(r, 1500)); // no further retries
    const rows = store.pending(1000);
    const pts = rows.flatMap((r) => (r.meta as SegmentHeader).ptsMs);
    expect(new Set(pts).size).toBe(pts.length); // no frame twice
    expect(pts).toEqual([...pts].sort((a, b) => a - b));
    expect(pts.length).toBeGreaterThan(15);
    expect(pts.length).toBeLessThanOrEqual(40);
    expect(agent.segmentsEncoded).toBe(rows.length);
    expect(agent.decodeIssues).toBeGreaterThan(0);
  } finally {
    await agent.stop();
    store.close();
  }
});
