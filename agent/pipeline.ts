/**
 * The edge path of one segment, without I/O of its own:
 *   frames → cheap model on every k-th frame (AccMPEG importance) → render under the current knobs
 *   (QP map, encode) → on every N-th segment the accuracy monitor's HQ reference frame → packed segment
 * and, when a fresh DNNGrad map is in from the server, OneAdapt's probes of the latest segment on a worker
 * thread (oneadapt/probe-pool.ts) while the caller goes on with the next segment; their step moves the
 * knobs for the segments after it. The agent (and bench:edge) feed it frames and take packed segments.
 */
import type { MbMap, YuvFrame } from '../encoder/frame.ts';
import { encodeSegment, type Codec } from '../encoder/index.ts';
import { meanMap } from '../cheapmodel/qpmap.ts';
import { calibrateThreshold, sampleFromSaliency, type CalibrationSample } from '../cheapmodel/calibrate.ts';
import { GraceSegmentCodec, type GraceRendered } from '../grace/segment.ts';
import type { AdaptOptions, OneAdaptController, Decision } from '../oneadapt/adapt.ts';
import { DEFAULT_KNOBS } from '../oneadapt/knobs.ts';
import type { ProbeRunner } from '../oneadapt/probe-pool.ts';
import { gradToSourceGrid, renderSegment, type Rendered, type RenderKnobs, type RenderOptions } from '../oneadapt/render.ts';
import { contentSignature } from '../oneadapt/scene.ts';
import { MAX_FRAME_SIDE, newSegmentId, packSegment, PROTOCOL_VERSION, segmentWireBytes, type Reply, type SegmentHeader } from '../wire/protocol.ts';
import { decodeMbMap, MAX_MB_CELLS } from '../wire/mbmap.ts';
import { mbGrid } from '../encoder/frame.ts';
import type { AgentSettings } from '../config/schema.ts';
import { ACCURACY, frameF1 } from '../detector/accuracy.ts';
import type { Detection } from '../detector/postprocess.ts';

/** What the pipeline needs from a cheap model (cheapmodel/model.ts implements it). */
export interface ImportanceModel {
  importance(frame: YuvFrame): Promise<MbMap>;
}

export interface SegmentOutput {
  segmentId: string;
  seq: number;
  header: SegmentHeader;
  /** header + video + reference, as the uplink sends it */
  packed: Buffer;
  rendered: Rendered | GraceRendered;
  knobs: RenderKnobs;
  /** the last sent frame at source size (the caller's copy: the status page shows it) */
  refFrame: YuvFrame;
  /** bytes of the monitor's reference frame (0 on segments without one) */
  refBytes: number;
  /** every byte this segment puts on the wire: video, reference, headers */
  wire: ReturnType<typeof segmentWireBytes>;
  /** cheap-model seconds per scored frame (null without AccMPEG) */
  cheapS: number | null;
  /** seconds to render (encode) the segment */
  encodeS: number;
}

export interface ProbeInfo {
  segment: number;
  probeMs: number;
  scale: number;
}

interface ProbeJob {
  seq: number;
  frames: YuvFrame[];
  importance: MbMap | null;
  knobs: RenderKnobs;
  opts: RenderOptions;
  /** video bytes sent for the segment and what it uploaded besides */
  bytes: number;
  overheadBytes: number;
  probeWidth: number;
}

export interface EdgePipelineOptions {
  /** the camera identity for this run (fixed at start: a deviceId change in the file applies after a restart) */
  deviceId?: string;
  /** runs the probes off the event loop; null: no probes (knobs hold) */
  probes: ProbeRunner | null;
  onDecision?: (d: Decision, info: ProbeInfo) => void;
  onProbeError?: (e: Error, segment: number) => void;
  /** the local accuracy monitor scored a segment (monitor.source local) or failed to */
  onLocalF1?: (f1: number, segment: number) => void;
  onLocalMonitorError?: (e: Error, segment: number) => void;
  /** OneAdapt decisions kept in `decisions` (the most recent; default 100; Infinity keeps all) */
  maxDecisions?: number;
}

