/**
 * OneAdapt's probes off the event loop (oneadapt/probe-pool.ts): the worker thread gives exactly what the
 * in-process probe gives, and a probe at reduced resolution, brought back to scale, agrees with the
 * full-size probe on every knob's direction and roughly on magnitude (real highway footage).
 */
import { makeMbMap, mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { OneAdaptController } from '../oneadapt/adapt.ts';
import { probeAtScale, ProbeRunner, type ProbeRequest } from '../oneadapt/probe-pool.ts';
import type { RenderKnobs, RenderOptions } from '../oneadapt/render.ts';
import { loadFrames, VIDEOS } from '../testdata/fixtures.ts';

const OPTS: RenderOptions = { srcFps: 10, lowQpDelta: 10 };
const BASE: RenderKnobs = { resolution: 1, fps: 10, qp: 30, threshold: 0.5 };

/** DNNGrad-like map: 1 on the lower half of the frame (the road), 0.05 elsewhere */
function roadMap(f: YuvFrame): MbMap {
  const { rows, cols } = mbGrid(f.width, f.height);
  const m = makeMbMap(rows, cols, 0.05);
  for (let r = rows >> 1; r < rows; r++) for (let c = 0; c < cols; c++) m.data[r * cols + c] = 1;
  return m;
}

function request(ctrl: OneAdaptController, frames: YuvFrame[], probeWidth: number, sentBytes: number): ProbeRequest {
  return { knobs: ctrl.knobs, frames, importance: null, g: roadMap(frames[0]), base: BASE, opts: OPTS, sentBytes, probeWidth };
}

let hw: YuvFrame[];
beforeAll(() => {
  hw = loadFrames(VIDEOS.highway, 10, { startS: 5, fps: 10, width: 640, height: 360 });
});

test('the worker thread returns what the in-process probe returns', async () => {
  const small = loadFrames(VIDEOS.highway, 10, { startS: 5, fps: 10, width: 320, height: 180 });
  const ctrl = new OneAdaptController({ enabled: ['resolution', 'fps', 'qp'], start: { qp: 30 } });
  const inline = await probeAtScale(ctrl, request(ctrl, small, 0, 1));
  const runner = new ProbeRunner();
  try {
    const viaWorker = await runner.probe(request(ctrl, small, 0, 1));
    expect(viaWorker.scale).toBe(1);
    expect(viaWorker.probes).toEqual(inline.probes);
    expect(runner.busy).toBe(false);
  } finally {
    await runner.stop();
  }
});

test('a probe at half width agrees with the full-size probe on direction and roughly on size', async () => {
  const ctrl = new OneAdaptController({ enabled: ['resolution', 'fps', 'qp'], start: { qp: 20 } });
  const full = await probeAtScale(ctrl, request(ctrl, hw, 0, 1));
  // bytes actually sent at the current knobs = the full-size probe's own HQ bytes of the qp knob
  const sent = full.probes[0].current.bytes;
  const half = await probeAtScale(ctrl, request(ctrl, hw, 320, sent));
  expect(half.scale).toBeCloseTo(0.5, 2);
  expect(half.probes.map((p) => p.knob)).toEqual(full.probes.map((p) => p.knob));
  for (const [i, f] of full.probes.entries()) {
    const h = half.probes[i];
    // from the expensive end every knob has only a cheaper neighbour: it costs accuracy (R up) and saves
    // bytes at both sizes, and brought back to the source's scale the changes are within 3× of each other
    expect(f.cheaper && h.cheaper).toBeTruthy();
    const dR = (p: typeof f): number => p.cheaper!.r - p.current.r;
    const dB = (p: typeof f): number => p.current.bytes - p.cheaper!.bytes;
    expect(dR(f)).toBeGreaterThan(0);
    expect(dB(f)).toBeGreaterThan(0);
    expect(dR(h) / dR(f)).toBeGreaterThan(1 / 3);
    expect(dR(h) / dR(f)).toBeLessThan(3);
    expect(dB(h) / dB(f)).toBeGreaterThan(1 / 3);
    expect(dB(h) / dB(f)).toBeLessThan(3);
  }
});
