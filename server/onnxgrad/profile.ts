/**
 * onnxruntime per-operator profiling: run a session with `enableProfiling`, then aggregate the
 * JSON trace it writes (Chrome trace format; one `<node>_kernel_time` event per node run, `dur` in µs)
 * into milliseconds per operator type per run.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';

export interface OpTime {
  op: string;
  /** ms per run, summed over the nodes of this type (each node: its median over the runs) */
  ms: number;
  /** the same with each node's fastest run: the uncontended cost, robust to other work on a shared machine */
  minMs: number;
  /** nodes of this type that ran */
  nodes: number;
  /** share of the total kernel time */
  share: number;
}

interface TraceEvent { cat?: string; name?: string; dur?: number; args?: { op_name?: string } }

const median = (a: number[]): number => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

/**
 * Aggregate onnxruntime profile events into per-op-type times, slowest first. Each node's time is its
 * median over the runs it appears in (robust to the odd preempted run on a shared machine).
 */
export function aggregateProfile(events: readonly TraceEvent[]): OpTime[] {
  const byNode = new Map<string, { op: string; us: number[] }>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || typeof e.dur !== 'number') continue;
    const n = byNode.get(e.name) ?? { op: e.args?.op_name ?? '?', us: [] };
    n.us.push(e.dur);
    byNode.set(e.name, n);
  }
  const byOp = new Map<string, { us: number; minUs: number; nodes: number }>();
  let total = 0;
  for (const { op, us } of byNode.values()) {
    const m = median(us);
    const s = byOp.get(op) ?? { us: 0, minUs: 0, nodes: 0 };
    s.us += m;
    s.minUs += Math.min(...us);
    s.nodes++;
    byOp.set(op, s);
    total += m;
  }
  return [...byOp.entries()]
    .map(([op, s]) => ({ op, ms: s.us / 1000, minMs: s.minUs / 1000, nodes: s.nodes, share: total ? s.us / total : 0 }))
    .sort((a, b) => b.ms - a.ms);
}

/** Profile `runs` runs of a model after `warmup` runs (whose events are dropped). */
export async function profileModel(
  model: Uint8Array | string,
  feeds: Record<string, ort.Tensor>,
  opts: { runs?: number; warmup?: number; intraOpNumThreads?: number } = {},
): Promise<{ ops: OpTime[]; totalMs: number; minTotalMs: number }> {
  const runs = opts.runs ?? 5;
  const warmup = opts.warmup ?? 2;
  const dir = mkdtempSync(join(tmpdir(), 'ortprof-'));
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    enableProfiling: true,
    profileFilePrefix: join(dir, 'p'),
    ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
  };
  const session = typeof model === 'string' ? await ort.InferenceSession.create(model, so) : await ort.InferenceSession.create(model, so);
  try {
    for (let i = 0; i < warmup + runs; i++) await session.run(feeds);
    session.endProfiling();
  } finally {
    await session.release();
  }
  try {
    const file = readdirSync(dir).find((f) => f.endsWith('.json'));
    if (!file) throw new Error('onnxruntime wrote no profile');
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as TraceEvent[];
    // drop the warm-up runs: events are in run order; each run has the same node events
    const nodeEvents = events.filter((e) => e.cat === 'Node' && e.name?.endsWith('_kernel_time'));
    const perRun = nodeEvents.length / (warmup + runs);
    const ops = aggregateProfile(Number.isInteger(perRun) ? nodeEvents.slice(warmup * perRun) : nodeEvents);
    return { ops, totalMs: ops.reduce((a, o) => a + o.ms, 0), minTotalMs: ops.reduce((a, o) => a + o.minMs, 0) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