/** default `maxDecisions` */
export const DEFAULT_MAX_DECISIONS = 100;

export class EdgePipeline {
  /** AccMPEG's cheap model (null: uniform QP) */
  cheap: ImportanceModel | null = null;
  /** OneAdapt's controller (null: fixed knobs) */
  oneadapt: OneAdaptController | null = null;
  /** OneAdapt's most recent decisions, oldest first (bounded by `maxDecisions`) */
  readonly decisions: Decision[] = [];
  /** decisions taken since start (also those no longer kept in `decisions`) */
  decisionsTotal = 0;
  /** the source frame size of the latest segment (a DNNGrad frame is that size or smaller); null before one */
  private srcSize: { width: number; height: number } | null = null;
  /** probes started / skipped because the previous one was still running */
  probesStarted = 0;
  probesSkipped = 0;
  private seq = 0;
  /** latest DNNGrad from the server (on the streamed frame's MB grid, of that size); `fresh` until one
   * probe has used it (no reply → knobs hold) */
  private lastGrad: { map: MbMap; width: number | null; height: number | null; proxy: number; fresh: boolean } | null = null;
  /** an F1 from the accuracy monitor not yet given to the controller */
  private freshF1: number | null = null;
  /** what the last segment cost besides its video (headers) and the monitor's mean reference size */
  private lastHeaderBytes = 0;
  private refBytesMean: number | null = null;
  private inflight: Promise<void> | null = null;
  /** Grace++ segment codec, loaded on the first segment with encoder.codec = grace */
  private grace: GraceSegmentCodec | null = null;
  /** AccMPEG α re-calibration: the cheap model's map of each recent segment's last frame (until its reply), the
   * samples (map + the server's label of that frame) and the α they give (null: none yet, the configured α) */
  private pendingMaps = new Map<string, { p: MbMap; width: number; height: number }>();
  private calibSamples: CalibrationSample[] = [];
  calibratedThreshold: number | null = null;
  /** the local accuracy monitor (monitor.source local): the camera's copy of the server's detector (null: none) */
  localDetector: { detect(frame: YuvFrame): Promise<Detection[]> } | null = null;
  /** monitored segments awaiting their reply: original frames and which sent frame the server scored for each */
  private pendingLocal = new Map<string, { seq: number; picks: { frame: YuvFrame; sentIdx: number; streamW: number; streamH: number }[] }>();
  /** local scorings run one after another, off the reply handler; at most 2 waiting or running (the rest skipped) */
  private localChain: Promise<void> = Promise.resolve();
  private localQueued = 0;
  /** the newest segment the local monitor has scored */
  private localScoredSeq = -1;
  /** local scorings skipped because the detector was behind */
  localSkipped = 0;
  /** the monitor's source as the agent started (monitor.source is restart-only); null: read from the settings */
  monitorSource: 'upload' | 'local' | null = null;
  /** the latest segment, kept until it is probed or the next one replaces it */
  private lastJob: ProbeJob | null = null;

  constructor(private readonly o: EdgePipelineOptions) {}

  /** The knobs the settings fix (what is used without OneAdapt, and where OneAdapt starts). */
  static fixedKnobs(s: AgentSettings): RenderKnobs {
    return { resolution: 1, fps: s.source.fps ?? 10, qp: s.cheapModel.enabled ? s.cheapModel.highQp : s.encoder.baseQp, threshold: s.cheapModel.threshold };
  }

