/** /api/ask bounds how many questions wait: beyond MAX_HTTP_ASKS a request is answered 503 at once (as over MQTT). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FleetApi, MAX_HTTP_ASKS } from '../server/fleet-api.ts';
import type { AskEvent } from '../cacheblend/ask.ts';

test('questions beyond the waiting limit get 503 "busy" at once; the waiting ones are answered', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const api = new FleetApi({
    source: { fleet: () => [] },
    asker: {
      async *ask(): AsyncGenerator<AskEvent> {
        await gate; // the model is busy with a long answer
        yield { type: 'done', answer: 'ok', ttftMs: 1, totalMs: 1, contextTokens: 1, recomputed: [] };
      },
    },
    authorize: () => true,
  });
  const server = http.createServer((req, res) => void api.handle(req, res).then((done) => { if (!done) res.writeHead(404).end(); }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/ask`;
  const ask = (): Promise<number> => fetch(url, { method: 'POST', body: JSON.stringify({ question: 'which cameras saw a truck ?' }), headers: { 'content-type': 'application/json' } }).then(async (r) => { await r.text(); return r.status; });
  try {
    const waiting = Array.from({ length: MAX_HTTP_ASKS }, () => ask());
    await new Promise((r) => setTimeout(r, 300));
    expect(await ask()).toBe(503); // answered while the others still wait
    release();
    expect(await Promise.all(waiting)).toEqual(Array(MAX_HTTP_ASKS).fill(200));
    expect(await ask()).toBe(200); // room again
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});
