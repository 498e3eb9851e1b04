/**
 * Settings schemas (zod 4): one YAML/JSON file per device, validated here and nowhere else.
 * The TypeScript types are inferred from the schemas (`AgentSettings`, `ServerSettings`).
 *
 * Conventions:
 *  - objects are strict: an unknown key (usually a typo) is an error that names the key and line;
 *  - everything that has a sensible default is optional in the file (`.prefault({})` makes zod
 *    run nested defaults when a whole section is left out);
 *  - paths are kept as written (no resolution against the config file's directory).
 */
import { z } from 'zod';

export const PROFILES = ['edge-cpu', 'edge-jetson', 'server-gpu', 'server-cpu'] as const;
export const ProfileSchema = z.enum(PROFILES);
export type Profile = z.infer<typeof ProfileSchema>;

export const LogLevelSchema = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

const qp = z.number().int().min(0).max(51);
const port = z.number().int().min(0).max(65535);
/** the largest frame side the protocol accepts (wire/protocol.ts MAX_FRAME_SIDE; config/ sits below wire/) */
export const MAX_SOURCE_SIDE = 8192;
const evenDim = z
  .number()
  .int()
  .positive()
  .max(MAX_SOURCE_SIDE)
  .refine((v) => v % 2 === 0, { message: 'must be even (YUV420p)' });

/** deviceId ends up in MQTT topics and file names: keep it to a safe alphabet. */
export const DeviceIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'letters, digits, "_" and "-" only (max 64), starting with a letter or digit');

export const SourceSchema = z
  .strictObject({
    kind: z.enum(['file', 'rtsp', 'v4l2']),
    /** file path, rtsp://… URL, or /dev/videoN */
    uri: z.string().min(1),
    /** file sources only: start over at end of file */
    loop: z.boolean().default(true),
    fps: z.number().positive().max(240).optional(),
    width: evenDim.optional(),
    height: evenDim.optional(),
  })
  .superRefine((s, ctx) => {
    if (s.kind === 'rtsp' && !/^rtsps?:\/\//.test(s.uri)) {
      ctx.addIssue({ code: 'custom', path: ['uri'], message: 'rtsp source needs an rtsp:// or rtsps:// URL' });
    }
    if (s.kind === 'v4l2' && !s.uri.startsWith('/dev/')) {
      ctx.addIssue({ code: 'custom', path: ['uri'], message: 'v4l2 source needs a device path such as /dev/video0' });
    }
    if ((s.width === undefined) !== (s.height === undefined)) {
      ctx.addIssue({ code: 'custom', path: [s.width === undefined ? 'width' : 'height'], message: 'width and height go together' });
    }
  });

/** libx264/libx265 speed presets (anything else would make the encoder fail at the first segment) */
export const X264_PRESETS = ['ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow', 'slower', 'veryslow'] as const;

/** SHA-256 of a secret token, hex (`npm run token` prints both); configs that check tokens store only this. */
export const TokenHashSchema = z.string().regex(/^[0-9a-f]{64}$/, 'SHA-256 of the token in hex (npm run token prints it)');
/** A secret token as presented by a client (`npm run token`). */
export const TokenSchema = z.string().min(16, 'at least 16 characters (npm run token makes one)').max(512);
/** PEM files for TLS (paths, read at start) */
const pemPath = z.string().min(1);

export const EncoderSchema = z
  .strictObject({
    /** 'grace': stream Grace++ neural-codec segments instead of H.264 (grace/segment.ts) */
    codec: z.enum(['h264', 'hevc', 'grace']).default('h264'),
    /** Grace++ target bitrate; the ladder rung is picked per frame to fit it */
    graceKbps: z.number().positive().max(100000).default(400),
    baseQp: qp.default(30),
    preset: z.enum(X264_PRESETS).default('veryfast'),
    /** frames per segment (one segment = one upload + one server reply) */
    segmentFrames: z.number().int().min(1).max(300).default(10),
  })
  .prefault({});

/**
 * AccMPEG's quality rule as picked by bench:accmpeg's development phase: the grid setting with the best median
 * saving over all nine scenes' development spans, each scored by a cheap model that never saw that scene. That
 * median is −2% (no better than uniform QP at equal F1); see the README's AccMPEG results.
 */
