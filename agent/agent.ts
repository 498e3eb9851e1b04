/**
 * The edge agent controller: builds the components the settings ask for, starts them in order,
 * stops them in reverse, and runs the per-segment loop
 *   capture → cheap model (AccMPEG importance) → render under knobs → outbox (SQLite) → uplink
 *   server reply (detections, F1, DNNGrad) → OneAdapt probes + step → knobs for the next segment.
 * The math lives in pure modules (cheapmodel/qpmap, oneadapt/*); this file only wires and logs.
 */
import { readFileSync } from 'node:fs';
import { TokenSet } from '../proc/auth.ts';
import path from 'node:path';
import type { Logger } from 'pino';
import { FfmpegSource, readAhead, segments } from '../media/capture.ts';
import { Uplink } from './uplink.ts';
import { AgentStore } from './store.ts';
import { AgentMetrics } from './metrics.ts';
import { MqttControl, type CommandResponse, type AgentState, type CommandHandlers, type SnapshotResult } from './mqtt.ts';
import { renderFramePng, StatusHistory, StatusPage, type LatestFrame } from './status-page.ts';
import { SdNotify } from '../proc/sdnotify.ts';
import type { YuvFrame } from '../encoder/frame.ts';
import { CheapModel, DEFAULT_CHEAP_MODEL } from '../cheapmodel/model.ts';
import { OneAdaptController, type AdaptOptions, type Decision } from '../oneadapt/adapt.ts';
import { DEFAULT_KNOBS } from '../oneadapt/knobs.ts';
import { ProbeRunner } from '../oneadapt/probe-pool.ts';
import type { Reply } from '../wire/protocol.ts';
import { EdgePipeline, type ImportanceModel } from './pipeline.ts';
import { REMOTE_CONFIG_KEYS, type AgentSettings } from '../config/schema.ts';
import type { ConfigManager } from '../config/watch.ts';

export type { ImportanceModel } from './pipeline.ts';

export interface AgentDeps {
  logger: Logger;
  config?: ConfigManager<any>;
  /** loads the AccMPEG cheap model; injected so tests can run without it */
  loadCheapModel?: (file: string) => Promise<ImportanceModel>;
  /** an already open store (shared with the config manager's versions); the agent opens its own otherwise */
  store?: AgentStore;
  /** first capture retry delay (doubles up to 60 s); default 1000 ms */
  retryMs?: number;
  /** stop after this many segments (demo/tests); default: run until stopped */
  maxSegments?: number;
  /** /healthz and the watchdog call the pipeline stuck after this long without a segment; default max(30 s, 5 segments) */
  stallMs?: number;
}

export type PipelineStage = 'source' | 'encoder' | 'store';

