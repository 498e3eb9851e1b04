/**
 * Child process for test/store-crash.test.ts: writes to an AgentStore in a tight loop and prints
 * each id only after the call that committed it returned. The parent kill -9's it at random.
 *   E <segmentId>   enqueued      A <segmentId>   acked      C <versionId>   config version saved
 * argv: <dbPath> <runTag>
 */
import { randomBytes } from 'node:crypto';
import { writeSync } from 'node:fs';
import { AgentStore } from '../../agent/store.ts';

const [dbPath, tag] = process.argv.slice(2);
const store = new AgentStore(dbPath, { maxRows: 1_000_000, maxBytes: 1 << 30 });
const out = (line: string) => writeSync(1, line + '\n'); // synchronous: printed means the call returned
out('READY');
const unacked: string[] = [];
for (let i = 0; ; i++) {
  const segmentId = `${tag}-${i}`;
  store.enqueue({ segmentId, cameraId: 'cam0', meta: { i, tag }, data: randomBytes(512 + ((i * 7919) % 8192)) });
  out(`E ${segmentId}`);
  unacked.push(segmentId);
  if (i % 3 === 2) {
    const victim = unacked.shift()!;
    store.ack(victim);
    out(`A ${victim}`);
  }
  if (i % 5 === 0) {
    const id = store.saveConfigVersion(`deviceId: crash\n# ${segmentId}\n`, 'crash-test', `iteration ${i}`);
    out(`C ${id}`);
  }
  if (i % 50 === 0) store.recordMetric('camstream_outbox_depth', store.depth());
}
