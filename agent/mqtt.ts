/**
 * MQTT fleet control for the edge agent (zigbee2mqtt-style request/response).
 *
 * Topics, all under `<baseTopic>/<deviceId>/`:
 *   status              retained 'online' / 'offline' (last will 'offline', retained)
 *   state               retained JSON AgentState
 *   request/<cmd>       commands (QoS 1); payload JSON, optional `transaction` id
 *   response/<cmd>      answers (QoS 1): {status:'ok', data, transaction} or {status:'error', error, transaction}
 * Home Assistant discovery: `<discoveryPrefix>/sensor/<deviceId>_<key>/config` (retained).
 *
 * Reliability: persistent session (clean: false, fixed clientId, MQTT 5 session expiry), so
 * QoS 1 commands published while the agent is away are delivered when it reconnects; redelivered
 * commands are deduplicated by transaction id; on every (re)connect the status, last state and
 * discovery are republished.
 *
 * Every request payload is validated here with zod; a malformed request is answered with an
 * error that names the problem and no handler is called.
 *
 * The class knows nothing about the rest of the agent: the controller passes `CommandHandlers`.
 */
import { EventEmitter } from 'node:events';
import { connect, type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// Wire schemas
// ---------------------------------------------------------------------------------------------

/** What the agent reports about itself (retained on `…/state`, returned by `get_state`). */
export const AgentStateSchema = z.object({
  deviceId: z.string(),
  /** ms since epoch when this state was assembled */
  t: z.number(),
  sourceRunning: z.boolean(),
  pipelineRunning: z.boolean(),
  /** current knob values, e.g. { 'oneadapt.targetKbps': 300, 'cheapModel.threshold': 0.2 } */
  knobs: z.record(z.string(), z.number()),
  /** bitrate of the last segment(s) in kbit/s; null before the first segment */
  bitrateKbps: z.number().nullable(),
  /** F1 of the last segment as reported by the server; null before the first reply */
  f1: z.number().nullable(),
  /** segments waiting in the outbox */
  queueDepth: z.number().int().min(0),
  /** measured capture frame rate; null when the source is stopped */
  fps: z.number().nullable(),
  segmentsEncoded: z.number().int().min(0).optional(),
  lastSegment: z.number().int().nullable().optional(),
  /** free-form extra fields the controller wants to expose */
  extra: z.record(z.string(), z.unknown()).optional(),
});
export type AgentState = z.infer<typeof AgentStateSchema>;

export const TransactionSchema = z.union([z.string().max(256), z.number()]);
export type Transaction = z.infer<typeof TransactionSchema>;

/** Configuration keys: dotted paths such as 'oneadapt.targetKbps'. */
const configKeyName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/, 'dotted key such as "oneadapt.targetKbps"');
const jsonScalar = z.union([z.number(), z.string().max(256), z.boolean(), z.null()]);

const common = { transaction: TransactionSchema.optional(), who: z.string().max(128).optional() };

export const SetConfigRequestSchema = z.strictObject({
  ...common,
  keys: z
    .record(configKeyName.max(128), jsonScalar)
    .refine((k) => Object.keys(k).length > 0, { message: 'at least one key is required' })
    .refine((k) => Object.keys(k).length <= 32, { message: 'at most 32 keys per request' }),
});
export const EmptyRequestSchema = z.strictObject(common);

export const COMMANDS = ['set_config', 'start_source', 'stop_source', 'snapshot', 'restart_pipeline', 'get_state'] as const;
export type CommandName = (typeof COMMANDS)[number];

const requestSchemas: Record<CommandName, z.ZodType<{ transaction?: Transaction; who?: string }>> = {
  set_config: SetConfigRequestSchema,
  start_source: EmptyRequestSchema,
  stop_source: EmptyRequestSchema,
  snapshot: EmptyRequestSchema,
  restart_pipeline: EmptyRequestSchema,
  get_state: EmptyRequestSchema,
};

