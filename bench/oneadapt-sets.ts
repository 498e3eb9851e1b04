/** The OneAdapt benchmarks' clip lists (bench:oneadapt, bench:oneadapt-signal) and their `file:start-end` parser. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { SHARED } from '../testdata/fixtures.ts';

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