export const ACCMPEG_DEFAULTS = { threshold: 0.5, minFraction: 0.05, dilate: 1, highQp: 38, lowQp: 44 } as const;

export const CheapModelSchema = z
  .strictObject({
    /** ONNX file of the AccMPEG cheap model; default: the trained model bundled in cheapmodel/models/ */
    path: z.string().min(1).optional(),
    /** run the cheap model on every k-th frame */
    everyK: z.number().int().min(1).default(10),
    /** α on P(important) */
    threshold: z.number().min(0).max(1).default(ACCMPEG_DEFAULTS.threshold),
    /** floor: at least this share of macroblocks (the highest P) important, so a new scene never gets none */
    minFraction: z.number().min(0).max(1).default(ACCMPEG_DEFAULTS.minFraction),
    /** grow the important region by this many macroblocks */
    dilate: z.number().int().min(0).max(8).default(ACCMPEG_DEFAULTS.dilate),
    /** AccMPEG's code's 3×3 opening + closing of the mask (off: it deletes one-MB objects such as distant cars) */
    smooth: z.boolean().default(false),
    highQp: qp.default(ACCMPEG_DEFAULTS.highQp),
    lowQp: qp.default(ACCMPEG_DEFAULTS.lowQp),
    /** re-calibrate α for this camera from the server's labels (cheapmodel/calibrate.ts): the largest α whose mask
     * covers targetRecall of the labelled macroblocks over the last `samples` segments, once minSamples are in */
    calibrate: z
      .strictObject({
        enabled: z.boolean().default(false),
        targetRecall: z.number().gt(0).max(1).default(0.9),
        samples: z.number().int().min(1).max(200).default(30),
        minSamples: z.number().int().min(1).max(200).default(5),
      })
      .prefault({})
      .refine((c) => c.minSamples <= c.samples, { message: 'minSamples must not exceed samples (calibration would never run)', path: ['minSamples'] }),
    /** AccMPEG on by default (the agent's main job uses the trained model) */
    enabled: z.boolean().default(true),
  })
  .prefault({})
  .superRefine((c, ctx) => {
    if (c.highQp > c.lowQp) {
      ctx.addIssue({ code: 'custom', path: ['highQp'], message: `highQp (${c.highQp}) must not exceed lowQp (${c.lowQp}): high quality means lower QP` });
    }
  });

/** OneAdapt's settings as tuned on bench:oneadapt's development set (bench/results/oneadapt.json: preregistered). */
export const ONEADAPT_TUNED = { lambda: 1, lr: 5, deadband: 0.01, onSceneChange: 'burst' } as const;

export const OneAdaptSchema = z
  .strictObject({
    enabled: z.boolean().default(false),
    targetKbps: z.number().positive().optional(),
    targetF1: z.number().min(0).max(1).optional(),
    /** price λ of a relative byte change (ln bytes) against the relative accuracy drop R/O (bench:oneadapt tunes
     * it on its development set). With targetKbps/targetF1 it is only the starting value of the dual update. */
    lambdaBw: z.number().min(0).default(ONEADAPT_TUNED.lambda),
    /** knob intervals moved per unit of loss gain per interval (at most one interval per segment) */
    lr: z.number().positive().max(100).default(ONEADAPT_TUNED.lr),
    /** a knob holds unless a neighbouring value lowers the loss by more than this per interval */
    deadband: z.number().min(0).default(ONEADAPT_TUNED.deadband),
    /** after a detected scene change: keep the knobs and allow multi-value moves ('burst') or restart from the configured values */
    onSceneChange: z.enum(['burst', 'restart']).default(ONEADAPT_TUNED.onSceneChange),
    /** probes render a copy of the segment at most this many pixels wide (0: source size); see oneadapt/probe-pool.ts */
    probeWidth: z.number().int().min(0).default(640),
    /** with targetF1 and a measured F1 (monitor): 'walk' moves one value dearer under the target and one cheaper
     * above target + f1Margin, AccGrad choosing the knob (bench:oneadapt's development pick, with monitor.source
     * local on every segment); 'loss' keeps the λ loss with the target as a constraint */
    f1Mode: z.enum(['loss', 'walk']).default('loss'),
    f1Margin: z.number().min(0).max(0.5).default(0.01),
  })
  .prefault({});

