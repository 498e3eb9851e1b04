/**
 * OneAdapt's camera-side measurement (I/O shell around the pure controller): for every knob,
 * re-encode the segment at the knob's neighbouring value with the others held, decode, and measure
 * AccGrad R (against the server's DNNGrad) and bytes. One extra encode+decode per knob per segment.
 */
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { renderAccGrad, renderSegment, type Rendered, type RenderKnobs, type RenderOptions } from './render.ts';
import type { KnobProbe, OneAdaptController } from './adapt.ts';
import type { KnobName } from './knobs.ts';

export interface ProbeResult {
  probes: KnobProbe[];
  /** the rendering at the current knobs (what is actually sent) */
  current: Rendered;
  currentR: number;
  /** encoder CPU time spent on probing (ms) */
  probeMs: number;
}

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
  const currentR = await renderAccGrad(cur, frames, g, opts.srcFps, knobsNow.fps);
  const probes: KnobProbe[] = [];
  for (const [name, k] of ctrl.knobs) {
    if (name === 'threshold' && !importance) continue;
    const i = k.index;
    const n = k.spec.values.length;
    // adjacent pair (HQ, LQ) around the current value: the cheaper neighbour, or at the cheap end the dearer one
    let otherIdx = i + 1 < n ? i + 1 : i - 1;
    if (otherIdx < 0) continue;
    let other: RenderKnobs = { ...knobsNow, [name as KnobName]: k.spec.values[otherIdx] };
    let r2 = await renderSegment(frames, other, importance, opts);
    // A flat stretch (e.g. an AccMPEG threshold above every P(important): neighbouring values mark no
    // MB and render identically) gives no gradient, and the knob would stay stuck there. Look towards
    // the dearer values instead until the rendering differs (at most 3 extra encodes).
    for (let j = Math.min(otherIdx, i) - 1; j >= Math.max(0, i - 3) && r2.encoded.data.equals(cur.encoded.data); j--) {
      otherIdx = j;
      other = { ...knobsNow, [name as KnobName]: k.spec.values[j] };
      r2 = await renderSegment(frames, other, importance, opts);
    }
    const R2 = await renderAccGrad(r2, frames, g, opts.srcFps, other.fps);
    const b1 = cur.encoded.data.length;
    const b2 = r2.encoded.data.length;
    const span = Math.abs(otherIdx - i);
    probes.push(otherIdx > i ? { knob: name, r: { hq: currentR, lq: R2 }, bytes: { hq: b1, lq: b2 }, span } : { knob: name, r: { hq: R2, lq: currentR }, bytes: { hq: b2, lq: b1 }, span });
  }
  return { probes, current: cur, currentR, probeMs: performance.now() - t0 };
}
