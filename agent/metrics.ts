/**
 * Prometheus metrics of the edge agent (prom-client). One Registry per AgentMetrics instance,
 * so tests and several agents in one process never collide on the global registry.
 *
 * Names carry their unit (Prometheus base units: seconds, bytes, bits per second); counters end
 * in `_total`. The agent updates them through the typed helpers below, never through the raw
 * prom-client objects.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { COMMANDS } from './mqtt.ts';

/** Buckets for per-frame / per-segment compute times (1 ms … 10 s). */
const COMPUTE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Buckets for server round trips (10 ms … 60 s). */
const REPLY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60];

export interface AgentMetricsOptions {
  /** labels added to every series, e.g. { device: 'cam1' } */
  defaultLabels?: Record<string, string>;
  /** collect Node.js process metrics (cpu, memory, event loop lag, …); default true */
  processMetrics?: boolean;
}

export const METRIC_NAMES = {
  framesCaptured: 'camstream_frames_captured_total',
  segmentsEncoded: 'camstream_segments_encoded_total',
  segmentBytes: 'camstream_segment_bytes_total',
  uplinkBytes: 'camstream_uplink_bytes_total',
  downlinkBytes: 'camstream_downlink_bytes_total',
  bitrate: 'camstream_bitrate_bits_per_second',
  knob: 'camstream_knob_value',
  queueDepth: 'camstream_queue_depth_segments',
  outboxDropped: 'camstream_outbox_dropped_segments',
  f1: 'camstream_segment_f1_ratio',
  cheapModel: 'camstream_cheapmodel_seconds',
  encode: 'camstream_encode_seconds',
  dnnGrad: 'camstream_dnngrad_seconds',
  serverReply: 'camstream_server_reply_latency_seconds',
  sourceRunning: 'camstream_source_running',
  mqttConnected: 'camstream_mqtt_connected',
  mqttCommands: 'camstream_mqtt_commands_total',
  probe: 'camstream_oneadapt_probe_seconds',
  eventLoopLag: 'camstream_event_loop_lag_seconds',
} as const;

export class AgentMetrics {
  readonly registry: Registry;
  readonly contentType: string;

  private readonly framesCaptured: Counter;
  private readonly segmentsEncoded: Counter;
  private readonly segmentBytes: Counter;
  private readonly uplinkBytes: Counter<'part'>;
  private readonly downlinkBytes: Counter;
  private readonly bitrate: Gauge;
  private readonly knob: Gauge<'knob'>;
  private readonly queueDepth: Gauge;
  private readonly outboxDropped: Gauge;
  private readonly f1: Gauge;
  private readonly cheapModel: Histogram;
  private readonly encode: Histogram;
  private readonly dnnGrad: Histogram;
  private readonly serverReply: Histogram;
  private readonly sourceRunning: Gauge;
  private readonly mqttConnected: Gauge;
  private readonly mqttCommands: Counter<'cmd' | 'status'>;
  private readonly probe: Histogram;
  private readonly loopDelay: IntervalHistogram;
  private readonly knownKnobs = new Set<string>();