/** The sampled accuracy monitor: every N-th segment carries one high-quality frame the server scores the stream against. */
export const MonitorSchema = z
  .strictObject({
    /** send a reference frame with every N-th segment (0 = never; no measured F1 then) */
    referenceEvery: z.number().int().min(0).default(10),
    /** QP of the reference frame (one I-frame at source size) */
    referenceQp: z.number().int().min(0).max(51).default(20),
    /** 'upload': the reference frame goes to the server, which scores the stream against it (bytes counted);
     * 'local': nothing is uploaded, the camera runs `detectorModel` (the server's detector) on its own original
     * frames at `localFrames` and scores the server's detections on what it received against them */
    source: z.enum(['upload', 'local']).default('upload'),
    detectorModel: z.string().min(1).optional(),
    /** positions in the segment the local monitor scores (beyond the segment's length: skipped) */
    localFrames: z.array(z.number().int().min(0).max(299)).min(1).max(10).default([0, 4, 8]),
  })
  .superRefine((m, ctx) => {
    if (m.source === 'local' && !m.detectorModel) ctx.addIssue({ code: 'custom', path: ['detectorModel'], message: 'monitor.source local needs monitor.detectorModel (the server\'s detector, an ONNX file on the camera)' });
  })
  .prefault({});

const wsUrl = z.string().regex(/^wss?:\/\/\S+$/, 'must be a ws:// or wss:// URL');
const mqttUrl = z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\/\S+$/, 'must be an mqtt://, mqtts://, ws:// or wss:// URL');
const topicSegment = z.string().regex(/^[^#+\s]+$/, 'MQTT topic without wildcards or spaces');

export const UplinkSchema = z
  .strictObject({
    url: wsUrl.default('ws://127.0.0.1:8080/ingest'),
    /** this camera's secret (the server holds its SHA-256 in auth.cameras); without it nothing is uploaded */
    token: TokenSchema.optional(),
    /** wss://: CA bundle that signed the server's certificate (default: the system's CAs) */
    ca: pemPath.optional(),
    /** optional client certificate and key (PEM) for servers that verify clients */
    cert: pemPath.optional(),
    key: pemPath.optional(),
    /**
     * a server silent this long with segments in flight (or idle, no ping/pong) is presumed dead: reconnect and
     * resend. Must exceed the server's worst wait + processing time for one segment (a busy server queues them).
     */
    replyTimeoutMs: z.number().int().min(5_000).max(3_600_000).default(120_000),
  })
  .prefault({});

export const MqttSchema = z
  .strictObject({
    enabled: z.boolean().default(false),
    url: mqttUrl.default('mqtt://localhost:1883'),
    baseTopic: topicSegment.default('camstream'),
    discoveryPrefix: topicSegment.default('homeassistant'),
    username: z.string().max(256).optional(),
    password: z.string().max(1024).optional(),
    /** mqtts://: CA of the broker's certificate, optional client certificate and key (PEM paths) */
    ca: pemPath.optional(),
    cert: pemPath.optional(),
    key: pemPath.optional(),
  })
  .prefault({});

export const StorageSchema = z
  .strictObject({
    /** SQLite state and outbox live here (systemd StateDirectory=camstream → /var/lib/camstream) */
    dir: z.string().min(1).default('/var/lib/camstream'),
    /** outbox cap: oldest unacknowledged segments are dropped (and counted in the log) beyond these */
    outboxMaxBytes: z.number().int().positive().default(512 * 1024 * 1024),
    outboxMaxRows: z.number().int().positive().default(100_000),
    metricsRetentionHours: z.number().positive().default(24 * 7),
  })
  .prefault({});

export const HttpSchema = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: port.default(8081),
    /** SHA-256 of the bearer tokens that may read the status page's API, frame and metrics (npm run token) */
    tokens: z.array(TokenHashSchema).max(64).default([]),
    /** serve /metrics without a token (scrapers on a trusted network) */
    metricsPublic: z.boolean().default(false),
    /** serve the page over https:// with this certificate (its token and frames cross the network otherwise) */
    tls: z.strictObject({ cert: pemPath, key: pemPath }).optional(),
  })
  .prefault({});

