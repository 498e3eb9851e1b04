/**
 * The edge agent controller: builds the components the settings ask for, starts them in order,
 * stops them in reverse, and runs the per-segment loop
 *   capture → cheap model (AccMPEG importance) → render under knobs → outbox (SQLite) → uplink
 *   server reply (detections, F1, DNNGrad) → OneAdapt probes + step → knobs for the next segment.
 * It only wires components and logs: capture with retry (source-supervisor.ts), the edge path (pipeline.ts),
 * the outbox (store.ts) and uplink, reporting (telemetry.ts, metrics.ts, status-page.ts), MQTT (mqtt.ts).
 * The math lives in pure modules (cheapmodel/qpmap, oneadapt/*).
 */
import { existsSync, mkdirSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { TokenSet } from '../proc/auth.ts';
import path from 'node:path';
import type { Logger } from 'pino';
import { Uplink } from './uplink.ts';
import { AgentStore, outboxCapFor } from './store.ts';
import { AgentMetrics } from './metrics.ts';
import { MqttControl, type CommandResponse, type AgentState, type CommandHandlers, type SnapshotResult } from './mqtt.ts';
import { renderFramePng, StatusPage } from './status-page.ts';
import { SourceSupervisor, inStage } from './source-supervisor.ts';
import { AgentTelemetry } from './telemetry.ts';
import { SdNotify } from '../proc/sdnotify.ts';
import type { YuvFrame } from '../encoder/frame.ts';
import { CheapModel, DEFAULT_CHEAP_MODEL } from '../cheapmodel/model.ts';
import { Detector } from '../detector/detector.ts';
import type { Detection } from '../detector/postprocess.ts';
import { redactUri } from '../media/capture.ts';
import { OneAdaptController, type Decision } from '../oneadapt/adapt.ts';
import { ProbeRunner } from '../oneadapt/probe-pool.ts';
import type { Reply } from '../wire/protocol.ts';
import { EdgePipeline, type ImportanceModel } from './pipeline.ts';
import { REMOTE_CONFIG_KEYS, type AgentSettings } from '../config/schema.ts';
import { diffKeys, type ConfigManager } from '../config/watch.ts';

export type { ImportanceModel } from './pipeline.ts';
export { PipelineStageError, type PipelineStage } from './source-supervisor.ts';

export interface AgentDeps {
  logger: Logger;
  config?: ConfigManager<any>;
  /** loads the AccMPEG cheap model; injected so tests can run without it */
  loadCheapModel?: (file: string) => Promise<ImportanceModel>;
  /** loads the local accuracy monitor's detector (monitor.source local); default: detector/ on the CPU */
  loadMonitorDetector?: (file: string) => Promise<{ detect(frame: YuvFrame): Promise<Detection[]>; release?(): Promise<void> }>;
  /** an already open store (shared with the config manager's versions); the agent opens its own otherwise */
  store?: AgentStore;
  /** first capture retry delay (doubles up to 60 s); default 1000 ms */
  retryMs?: number;
  /** stop after this many segments (demo/tests); default: run until stopped */
  maxSegments?: number;
  /** /healthz and the watchdog call the pipeline stuck after this long without a segment (or, for the watchdog, an
   *  attempt to open the source) and no retry scheduled; default max(30 s, 5 segments) */
  stallMs?: number;
}

/** A PEM file's contents (TLS settings hold paths); a file that cannot be read is an error naming the setting. */
function pem(f: string | undefined, setting: string): Buffer | undefined {
  if (!f) return undefined;
  try {
    return readFileSync(f);
  } catch (e) {
    throw new Error(`${setting}: cannot read ${f} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** Settings read once at start: a change is recorded but takes effect only after a restart. */
export const RESTART_ONLY = ['deviceId', 'mqtt', 'http', 'storage', 'profile', 'monitor.source', 'monitor.detectorModel'] as const;

export function openAgentStore(s: AgentSettings, log: Logger): AgentStore {
  const file = path.join(s.storage.dir, `${s.deviceId}.db`);
  let maxBytes = s.storage.outboxMaxBytes;
  try {
    mkdirSync(s.storage.dir, { recursive: true });
    const fs = statfsSync(s.storage.dir);
    const held = existsSync(file) ? statSync(file).size : 0;
    maxBytes = outboxCapFor(s.storage.outboxMaxBytes, fs.bavail * fs.bsize, held);
    if (maxBytes < s.storage.outboxMaxBytes) log.warn({ component: 'store', dir: s.storage.dir, configured: s.storage.outboxMaxBytes, capBytes: maxBytes }, 'storage volume smaller than storage.outboxMaxBytes allows: the outbox is capped at half of its free space');
  } catch {
    // statfs unavailable: the configured cap applies (opening the store reports a directory that does not work)
  }
  return new AgentStore(file, {
    maxBytes,
    maxRows: s.storage.outboxMaxRows,
    logger: log.child({ component: 'store' }),
  });
}

/** An agent's health: `reason` is coarse (safe for the open /healthz), `detail` the redacted message (authenticated views, systemd STATUS=). */
export interface AgentHealth {
  ok: boolean;
  reason?: string;
  detail?: string;
}

/** The coarse /healthz reason of a failing stage. */
const COARSE: Record<string, string> = { source: 'source down', encoder: 'encoder failed', store: 'store failed', pipeline: 'pipeline stuck' };

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
  /** the per-segment edge path: cheap model, render, monitor reference, probes (agent/pipeline.ts) */
  private readonly pipeline: EdgePipeline;
  /** capture with retry and resume (agent/source-supervisor.ts) */
  private readonly capture: SourceSupervisor;
  /** metrics, status history, latest frame (agent/telemetry.ts) */
  private readonly telemetry: AgentTelemetry;
  private housekeepingTimer: NodeJS.Timeout | null = null;
  private watchdogTimer: NodeJS.Timeout | null = null;
  /** the segment being processed (it may be running the cheap model that a hot reload just replaced) */
  private segmentInFlight: Promise<void> | null = null;
  /** cheap-model loads started by hot reloads, and the latest one swapped in (a slower, older load never replaces it) */
  private cheapModelLoads = { started: 0, swapped: 0 };

  constructor(settings: AgentSettings, private readonly deps: AgentDeps) {
    this.settings = settings;
    this.deviceId = settings.deviceId;
    this.log = deps.logger;
    this.metrics = new AgentMetrics({ defaultLabels: { device: settings.deviceId } });
    // a metrics row that cannot be written (SQLITE_FULL…) is logged (once a minute per kind) and lost; segments and replies go on
    const storeErrLog = new Map<string, { at: number; suppressed: number }>();
    this.telemetry = new AgentTelemetry(this.metrics, () => this.store, (what, err) => {
      const l = storeErrLog.get(what);
      if (l && Date.now() - l.at < 60_000) return void l.suppressed++;
      this.log.error({ component: 'store', what, err: err.message, suppressed: l?.suppressed || undefined }, 'store access for metrics failed; continuing without it');
      storeErrLog.set(what, { at: Date.now(), suppressed: 0 });
    });
    this.pipeline = new EdgePipeline({
      deviceId: settings.deviceId,
      probes: new ProbeRunner(),
      onDecision: (d, info) => {
        this.metrics.observeProbe(info.probeMs / 1000);
        this.log.info({ component: 'oneadapt', segment: info.segment, ...d, probeMs: Math.round(info.probeMs), probeScale: info.scale }, 'knob update');
      },
      onProbeError: (e, segment) => this.log.error({ component: 'oneadapt', segment, err: e.message }, 'probe failed; knobs hold'),
      onLocalF1: (f1, segment) => {
        this.telemetry.f1(f1);
        this.log.debug({ component: 'monitor', segment, f1 }, 'local accuracy monitor');
      },
      onLocalMonitorError: (e, segment) => this.log.error({ component: 'monitor', segment, err: e.message }, 'local accuracy monitor failed on a segment; no F1 from it'),
    });
    this.capture = new SourceSupervisor({
      logger: this.log,
      settings: () => ({ source: this.settings.source, segmentFrames: this.settings.encoder.segmentFrames }),
      onSegment: (frames, fps) => this.handleSegment(frames, fps),
      done: () => !!this.deps.maxSegments && this.segmentsEncoded >= this.deps.maxSegments,
      onRunning: (on) => this.metrics.setSourceRunning(on),
      retryMs: deps.retryMs,
    });
  }

  /** OneAdapt's knob decisions so far (oldest first). */
  get decisions(): readonly Decision[] {
    return this.pipeline.decisions;
  }
  /** The last server replies (oldest first; at most REPLIES_KEPT, see telemetry.ts). */
  get replies(): readonly Reply[] {
    return this.telemetry.replies;
  }
  get segmentsEncoded(): number {
    return this.telemetry.segmentsEncoded;
  }
  /** capture failures so far (open errors and broken streams) */
  get captureFailures(): number {
    return this.capture.failures;
  }
  /** decoder complaints from the source (damaged or truncated input) */
  get decodeIssues(): number {
    return this.capture.decodeIssues;
  }

  async start(): Promise<void> {
    const s = this.settings;
    this.store = this.deps.store ?? openAgentStore(s, this.log);
    this.telemetry.outboxGauges();
    this.housekeeping();
    this.housekeepingTimer = setInterval(() => this.housekeeping(), 3600_000);
    this.housekeepingTimer.unref();
    this.pipeline.cheap = await this.loadCheapModel(s);
    this.pipeline.localDetector = await this.loadMonitorDetector(s);
    this.pipeline.monitorSource = s.monitor.source; // restart-only: a reload does not switch it
    this.setupOneAdapt();
    this.uplink = this.makeUplink(s);
    if (s.mqtt.enabled) {
      this.mqtt = this.makeMqtt(s);
      await this.mqtt.start();
    }
    this.page = new StatusPage({
      provider: { getState: () => this.state(), getHistory: () => this.telemetry.history.list(), getLatestFrame: () => this.telemetry.latest, getHealth: () => this.health() }, // /healthz shows only the coarse reason
      metrics: this.metrics,
      tokens: new TokenSet(s.http.tokens),
      metricsPublic: s.http.metricsPublic,
      onError: (err) => this.log.error({ component: 'http', err: err.message }, 'status page server error'),
      tls: s.http.tls ? { cert: pem(s.http.tls.cert, 'http.tls.cert')!, key: pem(s.http.tls.key, 'http.tls.key')! } : undefined,
      host: s.http.host,
      port: s.http.port,
      title: `camstream ${s.deviceId}`,
    });
    await this.page.start();
    const loopback = ['127.0.0.1', '::1', 'localhost'].includes(s.http.host);
    if (!loopback && !s.http.tls) {
      this.log.warn({ component: 'http', host: s.http.host }, 'status page served over plain http beyond localhost: its token and camera frames cross the network in clear (set http.tls)');
    }
    this.deps.config?.on('change', (next: AgentSettings, _prev: AgentSettings, keys: string[]) => this.applyConfig(next, keys));
    // a change accepted while start() was loading models or waiting for MQTT came before the listener: apply it now
    const current = this.deps.config?.current as AgentSettings | undefined;
    const missed = current ? diffKeys(this.settings, current) : [];
    if (current && missed.length > 0) this.applyConfig(current, missed);
    this.capture.start();
    await this.sd.ready(`streaming ${redactUri(s.source.uri)}`);
    this.startWatchdog();
    this.log.info({ component: 'agent', device: s.deviceId, profile: s.profile, http: s.http.port }, 'agent started');
  }

  /**
   * WATCHDOG=1 every WATCHDOG_USEC/2 while the process is live (liveness(): event loop turning, store readable,
   * supervisor not stuck); systemd restarts the agent only when it is stuck. A camera or server that is down is
   * not a reason: the supervisor and the uplink retry on their own, and a restart loop would hit StartLimitBurst
   * and leave the unit failed when the camera comes back. STATUS= shows the operator's health (redacted) on change.
   */
  private startWatchdog(): void {
    const every = this.sd.watchdogIntervalMs;
    if (!this.sd.enabled || every === undefined || this.watchdogTimer) return;
    let shown = 'healthy';
    const tick = (): void => {
      try {
        const live = this.liveness();
        if (live.ok) void this.sd.ping();
        const health = this.healthText();
        const text = !live.ok ? `unhealthy: ${live.reason ?? 'unknown'} (watchdog not fed)` : health === 'ok' ? 'healthy' : `unhealthy: ${health}`;
        if (text !== shown) void this.sd.status(text);
        shown = text;
      } catch (e) {
        this.log.error({ component: 'agent', err: (e as Error).message }, 'watchdog check failed');
      }
    };
    tick();
    this.watchdogTimer = setInterval(tick, every);
    this.watchdogTimer.unref();
  }

  /** Retention: metrics history older than storage.metricsRetentionHours, acknowledged outbox ids older than a day. */
  private housekeeping(): void {
    if (!this.store) return;
    try {
      const retentionMs = this.settings.storage.metricsRetentionHours * 3600_000;
      const metrics = this.store.pruneMetrics(retentionMs);
      const acked = this.store.pruneAcked(Date.now() - 24 * 3600_000);
      if (metrics || acked) this.log.info({ component: 'store', metrics, acked }, 'pruned old rows');
    } catch (e) {
      // a full disk or a locked database costs one pruning round (retried next hour), never the process
      this.log.error({ component: 'store', err: (e as Error).message }, 'housekeeping failed; retrying at the next round');
    }
  }

  private makeUplink(s: AgentSettings): Uplink {
    const up = new Uplink(this.store!, {
      url: s.server.url,
      cameraId: this.deviceId,
      token: s.server.token,
      tls: { ca: pem(s.server.ca, 'server.ca'), cert: pem(s.server.cert, 'server.cert'), key: pem(s.server.key, 'server.key') },
      replyTimeoutMs: s.server.replyTimeoutMs,
    });
    up.on('reply', (r, bytes) => this.onReply(r, bytes));
    up.on('connected', () => this.log.info({ component: 'uplink', url: s.server.url }, 'connected to server'));
    up.on('disconnected', (why) => this.log.warn({ component: 'uplink', why }, 'server connection lost; segments stay in the outbox'));
    up.on('serverError', (error, segment, kept) =>
      this.log.error({ component: 'uplink', segment, error, kept }, kept ? 'server could not process segment; kept in the outbox for a retry' : 'server rejected a bad segment'),
    );
    up.on('fatal', (error) => this.log.error({ component: 'uplink', error }, 'uplink stopped'));
    up.on('localError', (error, segment) =>
      this.log.error({ component: 'uplink', segment, error }, 'outbox failed while handling the server connection; the segment stays in the outbox and is sent again'),
    );
    up.start();
    return up;
  }

  private makeMqtt(s: AgentSettings): MqttControl {
    const mqtt = new MqttControl({
      url: s.mqtt.url,
      deviceId: s.deviceId,
      baseTopic: s.mqtt.baseTopic,
      discoveryPrefix: s.mqtt.discoveryPrefix,
      username: s.mqtt.username,
      password: s.mqtt.password,
      tls: { ca: pem(s.mqtt.ca, 'mqtt.ca'), cert: pem(s.mqtt.cert, 'mqtt.cert'), key: pem(s.mqtt.key, 'mqtt.key') },
      handlers: this.handlers(),
      configKeys: REMOTE_CONFIG_KEYS,
      responses: { get: (k) => this.store!.getCommandResponse(k) as CommandResponse | undefined, put: (k, r) => this.store!.putCommandResponse(k, r) },
      logger: this.log.child({ component: 'mqtt' }),
    });
    mqtt.on('connect', () => this.metrics.setMqttConnected(true));
    mqtt.on('disconnect', () => this.metrics.setMqttConnected(false));
    mqtt.on('command', (ev) => this.metrics.mqttCommand(ev.cmd, ev.status));
    return mqtt;
  }

  private async loadCheapModel(s: AgentSettings): Promise<ImportanceModel | null> {
    if (!s.cheapModel.enabled) return null;
    const file = s.cheapModel.path ?? DEFAULT_CHEAP_MODEL;
    const load = this.deps.loadCheapModel ?? ((f: string) => CheapModel.load(f));
    const model = await load(file); // a model that does not load is an error naming the file
    this.log.info({ component: 'cheapmodel', model: file }, 'AccMPEG cheap model loaded');
    return model;
  }

  /** The local accuracy monitor's detector (monitor.source local); a file that does not load stops the start with its name. */
  private async loadMonitorDetector(s: AgentSettings): Promise<{ detect(frame: YuvFrame): Promise<Detection[]>; release?(): Promise<void> } | null> {
    if (s.monitor.source !== 'local') return null; // loaded even at referenceEvery 0: fleet control may turn monitoring on
    const file = s.monitor.detectorModel!;
    const load =
      this.deps.loadMonitorDetector ??
      (async (f: string) => {
        const d = await Detector.load(f, { device: 'cpu', threads: 1 });
        return { detect: async (frame: YuvFrame) => (await d.detect(frame)).detections, release: () => d.release() };
      });
    const det = await load(file);
    this.log.info({ component: 'monitor', model: file }, 'local accuracy monitor: detector loaded');
    return det;
  }

  /**
   * Free a cheap model that is no longer the pipeline's (its onnxruntime session holds native memory and threads).
   * The segment in flight may still be inside its importance() (the pipeline reads `cheap` per frame), so the
   * release waits for that segment (and only that one: later segments see only the new model).
   */
  private async releaseCheapModel(model: ImportanceModel | null, why: string): Promise<void> {
    const release = (model as { release?: () => Promise<void> } | null)?.release;
    if (!model || typeof release !== 'function') return;
    const inFlight = this.segmentInFlight; // segments that start after the swap see only the new model
    try {
      await inFlight?.catch(() => undefined);
      await release.call(model);
      this.log.info({ component: 'cheapmodel', model: (model as { modelPath?: string }).modelPath, why }, 'previous cheap model released');
    } catch (e) {
      this.log.error({ component: 'cheapmodel', err: (e as Error).message }, 'cannot release the previous cheap model');
    }
  }

  /** Build the controller, or reconfigure the running one: a config reload keeps its knob positions and state. */
  private setupOneAdapt(): void {
    if (!this.settings.oneadapt.enabled) {
      this.pipeline.oneadapt = null;
      return;
    }
    const options = EdgePipeline.adaptOptions(this.settings, this.pipeline.cheap !== null);
    if (this.pipeline.oneadapt) this.pipeline.oneadapt.reconfigure(options);
    else this.pipeline.oneadapt = new OneAdaptController(options);
  }

  /** Apply a new config: what can change live does; source/server changes restart those parts. */
  private applyConfig(next: AgentSettings, keys: string[]): void {
    this.settings = next;
    this.log.level = next.log.level;
    const changed = (prefix: string): boolean => keys.some((k) => k.startsWith(prefix));
    if (changed('cheapModel.enabled') || changed('cheapModel.path')) {
      // swap the model without stopping capture; a model that fails to load keeps the old one
      const loads = this.cheapModelLoads;
      const load = ++loads.started;
      void this.loadCheapModel(next)
        .then((m) => {
          if (load < loads.swapped) return void this.releaseCheapModel(m, 'superseded by a later change'); // a later reload is in
          loads.swapped = load;
          const old = this.pipeline.cheap;
          this.pipeline.cheap = m;
          this.setupOneAdapt(); // the threshold knob exists only with a cheap model
          if (old !== m) void this.releaseCheapModel(old, 'replaced');
        })
        .catch((e) => this.log.error({ component: 'cheapmodel', err: (e as Error).message }, 'cheap model change rejected; keeping the previous model — the config file still names the new one: fix it before a restart, or the agent will not start'));
    }
    // OneAdapt's own settings apply now, whatever becomes of a cheap-model change in the same reload
    if (changed('oneadapt')) this.setupOneAdapt();
    // a stopped source (stop_source, a finished file) stays stopped: the new settings apply at its next start
    if (changed('source') || changed('encoder.segmentFrames')) void this.capture.restart(true);
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

  private stallMs(): number {
    const segS = this.settings.encoder.segmentFrames / (this.settings.source.fps ?? 10);
    return this.deps.stallMs ?? Math.max(30_000, 5 * segS * 1000);
  }

  /** The store answers a query (null), or why not. */
  private storeError(): string | null {
    try {
      this.store?.depth();
      return null;
    } catch (e) {
      return `store: ${(e as Error).message}`;
    }
  }

  /**
   * What the systemd watchdog is fed on: the process is not stuck (store readable, capture supervisor either
   * producing segments, trying to open the source, or with a retry scheduled). A source that is down while a
   * retry is scheduled is live here (and unhealthy in health()).
   */
  liveness(): { ok: boolean; reason?: string } {
    const store = this.storeError();
    if (store) return { ok: false, reason: store };
    const stuck = this.capture.stuck(this.stallMs());
    return stuck ? { ok: false, reason: stuck } : { ok: true };
  }

  /** Source, encoder and store as operators see them: a source that is down is not ok (reason redacted). */
  pipelineHealth(): { ok: boolean; reason?: string; stage?: string } {
    const store = this.storeError();
    if (store) return { ok: false, stage: 'store', reason: store };
    const h = this.capture.health(this.stallMs());
    return h.ok ? h : { ...h, reason: h.reason && redactUri(h.reason, this.settings.source.uri) };
  }

  /**
   * /healthz, the status page and MQTT state: the pipeline and the uplink. `reason` is coarse ('source down',
   * 'uplink stopped'…) for the unauthenticated /healthz; `detail` is the redacted message.
   */
  health(): AgentHealth {
    const p = this.pipelineHealth();
    if (!p.ok) return { ok: false, reason: COARSE[p.stage ?? ''] ?? 'pipeline failed', detail: p.reason };
    if (this.uplink?.fatalError) return { ok: false, reason: 'uplink stopped', detail: redactUri(`uplink: ${this.uplink.fatalError}`) };
    if (!this.uplink) return { ok: false, reason: 'uplink not running', detail: 'uplink: not running' };
    return { ok: true };
  }

  async restartPipeline(): Promise<void> {
    await this.capture.restart();
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
    await this.capture.finished();
  }

  /** One captured segment: edge path → outbox → uplink; then report it. */
  private async handleSegment(frames: YuvFrame[], srcFps: number): Promise<void> {
    const p = this.processSegment(frames, srcFps);
    this.segmentInFlight = p;
    try {
      await p;
    } finally {
      if (this.segmentInFlight === p) this.segmentInFlight = null;
    }
  }

  private async processSegment(frames: YuvFrame[], srcFps: number): Promise<void> {
    const s = this.settings;
    this.metrics.frameCaptured(frames.length);
    const out = await inStage('encoder', () => this.pipeline.process(frames, srcFps, s));
    const store = this.store!;
    await inStage('store', () => store.enqueue({ segmentId: out.segmentId, cameraId: this.deviceId, meta: out.header, data: out.packed }));
    this.uplink?.kick();
    const knobs = this.pipeline.knobs(s) as unknown as Record<string, number>;
    this.telemetry.segment(out, frames.length, srcFps, knobs);
    this.mqtt?.publishState(this.state());
    const { rendered, wire } = out;
    this.log.info({ component: 'agent', segment: out.seq, bytes: rendered.encoded.data.length, refBytes: out.refBytes, headerBytes: wire.headers, wireBytes: wire.total, kbps: Math.round(this.telemetry.lastBitrate ?? 0), knobs: out.knobs, sent: rendered.sent.length, queue: this.queueDepth() }, 'segment queued');
  }

  /** Outbox depth for reports; a store that cannot answer reports -1 rather than failing the caller. */
  private queueDepth(): number {
    try {
      return this.store?.depth() ?? 0;
    } catch {
      return -1;
    }
  }

  private onReply(r: Reply, replyBytes = 0): void {
    this.telemetry.reply(r, replyBytes);
    try {
      this.pipeline.onReply(r, this.settings);
    } catch (err) {
      // a reply the agent cannot use (e.g. a malformed DNNGrad map) costs one OneAdapt step, never the process
      this.log.warn({ component: 'uplink', segment: r.seq, err: (err as Error).message }, 'server reply not usable; ignored');
    }
    this.log.info({ component: 'uplink', segment: r.seq, f1: r.f1?.f1, detections: r.detections.reduce((a, d) => a + d.length, 0), duplicate: r.duplicate }, 'server reply');
  }

  state(): AgentState {
    const t = this.telemetry;
    return {
      deviceId: this.deviceId,
      t: Date.now(),
      sourceRunning: this.capture.capturing,
      extra: { captureFailures: this.capture.failures, decodeIssues: this.capture.decodeIssues, health: this.healthText(), uplinkError: this.uplink?.fatalError ?? this.uplink?.lastError ?? null, retrying: this.capture.retrying, adapting: this.pipeline.oneadapt ? [...this.pipeline.oneadapt.knobs.keys()] : [], accmpeg: this.pipeline.cheap !== null, accmpegCalibratedThreshold: this.pipeline.calibratedThreshold, uplinkKbps: t.uplinkKbps },
      pipelineRunning: this.capture.running,
      knobs: this.pipeline.knobs(this.settings) as unknown as Record<string, number>,
      bitrateKbps: t.lastBitrate,
      f1: t.lastF1,
      queueDepth: this.queueDepth(),
      fps: this.capture.fps,
      segmentsEncoded: t.segmentsEncoded,
      lastSegment: this.pipeline.segments > 0 ? this.pipeline.segments - 1 : null,
    };
  }

  private healthText(): string {
    const h = this.health();
    return h.ok ? 'ok' : (h.detail ?? h.reason ?? 'unknown');
  }

  private handlers(): CommandHandlers {
    return {
      setConfig: async (keys, who) => {
        if (!this.deps.config) throw new Error('agent was started without a config file; set_config is unavailable');
        const r = this.deps.config.set(keys, who, 'mqtt set_config');
        return { version: r.version, changedKeys: r.changedKeys };
      },
      startSource: async () => this.capture.start(),
      stopSource: async () => this.capture.stop(),
      restartPipeline: async () => this.restartPipeline(),
      getState: () => this.state(),
      snapshot: async (): Promise<SnapshotResult> => {
        const l = this.telemetry.latest;
        if (!l) throw new Error('no frame captured yet');
        const { width, height } = l.frame;
        // the status page's renderer: luma as grey at full size, no QP tint
        return { width, height, pngBase64: renderFramePng(l.frame, null, width).toString('base64') };
      },
    };
  }

  /** Graceful stop (SIGTERM): stop capture, let the segment in flight reach the outbox, then close in reverse order. */
  async stop(): Promise<void> {
    // first: no MQTT command may restart capture while it stops (the store closes at the end)
    this.mqtt?.refuseCommands();
    if (this.watchdogTimer) clearInterval(this.watchdogTimer);
    this.watchdogTimer = null;
    await this.sd.stopping();
    this.sd.stopWatchdog();
    if (this.housekeepingTimer) clearInterval(this.housekeepingTimer);
    await this.capture.close();
    await this.pipeline.stop(); // the probe in flight steps the knobs before its worker ends
    // capture has ended: no segment uses the cheap model any more
    const cheap = this.pipeline.cheap;
    this.pipeline.cheap = null;
    await this.releaseCheapModel(cheap, 'agent stopped');
    await this.pipeline.localIdle(); // no detection may run on the session being released
    const monitorDet = this.pipeline.localDetector as { release?(): Promise<void> } | null;
    this.pipeline.localDetector = null;
    await monitorDet?.release?.().catch((e: Error) => this.log.error({ component: 'monitor', err: e.message }, 'cannot release the monitor detector'));
    await this.uplink?.stop();
    await this.mqtt?.stop();
    await this.page?.stop();
    if (!this.deps.store) this.store?.close();
    this.sd.close();
    this.metrics.close();
    this.log.info({ component: 'agent' }, 'agent stopped');
  }
}
