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
import { renderSegment } from '../oneadapt/render.ts';
import { decodeSegment } from '../encoder/index.ts';
import { mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';
import { Detector } from '../detector/detector.ts';
import type { Detection } from '../detector/postprocess.ts';
import { ACCURACY, segmentF1 } from '../server/accuracy.ts';
import { CheapModel } from '../cheapmodel/model.ts';
import { importanceMask, type QpAssignment } from '../cheapmodel/qpmap.ts';
import { DETECTOR_MODEL, loadFrames } from '../testdata/fixtures.ts';
import { SCENES } from '../testdata/scenes.ts';

type Rule = Pick<QpAssignment, 'threshold' | 'smooth' | 'minFraction' | 'dilate'>;
const det = await Detector.load(DETECTOR_MODEL, { device: 'cpu' });
const detect = async (fs: YuvFrame[]): Promise<Detection[][]> => {
  const out: Detection[][] = [];
  for (const f of fs) out.push((await det.detect(f, { confThreshold: ACCURACY.scoreThreshold })).detections);
  return out;
};
const road = (d: Detection): boolean => ACCURACY.classes.includes(d.classId);
const pairs = (process.env.PAIRS ?? '30/44,34/46,38/50').split(',').map((s) => s.split('/').map(Number));

for (const name of process.argv.slice(2)) {
  const s = SCENES.find((x) => x.name === name);
  if (!s) throw new Error(`unknown scene ${name}`);
  const frames = loadFrames(s.video, Math.round(s.dev.durationS * s.dev.fps), { startS: s.dev.startS, fps: s.dev.fps });
  const chunks = Array.from({ length: Math.floor(frames.length / 10) }, (_, c) => frames.slice(c * 10, c * 10 + 10));
  const ref: Detection[][][] = [];
  for (const ch of chunks) ref.push(await detect(ch));
  const { rows, cols } = mbGrid(frames[0].width, frames[0].height);
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
  const coverage = (maps: MbMap[], rule: Rule): string => {
    let hit = 0, all = 0, area = 0;
    maps.forEach((m, c) => {
      const mk = importanceMask(m, rule);
      area += mk.reduce((a, v) => a + v, 0) / mk.length / maps.length;
      for (const b of ref[c].flat().filter(road)) {
        all++;
        hit += mk[Math.min(rows - 1, Math.floor((b.y1 + b.y2) / 32)) * cols + Math.min(cols - 1, Math.floor((b.x1 + b.x2) / 32))];
      }
    });
    return `box centres covered ${(hit / all).toFixed(2)}, area ${(100 * area).toFixed(0)}%`;
  };
  const boxRule: Rule = { threshold: 0.5, smooth: false, dilate: 1 };
  const cheapRule: Rule = { threshold: 0.5, smooth: false, minFraction: 0.05, dilate: 1 };
  console.log(`${name}: boxes ${coverage(boxMaps, boxRule)} | cheap max-of-3 ${coverage(maxMaps, cheapRule)}`);
  for (const [h, l] of pairs) {
    for (const [label, maps, rule] of [['boxes', boxMaps, boxRule], ['cheap max-of-3', maxMaps, cheapRule]] as const) {
      let bytes = 0, tp = 0, fp = 0, fn = 0;
      for (let c = 0; c < chunks.length; c++) {
        const r = await renderSegment(chunks[c], { resolution: 1, fps: 10, qp: h, threshold: rule.threshold }, maps[c], { srcFps: 10, lowQpDelta: l - h, assignment: rule });
        bytes += r.encoded.data.length;
        const f = segmentF1(await detect((await decodeSegment(r.encoded.data, r.encoded.codec)).frames), ref[c], ACCURACY);
        tp += f.tp; fp += f.fp; fn += f.fn;
      }
      console.log(`  ${label} QP ${h}/${l}: ${(bytes / 1000).toFixed(0)} kB, F1 ${((2 * tp) / (2 * tp + fp + fn)).toFixed(3)}`);
    }
  }
}
await det.release();
