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
 * offer() never throws and never delays the reply: one frame is labelled at a time for the whole server (at most two
 * wait; more are skipped), a write error (disk full, bad permissions) stops labelling for that camera with the
 * reason logged, a labelling error loses that frame only, and the files written so far stay readable.
 */
import { mkdir, open, readdir, readFile, rename, truncate } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { YuvFrame } from '../encoder/frame.ts';
import { mbGrid, yuvFrameSize } from '../encoder/frame.ts';
import { GradientModel } from './onnxgrad/index.ts';
import { labelFrame, labelSetMeta } from './label-cli.ts';

export interface LabelStoreOptions {
  dir: string;
  modelPath: string;
  /** label every N-th segment of a camera (by its sequence number) */
  everyN: number;
  maxFramesPerCamera: number;
  lqQp?: number;
  /** `stopped`: labelling for this camera stopped (its folder or the disk failed); else only this frame was lost */
  onError?: (cameraId: string, err: Error, stopped: boolean) => void;
}

export type OfferResult = 'stored' | 'not-due' | 'busy' | 'full' | 'refused' | 'error';

/** camera ids become folder names: the config's device-id alphabet only */
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

interface FrameEntry { ptsMs: number; seq: number; proxy: number; detections: number }
interface CameraState { count: number | null; failed: boolean }

export class LabelStore {
  private readonly cams = new Map<string, CameraState>();
  /** frames listed in each folder's meta.json (loaded from disk on first use, so a restart appends) */
  private readonly dirs = new Map<string, FrameEntry[]>();
  /** one label at a time for the whole server (it competes with the detector for the cores), at most 2 waiting */
  private queue: Promise<unknown> = Promise.resolve();
  private pending = 0;
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
    if (!cam) this.cams.set(cameraId, (cam = { count: null, failed: false }));
    const st = cam;
    // labelling slower than the segments come: skip rather than queue frames without bound
    if (this.pending >= 2) return Promise.resolve('busy');
    this.pending++;
    const run = this.queue.then(() => this.label(cameraId, st, seq, frame));
    this.queue = run.finally(() => { this.pending--; });
    return run;
  }

  private async label(cameraId: string, st: CameraState, seq: number, frame: YuvFrame): Promise<OfferResult> {
    if (st.failed) return 'error';
    const report = (e: unknown, stopped: boolean): void => {
      try { this.o.onError?.(cameraId, e instanceof Error ? e : new Error(String(e)), stopped); } catch { /* a logger's fault is not ours */ }
    };
    let dir: string, listed: FrameEntry[];
    try {
      // every size folder a previous run left counts towards the camera's cap
      st.count ??= await this.framesOnDisk(cameraId);
      if (st.count >= this.o.maxFramesPerCamera) return 'full';
      // one folder per frame size (the agent's resolution knob may change it)
      dir = this.dirFor(cameraId, frame.width, frame.height);
      listed = await this.open(dir, frame);
    } catch (e) {
      st.failed = true; // the folder is unusable (unreadable meta.json, missing data): stop, keep what is there
      report(e, true);
      return 'error';
    }
    let l: Awaited<ReturnType<typeof labelFrame>>;
    try {
      l = await labelFrame(this.grad, frame, { lqQp: this.o.lqQp });
    } catch (e) {
      report(e, false); // this frame only
      return 'error';
    }
    try {
      // data first (flushed to disk), then meta.json: a reader never sees meta.json list a frame whose data is missing
      await appendDurable(path.join(dir, 'sal.f32'), new Uint8Array(l.sal.data.buffer));
      await appendDurable(path.join(dir, 'saldiff.f32'), new Uint8Array(l.saldiff.data.buffer));
      await appendDurable(path.join(dir, 'frames.yuv'), frame.data.subarray(0, yuvFrameSize(frame.width, frame.height)));
      listed.push({ ptsMs: frame.ptsMs, seq, proxy: l.proxy, detections: l.detections });
      await this.writeMeta(dir, frame, cameraId, listed);
      st.count++;
      return 'stored';
    } catch (e) {
      st.failed = true; // disk full or read-only: stop for this camera
      this.dirs.delete(dir); // the next process re-reads meta.json and cuts the files back to it
      report(e, true);
      return 'error';
    }
  }

  /** Frames listed by every size folder of a camera (unreadable meta.json files count as none). */
  private async framesOnDisk(cameraId: string): Promise<number> {
    const camDir = path.join(this.o.dir, cameraId);
    if (!existsSync(camDir)) return 0;
    let n = 0;
    for (const d of await readdir(camDir)) {
      try { n += (JSON.parse(await readFile(path.join(camDir, d, 'meta.json'), 'utf8')) as { frames: unknown[] }).frames.length; } catch { /* none */ }
    }
    return n;
  }

  /**
   * A folder's frame list. On first use in this process, from its meta.json, with the data files cut to the frames
   * that both meta.json lists and every data file holds whole: a crash between the appends and meta.json leaves a
   * partial tail (dropped), and a power loss can leave data shorter than meta.json (those frames are dropped too,
   * never padded or misread).
   */
  private async open(dir: string, frame: YuvFrame): Promise<FrameEntry[]> {
    const known = this.dirs.get(dir);
    if (known) return known;
    await mkdir(dir, { recursive: true });
    const metaFile = path.join(dir, 'meta.json');
    let listed: FrameEntry[] = existsSync(metaFile) ? (JSON.parse(await readFile(metaFile, 'utf8')) as { frames: FrameEntry[] }).frames.map(({ ptsMs, seq, proxy, detections }) => ({ ptsMs, seq, proxy, detections })) : [];
    const { rows, cols } = mbGrid(frame.width, frame.height);
    const files = [['sal.f32', rows * cols * 4], ['saldiff.f32', rows * cols * 4], ['frames.yuv', yuvFrameSize(frame.width, frame.height)]] as const;
    let n = listed.length;
    for (const [f, per] of files) n = Math.min(n, existsSync(path.join(dir, f)) ? Math.floor(statSync(path.join(dir, f)).size / per) : 0);
    for (const [f, per] of files) if (existsSync(path.join(dir, f))) await truncate(path.join(dir, f), n * per);
    if (n < listed.length) {
      listed = listed.slice(0, n);
      await this.writeMeta(dir, frame, path.basename(path.dirname(dir)), listed);
    }
    this.dirs.set(dir, listed);
    return listed;
  }

  private async writeMeta(dir: string, frame: YuvFrame, cameraId: string, frames: FrameEntry[]): Promise<void> {
    const meta = labelSetMeta(
      { video: `${cameraId} (decoded uploads)`, width: frame.width, height: frame.height, fps: null, startS: 0, lqQp: this.o.lqQp, modelPath: this.o.modelPath },
      frames.map((f, index) => ({ index, ...f })),
      { source: 'server label store' },
    );
    // written whole to a temporary name, flushed, then renamed: meta.json is always a complete file
    const tmp = path.join(dir, 'meta.json.tmp');
    const h = await open(tmp, 'w');
    try {
      await h.writeFile(JSON.stringify(meta, null, 1));
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, path.join(dir, 'meta.json'));
  }

  /** Waits for queued labels, then releases the gradient model. */
  async close(): Promise<void> {
    await this.queue;
    await this.grad.release();
  }
}

/** Append and flush to disk before returning. */
async function appendDurable(file: string, data: Uint8Array): Promise<void> {
  const h = await open(file, 'a');
  try {
    await h.write(data);
    await h.sync();
  } finally {
    await h.close();
  }
}