export type CommandResponse =
  | { status: 'ok'; data: unknown; transaction?: Transaction }
  | { status: 'error'; error: string; transaction?: Transaction };

// ---------------------------------------------------------------------------------------------
// Handler interface (implemented by the agent controller)
// ---------------------------------------------------------------------------------------------

export interface SnapshotResult {
  width: number;
  height: number;
  jpegBase64?: string;
  pngBase64?: string;
}

export interface CommandHandlers {
  /** Apply validated config keys; `who` names the caller (e.g. 'mqtt' or 'mqtt:alice'). Throw to reject. */
  setConfig(keys: Record<string, unknown>, who: string): Promise<unknown>;
  startSource(): Promise<void>;
  stopSource(): Promise<void>;
  snapshot(): Promise<SnapshotResult>;
  restartPipeline(): Promise<void>;
  getState(): AgentState;
}

import type { Logger } from '../proc/log.ts';
import { withDeadline } from '../proc/deadline.ts';
export type { Logger };

export interface MqttControlOptions {
  /** broker URL, e.g. mqtt://localhost:1883 */
  url: string;
  deviceId: string;
  handlers: CommandHandlers;
  baseTopic?: string; // default 'camstream'
  discoveryPrefix?: string; // default 'homeassistant'
  /** false disables Home Assistant discovery */
  discovery?: boolean;
  username?: string;
  password?: string;
  /** mqtts:// or wss://: CA to trust and optional client certificate/key (PEM contents) */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer };
  /** fixed client id (needed for the persistent session); default `camstream-agent-<deviceId>` */
  clientId?: string;
  /** MQTT 5 session expiry: how long the broker keeps queued commands while we are away; default 7 days */
  sessionExpirySeconds?: number;
  reconnectPeriodMs?: number; // default 2000
  connectTimeoutMs?: number; // default 10000
  keepaliveSeconds?: number; // default 30
  /** start() waits at most this long for the first connection, then resolves anyway (the client keeps retrying); default 5000 */
  startWaitMs?: number;
  /** a handler that takes longer is answered with a timeout error; default 30000 */
  commandTimeoutMs?: number;
  /** how many recent transaction ids are remembered for deduplication; default 1000 */
  dedupSize?: number;
  /**
   * Where answered commands are kept by transaction id, so a repeated id (a redelivery, or a caller
   * that missed the answer) gets the same response again without running twice. Default: in memory,
   * `dedupSize` entries; the agent passes its SQLite store so this survives restarts.
   */
  responses?: ResponseCache;
  /**
   * The keys set_config may change (least privilege), each with its schema: any other key is rejected
   * and each value is parsed by its schema before `setConfig` sees it (nothing applied if any fails).
   */
  configKeys: Record<string, z.ZodType>;
  /** shown in the Home Assistant device block */
  swVersion?: string;
  deviceName?: string;
  logger?: Logger;
}

/** Answered commands by key (command + transaction id); bounded by the implementation. */
export interface ResponseCache {
  get(key: string): CommandResponse | undefined;
  put(key: string, response: CommandResponse): void;
}

/** In-memory ResponseCache keeping the newest `cap` entries. */
export class MemoryResponseCache implements ResponseCache {
  private readonly map = new Map<string, CommandResponse>();
  constructor(private readonly cap = 1000) {}
  get(key: string): CommandResponse | undefined {
    return this.map.get(key);
  }
  put(key: string, response: CommandResponse): void {
    this.map.delete(key);
    this.map.set(key, response);
    while (this.map.size > this.cap) this.map.delete(this.map.keys().next().value as string);
  }
}

export interface CommandEvent {
  cmd: string;
  transaction?: Transaction;
  status: 'ok' | 'error' | 'duplicate' | 'ignored';
  error?: string;
  ms: number;
}

export class MqttControlError extends Error {
  constructor(message: string, readonly cmd?: string, readonly timedOut = false) {
    super(message);
    this.name = 'MqttControlError';
  }
}

