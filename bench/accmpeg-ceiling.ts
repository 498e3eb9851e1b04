/**
 * AccMPEG's ceiling on a scene (diagnostic, development spans only; not an npm bench):
 *
 *   npx tsx bench/accmpeg-ceiling.ts highway campus residential-street   [PAIRS=30/44,34/46,38/50]
 *
 * Encodes each chunk of the scene's development span with the important region = the macroblocks under the
 * reference detections' boxes (road classes, score ≥ 0.3, union over the chunk's 10 frames, dilated by one MB):
 * perfect knowledge of where every detected object is. Also the leave-one-scene-out cheap model's maps as the
 * max over the chunk's first, middle and last frames (instead of the mean of first and last), and the share of
 * reference box centres each mask covers. Compare the printed points with the uniform curve of the same span
 * (bench:accmpeg's development table, data/accmpeg/dev-cache.json).
 */
import { mbGrid, type MbMap } from '../encoder/frame.ts';
import { Detector } from '../detector/detector.ts';
import type { Detection } from '../detector/postprocess.ts';
import { ACCURACY } from '../server/accuracy.ts';
import { CheapModel } from '../cheapmodel/model.ts';
import { importanceMask } from '../cheapmodel/qpmap.ts';
import { DETECTOR_MODEL } from '../testdata/fixtures.ts';
import { SCENES } from '../testdata/scenes.ts';
import { agg } from '../numeric/equal-f1.ts';
import { DILATE, Evaluator, spanFrames, type Setting } from './accmpeg-eval.ts';

const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu' });
const ev = new Evaluator(det);
const road = (d: Detection): boolean => ACCURACY.classes.includes(d.classId);
const pairs = (process.env.PAIRS ?? '30/44,34/46,38/50').split(',').map((s) => s.split('/').map(Number));

for (const name of process.argv.slice(2)) {
  const s = SCENES.find((x) => x.name === name);
  if (!s) throw new Error(`unknown scene ${name}`);
  const { chunks, ref } = await ev.span(spanFrames(s.video, s.dev));
  const { rows, cols } = mbGrid(chunks[0][0].width, chunks[0][0].height);
  const boxMaps: MbMap[] = ref.map((r) => {
    const d = new Float32Array(rows * cols);
    for (const b of r.flat().filter(road)) {
      for (let y = Math.max(0, Math.floor(b.y1 / 16)); y <= Math.min(rows - 1, Math.floor(b.y2 / 16)); y++) {
        for (let x = Math.max(0, Math.floor(b.x1 / 16)); x <= Math.min(cols - 1, Math.floor(b.x2 / 16)); x++) d[y * cols + x] = 1;
      }
    }
    return { rows, cols, data: d };
  });
  const model = await CheapModel.load(`data/cheap/loso/saldiff-${name}.onnx`);
  const maxMaps: MbMap[] = [];
  for (const ch of chunks) {
    const d = new Float32Array(rows * cols);
    for (const i of [0, 5, 9]) (await model.importance(ch[i])).data.forEach((v, k) => { d[k] = Math.max(d[k], v); });
    maxMaps.push({ rows, cols, data: d });
  }
  await model.release();
  // the boxes: every marked MB (no floor); the cheap maps: the agent's rule
  const boxRule = { rule: 'boxes', threshold: 0.5, minFraction: 0 };
  const cheapRule = { rule: 'cheap max-of-3', threshold: 0.5, minFraction: 0.05 };
  const coverage = (maps: MbMap[], rule: typeof boxRule): string => {
    let hit = 0, all = 0, area = 0;
    maps.forEach((m, c) => {
      const mk = importanceMask(m, { threshold: rule.threshold, smooth: false, minFraction: rule.minFraction, dilate: DILATE });
      area += mk.reduce((a, v) => a + v, 0) / mk.length / maps.length;
      for (const b of ref[c].flat().filter(road)) {
        all++;
        hit += mk[Math.min(rows - 1, Math.floor((b.y1 + b.y2) / 32)) * cols + Math.min(cols - 1, Math.floor((b.x1 + b.x2) / 32))];
      }
    });
    return `box centres covered ${(hit / all).toFixed(2)}, area ${(100 * area).toFixed(0)}%`;
  };
  console.log(`${name}: boxes ${coverage(boxMaps, boxRule)} | cheap max-of-3 ${coverage(maxMaps, cheapRule)}`);
  for (const [h, l] of pairs) {
    for (const [maps, rule] of [[boxMaps, boxRule], [maxMaps, cheapRule]] as const) {
      const st = await ev.run({ chunks, ref }, maps, { ...rule, highQp: h, lowQp: l } satisfies Setting);
      const p = agg(st, st.map((_, i) => i));
      console.log(`  ${rule.rule} QP ${h}/${l}: ${(p.bytes / 1000).toFixed(0)} kB, F1 ${p.f1.toFixed(3)}`);
    }
  }
}
await det.release();