  /** OneAdapt's settings from the config (the same controller bench:oneadapt runs); the AccMPEG threshold
   * is a knob only with a cheap model. */
  static adaptOptions(s: AgentSettings, withCheapModel: boolean): AdaptOptions {
    const o = s.oneadapt;
    const fixed = EdgePipeline.fixedKnobs(s);
    return {
      enabled: withCheapModel ? ['resolution', 'fps', 'qp', 'threshold'] : ['resolution', 'fps', 'qp'],
      lambda: o.lambdaBw,
      lr: o.lr,
      deadband: o.deadband,
      onSceneChange: o.onSceneChange,
      targetKbps: o.targetKbps,
      targetF1: o.targetF1,
      f1Mode: o.f1Mode,
      f1Margin: o.f1Margin,
      // start from the configured values where they are on the knobs' lists (else the expensive end)
      start: {
        qp: DEFAULT_KNOBS.qp.values.includes(fixed.qp) ? fixed.qp : undefined,
        threshold: DEFAULT_KNOBS.threshold.values.includes(fixed.threshold) ? fixed.threshold : undefined,
      },
    };
  }

  /** The knobs a segment is rendered with now: the settings' fixed values, overridden by OneAdapt's. */
  knobs(s: AgentSettings): RenderKnobs {
    const fixed = EdgePipeline.fixedKnobs(s);
    if (s.cheapModel.calibrate.enabled && this.calibratedThreshold !== null) fixed.threshold = this.calibratedThreshold;
    return { ...fixed, ...(this.oneadapt?.values() ?? {}) };
  }

  /**
   * A sample for α's re-calibration: the server's DNNGrad of a segment's last frame (the gradient of OneAdapt's
   * proxy on the decoded frame, per MB: a saliency label, though not the saldiff label the model was trained on)
   * beside the cheap model's map of it. Matched by segment id (seq restarts with the process; the outbox does not).
   */
  private calibrate(r: Reply, map: MbMap, s: AgentSettings['cheapModel']): void {
    const mine = this.pendingMaps.get(r.segmentId);
    this.pendingMaps.delete(r.segmentId);
    if (!s.calibrate.enabled || !r.dnngrad || !mine) return;
    const d = r.dnngrad;
    const g = gradToSourceGrid(map, d.width ?? mine.width, d.height ?? mine.height, mine.width, mine.height);
    if (g.rows !== mine.p.rows || g.cols !== mine.p.cols) return;
    this.calibSamples.push(sampleFromSaliency(mine.p, g));
    while (this.calibSamples.length > s.calibrate.samples) this.calibSamples.shift();
    if (this.calibSamples.length >= s.calibrate.minSamples) {
      this.calibratedThreshold = calibrateThreshold(this.calibSamples, { smooth: s.smooth, minFraction: s.minFraction, dilate: s.dilate }, s.calibrate.targetRecall) ?? this.calibratedThreshold;
    }
  }

  /** Segments processed so far. */
  get segments(): number {
    return this.seq;
  }

  /**
   * The macroblock grid a reply's DNNGrad map must have: that of the frame size it names (the streamed size; absent:
   * the source size), which may not exceed this camera's source frame (the resolution knob only scales down) nor
   * the protocol's largest frame. Throws when the reply's declared grid is not that one. Without any frame size
   * (none in the reply, no segment yet) the declared grid is taken, bounded by the protocol's largest frame.
   */
  private expectedGradGrid(d: NonNullable<Reply['dnngrad']>): { rows: number; cols: number } {
    const src = this.srcSize;
    const w = d.width ?? src?.width;
    const h = d.height ?? src?.height;
    if (w === undefined || h === undefined) {
      // no frame size in the reply and no segment yet (a reply to another run's segment): only the protocol's bound
      if (!(d.rows > 0 && d.cols > 0 && d.rows * d.cols <= MAX_MB_CELLS)) throw new Error(`DNNGrad reply declares a ${d.rows}x${d.cols} map, more than the largest frame's ${MAX_MB_CELLS} macroblocks`);
      return { rows: d.rows, cols: d.cols };
    }
    const maxW = src?.width ?? MAX_FRAME_SIDE;
    const maxH = src?.height ?? MAX_FRAME_SIDE;
    if (w > maxW || h > maxH) throw new Error(`DNNGrad reply's frame size ${w}x${h} is larger than this camera's ${maxW}x${maxH}`);
    const g = mbGrid(w, h);
    if (d.rows !== g.rows || d.cols !== g.cols) throw new Error(`DNNGrad reply declares a ${d.rows}x${d.cols} map, the macroblock grid of ${w}x${h} is ${g.rows}x${g.cols}`);
    return g;
  }

