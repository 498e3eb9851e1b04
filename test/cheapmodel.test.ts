/** @jest-environment ./test/helpers/ort-env.cjs */
/**
 * The committed AccMPEG cheap model: loads from the repository, ranks held-out labelled-important
 * macroblocks above the rest on real frames, handles any even frame size, and fails with a typed
 * error on a missing or corrupt file.
 *
 * Held-out data: campus-576p.avi at 76.0–76.4 s (the model was trained on campus 0–50 s, plus
 * people-indoor 0–100 s and highway 0–20 s). The labels are computed here with the labelling code
 * (server/label-cli.ts labelVideo) and binarised with the training threshold from training/train_log.json.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheapModel, CheapModelLoadError, DEFAULT_CHEAP_MODEL, halfResRgb } from '../cheapmodel/model.ts';
import { readLabelDir, rocAuc } from '../cheapmodel/labels.ts';
import { scaleFrame } from '../encoder/index.ts';
import { labelVideo } from '../server/label-cli.ts';
import { DETECTOR_MODEL, VIDEOS, requireFile } from '../testdata/fixtures.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'cheapmodel-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('CheapModel', () => {
  let model: CheapModel;
  beforeAll(async () => {
    model = await CheapModel.load();
  });
  afterAll(async () => {
    await model.release();
  });

  test('the committed model is found relative to the repository', () => {
    expect(DEFAULT_CHEAP_MODEL).toBe(path.join(repo, 'cheapmodel', 'models', 'accmpeg_cheap.onnx'));
    expect(existsSync(DEFAULT_CHEAP_MODEL)).toBe(true);
  });

  test('ranks labelled-important macroblocks above the rest on held-out campus frames', async () => {
    requireFile(VIDEOS.campus);
    const dir = path.join(tmp, 'labels');
    await labelVideo({ video: VIDEOS.campus, out: dir, modelPath: requireFile(DETECTOR_MODEL), fps: 10, startS: 76, durationS: 0.4 });
    const ls = readLabelDir(dir);
    expect(ls.frames.length).toBeGreaterThanOrEqual(3);
    const { threshold } = JSON.parse(readFileSync(path.join(repo, 'training', 'train_log.json'), 'utf8')) as { threshold: number };
    const scores: number[] = [];
    const labels: number[] = [];
    for (let i = 0; i < ls.frames.length; i++) {
      const p = await model.importance(ls.frames[i]);
      expect([p.rows, p.cols]).toEqual([36, 48]);
      for (let k = 0; k < p.data.length; k++) {
        expect(p.data[k]).toBeGreaterThanOrEqual(0);
        expect(p.data[k]).toBeLessThanOrEqual(1);
        scores.push(p.data[k]);
        labels.push(ls.sal[i].data[k] > threshold ? 1 : 0);
      }
    }
    const pos = scores.filter((_, k) => labels[k]);
    const neg = scores.filter((_, k) => !labels[k]);
    expect(pos.length).toBeGreaterThan(20);
    const mean = (a: number[]): number => a.reduce((s, v) => s + v, 0) / a.length;
    const auc = rocAuc(scores, labels);
    // measured on these frames with the committed model: see training/README.md
    expect(mean(pos)).toBeGreaterThan(2 * mean(neg));
    expect(auc).toBeGreaterThan(0.8);
  });

  test('accepts frame sizes that are not multiples of 16 (edge-padded to the MB grid)', async () => {
    const frame = syntheticFrame();
    const small = scaleFrame(frame, 100, 70);
    expect(halfResRgb(small)).toMatchObject({ width: 56, height: 40, rows: 5, cols: 7 });
    const p = await model.importance(small);
    expect([p.rows, p.cols]).toEqual([5, 7]);
    expect(p.data.every((v) => Number.isFinite(v) && v >= 0 && v <= 1)).toBe(true);
  });
});

function syntheticFrame(): ReturnType<typeof scaleFrame> {
  // a synthetic gradient frame is enough for the shape check
  const width = 160, height = 96;
  const data = new Uint8Array(width * height * 1.5);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = (x + y) & 255;
  data.fill(128, width * height);
  return { width, height, ptsMs: 0, data };
}

describe('CheapModel.load errors', () => {
  test('a missing file gives CheapModelLoadError', async () => {
    const p = path.join(tmp, 'nope.onnx');
    await expect(CheapModel.load(p)).rejects.toBeInstanceOf(CheapModelLoadError);
    await expect(CheapModel.load(p)).rejects.toThrow(/does not exist/);
  });

  test('a corrupt file gives CheapModelLoadError naming the path', async () => {
    const p = path.join(tmp, 'corrupt.onnx');
    writeFileSync(p, Buffer.concat([readFileSync(DEFAULT_CHEAP_MODEL).subarray(0, 1000), Buffer.from('garbage')]));
    const err = await CheapModel.load(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheapModelLoadError);
    expect((err as CheapModelLoadError).modelPath).toBe(p);
    expect((err as Error).message).toContain(p);
  });
});