/** An error of one pipeline stage (what /healthz and the systemd status name). */
export class PipelineStageError extends Error {
  constructor(readonly stage: PipelineStage, cause: unknown) {
    super(`${stage}: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'PipelineStageError';
  }
}

async function inStage<T>(stage: PipelineStage, f: () => Promise<T> | T): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw e instanceof PipelineStageError ? e : new PipelineStageError(stage, e);
  }
}

/** A PEM file's contents (TLS settings hold paths). */
const pem = (f: string | undefined): Buffer | undefined => (f ? readFileSync(f) : undefined);

/** Settings read once at start: a change is recorded but takes effect only after a restart. */
export const RESTART_ONLY = ['deviceId', 'mqtt', 'http', 'storage', 'profile'] as const;

export function openAgentStore(s: AgentSettings, log: Logger): AgentStore {
  return new AgentStore(path.join(s.storage.dir, `${s.deviceId}.db`), {
    maxBytes: s.storage.outboxMaxBytes,
    maxRows: s.storage.outboxMaxRows,
    logger: log.child({ component: 'store' }),
  });
}

export class Agent {
  private settings: AgentSettings;
  /** the camera's identity for this run (a deviceId change in the file applies after a restart) */
  readonly deviceId: string;
  private readonly log: Logger;
  private store: AgentStore | null = null;
  private uplink: Uplink | null = null;
  private mqtt: MqttControl | null = null;
  private page: StatusPage | null = null;
  private readonly sd = new SdNotify();
  readonly metrics: AgentMetrics;
  private readonly history = new StatusHistory(600);
  /** the per-segment edge path: cheap model, render, monitor reference, probes (agent/pipeline.ts) */
  private readonly pipeline: EdgePipeline;
  private source: FfmpegSource | null = null;
  private loop: Promise<void> | null = null;
  private wantSource = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs: number;
  private housekeepingTimer: NodeJS.Timeout | null = null;
  /** capture failures so far (open errors and broken streams) */
  captureFailures = 0;
  /** the last error that stopped the pipeline, by stage; cleared in effect by the next segment */
  private pipelineError: { stage: PipelineStage; message: string; at: number } | null = null;
  private lastSegmentAt = Date.now();
  /** file sources: where to resume after a failure (seconds), so a retry does not replay the file */
  private sourcePosS = 0;
  /** decoder complaints from the source (damaged or truncated input) */
  decodeIssues = 0;
  private decodeLog = { at: 0, suppressed: 0 };
  private latest: LatestFrame | null = null;
  private lastF1: number | null = null;
  private uplinkKbps: Record<string, number> = {};
  private lastBitrate: number | null = null;
  private sentAt = new Map<string, number>();
  readonly replies: Reply[] = [];
  segmentsEncoded = 0;

  constructor(settings: AgentSettings, private readonly deps: AgentDeps) {
    this.settings = settings;
    this.deviceId = settings.deviceId;
    this.log = deps.logger;
    this.metrics = new AgentMetrics({ defaultLabels: { device: settings.deviceId } });
    this.retryMs = deps.retryMs ?? 1000;
    this.pipeline = new EdgePipeline({
      deviceId: settings.deviceId,
      probes: new ProbeRunner(),
      onDecision: (d, info) => {
        this.metrics.observeProbe(info.probeMs / 1000);
        this.log.info({ component: 'oneadapt', segment: info.segment, ...d, probeMs: Math.round(info.probeMs), probeScale: info.scale }, 'knob update');
      },
      onProbeError: (e, segment) => this.log.error({ component: 'oneadapt', segment, err: e.message }, 'probe failed; knobs hold'),
    });
  }

  /** OneAdapt's knob decisions so far (oldest first). */
  get decisions(): readonly Decision[] {
    return this.pipeline.decisions;
  }

  async start(): Promise<void> {
    const s = this.settings;
    this.store = this.deps.store ?? openAgentStore(s, this.log);
    this.metrics.setQueueDepth(this.store.depth());
    this.housekeeping();
    this.housekeepingTimer = setInterval(() => this.housekeeping(), 3600_000);
    this.housekeepingTimer.unref();
    this.pipeline.cheap = await this.loadCheapModel(s);
    this.setupOneAdapt();
    this.uplink = this.makeUplink(s);
    if (s.mqtt.enabled) {
      this.mqtt = new MqttControl({
        url: s.mqtt.url,
        deviceId: s.deviceId,
        baseTopic: s.mqtt.baseTopic,
        discoveryPrefix: s.mqtt.discoveryPrefix,
        username: s.mqtt.username,
        password: s.mqtt.password,
        tls: { ca: pem(s.mqtt.ca), cert: pem(s.mqtt.cert), key: pem(s.mqtt.key) },
        handlers: this.handlers(),
        configKeys: REMOTE_CONFIG_KEYS,
        responses: { get: (k) => this.store!.getCommandResponse(k) as CommandResponse | undefined, put: (k, r) => this.store!.putCommandResponse(k, r) },
        logger: this.log.child({ component: 'mqtt' }),
      });
      this.mqtt.on('connect', () => this.metrics.setMqttConnected(true));
      this.mqtt.on('disconnect', () => this.metrics.setMqttConnected(false));
      this.mqtt.on('command', (ev) => this.metrics.mqttCommand(ev.cmd, ev.status));
      await this.mqtt.start();
    }
    this.page = new StatusPage({
      provider: { getState: () => this.state(), getHistory: () => this.history.list(), getLatestFrame: () => this.latest, getHealth: () => this.health() },
      metrics: this.metrics,
      tokens: new TokenSet(s.http.tokens),
      metricsPublic: s.http.metricsPublic,
      host: s.http.host,
      port: s.http.port,
      title: `camstream ${s.deviceId}`,
    });
    await this.page.start();
    this.deps.config?.on('change', (next: AgentSettings, _prev: AgentSettings, keys: string[]) => this.applyConfig(next, keys));
    this.startSource();
    await this.sd.ready(`streaming ${s.source.uri}`);
    // systemd restarts a stuck pipeline (source, encoder, store); a server outage is not a reason to
    this.sd.watchdog(() => this.pipelineHealth());
    this.log.info({ component: 'agent', device: s.deviceId, profile: s.profile, http: s.http.port }, 'agent started');
  }

  /** Retention: metrics history older than storage.metricsRetentionHours, acknowledged outbox ids older than a day. */
  private housekeeping(): void {
    if (!this.store) return;
    const retentionMs = this.settings.storage.metricsRetentionHours * 3600_000;
    const metrics = this.store.pruneMetrics(retentionMs);
    const acked = this.store.pruneAcked(Date.now() - 24 * 3600_000);
    if (metrics || acked) this.log.info({ component: 'store', metrics, acked }, 'pruned old rows');
  }

  private makeUplink(s: AgentSettings): Uplink {
    const up = new Uplink(this.store!, {
      url: s.server.url,
      cameraId: this.deviceId,
      token: s.server.token,
      tls: { ca: pem(s.server.ca), cert: pem(s.server.cert), key: pem(s.server.key) },
    });
    up.on('reply', (r, bytes) => this.onReply(r, bytes));
    up.on('connected', () => this.log.info({ component: 'uplink', url: s.server.url }, 'connected to server'));
    up.on('disconnected', (why) => this.log.warn({ component: 'uplink', why }, 'server connection lost; segments stay in the outbox'));
    up.on('serverError', (error, segment, kept) =>
      this.log.error({ component: 'uplink', segment, error, kept }, kept ? 'server could not process segment; kept in the outbox for a retry' : 'server rejected a bad segment'),
    );
    up.on('fatal', (error) => this.log.error({ component: 'uplink', error }, 'uplink stopped'));
    up.start();
    return up;
  }

  private async loadCheapModel(s: AgentSettings): Promise<ImportanceModel | null> {
    if (!s.cheapModel.enabled) return null;
    const file = s.cheapModel.path ?? DEFAULT_CHEAP_MODEL;
    const load = this.deps.loadCheapModel ?? ((f: string) => CheapModel.load(f));
    const model = await load(file); // a model that does not load is an error naming the file
    this.log.info({ component: 'cheapmodel', model: file }, 'AccMPEG cheap model loaded');
    return model;
  }

  /** The controller's settings from the config (the same controller bench:oneadapt runs). */
  private adaptOptions(): AdaptOptions {
    const o = this.settings.oneadapt;
    const fixed = EdgePipeline.fixedKnobs(this.settings);
    return {
      enabled: this.pipeline.cheap ? ['resolution', 'fps', 'qp', 'threshold'] : ['resolution', 'fps', 'qp'],
      lambda: o.lambdaBw,
      lr: o.lr,
      deadband: o.deadband,
      onSceneChange: o.onSceneChange,
      targetKbps: o.targetKbps,
      targetF1: o.targetF1,
      // start from the configured values where they are on the knobs' lists (else the expensive end)
      start: {
        qp: DEFAULT_KNOBS.qp.values.includes(fixed.qp) ? fixed.qp : undefined,
        threshold: DEFAULT_KNOBS.threshold.values.includes(fixed.threshold) ? fixed.threshold : undefined,
      },
    };
  }

  /** Build the controller, or reconfigure the running one: a config reload keeps its knob positions and state. */
  private setupOneAdapt(): void {
    if (!this.settings.oneadapt.enabled) {
      this.pipeline.oneadapt = null;
      return;
    }
    if (this.pipeline.oneadapt) this.pipeline.oneadapt.reconfigure(this.adaptOptions());
    else this.pipeline.oneadapt = new OneAdaptController(this.adaptOptions());
  }

  /** Apply a new config: what can change live does; source/server changes restart those parts. */
  private applyConfig(next: AgentSettings, keys: string[]): void {
    const prev = this.settings;
    this.settings = next;
    this.log.level = next.log.level;
    const changed = (prefix: string): boolean => keys.some((k) => k.startsWith(prefix));
    if (changed('cheapModel.enabled') || changed('cheapModel.path')) {
      // swap the model without stopping capture; a model that fails to load keeps the old one
      void this.loadCheapModel(next)
        .then((m) => {
          this.pipeline.cheap = m;
          this.setupOneAdapt(); // the threshold knob exists only with a cheap model
        })
        .catch((e) => this.log.error({ component: 'cheapmodel', err: (e as Error).message }, 'cheap model change rejected; keeping the previous model'));
    } else if (changed('oneadapt')) {
      this.setupOneAdapt();
    }
    if (changed('source') || changed('encoder.segmentFrames')) void this.restartPipeline();
    if (changed('server') && this.store) {
      void this.uplink?.stop();
      try {
        this.uplink = this.makeUplink(next);
      } catch (e) {
        this.uplink = null;
        this.log.error({ component: 'uplink', err: (e as Error).message }, 'cannot start the uplink with the new server settings; segments stay in the outbox');
      }
    }
    const restartOnly = keys.filter((k) => RESTART_ONLY.some((p) => k === p || k.startsWith(p + '.')));
    if (restartOnly.length > 0) {
      this.log.warn({ component: 'config', keys: restartOnly, deviceId: this.deviceId }, 'these settings apply after a restart; until then the running values stay in force');
    }
    this.log.info({ component: 'config', keys }, 'config applied');
  }

  /** Start capturing; a source that fails (camera down, stream cut) is retried with backoff until stopped. */
  private startSource(): void {
    if (!this.wantSource) this.lastSegmentAt = Date.now(); // (re)started on purpose: not stuck yet
    this.wantSource = true;
    if (this.loop || this.retryTimer) return;
    const s = this.settings.source;
    const resumeS = s.kind === 'file' ? this.sourcePosS : 0;
    let src: FfmpegSource;
    try {
      src = new FfmpegSource({
        kind: s.kind, uri: s.uri, loop: s.loop, fps: s.fps ?? 10, width: s.width, height: s.height, realtime: s.kind === 'file',
        startS: resumeS || undefined,
        onDecodeError: (issue) => this.onDecodeIssue(s.uri, issue),
      });
    } catch (e) {
      this.captureFailures++;
      this.pipelineError = { stage: 'source', message: (e as Error).message, at: Date.now() };
      this.log.error({ component: 'capture', err: (e as Error).message, retryMs: this.retryMs }, 'cannot open source; retrying');
      this.scheduleRetry();
      return;
    }
    if (resumeS) this.log.info({ component: 'capture', source: s.uri, resumeS }, 'resuming the file where it stopped');
    this.source = src;
    this.metrics.setSourceRunning(true);
    this.loop = (async () => {
      let failed = false;
      let framesDone = 0;
      try {
        // the next segment is captured while this one is processed
        for await (const frames of readAhead(segments(src, this.settings.encoder.segmentFrames))) {
          await this.handleSegment(frames, src.fps);
          framesDone += frames.length;
          this.retryMs = this.deps.retryMs ?? 1000;
          if (this.deps.maxSegments && this.segmentsEncoded >= this.deps.maxSegments) {
            this.wantSource = false;
            src.stop(); // ends the segment being read ahead
            break;
          }
        }
        if (s.kind === 'file') this.sourcePosS = 0; // a clean end: the next start is from the beginning
      } catch (e) {
        failed = true;
        const stage = e instanceof PipelineStageError ? e.stage : 'source';
        const message = e instanceof PipelineStageError ? e.message.slice(stage.length + 2) : (e as Error).message;
        this.pipelineError = { stage, message, at: Date.now() };
        if (stage === 'source') this.captureFailures++;
        // resume after the frames already turned into segments (none of them is sent twice under a new id)
        if (s.kind === 'file') {
          if (framesDone > 0) this.sourcePosS = resumeS + framesDone / src.fps;
          else if (resumeS > 0 && s.loop) this.sourcePosS = 0; // nothing after that point: a looped file starts over
          else if (resumeS > 0) {
            this.wantSource = false; // nothing after that point and no loop: the file is done
            this.log.error({ component: 'capture', source: s.uri, atS: resumeS }, 'file source ends early (truncated?); capture finished');
          }
        }
        this.log.error({ component: stage === 'source' ? 'capture' : stage, err: message, frame: src.framesRead, retryMs: this.retryMs, resumeS: this.sourcePosS || undefined }, `${stage} failed; pipeline restarts`);
      } finally {
        src.stop();
        this.metrics.setSourceRunning(false);
        this.loop = null;
        this.source = null;
      }
      if (failed) this.scheduleRetry();
    })();
  }

  /** Log decoder complaints with their frame position: the first of a burst, then a count each second. */
  private onDecodeIssue(uri: string, issue: { frame: number; message: string }): void {
    this.decodeIssues++;
    const now = Date.now();
    if (now - this.decodeLog.at < 1000) {
      this.decodeLog.suppressed++;
      return;
    }
    this.log.warn({ component: 'capture', source: uri, frame: issue.frame, err: issue.message, more: this.decodeLog.suppressed || undefined }, 'decoder error in the source (damaged or truncated input)');
    this.decodeLog = { at: now, suppressed: 0 };
  }

  /** Source, encoder and store: what the systemd watchdog is fed on. */
  pipelineHealth(): { ok: boolean; reason?: string } {
    try {
      this.store?.depth();
    } catch (e) {
      return { ok: false, reason: `store: ${(e as Error).message}` };
    }
    if (!this.wantSource) return { ok: true };
    const e = this.pipelineError;
    if (e && e.at >= this.lastSegmentAt) return { ok: false, reason: `${e.stage}: ${e.message}` };
    const segS = this.settings.encoder.segmentFrames / (this.settings.source.fps ?? 10);
    const stallMs = this.deps.stallMs ?? Math.max(30_000, 5 * segS * 1000);
    const quietMs = Date.now() - this.lastSegmentAt;
    if (quietMs > stallMs) return { ok: false, reason: `pipeline stuck: no segment for ${Math.round(quietMs / 1000)} s` };
    return { ok: true };
  }

  /** /healthz: the pipeline and the uplink. */
  health(): { ok: boolean; reason?: string } {
    const p = this.pipelineHealth();
    if (!p.ok) return p;
    if (this.uplink?.fatalError) return { ok: false, reason: `uplink: ${this.uplink.fatalError}` };
    if (!this.uplink) return { ok: false, reason: 'uplink: not running' };
    return { ok: true };
  }

  private scheduleRetry(): void {
    if (!this.wantSource || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.wantSource) this.startSource();
    }, this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, 60_000);
  }

  private async stopSource(): Promise<void> {
    this.wantSource = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.source?.stop();
    await this.loop;
  }

  async restartPipeline(): Promise<void> {
    await this.stopSource();
    this.startSource();
  }

  /** Resolves when the outbox is empty (every segment acknowledged) or after timeoutMs. */
  async drained(timeoutMs: number): Promise<boolean> {
    const t0 = Date.now();
    while ((this.store?.depth() ?? 0) > 0) {
      if (Date.now() - t0 > timeoutMs) return false;
      await new Promise((r) => setTimeout(r, 100));
    }
    return true;
  }

  /** Resolves when the capture loop ends (file end, maxSegments, stop). */
  async finished(): Promise<void> {
    await this.loop;
  }

  private async handleSegment(frames: YuvFrame[], srcFps: number): Promise<void> {
    const s = this.settings;
    this.metrics.frameCaptured(frames.length);
    const out = await inStage('encoder', () => this.pipeline.process(frames, srcFps, s));
    const { rendered, knobs, segmentId, seq, wire } = out;
    if (out.cheapS !== null) this.metrics.observeCheapModel(out.cheapS);
    const store = this.store!;
    await inStage('store', () => store.enqueue({ segmentId, cameraId: this.deviceId, meta: out.header, data: out.packed }));
    this.lastSegmentAt = Date.now();
    this.sentAt.set(segmentId, Date.now());
    this.uplink?.kick();
    this.segmentsEncoded++;
    const durationS = frames.length / srcFps;
    // every uploaded byte: video, reference frame, headers
    this.lastBitrate = (wire.total * 8) / 1000 / durationS;
    const kbps = (b: number): number => Math.round(((b * 8) / 1000 / durationS) * 10) / 10;
    this.uplinkKbps = { video: kbps(wire.video), reference: kbps(wire.reference), headers: kbps(wire.headers) };
    this.metrics.segmentEncoded(rendered.encoded.data.length);
    this.metrics.uplink(wire);
    this.metrics.observeEncode(out.encodeS);
    this.metrics.setBitrateKbps(this.lastBitrate);
    this.metrics.setKnobs(this.pipeline.knobs(s) as unknown as Record<string, number>);
    this.metrics.setQueueDepth(this.store!.depth());
    this.store!.recordMetric('bitrate_kbps', this.lastBitrate);
    const offsets = rendered.qpMap ? { ...rendered.qpMap, data: rendered.qpMap.data.map((q) => q - knobs.qp) } : null;
    const shown = out.refFrame;
    this.latest = { frame: shown, qpMap: offsets && offsets.rows === Math.ceil(shown.height / 16) ? offsets : null };
    this.history.push({ t: Date.now(), bitrateKbps: this.lastBitrate, f1: this.lastF1, knobs: this.pipeline.knobs(s) as unknown as Record<string, number> });
    this.mqtt?.publishState(this.state());
    this.log.info({ component: 'agent', segment: seq, bytes: rendered.encoded.data.length, refBytes: out.refBytes, headerBytes: wire.headers, wireBytes: wire.total, kbps: Math.round(this.lastBitrate), knobs, sent: rendered.sent.length, queue: this.store!.depth() }, 'segment queued');
  }

  private onReply(r: Reply, replyBytes = 0): void {
    this.replies.push(r);
    this.metrics.downlink(replyBytes);
    const t = this.sentAt.get(r.segmentId);
    if (t) {
      this.metrics.observeServerReply((Date.now() - t) / 1000);
      this.sentAt.delete(r.segmentId);
    }
    if (r.f1) {
      this.lastF1 = r.f1.f1;
      this.metrics.setF1(r.f1.f1);
      this.store?.recordMetric('f1', r.f1.f1);
    }
    if (r.dnngrad) this.metrics.observeDnnGrad(r.timings.gradMs / 1000);
    this.pipeline.onReply(r);
    this.metrics.setQueueDepth(this.store?.depth() ?? 0);
    this.log.info({ component: 'uplink', segment: r.seq, f1: r.f1?.f1, detections: r.detections.reduce((a, d) => a + d.length, 0), duplicate: r.duplicate }, 'server reply');
  }

  state(): AgentState {
    return {
      deviceId: this.deviceId,
      t: Date.now(),
      sourceRunning: this.source !== null,
      extra: { captureFailures: this.captureFailures, decodeIssues: this.decodeIssues, health: this.health().reason ?? 'ok', uplinkError: this.uplink?.fatalError ?? this.uplink?.lastError ?? null, retrying: this.retryTimer !== null, adapting: this.pipeline.oneadapt ? [...this.pipeline.oneadapt.knobs.keys()] : [], accmpeg: this.pipeline.cheap !== null, uplinkKbps: this.uplinkKbps },
      pipelineRunning: this.loop !== null,
      knobs: this.pipeline.knobs(this.settings) as unknown as Record<string, number>,
      bitrateKbps: this.lastBitrate,
      f1: this.lastF1,
      queueDepth: this.store?.depth() ?? 0,
      fps: this.source ? this.source.fps : null,
      segmentsEncoded: this.segmentsEncoded,
      lastSegment: this.pipeline.segments > 0 ? this.pipeline.segments - 1 : null,
    };
  }

  private handlers(): CommandHandlers {
    return {
      setConfig: async (keys, who) => {
        if (!this.deps.config) throw new Error('agent was started without a config file; set_config is unavailable');
        const r = this.deps.config.set(keys, who, 'mqtt set_config');
        return { version: r.version, changedKeys: r.changedKeys };
      },
      startSource: async () => this.startSource(),
      stopSource: async () => this.stopSource(),
      restartPipeline: async () => this.restartPipeline(),
      getState: () => this.state(),
      snapshot: async (): Promise<SnapshotResult> => {
        const l = this.latest;
        if (!l) throw new Error('no frame captured yet');
        const { width, height } = l.frame;
        // the status page's renderer: luma as grey at full size, no QP tint
        return { width, height, pngBase64: renderFramePng(l.frame, null, width).toString('base64') };
      },
    };
  }

  /** Graceful stop (SIGTERM): stop capture, let the segment in flight reach the outbox, then close in reverse order. */
  async stop(): Promise<void> {
    await this.sd.stopping();
    this.sd.stopWatchdog();
    if (this.housekeepingTimer) clearInterval(this.housekeepingTimer);
    await this.stopSource();
    await this.pipeline.stop(); // the probe in flight steps the knobs before its worker ends
    await this.uplink?.stop();
    await this.mqtt?.stop();
    await this.page?.stop();
    if (!this.deps.store) this.store?.close();
    this.sd.close();
    this.metrics.close();
    this.log.info({ component: 'agent' }, 'agent stopped');
  }
}
