/** @jest-environment ./test/helpers/ort-env.cjs */
/**
 * A CacheBlend model folder that does not load (a truncated graph, an unreadable model.json) is named in a clear
 * error, leaves no session open, and does not stop the server: /api/ask answers 503 (the ask API is optional).
 */
import { cpSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BlendModel, DEFAULT_MODEL_DIR } from '../cacheblend/model.ts';
import { ServerSettingsSchema } from '../config/schema.ts';
import { startFleetAsk } from '../server/ask-setup.ts';
import { ServerStore } from '../server/store.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'cb-load-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const copyModel = (name: string): string => {
  const d = path.join(dir, name);
  cpSync(DEFAULT_MODEL_DIR, d, { recursive: true });
  return d;
};

test('a truncated layer graph: the error names the file', async () => {
  const d = copyModel('bad-layer');
  truncateSync(path.join(d, 'layer3.onnx'), 100);
  await expect(BlendModel.load(d)).rejects.toThrow(/layer3\.onnx does not load/);
});

test('an unreadable model.json: the error names the file', async () => {
  const d = copyModel('bad-meta');
  writeFileSync(path.join(d, 'model.json'), '{"config": {"layers": ');
  await expect(BlendModel.load(d)).rejects.toThrow(/model\.json is unreadable/);
});

test('the server starts without the ask API when its model does not load: /api/ask answers 503', async () => {
  const d = copyModel('bad-for-server');
  truncateSync(path.join(d, 'embed.onnx'), 10);
  const store = new ServerStore(path.join(dir, 'server.db'));
  const errors: string[] = [];
  const log = { info: () => undefined, warn: () => undefined, error: (o: object, msg: string) => void errors.push(`${msg} ${JSON.stringify(o)}`) };
  const settings = ServerSettingsSchema.parse({ detector: { modelPath: 'x.onnx' }, ask: { enabled: true, modelDir: d } }).ask;
  const fa = await startFleetAsk({ settings, storageDir: dir, store, authorize: () => true, tokenOk: () => true, log });
  const server = http.createServer((req, res) => void fa.api.handle(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    expect(errors.join('\n')).toMatch(/embed\.onnx does not load/);
    const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/ask`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ question: 'what happened at the gate?' }) });
    expect(r.status).toBe(503);
  } finally {
    await new Promise((r) => server.close(r));
    await fa.stop();
    store.close();
  }
});
