/** Real test data from ../shared (read in place, never downloaded). */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { YuvFrame } from '../encoder/frame.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SHARED = process.env.CAMSTREAM_SHARED ?? path.resolve(here, '../../shared');
export const sharedPath = (...p: string[]): string => path.join(SHARED, ...p);
export const DETECTOR_MODEL = sharedPath('models', 'yolox_nano.onnx');
export const VIDEOS = {
  people: sharedPath('videos', 'people-indoor-432p.mp4'),
  highway: sharedPath('videos', 'highway-720p.mp4'),
  parking: sharedPath('videos', 'parking-topdown-432p.mp4'),
  campus: sharedPath('videos', 'campus-576p.avi'),
};
export const IMAGES = { dog: sharedPath('images', 'dog.jpg'), person: sharedPath('images', 'person.jpg') };

export function requireFile(p: string): string {
  if (!existsSync(p)) throw new Error(`test data missing: ${p} (expected ../shared beside the repo, or set CAMSTREAM_SHARED)`);
  return p;
}

/**
 * Decode `count` frames of a video (or one still image) to YUV420p with the ffmpeg CLI,
 * starting at `startS` seconds, optionally scaled. Test/bench helper only; the product
 * captures through media/capture.ts.
 */
export function loadFrames(file: string, count: number, opts: { startS?: number; width?: number; height?: number; fps?: number } = {}): YuvFrame[] {
  requireFile(file);
  const probe = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'stream=width,height', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  const [w0, h0] = probe.stdout.trim().split(',').map(Number);
  const width = opts.width ?? w0;
  const height = opts.height ?? h0;
  const filters = [`scale=${width}:${height}`];
  if (opts.fps) filters.unshift(`fps=${opts.fps}`);
  const args = ['-v', 'error'];
  if (opts.startS) args.push('-ss', String(opts.startS));
  args.push('-i', file, '-an', '-vf', filters.join(','), '-frames:v', String(count), '-pix_fmt', 'yuv420p', '-f', 'rawvideo', '-');
  const r = spawnSync('ffmpeg', args, { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`ffmpeg failed on ${file}: ${r.stderr.toString()}`);
  const size = width * height * 3 / 2;
  const frames: YuvFrame[] = [];
  for (let i = 0; i + size <= r.stdout.length; i += size) {
    frames.push({ width, height, ptsMs: Math.round((frames.length * 1000) / (opts.fps ?? 25)), data: new Uint8Array(r.stdout.subarray(i, i + size)) });
  }
  return frames;
}
