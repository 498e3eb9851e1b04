/**
 * What the agent reports about its segments and the server's replies: Prometheus metrics, the status page's
 * history and latest frame, the metrics rows in SQLite, and the figures of the retained MQTT state.
 * Every uploaded byte is counted (video, monitor reference, headers); downlink replies separately.
 */
import type { AgentMetrics } from './metrics.ts';
import type { AgentStore } from './store.ts';
import { StatusHistory, type LatestFrame } from './status-page.ts';
import type { SegmentOutput } from './pipeline.ts';
import type { Reply } from '../wire/protocol.ts';

type Knobs = Record<string, number>;

/** How many server replies are kept in memory (each carries detections and a base64 DNNGrad map). */
export const REPLIES_KEPT = 100;

export class AgentTelemetry {
  readonly history = new StatusHistory(600);
  /** the last REPLIES_KEPT server replies, oldest first (tests read them); a long run must not grow this without bound */
  readonly replies: Reply[] = [];
  /** server replies received so far (all of them, not only those kept) */
  repliesReceived = 0;
  segmentsEncoded = 0;
  latest: LatestFrame | null = null;
  lastF1: number | null = null;
  /** kbit/s of the last segment, all uploaded bytes */
  lastBitrate: number | null = null;
  /** the last segment's uplink by kind, kbit/s */
  uplinkKbps: Record<string, number> = {};
  private readonly sentAt = new Map<string, number>();

  constructor(
    private readonly metrics: AgentMetrics,
    private readonly store: () => AgentStore | null,
    /** a store write or read for reporting failed (e.g. SQLITE_FULL); reporting goes on without it */
    private readonly onStoreError: (what: string, err: Error) => void = () => {},
  ) {}

  /** Run a reporting-only store access: its failure is reported, never thrown into the segment loop or the uplink. */
  private quietly<T>(what: string, f: () => T, fallback: T): T {
    try {
      return f();
    } catch (e) {
      this.onStoreError(what, e as Error);
      return fallback;
    }
  }

  /** A segment reached the outbox. */
  segment(out: SegmentOutput, frameCount: number, srcFps: number, knobs: Knobs): void {
    const { rendered, wire } = out;
    const now = Date.now();
    this.sentAt.set(out.segmentId, now);
    // a long server outage must not grow this without bound: forget the oldest (their latency goes unmeasured)
    if (this.sentAt.size > 10_000) this.sentAt.delete(this.sentAt.keys().next().value!);
    this.segmentsEncoded++;
    const durationS = frameCount / srcFps;
    this.lastBitrate = (wire.total * 8) / 1000 / durationS;
    const kbps = (b: number): number => Math.round(((b * 8) / 1000 / durationS) * 10) / 10;
    this.uplinkKbps = { video: kbps(wire.video), reference: kbps(wire.reference), headers: kbps(wire.headers) };
    const m = this.metrics;
    if (out.cheapS !== null) m.observeCheapModel(out.cheapS);
    m.segmentEncoded(rendered.encoded.data.length);
    m.uplink(wire);
    m.observeEncode(out.encodeS);
    m.setBitrateKbps(this.lastBitrate);
    m.setKnobs(knobs);
    const store = this.store();
    this.outboxGauges();
    const bitrate = this.lastBitrate;
    this.quietly('record bitrate_kbps', () => store?.recordMetric('bitrate_kbps', bitrate), undefined);
    // the status page tints the frame by the QP map's offsets from the base QP
    const offsets = rendered.qpMap ? { ...rendered.qpMap, data: rendered.qpMap.data.map((q) => q - out.knobs.qp) } : null;
    const shown = out.refFrame;
    this.latest = { frame: shown, qpMap: offsets && offsets.rows === Math.ceil(shown.height / 16) ? offsets : null };
    this.history.push({ t: now, bitrateKbps: this.lastBitrate, f1: this.lastF1, knobs });
  }

  /** A server reply arrived (replyBytes: its size on the downlink). */
  reply(r: Reply, replyBytes: number): void {
    this.replies.push(r);
    if (this.replies.length > REPLIES_KEPT) this.replies.splice(0, this.replies.length - REPLIES_KEPT);
    this.repliesReceived++;
    const m = this.metrics;
    m.downlink(replyBytes);
    const t = this.sentAt.get(r.segmentId);
    if (t) {
      m.observeServerReply((Date.now() - t) / 1000);
      this.sentAt.delete(r.segmentId);
    }
    if (r.f1) this.f1(r.f1.f1);
    if (r.dnngrad) m.observeDnnGrad(r.timings.gradMs / 1000);
    this.outboxGauges();
  }

  /** A measured F1 (the server's, against an uploaded reference, or the camera's local monitor): status, gauge, history. */
  f1(f1: number): void {
    this.lastF1 = f1;
    this.metrics.setF1(f1);
    this.quietly('record f1', () => this.store()?.recordMetric('f1', f1), undefined);
  }

  /** Outbox depth and the segments its size cap dropped (store-and-forward's only loss), for /metrics. */
  outboxGauges(): void {
    const store = this.store();
    this.metrics.setQueueDepth(this.quietly('outbox depth', () => store?.depth() ?? 0, 0));
    this.metrics.setOutboxDropped(store?.droppedTotal ?? 0);
  }
}
