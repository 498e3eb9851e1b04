/**
 * The agent daemon as systemd runs it: a separate process, SIGTERM while streaming to an absent
 * server. Every segment it reported as queued must be in the SQLite outbox afterwards, and it must
 * exit 0 after logging its stop.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentStore } from '../agent/store.ts';
import { VIDEOS } from '../testdata/fixtures.ts';

test('SIGTERM mid-stream: exits 0 and every queued segment is in the outbox', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'daemon-'));
  const file = path.join(dir, 'agent.yaml');
  writeFileSync(file, [
    'deviceId: cam-daemon',
    `source: { kind: file, uri: ${JSON.stringify(VIDEOS.people)}, fps: 10 }`,
    'server: { url: "ws://127.0.0.1:1/ingest" }',
    `storage: { dir: ${JSON.stringify(dir)} }`,
    'http: { host: 127.0.0.1, port: 0 }',
    '',
  ].join('\n'));
  const child = spawn(process.execPath, ['--import', 'tsx', 'agent/main.ts', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const queued = () => lines.filter((l) => l.includes('"segment queued"')).length;
  const t0 = Date.now();
  while (queued() < 3) {
    if (Date.now() - t0 > 60_000 || child.exitCode !== null) throw new Error(`agent did not queue segments: ${stderr}\n${lines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  expect(code).toBe(0);
  expect(lines.some((l) => l.includes('"agent stopped"'))).toBe(true);
  const n = queued();
  const store = new AgentStore(path.join(dir, 'cam-daemon.db'));
  expect(store.integrityCheck()).toBe('ok');
  expect(store.depth()).toBe(n); // nothing acknowledged (no server), nothing lost
  const seqs = store.pending(100).map((r) => (r.meta as { seq: number }).seq);
  expect(seqs).toEqual([...Array(n).keys()]);
  for (const r of store.pending(100)) expect(r.segmentId).toMatch(/^cam-daemon-[0-9a-f]{32}$/); // unguessable ids
  store.close();
});
