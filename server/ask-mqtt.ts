/**
 * The ask API over MQTT: requests on `<base>/server/ask` as JSON {"id", "question", "token"}; the answer streams
 * on `<base>/server/ask/<id>` as the same events as the HTTP API (chunks, each word, done) or one error event.
 * The token is the server's API bearer token (same check as HTTP). Malformed requests without a usable id are
 * dropped (there is nowhere to answer); retained requests are ignored (they would be re-run on every subscribe).
 * Anyone allowed by the broker to read `<base>/server/ask/#` sees answers: restrict it with the broker's ACLs.
 */
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { z } from 'zod';
import type { Asker } from './fleet-api.ts';

const RequestSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  question: z.string().min(1).max(300),
  token: z.string().max(512).optional(),
});

export interface AskMqttOptions {
  url: string;
  baseTopic: string;
  username?: string;
  password?: string;
  asker: Asker;
  /** the server's token check */
  authorized: (token: string | undefined) => boolean;
  log?: { warn: (o: object, msg: string) => void; error: (o: object, msg: string) => void };
  /** how long one answer's publishes may wait for the broker's acknowledgements before the next question; default 10 s */
  publishTimeoutMs?: number;
}

export class AskMqttBridge {
  private client: MqttClient | null = null;
  private readonly requestTopic: string;
  private pending = Promise.resolve();

  constructor(private readonly o: AskMqttOptions) {
    this.requestTopic = `${o.baseTopic}/server/ask`;
  }

  /** Connect and subscribe (again after every reconnect); resolves after the first subscription. */
  start(): Promise<void> {
    const opts: IClientOptions = { username: this.o.username, password: this.o.password, reconnectPeriod: 2000, clientId: `camstream-server-ask-${process.pid}` };
    const client = connect(this.o.url, opts);
    this.client = client;
    client.on('error', (err) => this.o.log?.error({ component: 'ask-mqtt', err: err.message }, 'mqtt error'));
    client.on('message', (topic, payload, packet) => {
      if (topic !== this.requestTopic || packet.retain) return;
      // one question at a time, in arrival order
      this.pending = this.pending.then(() => this.handle(payload)).catch((e) => this.o.log?.error({ component: 'ask-mqtt', err: (e as Error).message }, 'ask failed'));
    });
    return new Promise<void>((resolve) => {
      client.on('connect', () => {
        client.subscribe(this.requestTopic, { qos: 1 }, (err) => {
          if (err) this.o.log?.error({ component: 'ask-mqtt', err: err.message }, 'subscribe failed');
          else resolve();
        });
      });
    });
  }

  private async handle(payload: Buffer): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(payload.toString('utf8'));
    } catch {
      this.o.log?.warn({ component: 'ask-mqtt', bytes: payload.length }, 'ask request is not JSON: dropped');
      return;
    }
    const idOnly = z.object({ id: RequestSchema.shape.id }).safeParse(raw);
    if (!idOnly.success) {
      this.o.log?.warn({ component: 'ask-mqtt' }, 'ask request without a valid id: dropped');
      return;
    }
    const reply = `${this.requestTopic}/${idOnly.data.id}`;
    // Publishes are queued, not awaited inside the asker: a broker that is down or never acknowledges must not
    // hold the ask service's one-question lock (HTTP /api/ask waits on it too). mqtt.js keeps their order.
    const sent: Promise<unknown>[] = [];
    const send = (ev: object): void => {
      sent.push(this.client!.publishAsync(reply, JSON.stringify(ev), { qos: 1 }).catch((e: Error) => this.o.log?.warn({ component: 'ask-mqtt', err: e.message }, 'answer not published')));
    };
    const req = RequestSchema.safeParse(raw);
    if (!req.success) send({ type: 'error', error: req.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
    else if (!this.o.authorized(req.data.token)) send({ type: 'error', error: 'missing or invalid token' });
    else {
      try {
        for await (const ev of this.o.asker.ask(req.data.question)) send(ev);
      } catch (e) {
        send({ type: 'error', error: (e as Error).message });
      }
    }
    // the next MQTT question waits for this answer's acknowledgements, but not for ever
    let timer: NodeJS.Timeout | undefined;
    const acked = await Promise.race([Promise.all(sent).then(() => true), new Promise<boolean>((r) => { timer = setTimeout(() => r(false), this.o.publishTimeoutMs ?? 10_000); })]);
    clearTimeout(timer);
    if (!acked) this.o.log?.warn({ component: 'ask-mqtt', topic: reply }, 'answer not acknowledged by the broker in time; going on');
  }

  async stop(): Promise<void> {
    await this.pending;
    await this.client?.endAsync();
    this.client = null;
  }
}
