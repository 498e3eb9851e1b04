/** @jest-environment ./test/helpers/ort-env.cjs */
/**
 * A cheap model that loads but cannot run (wrong input rank, wrong output shape) is rejected by CheapModel.load()
 * with an error naming the file (one dry inference on a small frame), and a hot reload to such a model keeps the
 * working one in service.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { CheapModel, CheapModelLoadError, DEFAULT_CHEAP_MODEL } from '../cheapmodel/model.ts';
import { makeModel, makeNode } from '../server/onnxgrad/proto.ts';
import { Agent, type ImportanceModel } from '../agent/agent.ts';
import { AgentSettingsSchema } from '../config/schema.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'cheapmodel-dryrun-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** y = x, with x of the given static shape: loads fine, 1 input and 1 output. */
function identityModel(name: string, dims: number[]): string {
  const file = path.join(tmp, name);
  writeFileSync(file, makeModel({ nodes: [makeNode('Identity', ['x'], ['y'])], inputs: [{ name: 'x', dims }], outputs: [{ name: 'y', dims }] }));
  return file;
}

test('a model with the wrong input rank is rejected at load, naming the file', async () => {
  const file = identityModel('rank2.onnx', [1, 192]);
  const err = await CheapModel.load(file).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(CheapModelLoadError);
  expect((err as CheapModelLoadError).modelPath).toBe(file);
  expect((err as Error).message).toContain(file);
  expect((err as Error).message).toMatch(/dry run.*rank/i);
});

test('a model whose output is not [1,1,rows,cols] is rejected at load', async () => {
  const file = identityModel('nchw-echo.onnx', [1, 3, 16, 24]); // runs on the dry-run input, answers its shape
  await expect(CheapModel.load(file)).rejects.toThrow(/nchw-echo\.onnx.*dry run.*\[1,3,16,24\] does not match \[1,1,2,3\]/);
});

test('the committed model passes the dry run', async () => {
  const m = await CheapModel.load(DEFAULT_CHEAP_MODEL);
  await m.release();
});

test('hot reload of cheapModel.path to a model that cannot run keeps the old model in service', async () => {
  const bad = identityModel('reload-rank2.onnx', [1, 192]);
  const settings = AgentSettingsSchema.parse({
    deviceId: 'cam-reload',
    source: { kind: 'rtsp', uri: 'rtsp://127.0.0.1:1/stream' },
    server: { url: 'ws://127.0.0.1:1/ingest' },
    storage: { dir: tmp },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'error' },
  });
  const lines: string[] = [];
  const agent = new Agent(settings, { logger: pino({ level: 'error' }, { write: (l: string) => void lines.push(l) }) });
  const good = await CheapModel.load(DEFAULT_CHEAP_MODEL);
  const internals = agent as unknown as { pipeline: { cheap: ImportanceModel | null }; applyConfig(next: unknown, keys: string[]): void };
  internals.pipeline.cheap = good; // what start() loads
  internals.applyConfig({ ...settings, cheapModel: { ...settings.cheapModel, path: bad } }, ['cheapModel.path']);
  const t0 = Date.now();
  while (!lines.some((l) => l.includes('cheap model change rejected'))) {
    if (Date.now() - t0 > 20_000) throw new Error('no rejection logged');
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(internals.pipeline.cheap).toBe(good);
  expect(lines.find((l) => l.includes('cheap model change rejected'))).toContain('reload-rank2.onnx');
  await good.release();
});

test('a model that answers NaN is rejected at load (it would give an arbitrary QP map)', async () => {
  // [1,3,16,24] → 8×8 average pool → [1,3,2,3] → mean over channels → [1,1,2,3] → 0/0: NaN whatever the frame
  const file = path.join(tmp, 'nan.onnx');
  writeFileSync(file, makeModel({
    nodes: [
      makeNode('AveragePool', ['x'], ['p'], { kernel_shape: [8, 8], strides: [8, 8] }),
      makeNode('ReduceMean', ['p'], ['m'], { axes: [1], keepdims: 1 }),
      makeNode('Sub', ['m', 'm'], ['z']),
      makeNode('Div', ['z', 'z'], ['y']),
    ],
    inputs: [{ name: 'x', dims: [1, 3, 16, 24] }],
    outputs: [{ name: 'y', dims: [1, 1, 2, 3] }],
  }));
  await expect(CheapModel.load(file)).rejects.toThrow(/nan\.onnx.*dry run.*not finite/);
});
