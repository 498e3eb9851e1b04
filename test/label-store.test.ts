/**
 * The server's label store: every N-th segment's decoded last frame labelled as the labelling CLI labels a video,
 * written in the CLI's format (readable by readLabelDir and the training script), capped, restart-safe, and
 * failing closed (no throw) on bad camera ids and write errors.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LabelStore } from '../server/label-store.ts';
import { labelFrame } from '../server/label-cli.ts';
import { GradientModel } from '../server/onnxgrad/index.ts';
import { coverLabels, readLabelDir } from '../cheapmodel/labels.ts';
import { DETECTOR_MODEL, VIDEOS, loadFrames, requireFile } from '../testdata/fixtures.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'label-store-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

test('stores every N-th segment in the labelling CLI format, up to the cap, and appends after a restart', async () => {
  const frames = loadFrames(requireFile(VIDEOS.campus), 3, { startS: 30, fps: 2 });
  const dir = path.join(tmp, 'a');
  const store = await LabelStore.create({ dir, modelPath: requireFile(DETECTOR_MODEL), everyN: 2, maxFramesPerCamera: 2 });
  expect(await store.offer('cam-1', 0, frames[0])).toBe('stored');
  expect(await store.offer('cam-1', 1, frames[1])).toBe('not-due');
  expect(await store.offer('../etc', 2, frames[1])).toBe('refused'); // camera ids become folder names
  expect(await store.offer('cam-1', 2, frames[1])).toBe('stored');
  expect(await store.offer('cam-1', 4, frames[2])).toBe('full');
  await store.close();
  // offers faster than labelling: at most two wait, the rest are skipped instead of queued without bound
  const busy = await LabelStore.create({ dir: path.join(tmp, 'b'), modelPath: requireFile(DETECTOR_MODEL), everyN: 1, maxFramesPerCamera: 100 });
  expect(await Promise.all([0, 1, 2, 3].map((i) => busy.offer('cam-3', i, frames[0])))).toEqual(['stored', 'stored', 'busy', 'busy']);
  await busy.close();
  const ls = readLabelDir(store.dirFor('cam-1', frames[0].width, frames[0].height));
  expect(ls.frames.length).toBe(2);
  expect(Buffer.compare(Buffer.from(ls.frames[1].data), Buffer.from(frames[1].data))).toBe(0);
  // the labels equal the labelling CLI's for the same frame, and mark the campus pedestrians
  const grad = await GradientModel.load(requireFile(DETECTOR_MODEL));
  const ref = await labelFrame(grad, frames[1]);
  await grad.release();
  expect([...ls.saldiff[1].data]).toEqual([...ref.saldiff.data]);
  expect([...ls.sal[1].data]).toEqual([...ref.sal.data]);
  expect(coverLabels(ls.saldiff[1], 0.5).reduce((a, v) => a + v, 0)).toBeGreaterThan(5);
  // a restart appends to the same folder; a torn tail (data appended, meta.json not updated) is cut off first
  const d = store.dirFor('cam-1', frames[0].width, frames[0].height);
  appendFileSync(path.join(d, 'frames.yuv'), Buffer.alloc(1000, 7));
  const again = await LabelStore.create({ dir, modelPath: requireFile(DETECTOR_MODEL), everyN: 1, maxFramesPerCamera: 3 });
  expect(await again.offer('cam-1', 5, frames[2])).toBe('stored');
  expect(await again.offer('cam-1', 6, frames[2])).toBe('full'); // two from the previous run count
  await again.close();
  const after = readLabelDir(d);
  expect(after.frames.length).toBe(3);
  expect(Buffer.compare(Buffer.from(after.frames[2].data), Buffer.from(frames[2].data))).toBe(0);
  expect(statSync(path.join(d, 'sal.f32')).size).toBe(3 * after.meta.rows * after.meta.cols * 4);
  // data shorter than meta.json lists (a power loss after the rename): the frames without whole data are dropped,
  // never padded with zeros; labelling appends after the last whole frame
  const mb4 = after.meta.rows * after.meta.cols * 4;
  truncateSync(path.join(d, 'saldiff.f32'), 2 * mb4 - 10);
  const third = await LabelStore.create({ dir, modelPath: requireFile(DETECTOR_MODEL), everyN: 1, maxFramesPerCamera: 10 });
  expect(await third.offer('cam-1', 7, frames[0])).toBe('stored');
  await third.close();
  const cut = readLabelDir(d);
  expect(cut.meta.frames.map((f) => (f as unknown as { seq: number }).seq)).toEqual([0, 7]);
  expect(Buffer.compare(Buffer.from(cut.frames[1].data), Buffer.from(frames[0].data))).toBe(0);
  expect([...cut.saldiff[0].data]).toEqual([...ls.saldiff[0].data]);
  // the cap counts every size folder of the camera, also after a restart
  const small = { ...frames[0], width: 64, height: 48, data: frames[0].data.subarray(0, 64 * 48 * 1.5) };
  const capped = await LabelStore.create({ dir, modelPath: requireFile(DETECTOR_MODEL), everyN: 1, maxFramesPerCamera: 2 });
  expect(await capped.offer('cam-1', 8, small)).toBe('full');
  await capped.close();
}, 120_000);

test('a write error stops labelling for that camera, reported once, without throwing', async () => {
  const frames = loadFrames(requireFile(VIDEOS.campus), 1, { startS: 30 });
  const blocker = path.join(tmp, 'not-a-dir');
  writeFileSync(blocker, 'x'); // the store's folder is a file: mkdir fails as a full or read-only disk would
  const errors: string[] = [];
  const store = await LabelStore.create({ dir: blocker, modelPath: requireFile(DETECTOR_MODEL), everyN: 1, maxFramesPerCamera: 10, onError: (cam, e) => errors.push(`${cam}: ${e.message}`) });
  expect(await store.offer('cam-2', 0, frames[0])).toBe('error');
  expect(await store.offer('cam-2', 1, frames[0])).toBe('error');
  await store.close();
  expect(errors.length).toBe(1);
  expect(errors[0]).toMatch(/^cam-2: .*(ENOTDIR|EEXIST)/);
  expect(readFileSync(blocker, 'utf8')).toBe('x');
  await expect(LabelStore.create({ dir: tmp, modelPath: DETECTOR_MODEL, everyN: 0, maxFramesPerCamera: 1 })).rejects.toThrow(/at least 1/);
}, 60_000);