/** Insertion-ordered set that forgets the oldest entries beyond `cap`. */
export class RecentSet<T> {
  private readonly items = new Set<T>();
  constructor(private readonly cap: number) {
    if (!(cap > 0)) throw new RangeError(`RecentSet cap must be positive, got ${cap}`);
  }
  has(v: T): boolean {
    return this.items.has(v);
  }
  add(v: T): void {
    this.items.delete(v);
    this.items.add(v);
    while (this.items.size > this.cap) {
      const oldest = this.items.values().next().value as T;
      this.items.delete(oldest);
    }
  }
  get size(): number {
    return this.items.size;
  }
}

function describeZodError(err: z.ZodError): string {
  return err.issues
    .map((i) => {
      const where = i.path.length ? i.path.map(String).join('.') : 'payload';
      return `${where}: ${i.message}`;
    })
    .join('; ');
}

/** Sensors announced to Home Assistant: key → state field + presentation. */
const DISCOVERY_SENSORS: Array<{ key: string; name: string; field: keyof AgentState; unit?: string; deviceClass?: string; icon?: string }> = [
  { key: 'bitrate', name: 'Bitrate', field: 'bitrateKbps', unit: 'kbit/s', deviceClass: 'data_rate' },
  { key: 'f1', name: 'F1', field: 'f1', icon: 'mdi:target' },
  { key: 'queue_depth', name: 'Queue depth', field: 'queueDepth', unit: 'segments', icon: 'mdi:tray-full' },
  { key: 'fps', name: 'Frame rate', field: 'fps', unit: 'fps', icon: 'mdi:camera-timer' },
];