  constructor(opts: AgentMetricsOptions = {}) {
    const registry = new Registry();
    this.registry = registry;
    this.contentType = registry.contentType;
    if (opts.defaultLabels) registry.setDefaultLabels(opts.defaultLabels);
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry });
    const registers = [registry];

    this.framesCaptured = new Counter({ name: METRIC_NAMES.framesCaptured, help: 'Frames read from the video source', registers });
    this.segmentsEncoded = new Counter({ name: METRIC_NAMES.segmentsEncoded, help: 'Segments encoded', registers });
    this.segmentBytes = new Counter({ name: METRIC_NAMES.segmentBytes, help: 'Bytes of encoded segments', registers });
    this.uplinkBytes = new Counter({ name: METRIC_NAMES.uplinkBytes, help: 'Bytes uploaded per segment, by part: video, reference (accuracy monitor frames), headers (segment header, framing)', labelNames: ['part'] as const, registers });
    this.downlinkBytes = new Counter({ name: METRIC_NAMES.downlinkBytes, help: 'Reply bytes received from the server (detections, F1, DNNGrad)', registers });
    this.bitrate = new Gauge({ name: METRIC_NAMES.bitrate, help: 'Uplink bitrate of the last segment in bits per second, every byte counted (video, reference, headers)', registers });
    this.knob = new Gauge({ name: METRIC_NAMES.knob, help: 'Current value of each adaptation knob', labelNames: ['knob'] as const, registers });
    this.queueDepth = new Gauge({ name: METRIC_NAMES.queueDepth, help: 'Segments in the outbox waiting for the server', registers });
    this.outboxDropped = new Gauge({ name: METRIC_NAMES.outboxDropped, help: 'Unacknowledged segments dropped by the outbox size cap since the agent started', registers });
    this.f1 = new Gauge({ name: METRIC_NAMES.f1, help: 'F1 of the last segment reported by the server (0..1)', registers });
    this.cheapModel = new Histogram({ name: METRIC_NAMES.cheapModel, help: 'Cheap model inference time per frame', buckets: COMPUTE_BUCKETS, registers });
    this.encode = new Histogram({ name: METRIC_NAMES.encode, help: 'Encode time per segment', buckets: COMPUTE_BUCKETS, registers });
    this.dnnGrad = new Histogram({ name: METRIC_NAMES.dnnGrad, help: 'DNNGrad time per segment (as reported with the server reply)', buckets: COMPUTE_BUCKETS, registers });
    this.serverReply = new Histogram({ name: METRIC_NAMES.serverReply, help: 'Time from segment upload to the server reply', buckets: REPLY_BUCKETS, registers });
    this.sourceRunning = new Gauge({ name: METRIC_NAMES.sourceRunning, help: '1 while the video source is running', registers });
    this.mqttConnected = new Gauge({ name: METRIC_NAMES.mqttConnected, help: '1 while connected to the MQTT broker', registers });
    this.mqttCommands = new Counter({ name: METRIC_NAMES.mqttCommands, help: 'MQTT commands handled, by command and outcome', labelNames: ['cmd', 'status'] as const, registers });
    this.probe = new Histogram({ name: METRIC_NAMES.probe, help: 'OneAdapt probe time per segment (on the worker thread)', buckets: COMPUTE_BUCKETS, registers });
    // Event-loop lag: how late timers fire on the agent's thread (frame work that blocks it shows here).
    // Quantiles over the interval since the previous scrape.
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    this.loopDelay = loopDelay;
    new Gauge({
      name: METRIC_NAMES.eventLoopLag,
      help: 'Event-loop delay of the agent thread since the previous scrape, by quantile',
      labelNames: ['quantile'] as const,
      registers,
      collect() {
        const q = (p: number): number => (loopDelay.count ? loopDelay.percentile(p) / 1e9 : 0);
        this.set({ quantile: '0.5' }, q(50));
        this.set({ quantile: '0.99' }, q(99));
        this.set({ quantile: '1' }, loopDelay.count ? loopDelay.max / 1e9 : 0);
        loopDelay.reset();
      },
    });
  }

  /** Stop sampling the event loop (the agent calls it on stop). */
  close(): void {
    this.loopDelay.disable();
  }

  frameCaptured(n = 1): void {
    this.framesCaptured.inc(n);
  }

  /** One encoded segment of `bytes` bytes; if `durationS` is given the bitrate gauge is updated too. */
  segmentEncoded(bytes: number, durationS?: number): void {
    this.segmentsEncoded.inc();
    this.segmentBytes.inc(bytes);
    if (durationS !== undefined && durationS > 0) this.bitrate.set((bytes * 8) / durationS);
  }

  /** Every byte one segment costs on the uplink, by part. */
  uplink(parts: { video: number; reference: number; headers: number }): void {
    this.uplinkBytes.inc({ part: 'video' }, parts.video);
    this.uplinkBytes.inc({ part: 'reference' }, parts.reference);
    this.uplinkBytes.inc({ part: 'headers' }, parts.headers);
  }

  downlink(bytes: number): void {
    this.downlinkBytes.inc(bytes);
  }

  setBitrateKbps(kbps: number): void {
    this.bitrate.set(kbps * 1000);
  }

  setKnob(name: string, value: number): void {
    this.knownKnobs.add(name);
    this.knob.set({ knob: name }, value);
  }

  /** Set all knobs at once; knobs that disappeared are removed from the exposition. */
  setKnobs(knobs: Record<string, number>): void {
    for (const k of this.knownKnobs) {
      if (!(k in knobs)) {
        this.knob.remove({ knob: k });
        this.knownKnobs.delete(k);
      }
    }
    for (const [k, v] of Object.entries(knobs)) this.setKnob(k, v);
  }

  setQueueDepth(n: number): void {
    this.queueDepth.set(n);
  }

  setOutboxDropped(n: number): void {
    this.outboxDropped.set(n);
  }

  setF1(f1: number): void {
    this.f1.set(f1);
  }

  setSourceRunning(running: boolean): void {
    this.sourceRunning.set(running ? 1 : 0);
  }

  setMqttConnected(connected: boolean): void {
    this.mqttConnected.set(connected ? 1 : 0);
  }

  /** `cmd` is the topic suffix a client chose: anything but a known command counts as 'unknown', so a client
   * publishing made-up names cannot grow the label set (and /metrics) without bound */
  mqttCommand(cmd: string, status: string): void {
    this.mqttCommands.inc({ cmd: (COMMANDS as readonly string[]).includes(cmd) ? cmd : 'unknown', status });
  }

  observeCheapModel(seconds: number): void {
    this.cheapModel.observe(seconds);
  }
  observeEncode(seconds: number): void {
    this.encode.observe(seconds);
  }
  observeDnnGrad(seconds: number): void {
    this.dnnGrad.observe(seconds);
  }
  observeServerReply(seconds: number): void {
    this.serverReply.observe(seconds);
  }
  observeProbe(seconds: number): void {
    this.probe.observe(seconds);
  }

  /** Start a timer; calling the returned function observes the elapsed seconds (and returns them). */
  time(which: 'cheapModel' | 'encode' | 'dnnGrad' | 'serverReply'): () => number {
    const h = { cheapModel: this.cheapModel, encode: this.encode, dnnGrad: this.dnnGrad, serverReply: this.serverReply }[which];
    return h.startTimer();
  }

  /** Prometheus text exposition. */
  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
