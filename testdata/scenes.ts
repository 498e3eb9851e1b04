/**
 * The nine real scenes of ../shared/videos used for AccMPEG's leave-one-scene-out evaluation.
 * Each scene has a TRAINING span (labelled sparsely, a few fps, for the cheap model's head), a
 * DEVELOPMENT span (the last 10 s of the training span at 10 fps: where the rule's settings are chosen)
 * and a disjoint EVALUATION span (10 s at 10 fps: ten closed-GOP chunks of 10 frames). When a scene is
 * held out, no frame of it is used for training, and its settings are chosen on the OTHER scenes'
 * development spans only.
 * Spans were fixed before any AccMPEG result was computed (evaluation = the last 10 s of each clip,
 * except people-indoor, whose last minutes are mostly empty: 100–110 s there).
 */
import { sharedPath } from './fixtures.ts';

export interface Span { startS: number; durationS: number; fps: number }
export interface Scene { name: string; video: string; train: Span; dev: Span; eval: Span }

const v = (f: string): string => sharedPath('videos', f);
export const SCENES: Scene[] = [
  { name: 'campus', video: v('campus-576p.avi'), train: { startS: 0, durationS: 50, fps: 1.2 }, dev: { startS: 40, durationS: 10, fps: 10 }, eval: { startS: 55, durationS: 10, fps: 10 } },
  { name: 'highway', video: v('highway-720p.mp4'), train: { startS: 0, durationS: 20, fps: 3 }, dev: { startS: 10, durationS: 10, fps: 10 }, eval: { startS: 20, durationS: 10, fps: 10 } },
  { name: 'people-indoor', video: v('people-indoor-432p.mp4'), train: { startS: 0, durationS: 96, fps: 0.625 }, dev: { startS: 86, durationS: 10, fps: 10 }, eval: { startS: 100, durationS: 10, fps: 10 } },
  { name: 'parking-topdown', video: v('parking-topdown-432p.mp4'), train: { startS: 0, durationS: 20, fps: 3 }, dev: { startS: 10, durationS: 10, fps: 10 }, eval: { startS: 20, durationS: 10, fps: 10 } },
  { name: 'parking-person-bicycle', video: v('parking-person-bicycle-432p.mp4'), train: { startS: 0, durationS: 28, fps: 2 }, dev: { startS: 18, durationS: 10, fps: 10 }, eval: { startS: 28, durationS: 10, fps: 10 } },
  { name: 'towncentre', video: v('towncentre-pedestrians-480p.mp4'), train: { startS: 0, durationS: 5, fps: 10 }, dev: { startS: 0, durationS: 5, fps: 10 }, eval: { startS: 5, durationS: 10, fps: 10 } },
  { name: 'residential-street', video: v('residential-street-cars-352p.mp4'), train: { startS: 0, durationS: 27, fps: 2 }, dev: { startS: 17, durationS: 10, fps: 10 }, eval: { startS: 27, durationS: 10, fps: 10 } },
  { name: 'overhead-road-dusk', video: v('overhead-road-dusk-360p.mp4'), train: { startS: 0, durationS: 10, fps: 5 }, dev: { startS: 0, durationS: 10, fps: 10 }, eval: { startS: 10, durationS: 10, fps: 10 } },
  { name: 'office-lobby', video: v('office-lobby-fisheye-360p.mp4'), train: { startS: 0, durationS: 11, fps: 5 }, dev: { startS: 1, durationS: 10, fps: 10 }, eval: { startS: 11, durationS: 10, fps: 10 } },
];

export const labelDir = (scene: string, part: 'train' | 'eval'): string => `data/labels/scenes/${scene}-${part}`;