export declare interface MqttControl {
  on(event: 'connect', listener: (info: { sessionPresent: boolean; reconnect: boolean }) => void): this;
  on(event: 'disconnect', listener: () => void): this;
  on(event: 'command', listener: (ev: CommandEvent) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

export class MqttControl extends EventEmitter {
  readonly deviceId: string;
  readonly baseTopic: string;
  readonly discoveryPrefix: string;
  readonly clientId: string;
  private readonly opts: MqttControlOptions;
  private readonly handlers: CommandHandlers;
  private readonly log: Logger;
  private readonly seen: RecentSet<string>;
  private readonly responses: ResponseCache;
  private client: MqttClient | null = null;
  private lastState: AgentState | null = null;
  private connectCount = 0;
  /** commands run one at a time, in arrival order */
  private chain: Promise<void> = Promise.resolve();
  private stopping = false;

  constructor(opts: MqttControlOptions) {
    super();
    this.opts = opts;
    this.deviceId = opts.deviceId;
    this.baseTopic = opts.baseTopic ?? 'camstream';
    this.discoveryPrefix = opts.discoveryPrefix ?? 'homeassistant';
    this.clientId = opts.clientId ?? `camstream-agent-${opts.deviceId}`;
    this.handlers = opts.handlers;
    this.log = opts.logger ?? pino({ level: process.env.LOG_LEVEL ?? 'info' }).child({ component: 'mqtt', camera: opts.deviceId });
    this.seen = new RecentSet(opts.dedupSize ?? 1000);
    this.responses = opts.responses ?? new MemoryResponseCache(opts.dedupSize ?? 1000);
    if (/[#+/\s]/.test(this.deviceId) || this.deviceId.length === 0) {
      throw new MqttControlError(`deviceId ${JSON.stringify(this.deviceId)} cannot be used in an MQTT topic`);
    }
  }

  // --- topics -------------------------------------------------------------------------------
  topic(suffix: string): string {
    return `${this.baseTopic}/${this.deviceId}/${suffix}`;
  }
  get statusTopic(): string {
    return this.topic('status');
  }
  get stateTopic(): string {
    return this.topic('state');
  }
  requestTopic(cmd: string): string {
    return this.topic(`request/${cmd}`);
  }
  responseTopic(cmd: string): string {
    return this.topic(`response/${cmd}`);
  }
  discoveryTopic(key: string): string {
    return `${this.discoveryPrefix}/sensor/${this.deviceId}_${key}/config`;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** The underlying mqtt.js client (tests use it to simulate failures). */
  get mqttClient(): MqttClient | null {
    return this.client;
  }

  // --- lifecycle ----------------------------------------------------------------------------
  async start(): Promise<void> {
    if (this.client) return;
    this.stopping = false;
    const o = this.opts;
    const options: IClientOptions = {
      clientId: this.clientId,
      clean: false,
      protocolVersion: 5,
      properties: { sessionExpiryInterval: o.sessionExpirySeconds ?? 7 * 24 * 3600 },
      reconnectPeriod: o.reconnectPeriodMs ?? 2000,
      connectTimeout: o.connectTimeoutMs ?? 10_000,
      keepalive: o.keepaliveSeconds ?? 30,
      // we resubscribe ourselves when the broker lost our session
      resubscribe: false,
      // never pile up QoS 0 messages while offline (state is republished on connect instead)
      queueQoSZero: false,
      username: o.username,
      password: o.password,
      ...(o.tls?.ca ? { ca: o.tls.ca } : {}),
      ...(o.tls?.cert ? { cert: o.tls.cert, key: o.tls.key } : {}),
      rejectUnauthorized: true,
      will: { topic: this.statusTopic, payload: Buffer.from('offline'), qos: 1, retain: true },
    };
    const client = connect(o.url, options);
    this.client = client;

    client.on('connect', (connack) => this.onConnect(connack));
    client.on('close', () => {
      if (!this.stopping) this.log.warn({ url: o.url }, 'mqtt connection lost; retrying');
      this.emit('disconnect');
    });
    client.on('error', (err) => {
      this.log.warn({ err: err.message, url: o.url }, 'mqtt client error');
    });
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet));

    const waitMs = o.startWaitMs ?? 5000;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.off('connect', onReady);
        this.log.warn({ url: o.url, waitMs }, 'mqtt broker not reachable yet; continuing, will keep retrying');
        resolve();
      }, waitMs);
      const onReady = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.once('connect', onReady);
    });
  }

  /** Publish 'offline' (retained) and disconnect cleanly; the broker keeps our session (queued commands). */
  /** Refuse new commands from now on (the agent calls this first when it stops, before capture stops). */
  refuseCommands(): void {
    this.stopping = true;
  }

  async stop(): Promise<void> {
    const client = this.client;
    if (!client) return;
    this.stopping = true;
    // every wait below is bounded: systemd's TimeoutStopSec (30 s) must not be spent on a half-open broker link
    let force = !client.connected;
    try {
      if (client.connected) {
        const sent = await withDeadline(client.publishAsync(this.statusTopic, 'offline', { qos: 1, retain: true }).then(() => true), 3000, () => false);
        if (!sent) {
          this.log.warn({}, 'offline status not acknowledged within 3 s; the broker publishes the last will instead');
          force = true; // a link that does not acknowledge would hang a clean disconnect too
        }
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not publish offline status');
      force = true;
    }
    // let the command in progress finish, within the command timeout
    await withDeadline(this.chain.catch(() => undefined), Math.min(this.opts.commandTimeoutMs ?? 30_000, 10_000), () => undefined);
    // (mqtt.js ignores a second end() while one is under way, so force is decided up front)
    const ended = await withDeadline(client.endAsync(force).then(() => true, () => true), 3000, () => false);
    if (!ended) client.stream?.destroy();
    this.client = null;
  }

  /** Resolves when connected (immediately if already), rejects after `timeoutMs`. */
  whenConnected(timeoutMs = 10_000): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('connect', on);
        reject(new MqttControlError(`not connected to ${this.opts.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.once('connect', on);
    });
  }

  // --- publishing ---------------------------------------------------------------------------
  /** Remember the state and publish it (retained) when connected; it is republished on every reconnect. */
  publishState(state: AgentState): void {
    const parsed = AgentStateSchema.safeParse(state);
    if (!parsed.success) {
      throw new MqttControlError(`invalid AgentState: ${describeZodError(parsed.error)}`);
    }
    this.lastState = parsed.data;
    const client = this.client;
    if (client?.connected) {
      client.publish(this.stateTopic, JSON.stringify(parsed.data), { qos: 1, retain: true }, (err) => {
        if (err) this.log.warn({ err: err.message }, 'state publish failed');
      });
    }
  }

  /** Home Assistant discovery payloads, keyed by topic (exposed for tests and tooling). */
  discoveryMessages(): Array<{ topic: string; payload: Record<string, unknown> }> {
    const device = {
      identifiers: [`camstream_${this.deviceId}`],
      name: this.opts.deviceName ?? `camstream ${this.deviceId}`,
      manufacturer: 'camstream',
      model: 'edge agent',
      ...(this.opts.swVersion ? { sw_version: this.opts.swVersion } : {}),
    };
    return DISCOVERY_SENSORS.map((s) => ({
      topic: this.discoveryTopic(s.key),
      payload: {
        name: s.name,
        unique_id: `camstream_${this.deviceId}_${s.key}`,
        object_id: `camstream_${this.deviceId}_${s.key}`,
        state_topic: this.stateTopic,
        value_template: `{{ value_json.${String(s.field)} }}`,
        state_class: 'measurement',
        ...(s.unit ? { unit_of_measurement: s.unit } : {}),
        ...(s.deviceClass ? { device_class: s.deviceClass } : {}),
        ...(s.icon ? { icon: s.icon } : {}),
        availability_topic: this.statusTopic,
        payload_available: 'online',
        payload_not_available: 'offline',
        device,
      },
    }));
  }

  private onConnect(connack: IConnackPacket): void {
    const client = this.client;
    if (!client) return;
    const sessionPresent = connack.sessionPresent === true;
    const reconnect = this.connectCount > 0;
    this.connectCount++;
    this.log.info({ url: this.opts.url, sessionPresent, reconnect }, 'mqtt connected');
    const pub = (topic: string, payload: string, what: string): void => {
      client.publish(topic, payload, { qos: 1, retain: true }, (err) => {
        if (err) this.log.warn({ err: err.message, topic }, `${what} publish failed`);
      });
    };
    // rap (MQTT 5 retain-as-published): a command published with retain keeps its retain flag on live delivery
    // too, so it is refused like a replayed one (else `mosquitto_pub -r` ran it, and clearing it with -r -n ran it
    // again). Subscribed on every connect, also with a stored session, so a subscription made without rap (an
    // older agent's) is replaced; retained messages the re-subscription brings are refused like any retained one.
    client.subscribe(this.requestTopic('+'), { qos: 1, rap: true }, (err) => {
      if (err) this.log.error({ err: err.message }, 'subscribe to request topics failed');
    });
    pub(this.statusTopic, 'online', 'status');
    if (this.lastState) pub(this.stateTopic, JSON.stringify(this.lastState), 'state');
    if (this.opts.discovery !== false) {
      for (const m of this.discoveryMessages()) pub(m.topic, JSON.stringify(m.payload), 'discovery');
    }
    this.emit('connect', { sessionPresent, reconnect });
  }

  // --- requests -----------------------------------------------------------------------------
  private onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const prefix = this.topic('request/');
    if (!topic.startsWith(prefix)) return;
    const cmd = topic.slice(prefix.length);
    const started = Date.now();
    if (packet.retain) {
      // a retained command would be re-run on every subscribe: never act on one
      this.log.warn({ cmd }, 'ignoring retained command');
      this.emit('command', { cmd, status: 'ignored', error: 'retained', ms: 0 } satisfies CommandEvent);
      return;
    }
    if (this.stopping) {
      // shutting down: a start_source now would restart capture under a store about to close
      this.log.warn({ cmd }, 'agent is stopping: command refused');
      let transaction: Transaction | undefined;
      try {
        const t = (JSON.parse(payload.toString('utf8')) as { transaction?: unknown }).transaction;
        if (typeof t === 'string' || typeof t === 'number') transaction = t as Transaction;
      } catch { /* no usable transaction: answered without one */ }
      this.respond(cmd, { status: 'error', error: 'the agent is stopping; send the command again once it is back online', ...(transaction !== undefined ? { transaction } : {}) });
      return;
    }
    // Parse and validate synchronously (arrival order), run handlers one at a time.
    let parsed: ReturnType<MqttControl['parseRequest']>;
    try {
      parsed = this.parseRequest(cmd, payload);
    } catch (err) {
      // a bug in validation must cost one command, never the process (a persistent session would redeliver it)
      parsed = { error: `could not check '${cmd}' request: ${(err as Error).message}` };
    }
    const key = parsed.transaction === undefined ? undefined : `${cmd}\u0000${typeof parsed.transaction}:${String(parsed.transaction)}`;
    if (key !== undefined) {
      if (this.seen.has(key) || this.responses.get(key)) {
        // runs once; a repeat (redelivery, or a caller that missed it) gets the first answer again,
        // after the first one finished (commands are serialized)
        this.chain = this.chain.then(() => {
          const cached = this.responses.get(key);
          this.log.info({ cmd, transaction: parsed.transaction, dup: packet.dup, answered: cached !== undefined }, 'repeated transaction: not run again');
          this.emit('command', { cmd, transaction: parsed.transaction, status: 'duplicate', ms: 0 } satisfies CommandEvent);
          if (cached) this.respond(cmd, cached);
        });
        return;
      }
      this.seen.add(key);
    }
    this.chain = this.chain.then(async () => {
      let response: CommandResponse;
      let stillRunning: Promise<unknown> | undefined;
      if ('error' in parsed) {
        response = { status: 'error', error: parsed.error };
      } else {
        let run: Promise<unknown> | undefined;
        try {
          // queued before refuseCommands(), run after it: refused too (the agent is stopping)
          if (this.stopping) throw new MqttControlError('the agent is stopping; send the command again once it is back online', cmd);
          run = parsed.run();
          const data = await this.withTimeout(cmd, run);
          response = { status: 'ok', data: data === undefined ? {} : data };
        } catch (err) {
          response = { status: 'error', error: err instanceof Error ? err.message : String(err) };
          // answered now, but still running: the next command waits for it (one at a time, below)
          if (err instanceof MqttControlError && err.timedOut) {
            response.error += '; it is still running, later commands wait for it';
            stillRunning = run;
          }
        }
      }
      if (parsed.transaction !== undefined) response.transaction = parsed.transaction;
      const ms = Date.now() - started;
      if (response.status === 'error') this.log.warn({ cmd, transaction: parsed.transaction, error: response.error }, 'command failed');
      else this.log.info({ cmd, transaction: parsed.transaction, ms }, 'command done');
      this.emit('command', {
        cmd,
        transaction: parsed.transaction,
        status: response.status,
        ...(response.status === 'error' ? { error: response.error } : {}),
        ms,
      } satisfies CommandEvent);
      if (key !== undefined) this.remember(key, response);
      this.respond(cmd, response);
      if (stillRunning) {
        // a repeat of this transaction gets the real outcome once there is one
        let late: CommandResponse;
        try {
          const data = await stillRunning;
          late = { status: 'ok', data: data === undefined ? {} : data };
        } catch (e) {
          late = { status: 'error', error: e instanceof Error ? e.message : String(e) };
        }
        if (parsed.transaction !== undefined) late.transaction = parsed.transaction;
        this.log.info({ cmd, transaction: parsed.transaction, status: late.status, ms: Date.now() - started }, 'timed-out command finished');
        if (key !== undefined) this.remember(key, late);
      }
    }).catch((e: unknown) => {
      // a listener or publish that throws must not break the chain: every later command would be dropped
      this.log.error({ cmd, err: e instanceof Error ? e.message : String(e) }, 'command handling failed');
    });
  }

  /** Keep the answer for repeats; a very large one (a snapshot) is kept as a short note instead. */
  private remember(key: string, response: CommandResponse): void {
    const small = JSON.stringify(response).length <= 16 << 10;
    const kept: CommandResponse = small ? response : { status: 'error', error: 'this transaction was answered already (response too large to repeat); use a new transaction id', transaction: response.transaction };
    try {
      this.responses.put(key, kept);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not keep the command response');
    }
  }

  private parseRequest(
    cmd: string,
    payload: Buffer,
  ): { transaction?: Transaction; error: string } | { transaction?: Transaction; run: () => Promise<unknown> } {
    let json: unknown;
    const text = payload.toString('utf8').trim();
    if (text === '') {
      json = {};
    } else {
      try {
        json = JSON.parse(text);
      } catch (err) {
        return { error: `invalid JSON payload for '${cmd}': ${(err as Error).message}` };
      }
    }
    // recover the transaction id even from an invalid request, so the caller can match the error
    let transaction: Transaction | undefined;
    if (json !== null && typeof json === 'object' && !Array.isArray(json)) {
      const t = TransactionSchema.safeParse((json as Record<string, unknown>).transaction);
      if (t.success) transaction = t.data;
    }
    if (!(COMMANDS as readonly string[]).includes(cmd)) {
      return { transaction, error: `unknown command '${cmd}'; known commands: ${COMMANDS.join(', ')}` };
    }
    const name = cmd as CommandName;
    const result = requestSchemas[name].safeParse(json);
    if (!result.success) {
      return { transaction, error: `invalid '${cmd}' request: ${describeZodError(result.error)}` };
    }
    const req = result.data;
    const who = req.who ? `mqtt:${req.who}` : 'mqtt';
    const h = this.handlers;
    switch (name) {
      case 'set_config': {
        const keys = (req as z.infer<typeof SetConfigRequestSchema>).keys;
        const checked = this.checkConfigKeys(keys);
        if ('error' in checked) return { transaction, error: `invalid 'set_config' request: ${checked.error}` };
        return { transaction, run: () => h.setConfig(checked.keys, who) };
      }
      case 'start_source':
        return { transaction, run: () => h.startSource() };
      case 'stop_source':
        return { transaction, run: () => h.stopSource() };
      case 'snapshot':
        return { transaction, run: () => h.snapshot() };
      case 'restart_pipeline':
        return { transaction, run: () => h.restartPipeline() };
      case 'get_state':
        return { transaction, run: async () => h.getState() };
    }
  }

  private checkConfigKeys(keys: Record<string, unknown>): { keys: Record<string, unknown> } | { error: string } {
    const schemas = this.opts.configKeys;
    const out: Record<string, unknown> = {};
    const problems: string[] = [];
    for (const [k, v] of Object.entries(keys)) {
      const s = Object.hasOwn(schemas, k) ? schemas[k] : undefined; // not Object.prototype's members
      if (!s) {
        problems.push(`keys.${k}: unknown key (known: ${Object.keys(schemas).join(', ')})`);
        continue;
      }
      const r = s.safeParse(v);
      if (r.success) out[k] = r.data;
      else problems.push(...r.error.issues.map((i) => `keys.${[k, ...i.path.map(String)].join('.')}: ${i.message}`));
    }
    return problems.length ? { error: problems.join('; ') } : { keys: out };
  }

  private withTimeout<T>(cmd: string, p: Promise<T>): Promise<T> {
    const ms = this.opts.commandTimeoutMs ?? 30_000;
    return withDeadline(p, ms, (): never => {
      throw new MqttControlError(`'${cmd}' did not finish within ${ms} ms`, cmd, true);
    });
  }

  private respond(cmd: string, response: CommandResponse): void {
    const client = this.client;
    if (!client) return;
    // QoS 1: mqtt.js keeps it in its outgoing store while disconnected and sends it on reconnect
    client.publish(this.responseTopic(cmd), JSON.stringify(response), { qos: 1 }, (err) => {
      if (err) this.log.warn({ err: err.message, cmd }, 'response publish failed');
    });
  }
}
