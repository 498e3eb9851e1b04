/**
 * A hot reload that swaps the cheap model (cheapModel.path) releases the previous model's onnxruntime session —
 * after the segment that may still be running it, never under it — and a slower, older load that finishes after
 * a newer one is released instead of replacing it.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent, openAgentStore, type ImportanceModel } from '../agent/agent.ts';
import { AgentSettingsSchema, type AgentSettings } from '../config/schema.ts';
import { mbGrid, type MbMap, type YuvFrame } from '../encoder/frame.ts';

class FakeModel implements ImportanceModel {
  released = 0;
  used = 0;
  /** importance() waits for this while set (a long inference) */
  gate: Promise<void> | null = null;
  constructor(readonly modelPath: string) {}
  async importance(frame: YuvFrame): Promise<MbMap> {
    if (this.released) throw new Error(`${this.modelPath} used after release`);
    this.used++;
    if (this.gate) await this.gate;
    if (this.released) throw new Error(`${this.modelPath} released during inference`);
    const { rows, cols } = mbGrid(frame.width, frame.height);
    return { rows, cols, data: new Float32Array(rows * cols).fill(0.5) };
  }
  async release(): Promise<void> {
    this.released++;
  }
}

const waitFor = async (cond: () => boolean, ms = 10_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
};

const grey = (ptsMs: number): YuvFrame => ({ width: 64, height: 48, ptsMs, data: new Uint8Array((64 * 48 * 3) / 2).fill(128) });

function setup() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-cheap-release-'));
  const settings = AgentSettingsSchema.parse({
    deviceId: 'cam-reload',
    source: { kind: 'rtsp', uri: 'rtsp://127.0.0.1:1/stream' },
    server: { url: 'ws://127.0.0.1:1/ingest' },
    storage: { dir },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
  });
  const models = new Map<string, FakeModel>();
  const delays = new Map<string, Promise<void>>();
  const model = (p: string): FakeModel => models.get(p) ?? (models.set(p, new FakeModel(p)), models.get(p)!);
  const store = openAgentStore(settings, pino({ level: 'silent' }));
  const agent = new Agent(settings, {
    logger: pino({ level: 'silent' }),
    store,
    loadCheapModel: async (p) => {
      await delays.get(p);
      return model(p);
    },
  });
  const internals = agent as unknown as {
    store: unknown;
    pipeline: { cheap: ImportanceModel | null };
    applyConfig(next: AgentSettings, keys: string[]): void;
    handleSegment(frames: YuvFrame[], fps: number): Promise<void>;
  };
  internals.store = store; // what start() sets
  const reload = (p: string): void => internals.applyConfig({ ...settings, cheapModel: { ...settings.cheapModel, path: p } }, ['cheapModel.path']);
  return { agent, internals, model, delays, reload, close: () => store.close() };
}

test('the replaced model is released once no segment can be using it', async () => {
  const { internals, model, reload, close } = setup();
  try {
    const a = model('/m/a.onnx');
    internals.pipeline.cheap = a; // what start() loads
    reload('/m/b.onnx');
    await waitFor(() => internals.pipeline.cheap === model('/m/b.onnx'));
    await waitFor(() => a.released === 1);
    const b = model('/m/b.onnx');

    // a segment is inside b's inference when c is swapped in: b is released only after that segment
    let open!: () => void;
    b.gate = new Promise<void>((r) => (open = r));
    const seg = internals.handleSegment([grey(0), grey(100)], 10);
    await waitFor(() => b.used === 1);
    reload('/m/c.onnx');
    await waitFor(() => internals.pipeline.cheap === model('/m/c.onnx'));
    await new Promise((r) => setTimeout(r, 200));
    expect(b.released).toBe(0); // still in use
    open();
    await seg; // b's inference finished without being released under it (FakeModel throws otherwise)
    await waitFor(() => b.released === 1);
    expect(model('/m/c.onnx').released).toBe(0);
    expect(a.released).toBe(1); // once
  } finally {
    close();
  }
});

test('an older load that finishes after a newer one is released, not swapped in', async () => {
  const { internals, model, delays, reload, close } = setup();
  try {
    const a = model('/m/a.onnx');
    internals.pipeline.cheap = a;
    let finishSlow!: () => void;
    delays.set('/m/slow.onnx', new Promise<void>((r) => (finishSlow = r)));
    reload('/m/slow.onnx');
    reload('/m/fast.onnx');
    await waitFor(() => internals.pipeline.cheap === model('/m/fast.onnx'));
    finishSlow();
    await waitFor(() => model('/m/slow.onnx').released === 1);
    expect(internals.pipeline.cheap).toBe(model('/m/fast.onnx'));
    expect(model('/m/fast.onnx').released).toBe(0);
    expect(a.released).toBe(1);
  } finally {
    close();
  }
});

test('turning the cheap model off releases it', async () => {
  const { internals, model, close } = setup();
  try {
    const a = model('/m/a.onnx');
    internals.pipeline.cheap = a;
    const s = AgentSettingsSchema.parse({ deviceId: 'cam-reload', source: { kind: 'rtsp', uri: 'rtsp://127.0.0.1:1/stream' }, server: { url: 'ws://127.0.0.1:1/ingest' }, cheapModel: { enabled: false }, log: { level: 'silent' } });
    internals.applyConfig(s, ['cheapModel.enabled']);
    await waitFor(() => internals.pipeline.cheap === null);
    await waitFor(() => a.released === 1);
  } finally {
    close();
  }
});

test('stopping the agent releases its cheap model (after capture has ended)', async () => {
  const { agent, internals, model, close } = setup();
  try {
    const a = model('/m/a.onnx');
    internals.pipeline.cheap = a;
    await agent.stop();
    expect(a.released).toBe(1);
    expect(internals.pipeline.cheap).toBeNull();
  } finally {
    close();
  }
});