export const LogSchema = z.strictObject({ level: LogLevelSchema.default('info') }).prefault({});

export const AgentSettingsSchema = z.strictObject({
  deviceId: DeviceIdSchema,
  profile: ProfileSchema.default('edge-cpu'),
  source: SourceSchema,
  encoder: EncoderSchema,
  cheapModel: CheapModelSchema,
  oneadapt: OneAdaptSchema,
  monitor: MonitorSchema,
  server: UplinkSchema,
  mqtt: MqttSchema,
  storage: StorageSchema,
  http: HttpSchema,
  log: LogSchema,
});

export const ServerSettingsSchema = z.strictObject({
  deviceId: DeviceIdSchema.default('camstream-server'),
  profile: z.enum(['server-gpu', 'server-cpu']).default('server-cpu'),
  listen: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: port.default(8080),
      /** serve wss:// and https:// with this certificate and key (PEM paths) */
      tls: z.strictObject({ cert: pemPath, key: pemPath }).optional(),
    })
    .prefault({}),
  auth: z
    .strictObject({
      /** camera id → SHA-256 of its token; only these cameras can upload, each only as itself */
      cameras: z.record(DeviceIdSchema, TokenHashSchema).default({}),
      /** SHA-256 of the bearer tokens for /api/* (and /metrics unless metricsPublic) */
      apiTokens: z.array(TokenHashSchema).max(64).default([]),
      metricsPublic: z.boolean().default(false),
    })
    .prefault({}),
  ingest: z
    .strictObject({
      /** largest segment message (video + reference frame) */
      maxPayloadBytes: z.number().int().min(64 << 10).max(256 << 20).default(8 << 20),
      helloTimeoutMs: z.number().int().positive().default(5_000),
      pingIntervalMs: z.number().int().positive().default(15_000),
      idleTimeoutMs: z.number().int().positive().default(300_000),
      partialTimeoutMs: z.number().int().positive().default(60_000),
      maxConnections: z.number().int().positive().default(64),
      maxConnectionsPerAddress: z.number().int().positive().default(8),
      /** largest decoded size a segment may declare (frames × width × height × 1.5 B, reference included) */
      maxDecodedBytes: z.number().int().min(16 * 2 ** 20).max(16 * 2 ** 30).default(2 ** 30),
      /** segments decoded and analysed at once over all connections */
      maxConcurrentSegments: z.number().int().min(1).max(64).default(2),
    })
    .prefault({}),
  detector: z.strictObject({
    modelPath: z.string().min(1),
    device: z.enum(['cpu', 'cuda']).default('cpu'),
  }),
  storage: z
    .strictObject({
      dir: z.string().min(1).default('/var/lib/camstream'),
      /** per-segment results (detections, F1, bytes on the wire) stored longer ago than this are deleted, hourly */
      metricsRetentionHours: z.number().positive().default(24 * 7),
      /** rejected segments kept for inspection: capped and expiring */
      failuresMaxRows: z.number().int().positive().default(1000),
      failuresMaxBytes: z.number().int().positive().default(256 << 20),
      failuresRetentionHours: z.number().positive().default(24 * 7),
    })
    .prefault({}),
  /** AccMPEG training labels from the uploads (server/label-store.ts): every N-th segment's last decoded frame,
   * written under <storage.dir>/labels/<camera>/ in the labelling CLI's format, for a per-camera cheap model */
  labels: z
    .strictObject({
      enabled: z.boolean().default(false),
      everyN: z.number().int().min(1).max(100000).default(10),
      maxFramesPerCamera: z.number().int().min(1).max(100000).default(1000),
    })
    .prefault({}),
  /** operators' questions over the event logs (CacheBlend): /fleet, /api/fleet, /api/ask and MQTT camstream/server/ask */
  ask: z
    .strictObject({
      enabled: z.boolean().default(false),
      /** the trained model (default: cacheblend/model in the package) */
      modelDir: z.string().min(1).optional(),
      /** how many 10-minute windows of the newest events a question is asked over */
      windows: z.number().int().min(1).max(144).default(6),
      /** CacheBlend's token selection: check layers (ascending, ≥ 1), the share of cached tokens kept at each, K or V deviation */
      selection: z
        .strictObject({
          checkLayers: z.array(z.number().int().min(1)).min(1).max(8).default([1]),
          ratios: z.array(z.number().min(0).max(1)).min(1).max(8).default([0.15]),
          by: z.enum(['k', 'v']).default('k'),
        })
        .refine((s) => s.checkLayers.length === s.ratios.length, { message: 'selection needs one ratio per check layer' })
        .refine((s) => s.checkLayers.every((l, i) => i === 0 || l > s.checkLayers[i - 1]), { message: 'check layers must be ascending' })
        .prefault({}),
      /** chunk KV caches: RAM tier (LRU) and disk budget (least recently used chunks evicted after each question) */
      cache: z
        .strictObject({
          ramMiB: z.number().min(0).max(65536).default(64),
          diskMiB: z.number().positive().max(1 << 20).default(1024),
        })
        .prefault({}),
      mqtt: z
        .strictObject({
          enabled: z.boolean().default(false),
          url: z.string().min(1).max(500).default('mqtt://127.0.0.1:1883'),
          baseTopic: z.string().min(1).max(100).default('camstream'),
          username: z.string().max(200).optional(),
          password: z.string().max(200).optional(),
        })
        .prefault({}),
    })
    .prefault({}),
  log: LogSchema,
});

