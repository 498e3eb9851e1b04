/**
 * AccMPEG's "new cheap model quickly" loop, server side: labels from the segments the server already receives.
 *
 * Off by default (`labels.enabled`). When on, every `everyN`-th segment of a camera has its last DECODED frame
 * labelled exactly as the labelling CLI labels a video (server/label-cli.ts labelFrame: detector saliency and
 * saliency·|HQ − LQ| per macroblock) and appended to `<dir>/<cameraId>/<width>x<height>/` in the CLI's format
 * (meta.json, sal.f32, saldiff.f32, frames.yuv), up to `maxFramesPerCamera` frames. That folder is a training
 * set as it stands:
 *   /usr/bin/python3 training/train_cheap.py --train data/labels/scenes/*-train <dir>/<camera>/<w>x<h> --out cam.onnx
 * gives a cheap model that has seen this camera (training/README.md), for `cheapModel.path` on that agent.
 * The frames are decoded uploads (what the server sees), not the camera's originals.
 *
 * offer() never throws and never delays the reply: work is queued per camera, a write error (disk full, bad
 * permissions) stops labelling for that camera with the reason logged, and the files written so far stay readable.
 */
import { appendFile, mkdir, readFile, rename, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { YuvFrame } from '../encoder/frame.ts';
import { mbGrid, yuvFrameSize } from '../encoder/frame.ts';
import { GradientModel } from './onnxgrad/index.ts';
import { labelFrame } from './label-cli.ts';

export interface LabelStoreOptions {
  dir: string;
  modelPath: string;
  /** label every N-th segment of a camera (by its sequence number) */
  everyN: number;
  maxFramesPerCamera: number;
  lqQp?: number;
  onError?: (cameraId: string, err: Error) => void;
}

export type OfferResult = 'stored' | 'not-due' | 'busy' | 'full' | 'refused' | 'error';

/** camera ids become folder names: the config's device-id alphabet only */
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

interface FrameEntry { ptsMs: number; seq: number; proxy: number; detections: number }
interface CameraState { count: number; failed: boolean; pending: number; queue: Promise<unknown> }

export class LabelStore {
  private readonly cams = new Map<string, CameraState>();
  /** frames listed in each folder's meta.json (loaded from disk on first use, so a restart appends) */
  private readonly dirs = new Map<string, FrameEntry[]>();
  private constructor(private readonly grad: GradientModel, private readonly o: LabelStoreOptions) {}

  static async create(o: LabelStoreOptions): Promise<LabelStore> {
    if (!(o.everyN >= 1) || !(o.maxFramesPerCamera >= 1)) throw new RangeError('labels: everyN and maxFramesPerCamera must be at least 1');
    return new LabelStore(await GradientModel.load(o.modelPath), o);
  }

  /** The folder a camera's frames of this size go to. */
  dirFor(cameraId: string, width: number, height: number): string {
    return path.join(this.o.dir, cameraId, `${width}x${height}`);
  }

  /** Label `frame` (segment `seq` of `cameraId`) when due. Resolves once it is written or skipped; never rejects. */
  offer(cameraId: string, seq: number, frame: YuvFrame): Promise<OfferResult> {
    if (!SAFE_ID.test(cameraId)) return Promise.resolve('refused');
    if (seq % this.o.everyN !== 0) return Promise.resolve('not-due');
    let cam = this.cams.get(cameraId);
    if (!cam) this.cams.set(cameraId, (cam = { count: 0, failed: false, pending: 0, queue: Promise.resolve() }));
    const st = cam;
    // labelling slower than the camera's segments: skip rather than queue frames without bound
    if (st.pending >= 2) return Promise.resolve('busy');
    st.pending++;
    const run = st.queue.then(async (): Promise<OfferResult> => {
      if (st.failed) return 'error';
      if (st.count >= this.o.maxFramesPerCamera) return 'full';
      try {
        // one folder per frame size (the agent's resolution knob may change it)
        const dir = this.dirFor(cameraId, frame.width, frame.height);
        const { listed, loaded } = await this.open(dir, frame);
        st.count += loaded; // frames a previous run left in this folder count towards the cap
        if (st.count >= this.o.maxFramesPerCamera) return 'full';
        const l = await labelFrame(this.grad, frame, { lqQp: this.o.lqQp });
        // data first, then meta.json: a reader never sees meta.json list a frame whose data is missing
        await appendFile(path.join(dir, 'sal.f32'), new Uint8Array(l.sal.data.buffer));
        await appendFile(path.join(dir, 'saldiff.f32'), new Uint8Array(l.saldiff.data.buffer));
        await appendFile(path.join(dir, 'frames.yuv'), frame.data.subarray(0, yuvFrameSize(frame.width, frame.height)));
        listed.push({ ptsMs: frame.ptsMs, seq, proxy: l.proxy, detections: l.detections });
        await this.writeMeta(dir, frame, cameraId, listed);
        st.count++;
        return 'stored';
      } catch (e) {
        st.failed = true;
        this.o.onError?.(cameraId, e instanceof Error ? e : new Error(String(e)));
        return 'error';
      }
    });
    st.queue = run.finally(() => { st.pending--; });
    return run;
  }

  /**
   * A folder's frame list. On first use in this process, from its meta.json, with the data files cut back to the
   * frames it lists (a crash between the appends and meta.json leaves a partial tail; it is dropped, never misread).
   */
  private async open(dir: string, frame: YuvFrame): Promise<{ listed: FrameEntry[]; loaded: number }> {
    const known = this.dirs.get(dir);
    if (known) return { listed: known, loaded: 0 };
    await mkdir(dir, { recursive: true });
    const metaFile = path.join(dir, 'meta.json');
    const listed: FrameEntry[] = existsSync(metaFile) ? (JSON.parse(await readFile(metaFile, 'utf8')) as { frames: FrameEntry[] }).frames.map(({ ptsMs, seq, proxy, detections }) => ({ ptsMs, seq, proxy, detections })) : [];
    const { rows, cols } = mbGrid(frame.width, frame.height);
    const n = listed.length;
    for (const [f, per] of [['sal.f32', rows * cols * 4], ['saldiff.f32', rows * cols * 4], ['frames.yuv', yuvFrameSize(frame.width, frame.height)]] as const) {
      const file = path.join(dir, f);
      if (existsSync(file)) await truncate(file, n * per);
      else if (n > 0) throw new Error(`${file} is missing but meta.json lists ${n} frames`);
    }
    this.dirs.set(dir, listed);
    return { listed, loaded: n };
  }

  private async writeMeta(dir: string, frame: YuvFrame, cameraId: string, frames: FrameEntry[]): Promise<void> {
    const { rows, cols } = mbGrid(frame.width, frame.height);
    const meta = {
      video: `${cameraId} (decoded uploads)`, width: frame.width, height: frame.height, rows, cols, fps: null, startS: 0,
      lqQp: this.o.lqQp ?? 40, scoreThreshold: 0.3, detector: path.basename(this.o.modelPath), source: 'server label store',
      frames: frames.map((f, index) => ({ index, ...f })),
    };
    // written whole to a temporary name, then renamed: meta.json is always a complete file
    const tmp = path.join(dir, 'meta.json.tmp');
    await writeFile(tmp, JSON.stringify(meta, null, 1));
    await rename(tmp, path.join(dir, 'meta.json'));
  }

  /** Waits for queued labels, then releases the gradient model. */
  async close(): Promise<void> {
    await Promise.all([...this.cams.values()].map((c) => c.queue));
    await this.grad.release();
  }
}
