/** Child for the event-loop lag metric test: blocks its thread 150 ms and prints the scraped quantiles (JSON). */
import { AgentMetrics } from '../../agent/metrics.ts';

const m = new AgentMetrics({ processMetrics: false });
const scrape = async (): Promise<Record<string, number>> => {
  const out: Record<string, number> = {};
  for (const l of (await m.metrics()).split('\n')) {
    const r = /^camstream_event_loop_lag_seconds\{quantile="([^"]+)"\} (\S+)$/.exec(l);
    if (r) out[r[1]] = Number(r[2]);
  }
  return out;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
await scrape(); // start a fresh window
await sleep(50);
const t = performance.now();
while (performance.now() - t < 150); // frame work on the event loop
await sleep(30);
const blocked = await scrape();
await sleep(100);
const after = await scrape();
m.close();
process.stdout.write(JSON.stringify({ blocked, after }));
