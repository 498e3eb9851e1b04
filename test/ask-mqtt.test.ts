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
  await (bridge as unknown as { handle(p: Buffer): Promise<void> }).handle(Buffer.from(JSON.stringify({ id: 'q1', question: 'any trucks?', token: 't' })));
  expect(finished).toBe(true);
  expect(published.map((m) => JSON.parse(m).word)).toEqual(['w0', 'w1', 'w2']); // in order, all queued
  expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(warnings).toContain('answer not acknowledged by the broker in time; going on');
}, 10_000); // the bridge used to wait for the broker for ever: fail in 10 s, not hang
