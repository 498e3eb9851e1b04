/**
 * bench:server — detector inference vs DNNGrad (the VJP gradient model) per frame on this CPU,
 * measured side by side on the same real frames, plus the gradient's relative error against central
 * finite differences and the size of the per-macroblock DNNGrad map on the wire.
 */
import os from 'node:os';
import { INPUT_SIZE, preprocess } from '../detector/preprocess.ts';
import { Detector } from '../detector/detector.ts';
import { GradientModel, measureGradError } from '../server/onnxgrad/index.ts';
import { oneAdaptProxy, reduceToMacroblocks } from '../server/dnngrad.ts';
import { encodeMbMap } from '../wire/mbmap.ts';
import { DETECTOR_MODEL, VIDEOS, loadFrames } from '../testdata/fixtures.ts';
import { median } from '../numeric/stats.ts';
import { printTable, writeResult } from './report.ts';

const FRAMES = Number(process.env.BENCH_FRAMES ?? 12);
const dims = [1, 3, INPUT_SIZE, INPUT_SIZE];
const frames = loadFrames(VIDEOS.campus, FRAMES, { startS: 60, fps: 2 });
const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu' });
const grad = await GradientModel.load(DETECTOR_MODEL);

// warm-up
await det.detect(frames[0]);
{
  const { input } = preprocess(frames[0]);
  const raw = await grad.forward(input, dims);
  await grad.vjp(input, dims, oneAdaptProxy(raw).seed);
}

const detMs: number[] = [];
const gradMs: number[] = [];
const wire: number[] = [];
for (const f of frames) {
  // interleaved: plain inference (pre+infer+NMS), then DNNGrad (forward, proxy seed, VJP, MB reduction, wire)
  let t = performance.now();
  await det.detect(f);
  detMs.push(performance.now() - t);
  t = performance.now();
  const { input, letterbox } = preprocess(f);
  const raw = await grad.forward(input, dims);
  const { seed } = oneAdaptProxy(raw);
  const { gradInput } = await grad.vjp(input, dims, seed);
  const map = reduceToMacroblocks(gradInput, letterbox, f.width, f.height, { reduce: 'mean' });
  const bytes = encodeMbMap(map).length;
  gradMs.push(performance.now() - t);
  wire.push(bytes);
}

// gradient check on a real frame with the OneAdapt proxy seed
const { input } = preprocess(frames[0]);
const seed = oneAdaptProxy(await grad.forward(input, dims)).seed;
const relErr = await measureGradError(DETECTOR_MODEL, input, seed, { eps: 0.01, directions: 4, coordinates: 2 });

const detector_ms = median(detMs);
const dnngrad_ms = median(gradMs);
printTable(`bench:server — ${frames.length} frames of campus-576p (768×576 → 416×416), ${os.cpus().length} cores, onnxruntime CPU`, [
  { stage: 'detector (preprocess + inference + NMS)', ms_per_frame: detector_ms, fps: 1000 / detector_ms },
  { stage: 'DNNGrad (forward + proxy + VJP + MB map)', ms_per_frame: dnngrad_ms, fps: 1000 / dnngrad_ms },
]);
printTable('DNNGrad quality and size', [
  { grad_rel_err_vs_fd: relErr, dnngrad_bytes_per_frame: median(wire), mb_grid: '36x48' },
]);
writeResult('server', {
  detector_ms,
  dnngrad_ms,
  dnngrad_over_detector: dnngrad_ms / detector_ms,
  grad_rel_err_vs_fd: relErr,
  dnngrad_bytes_per_frame: median(wire),
  frames: frames.length,
  video: 'campus-576p.avi (60 s onward, 2 fps)',
});
await det.release();
await grad.release();