export type AgentSettings = z.output<typeof AgentSettingsSchema>;
export type AgentSettingsInput = z.input<typeof AgentSettingsSchema>;
export type ServerSettings = z.output<typeof ServerSettingsSchema>;
export type ServerSettingsInput = z.input<typeof ServerSettingsSchema>;
export type SourceSettings = AgentSettings['source'];
export type EncoderSettings = AgentSettings['encoder'];
export type CheapModelSettings = AgentSettings['cheapModel'];
export type OneAdaptSettings = AgentSettings['oneadapt'];
export type MqttSettings = AgentSettings['mqtt'];

/**
 * The settings fleet control (MQTT set_config) may change: knobs, targets, thresholds and the log
 * level. Identity, server URL and credentials, source, storage, MQTT and HTTP settings are local-only
 * (edit the file on the device). Each value is checked by the same rule as in the file.
 */
export const REMOTE_CONFIG_KEYS: Record<string, z.ZodType> = Object.fromEntries(
  [
    'encoder.baseQp', 'encoder.preset', 'encoder.segmentFrames',
    'cheapModel.enabled', 'cheapModel.threshold', 'cheapModel.everyK', 'cheapModel.highQp', 'cheapModel.lowQp',
    'oneadapt.enabled', 'oneadapt.targetKbps', 'oneadapt.targetF1', 'oneadapt.lambdaBw', 'oneadapt.lr', 'oneadapt.f1Mode', 'oneadapt.f1Margin',
    'monitor.referenceEvery', 'monitor.referenceQp',
    'log.level',
  ].map((k) => [k, fieldSchema(k)]),
);

/** The schema of one leaf of AgentSettingsSchema (defaults, prefaults and optionals unwrapped), so remote values obey the file's rules. */
function fieldSchema(dotted: string): z.ZodType {
  let cur: z.ZodType = AgentSettingsSchema;
  for (const part of dotted.split('.')) {
    cur = unwrap(cur);
    const shape = (cur as unknown as { shape?: Record<string, z.ZodType> }).shape;
    if (!shape?.[part]) throw new Error(`REMOTE_CONFIG_KEYS: no setting ${dotted}`);
    cur = shape[part];
  }
  return unwrap(cur);
}

function unwrap(t: z.ZodType): z.ZodType {
  let cur = t as unknown as { _zod: { def: { type: string; innerType?: z.ZodType } } };
  while (['default', 'prefault', 'optional'].includes(cur._zod.def.type) && cur._zod.def.innerType) cur = cur._zod.def.innerType as unknown as typeof cur;
  return cur as unknown as z.ZodType;
}

