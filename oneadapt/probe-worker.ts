/**
 * Worker-thread entry of OneAdapt's probes (see probe-pool.ts): runs probeKnobs on the frames it is
 * sent, so the re-encodes, decodes, upsampling and per-pixel InputGrad stay off the agent's event loop.
 */
import os from 'node:os';
import { parentPort } from 'node:worker_threads';
import { knobValue } from './knobs.ts';
import { probeAtScale, type ProbeRequest } from './probe-pool.ts';

if (!parentPort) throw new Error('oneadapt/probe-worker.ts must run as a worker thread');
// Probes are background work: below the agent's thread, so capture, encode and the uplink come first
// (on Linux a thread's nice value is its own; pid 0 = this thread). Not permitted everywhere: then as is.
try {
  os.setPriority(0, Math.min(19, os.getPriority(0) + 5));
} catch {
  /* keep the inherited priority */
}
const port = parentPort;
port.on('message', (req: ProbeRequest & { id: number }) => {
  const ctrl = { knobs: req.knobs, values: () => Object.fromEntries([...req.knobs].map(([n, k]) => [n, knobValue(k)])) };
  probeAtScale(ctrl, req)
    .then((r) => port.postMessage({ id: req.id, ok: true, result: r }))
    .catch((e: unknown) => port.postMessage({ id: req.id, ok: false, error: e instanceof Error ? e.message : String(e) }));
});
