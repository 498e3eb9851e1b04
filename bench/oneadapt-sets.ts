/**
 * What the OneAdapt benchmarks (bench:oneadapt, bench:oneadapt-signal) share: the clip lists and their
 * `file:start-end` parser, and the segment header a rendering goes out with (to count bytes on the wire).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Rendered, RenderKnobs } from '../oneadapt/render.ts';
import { SHARED } from '../testdata/fixtures.ts';
import { PROTOCOL_VERSION, type SegmentHeader } from '../wire/protocol.ts';

/** Development set (pre-registered): the first 3 s of each of the nine cameras. */
export const DEV_DEFAULT = 'campus-576p.avi:0-3,highway-720p.mp4:0-3,people-indoor-432p.mp4:0-3,parking-topdown-432p.mp4:0-3,parking-person-bicycle-432p.mp4:0-3,towncentre-pedestrians-480p.mp4:0-3,residential-street-cars-352p.mp4:0-3,overhead-road-dusk-360p.mp4:0-3,office-lobby-fisheye-360p.mp4:0-3';
/** Evaluation set (pre-registered): other 5-s spans of the same cameras, in another order. */
export const EVAL_DEFAULT = 'highway-720p.mp4:20-25,office-lobby-fisheye-360p.mp4:12-17,campus-576p.avi:55-60,overhead-road-dusk-360p.mp4:12-17,people-indoor-432p.mp4:100-105,residential-street-cars-352p.mp4:25-30,towncentre-pedestrians-480p.mp4:8-13,parking-topdown-432p.mp4:20-25,parking-person-bicycle-432p.mp4:25-30';

export interface Clip { file: string; name: string; startS: number; endS: number }

/** `file:start-end,…` (seconds; a bare name is looked up in ../shared/videos). */
export function parseClips(list: string): Clip[] {
  return list.split(',').filter(Boolean).map((item) => {
    const m = /^(.+):(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/.exec(item.trim());
    if (!m) throw new Error(`bad clip "${item}": expected file:start-end (seconds), e.g. highway-720p.mp4:20-26`);
    const file = existsSync(m[1]) ? path.resolve(m[1]) : path.join(SHARED, 'videos', m[1]);
    if (!existsSync(file)) throw new Error(`clip ${m[1]}: no such file (looked in . and ${path.join(SHARED, 'videos')})`);
    const startS = Number(m[2]), endS = Number(m[3]);
    if (!(endS - startS >= 1)) throw new Error(`clip ${item}: needs at least 1 s`);
    return { file, name: path.basename(file).replace(/\.[^.]+$/, ''), startS, endS };
  });
}

/** A realistic header for segment `seq` rendered as `r` (a `ref`-byte reference frame of srcW×srcH when ref > 0). */
export function benchHeader(seq: number, r: Rendered, k: RenderKnobs, ref: number, srcW: number, srcH: number): SegmentHeader {
  return {
    type: 'segment', v: PROTOCOL_VERSION, segmentId: `bench-cam-1764640000000-${seq}`, cameraId: 'bench-cam', seq, codec: r.encoded.codec,
    width: r.encoded.width, height: r.encoded.height, fps: k.fps, frameCount: r.sent.length, ptsMs: r.sent.map((i) => seq * 1000 + i * 100),
    capturedAt: 1764640000000 + seq * 1000, knobs: { ...k }, videoBytes: r.encoded.data.length,
    ...(ref > 0 ? { ref: { frameIndex: r.sent.length - 1, codec: 'h264' as const, width: srcW, height: srcH, bytes: ref } } : {}),
  };
}