  /** Take the server's reply: the monitor's F1 and the DNNGrad map drive the next probe. Throws on a DNNGrad map
   * that is not on the expected grid (checked before it is inflated). */
  onReply(r: Reply, s?: AgentSettings): void {
    if (r.f1) this.freshF1 = r.f1.f1;
    const local = this.pendingLocal.get(r.segmentId);
    if (local) {
      this.pendingLocal.delete(r.segmentId);
      this.scoreLocally(local.seq, local.picks, r.detections);
    }
    const d = r.dnngrad;
    if (!d) return;
    const map = decodeMbMap(Buffer.from(d.data, 'base64'), this.expectedGradGrid(d));
    if (s) this.calibrate(r, map, s.cheapModel);
    this.setGradient(map, d.proxy, d.width ?? null, d.height ?? null);
  }

  /**
   * The local monitor: the camera's detector on its original frames is the reference, the server's detections on
   * the frames it received (scaled to the source size) are scored against it with the product's F1 (ACCURACY).
   * The mean over the monitored frames goes to the controller like an uploaded reference's F1.
   */
  private scoreLocally(seq: number, picks: { frame: YuvFrame; sentIdx: number; streamW: number; streamH: number }[], dets: Reply['detections']): void {
    const det = this.localDetector;
    if (!det) return;
    if (this.localQueued >= 2) {
      this.localSkipped++; // the detector is behind: frames must not pile up
      return;
    }
    this.localQueued++;
    this.localChain = this.localChain
      .then(async () => {
        const f1s: number[] = [];
        for (const p of picks) {
          const server = dets[p.sentIdx];
          if (!server) continue; // the reply scored fewer frames than were sent: nothing to compare
          const sx = p.frame.width / p.streamW, sy = p.frame.height / p.streamH;
          const test = server.map(([x1, y1, x2, y2, score, classId]) => ({ x1: x1 * sx, y1: y1 * sy, x2: x2 * sx, y2: y2 * sy, score, classId }));
          f1s.push(frameF1(test, await det.detect(p.frame), ACCURACY).f1);
        }
        if (f1s.length === 0) return;
        const f1 = f1s.reduce((a, b) => a + b, 0) / f1s.length;
        // replies may come out of order: an older segment's F1 never replaces a newer one's
        if (seq < this.localScoredSeq) return;
        this.localScoredSeq = seq;
        this.freshF1 = f1;
        this.o.onLocalF1?.(f1, seq);
      })
      .catch((e: unknown) => this.o.onLocalMonitorError?.(e instanceof Error ? e : new Error(String(e)), seq))
      .finally(() => {
        this.localQueued--;
      });
  }

  /** Resolves when no local scoring is waiting or running. */
  async localIdle(): Promise<void> {
    await this.localChain;
  }

  /** A DNNGrad map, the proxy value O it was taken at and the size of the frame it was taken on (null: source size). */
  setGradient(map: MbMap, proxy: number, width: number | null = null, height: number | null = null): void {
    this.lastGrad = { map, width, height, proxy, fresh: true };
    this.tryProbe(false);
  }

