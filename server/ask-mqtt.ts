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
import { withDeadline } from '../proc/deadline.ts';

const RequestSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  question: z.string().min(1).max(300),
  token: z.string().max(512).optional(),
});

/** largest request accepted (a question is at most 300 characters) and most questions waiting for an answer */
const MAX_REQUEST_BYTES = 4096;
const MAX_WAITING = 16;

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
  private waiting = 0;

  constructor(private readonly o: AskMqttOptions) {
    this.requestTopic = `${o.baseTopic}/server/ask`;
  }

  /** Connect and subscribe (again after every reconnect); resolves after the first subscription. */
  start(): Promise<void> {
    // MQTT 5 so the subscription can ask for retain-as-published: a question published with retain keeps the flag on
    // live delivery too and is ignored like a replayed one
    const opts: IClientOptions = { protocolVersion: 5, username: this.o.username, password: this.o.password, reconnectPeriod: 2000, clientId: `camstream-server-ask-${process.pid}` };
    const client = connect(this.o.url, opts);
    this.client = client;
    client.on('error', (err) => this.o.log?.error({ component: 'ask-mqtt', err: err.message }, 'mqtt error'));
    client.on('message', (topic, payload, packet) => {
      if (topic === this.requestTopic && !packet.retain) this.onRequest(payload);
    });
    return new Promise<void>((resolve) => {
      client.on('connect', () => {
        client.subscribe(this.requestTopic, { qos: 1, rap: true }, (err) => {
          if (err) this.o.log?.error({ component: 'ask-mqtt', err: err.message }, 'subscribe failed');
          else resolve();
        });
      });
    });
  }

  /**
   * Checked at once (a bad token or request is answered without waiting behind long answers); valid questions
   * queue, one answered at a time in arrival order, at most MAX_WAITING of them.
   */
  private onRequest(payload: Buffer): void {
    const r = this.check(payload);
    if (!r) return;
    if ('error' in r) return void this.publish(r.reply, { type: 'error', error: r.error });
    if (this.waiting >= MAX_WAITING) return void this.publish(r.reply, { type: 'error', error: `server busy: ${MAX_WAITING} questions are waiting; ask again later` });
    this.waiting++;
    this.pending = this.pending
      .then(() => this.answer(r.reply, r.question))
      .catch((e) => this.o.log?.error({ component: 'ask-mqtt', err: (e as Error).message }, 'ask failed'))
      .finally(() => { this.waiting--; });
  }

  /** A request's reply topic and question, or the error to answer there; null: dropped (nowhere to answer). */
  private check(payload: Buffer): { reply: string; question: string } | { reply: string; error: string } | null {
    if (payload.length > MAX_REQUEST_BYTES) {
      this.o.log?.warn({ component: 'ask-mqtt', bytes: payload.length }, `ask request over ${MAX_REQUEST_BYTES} bytes: dropped`);
      return null;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(payload.toString('utf8'));
    } catch {
      this.o.log?.warn({ component: 'ask-mqtt', bytes: payload.length }, 'ask request is not JSON: dropped');
      return null;
    }
    const idOnly = z.object({ id: RequestSchema.shape.id }).safeParse(raw);
    if (!idOnly.success) {
      this.o.log?.warn({ component: 'ask-mqtt' }, 'ask request without a valid id: dropped');
      return null;
    }
    const reply = `${this.requestTopic}/${idOnly.data.id}`;
    const req = RequestSchema.safeParse(raw);
    if (!req.success) return { reply, error: req.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') };
    if (!this.o.authorized(req.data.token)) return { reply, error: 'missing or invalid token' };
    return { reply, question: req.data.question };
  }

  private async answer(reply: string, question: string): Promise<void> {
    // Publishes are queued, not awaited inside the asker: a broker that is down or never acknowledges must not
    // hold the ask service's one-question lock (HTTP /api/ask waits on it too). mqtt.js keeps their order.
    const sent: Promise<unknown>[] = [];
    const send = (ev: object): void => { sent.push(this.publish(reply, ev)); };
    try {
      for await (const ev of this.o.asker.ask(question)) send(ev);
    } catch (e) {
      send({ type: 'error', error: (e as Error).message });
    }
    // the next MQTT question waits for this answer's acknowledgements, but not for ever
    const acked = await withDeadline(Promise.all(sent).then(() => true), this.o.publishTimeoutMs ?? 10_000, () => false);
    if (!acked) this.o.log?.warn({ component: 'ask-mqtt', topic: reply }, 'answer not acknowledged by the broker in time; going on');
  }

  private publish(topic: string, ev: object): Promise<unknown> {
    return this.client!.publishAsync(topic, JSON.stringify(ev), { qos: 1 }).catch((e: Error) => this.o.log?.warn({ component: 'ask-mqtt', err: e.message }, 'answer not published'));
  }

  async stop(): Promise<void> {
    await this.pending;
    await this.client?.endAsync();
    this.client = null;
  }
}
