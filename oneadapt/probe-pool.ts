/**
 * OneAdapt's probes off the event loop. A ProbeRunner owns one worker thread (probe-worker.ts) that
 * renders the segment at each knob's neighbouring value and measures AccGrad and bytes (probe.ts),
 * while the agent's thread goes on capturing, encoding and uploading the next segment.
 *
 * Probes at reduced resolution (`probeWidth`): on a wide source the probe renders the segment from a
 * copy downscaled to at most `probeWidth` pixels across (DNNGrad resampled to its MB grid). The mechanism
 * is the same; the measurements are brought back to the source's scale: AccGrad R is a sum over pixels,
 * so it is divided by s² (s = probe scale); bytes are multiplied by (bytes actually sent at the current
 * knobs) / (bytes of the probe's own rendering at the current knobs), so the controller's log-bytes term
 * sees source-scale sizes. At 1280×720 with probeWidth 640 this
 * cuts the probe cost about 4× (bench:edge).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { scaleFrame } from '../encoder/index.ts';
import { mbGrid } from '../encoder/frame.ts';
import { resampleMap, scaledSize } from '../media/scale.ts';
import type { KnobProbe, OneAdaptController, ProbePoint } from './adapt.ts';
import type { KnobName, KnobState } from './knobs.ts';
import { probeKnobs } from './probe.ts';
import type { RenderKnobs, RenderOptions } from './render.ts';

export interface ProbeRequest {
  /** knob states at the time the segment was rendered (the controller's `knobs`) */
  knobs: Map<KnobName, KnobState>;
  frames: YuvFrame[];
  importance: MbMap | null;
  /** DNNGrad map from the server (source MB grid) */
  g: MbMap;
  base: RenderKnobs;
  opts: RenderOptions;
  /** bytes actually sent for this segment at the current knobs (to bring probe bytes to scale) */
  sentBytes: number;
  /** probe at most this many pixels wide (0 or ≥ source width: full size) */
  probeWidth: number;
}

export interface ProbeOutcome {
  probes: KnobProbe[];
  /** wall time of the probe renders (ms) */
  probeMs: number;
  /** the scale the probe ran at (1 = source size) */
  scale: number;
  /** extra encodes the probe did */
  encodes: number;
}

/** Run the probes of one segment, at a reduced resolution where the source is wider than probeWidth. */
export async function probeAtScale(ctrl: Pick<OneAdaptController, 'knobs' | 'values'>, req: ProbeRequest): Promise<ProbeOutcome> {
  const t0 = performance.now();
  const { width: w, height: h } = req.frames[0];
  const scale = req.probeWidth > 0 && req.probeWidth < w ? req.probeWidth / w : 1;
  if (scale === 1) {
    const r = await probeKnobs(ctrl as OneAdaptController, req.frames, req.importance, req.g, req.base, req.opts);
    return { probes: r.probes, probeMs: performance.now() - t0, scale, encodes: r.encodes };
  }
  const size = scaledSize(w, h, scale);
  const s2 = (size.width * size.height) / (w * h);
  const frames = req.frames.map((f) => scaleFrame(f, size.width, size.height, 'area'));
  const grid = mbGrid(size.width, size.height);
  const r = await probeKnobs(ctrl as OneAdaptController, frames, req.importance, resampleMap(req.g, grid.rows, grid.cols), req.base, req.opts);
  const k = req.sentBytes / Math.max(1, r.current.encoded.data.length);
  const rescale = <P extends ProbePoint>(p: P): P => ({ ...p, r: p.r / s2, bytes: p.bytes * k });
  const probes = r.probes.map((p) => ({
    ...p,
    current: rescale(p.current),
    ...(p.dearer ? { dearer: rescale(p.dearer) } : {}),
    ...(p.cheaper ? { cheaper: rescale(p.cheaper) } : {}),
  }));
  return { probes, probeMs: performance.now() - t0, scale: Math.sqrt(s2), encodes: r.encodes };
}

/**
 * Start the worker file beside this one: .js once compiled; .ts under tsx or jest, where the worker first
 * loads tsx's loader itself (a worker does not inherit the parent's module hooks).
 */
function spawnWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./probe-worker.js', import.meta.url));
  // tsx's ESM API (its `import` export: the CommonJS build registers a loader the worker cannot resolve)
  const pkgFile = createRequire(import.meta.url).resolve('tsx/package.json');
  const api = (JSON.parse(readFileSync(pkgFile, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api'].import.default;
  const tsx = pathToFileURL(path.join(path.dirname(pkgFile), api)).href;
  const entry = new URL('./probe-worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); })`, { eval: true });
}

/** One probe worker thread; `probe()` resolves with the probes of one segment. */
export class ProbeRunner {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: ProbeOutcome) => void; reject: (e: Error) => void }>();

  /** Whether a probe is running (the agent probes at most one segment at a time). */
  get busy(): boolean {
    return this.pending.size > 0;
  }

  start(): void {
    if (this.worker) return;
    const w = spawnWorker();
    w.on('message', (m: { id: number; ok: boolean; result?: ProbeOutcome; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) w.unref(); // an idle worker does not keep the process alive
      if (m.ok) p.resolve(m.result!);
      else p.reject(new Error(`probe failed: ${m.error}`));
    });
    const fail = (e: Error): void => {
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
      if (this.worker === w) this.worker = null; // the next probe starts a fresh worker
    };
    w.on('error', fail);
    w.on('exit', (code) => fail(new Error(`probe worker exited with code ${code}`)));
    w.unref();
    this.worker = w;
  }

  /**
   * Probe one segment on the worker. The frames' pixel buffers are MOVED to the worker (no copy of ~14 MB
   * per 720p segment on the event loop): afterwards their `data` is detached here. Frames that are views
   * into a larger buffer are copied instead.
   */
  probe(req: ProbeRequest): Promise<ProbeOutcome> {
    this.start();
    const id = this.nextId++;
    const transfer = new Set<ArrayBuffer>();
    for (const f of req.frames) {
      const b = f.data.buffer;
      if (b instanceof ArrayBuffer && f.data.byteOffset === 0 && f.data.byteLength === b.byteLength) transfer.add(b);
    }
    return new Promise<ProbeOutcome>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker!.ref();
      try {
        this.worker!.postMessage({ ...req, id }, [...transfer]);
      } catch (e) {
        // not handed over (e.g. a frame buffer already detached): this probe fails, the runner stays usable
        this.pending.delete(id);
        if (this.pending.size === 0) this.worker!.unref();
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  async stop(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    if (w) await w.terminate();
  }
}
