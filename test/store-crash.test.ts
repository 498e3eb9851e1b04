/**
 * Crash consistency of AgentStore: a child process writes in a loop and prints every committed id;
 * we SIGKILL it at random moments, reopen the database and check that everything it printed is
 * there (acked rows still acked) and that PRAGMA integrity_check is ok.
 * Note: SIGKILL is a process crash; a real power cut additionally relies on synchronous=FULL
 * (fsync per commit), which this test cannot simulate.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AgentStore } from '../agent/store.ts';

const ROOT = resolve(import.meta.dirname, '..');
const CHILD = join(ROOT, 'test/helpers/store-crash-child.ts');

interface RunLog {
  enqueued: string[];
  acked: string[];
  configs: number[];
}

function runAndKill(dbPath: string, tag: string, killAfterLines: number): Promise<RunLog> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dbPath, tag], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const log: RunLog = { enqueued: [], acked: [], configs: [] };
    let buf = '';
    let lines = 0;
    let killed = false;
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const [kind, id] = line.split(' ');
        if (kind === 'E') log.enqueued.push(id);
        else if (kind === 'A') log.acked.push(id);
        else if (kind === 'C') log.configs.push(Number(id));
        lines++;
        if (!killed && lines >= killAfterLines) {
          killed = true;
          // a random extra delay so the kill lands anywhere inside a transaction or fsync
          setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 15));
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      // a partial last line (no newline) is not a claim: ignore it
      if (signal !== 'SIGKILL') reject(new Error(`child exited ${code} ${signal}: ${stderr}`));
      else resolvePromise(log);
    });
  });
}

test('every id printed before SIGKILL survives, acked stay acked, integrity ok', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'camstream-crash-'));
  const dbPath = join(dir, 'agent.db');
  const all: RunLog = { enqueued: [], acked: [], configs: [] };
  try {
    for (let run = 0; run < 6; run++) {
      const log = await runAndKill(dbPath, `r${run}`, 20 + Math.floor(Math.random() * 400));
      all.enqueued.push(...log.enqueued);
      all.acked.push(...log.acked);
      all.configs.push(...log.configs);
      expect(log.enqueued.length).toBeGreaterThan(0);

      const store = new AgentStore(dbPath);
      try {
        expect(store.integrityCheck()).toBe('ok');
        for (const id of all.enqueued) expect([id, store.isAcked(id)]).not.toEqual([id, undefined]);
        for (const id of all.acked) expect([id, store.isAcked(id)]).toEqual([id, true]);
        const pendingIds = new Set(store.pending(1_000_000).map((r) => r.segmentId));
        for (const id of all.acked) expect(pendingIds.has(id)).toBe(false);
        for (const v of all.configs) expect(store.getConfigVersion(v)?.who).toBe('crash-test');
        // the depth counter agrees with the rows
        expect(store.depth()).toBe(pendingIds.size);
      } finally {
        store.close();
      }
    }
    expect(all.enqueued.length).toBeGreaterThan(100);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
