/**
 * OneAdapt's camera-side measurement (I/O shell around the pure controller): for every knob, re-encode the
 * segment at the knob's dearer and cheaper neighbours with the others held, decode, and measure AccGrad R
 * (against the server's DNNGrad) and bytes. Two extra encode+decodes per knob per segment (one at either end
 * of a list).
 */
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { renderAccGrad, renderSegment, type Rendered, type RenderKnobs, type RenderOptions } from './render.ts';
import type { KnobProbe, OneAdaptController, ProbePoint } from './adapt.ts';
import type { KnobName } from './knobs.ts';

export interface ProbeResult {
  probes: KnobProbe[];
  /** the rendering at the current knobs (what is actually sent) */
  current: Rendered;
  currentR: number;
  /** encoder CPU time spent on probing (ms) */
  probeMs: number;
  /** extra encodes done for the probes */
  encodes: number;
}

/** How far a flat stretch is searched: identical renderings (e.g. an AccMPEG threshold above every P(important)) give no gradient. */
const MAX_FLAT = 3;

/** InputGrad on every other frame of the segment (1, 3, 5, …): half the per-pixel work, the same frame-rate effects. */
export const probePositions = (n: number): number[] => [...Array(n).keys()].filter((i) => i % 2 === 1 || n === 1);

export async function probeKnobs(
  ctrl: OneAdaptController,
  frames: YuvFrame[],
  importance: MbMap | null,
  g: MbMap,
  base: RenderKnobs,
  opts: RenderOptions,
  current?: Rendered,
): Promise<ProbeResult> {
  const knobsNow: RenderKnobs = { ...base, ...ctrl.values() };
  const cur = current ?? (await renderSegment(frames, knobsNow, importance, opts));
  const t0 = performance.now();
  const positions = probePositions(frames.length);
  const currentR = await renderAccGrad(cur, frames, g, opts.srcFps, knobsNow.fps, positions);
  const here: ProbePoint = { r: currentR, bytes: cur.encoded.data.length };
  const probes: KnobProbe[] = [];
  let encodes = 0;
  for (const [name, k] of ctrl.knobs) {
    if (name === 'threshold' && !importance) continue;
    const probe: KnobProbe = { knob: name, current: here };
    for (const dir of [-1, 1] as const) {
      // the nearest value in this direction that renders differently from the current one (flat stretches skipped)
      for (let j = k.index + dir, tries = 0; j >= 0 && j < k.spec.values.length && tries < MAX_FLAT; j += dir, tries++) {
        const other: RenderKnobs = { ...knobsNow, [name as KnobName]: k.spec.values[j] };
        const r = await renderSegment(frames, other, importance, opts);
        encodes++;
        if (r.encoded.data.equals(cur.encoded.data)) continue;
        const point = { r: await renderAccGrad(r, frames, g, opts.srcFps, other.fps, positions), bytes: r.encoded.data.length, span: Math.abs(j - k.index) };
        if (dir < 0) probe.dearer = point;
        else probe.cheaper = point;
        break;
      }
    }
    if (probe.dearer || probe.cheaper) probes.push(probe);
  }
  return { probes, current: cur, currentR, probeMs: performance.now() - t0, encodes };
}