  /**
   * One segment through the edge path. Takes ownership of `frames`: when a probe starts, their pixel
   * buffers move to the probe worker (detached here); `refFrame` in the output is the caller's copy.
   */
  async process(frames: YuvFrame[], srcFps: number, s: AgentSettings): Promise<SegmentOutput> {
    let importance: MbMap | null = null;
    let lastMap: MbMap | null = null;
    let cheapS: number | null = null;
    if (this.cheap) {
      const t = performance.now();
      // AccMPEG: one map per chunk, the mean of the maps of every k-th frame and the last frame
      // (k = segment length gives the paper's "first and last frame")
      const k = s.cheapModel.everyK;
      const picked = frames.filter((_, i) => i % k === 0 || i === frames.length - 1);
      const maps: MbMap[] = [];
      for (const f of picked) maps.push(await this.cheap.importance(f));
      importance = meanMap(maps);
      lastMap = maps[maps.length - 1];
      cheapS = (performance.now() - t) / 1000 / picked.length;
    }
    this.srcSize = { width: frames[0].width, height: frames[0].height };
    const knobs = this.knobs(s);
    const opts: RenderOptions = {
      srcFps,
      lowQpDelta: s.cheapModel.lowQp - s.cheapModel.highQp,
      assignment: { smooth: s.cheapModel.smooth, minFraction: s.cheapModel.minFraction, dilate: s.cheapModel.dilate },
      encoder: { codec: (s.encoder.codec === 'hevc' ? 'h265' : 'h264') as Codec, preset: s.encoder.preset as never },
    };
    const t0 = performance.now();
    // Grace++ segments: every frame, ladder rung per frame by target bitrate (knobs other than fps unused, no probes)
    const grace = s.encoder.codec === 'grace';
    if (grace) this.grace ??= await GraceSegmentCodec.load();
    const rendered: Rendered | GraceRendered = grace
      ? await this.grace!.render(frames, { targetKbps: s.encoder.graceKbps, fps: srcFps })
      : await renderSegment(frames, knobs, importance, opts);
    const encodeS = (performance.now() - t0) / 1000;
    const seq = this.seq++;
    // the accuracy monitor: on every N-th segment, the last sent frame at source size as one high-quality I-frame
    // (monitor.source local: nothing uploaded; the original frames wait for the reply, scored by scoreLocally)
    const every = s.monitor.referenceEvery;
    const refIdx = rendered.sent[rendered.sent.length - 1];
    const monitored = every > 0 && seq % every === 0;
    const local = (this.monitorSource ?? s.monitor.source) === 'local';
    const ref = monitored && !local ? await encodeSegment([frames[refIdx]], [null], { baseQp: s.monitor.referenceQp, gop: 1, codec: 'h264' }) : null;
    const cameraId = this.o.deviceId ?? s.deviceId;
    const segmentId = newSegmentId(cameraId);
    if (monitored && local && this.localDetector) {
      const picks = s.monitor.localFrames.filter((p) => p < frames.length).map((p) => {
        // the sent frame shown at position p: the last one sent at or before it
        let sentIdx = 0;
        rendered.sent.forEach((src, j) => { if (src <= p) sentIdx = j; });
        return { frame: { ...frames[p], data: frames[p].data.slice() }, sentIdx, streamW: rendered.encoded.width, streamH: rendered.encoded.height };
      });
      this.pendingLocal.set(segmentId, { seq, picks });
      for (const k of this.pendingLocal.keys()) if (this.pendingLocal.size > 8) this.pendingLocal.delete(k); // oldest first (replies lost): at most 8 segments × localFrames frames held
    }
    if (lastMap && s.cheapModel.calibrate.enabled && rendered.sent[rendered.sent.length - 1] === frames.length - 1) {
      // the server's DNNGrad comes for the last sent frame: when that is the segment's last frame (which the cheap
      // model scored), keep its map until the reply
      this.pendingMaps.set(segmentId, { p: lastMap, width: frames[0].width, height: frames[0].height });
      for (const k of this.pendingMaps.keys()) if (this.pendingMaps.size > 64) this.pendingMaps.delete(k); // oldest first
    }
    const header: SegmentHeader = {
      type: 'segment',
      v: PROTOCOL_VERSION,
      segmentId,
      cameraId,
      seq,
      codec: rendered.encoded.codec,
      width: rendered.encoded.width,
      height: rendered.encoded.height,
      fps: knobs.fps,
      frameCount: rendered.sent.length,
      ptsMs: rendered.sent.map((i) => frames[i].ptsMs),
      capturedAt: Date.now(),
      knobs: { ...knobs },
      videoBytes: rendered.encoded.data.length,
      ...(ref ? { ref: { frameIndex: rendered.sent.length - 1, codec: 'h264' as const, width: frames[refIdx].width, height: frames[refIdx].height, bytes: ref.data.length } } : {}),
    };
    const packed = packSegment(header, rendered.encoded.data, ref?.data);
    // the resource term counts what every segment uploads besides its video: headers, the amortised reference frame
    const overheadBytes = this.lastHeaderBytes + (every > 0 && this.refBytesMean !== null ? this.refBytesMean / every : 0);
    const wire = segmentWireBytes(header);
    this.lastHeaderBytes = wire.headers;
    if (ref) this.refBytesMean = this.refBytesMean === null ? ref.data.length : 0.8 * this.refBytesMean + 0.2 * ref.data.length;
    // the reference frame stays with the caller (status page); the probe may move the others' buffers to its worker
    const refFrame = { ...frames[refIdx], data: frames[refIdx].data.slice() };
    this.lastJob = grace ? null : { seq, frames, importance, knobs, opts, bytes: rendered.encoded.data.length, overheadBytes, probeWidth: s.oneadapt.probeWidth };
    this.tryProbe(true);
    return { segmentId, seq, header, packed, rendered, knobs, refFrame, refBytes: ref?.data.length ?? 0, wire, cheapS, encodeS };
  }

