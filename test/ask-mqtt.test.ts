/**
 * The MQTT ask bridge must not hold the ask service while the broker does not acknowledge: the asker runs to
 * its end (releasing the one-question lock HTTP /api/ask shares), and the bridge moves on after its timeout.
 */
import { AskMqttBridge } from '../server/ask-mqtt.ts';
import type { Asker } from '../server/fleet-api.ts';
import type { AskEvent } from '../cacheblend/ask.ts';

test('a broker that never acknowledges: the asker finishes, the bridge gives up after publishTimeoutMs', async () => {
  let finished = false;
  const asker: Asker = {
    async *ask(): AsyncGenerator<AskEvent> {
      try {
        for (let i = 0; i < 3; i++) yield { type: 'word', word: `w${i}` } as unknown as AskEvent;
      } finally {
        finished = true; // AskService releases its lock here
      }
    },
  };
  const warnings: string[] = [];
  const bridge = new AskMqttBridge({ url: 'mqtt://127.0.0.1:1', baseTopic: 'camstream', asker, authorized: () => true, publishTimeoutMs: 300, log: { warn: (_o, m) => warnings.push(m), error: () => undefined } });
  const published: string[] = [];
  // an offline client: QoS 1 publishes are stored and never acknowledged
  (bridge as unknown as { client: unknown }).client = { publishAsync: (_t: string, m: string) => { published.push(m); return new Promise(() => undefined); } };
  const t0 = Date.now();
  await (bridge as unknown as { answer(reply: string, q: string): Promise<void> }).answer('camstream/server/ask/q1', 'any trucks?');
  expect(finished).toBe(true);
  expect(published.map((m) => JSON.parse(m).word)).toEqual(['w0', 'w1', 'w2']); // in order, all queued
  expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(warnings).toContain('answer not acknowledged by the broker in time; going on');
}, 10_000); // the bridge used to wait for the broker for ever: fail in 10 s, not hang

test('bad requests are answered at once, not behind a long answer; questions waiting are capped; oversized requests dropped', async () => {
  let release: () => void = () => undefined;
  const asker: Asker = {
    async *ask(q: string): AsyncGenerator<AskEvent> {
      if (q === 'slow') await new Promise<void>((r) => { release = r; });
      yield { type: 'done', question: q } as unknown as AskEvent;
    },
  };
  const bridge = new AskMqttBridge({ url: 'mqtt://127.0.0.1:1', baseTopic: 'camstream', asker, authorized: (t) => t === 'good', log: { warn: () => undefined, error: () => undefined } });
  const published: { topic: string; ev: { type: string; error?: string } }[] = [];
  (bridge as unknown as { client: unknown }).client = { publishAsync: async (topic: string, m: string) => { published.push({ topic, ev: JSON.parse(m) }); } };
  const req = (o: object): void => (bridge as unknown as { onRequest(p: Buffer): void }).onRequest(Buffer.from(JSON.stringify(o)));
  req({ id: 'long', question: 'slow', token: 'good' });
  await new Promise((r) => setTimeout(r, 20));
  req({ id: 'bad', question: 'x', token: 'nope' });
  await new Promise((r) => setTimeout(r, 20));
  expect(published).toEqual([{ topic: 'camstream/server/ask/bad', ev: { type: 'error', error: 'missing or invalid token' } }]); // while 'long' runs
  for (let i = 0; i < 20; i++) req({ id: `q${i}`, question: `q${i}`, token: 'good' });
  await new Promise((r) => setTimeout(r, 20));
  const busy = published.filter((p) => p.ev.error?.startsWith('server busy'));
  expect(busy.map((p) => p.topic)).toEqual(['q15', 'q16', 'q17', 'q18', 'q19'].map((q) => `camstream/server/ask/${q}`)); // 'long' + 15 wait
  (bridge as unknown as { onRequest(p: Buffer): void }).onRequest(Buffer.from(JSON.stringify({ id: 'huge', question: 'x'.repeat(5000), token: 'good' })));
  release();
  await (bridge as unknown as { pending: Promise<void> }).pending;
  expect(published.filter((p) => p.ev.type === 'done')).toHaveLength(16);
  expect(published.some((p) => p.topic.endsWith('/huge'))).toBe(false);
});