  /**
   * Start OneAdapt's probes on the worker when a fresh gradient is in, the worker is free and the latest
   * segment has not been probed yet: called after each segment and when a reply brings a gradient (so a
   * reply that arrives between segments is used at once, on the frames of the latest segment). One probe
   * at a time: a busy worker leaves the gradient fresh for the next segment.
   */
  private tryProbe(fromSegment: boolean): void {
    const ctrl = this.oneadapt;
    const grad = this.lastGrad;
    const job = this.lastJob;
    const runner = this.o.probes;
    if (!ctrl || !grad?.fresh || !runner || !job) return;
    if (runner.busy) {
      if (fromSegment) this.probesSkipped++;
      return;
    }
    // the knobs have moved since this segment was rendered: its probe would measure other neighbours
    if (Object.entries(ctrl.values()).some(([k, v]) => job.knobs[k as keyof RenderKnobs] !== v)) return;
    this.lastJob = null; // its frames move to the worker
    grad.fresh = false;
    this.probesStarted++;
    const f1 = this.freshF1;
    this.freshF1 = null;
    const { frames, seq, bytes, overheadBytes } = job;
    const durationS = frames.length / job.opts.srcFps;
    const { width: w, height: h } = frames[0];
    const g = gradToSourceGrid(grad.map, grad.width ?? w, grad.height ?? h, w, h);
    const signature = contentSignature(frames[0]); // before the frames move to the worker
    const run = runner
      .probe({ knobs: ctrl.knobs, frames, importance: job.importance, g, base: job.knobs, opts: job.opts, sentBytes: bytes, probeWidth: job.probeWidth })
      .then((out) => {
        if (this.oneadapt !== ctrl) return; // OneAdapt was switched off or replaced meanwhile: the probe is stale
        const d = ctrl.step(out.probes, { bytes: bytes + overheadBytes, durationS, proxy: grad.proxy, f1, overheadBytes, signature });
        this.recordDecision(d);
        this.o.onDecision?.(d, { segment: seq, probeMs: out.probeMs, scale: out.scale });
      })
      .catch((e: unknown) => this.o.onProbeError?.(e instanceof Error ? e : new Error(String(e)), seq))
      .finally(() => {
        if (this.inflight === run) this.inflight = null;
      });
    this.inflight = run;
  }

  private recordDecision(d: Decision): void {
    this.decisionsTotal++;
    this.decisions.push(d);
    const max = this.o.maxDecisions ?? DEFAULT_MAX_DECISIONS;
    if (this.decisions.length > max) this.decisions.splice(0, this.decisions.length - max);
  }

  /** Resolves when the probe in flight (if any) has stepped the knobs. */
  async settled(): Promise<void> {
    while (this.inflight) await this.inflight;
  }

  async stop(): Promise<void> {
    await this.settled();
    this.lastJob = null;
    await this.o.probes?.stop();
  }
}
