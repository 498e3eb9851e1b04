/** Shared benchmark reporting: a readable table on stdout and the same numbers in bench/results/<name>.json. */
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function benchMeta(): { date: string; commit: string; cpu: string } {
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
    // tracked files changed since that commit (results and docs aside): the run is not reproducible from the hash alone
    const dirty = execSync("git status --porcelain --untracked-files=no -- . ':!bench/results' ':!*.md'", { encoding: 'utf8' }).trim();
    if (dirty) commit += '-dirty';
  } catch { /* not a git checkout */ }
  const cpus = os.cpus();
  return { date: new Date().toISOString(), commit, cpu: `${cpus[0]?.model ?? 'unknown'} x${cpus.length}` };
}

export function printTable(title: string, rows: Record<string, string | number>[]): void {
  console.log(`\n${title}`);
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const fmt = (v: string | number): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : v);
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c] ?? '').length)));
  const line = (cells: string[]): string => cells.map((s, i) => s.padStart(widths[i])).join('  ');
  console.log(line(cols));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(cols.map((c) => fmt(r[c] ?? ''))));
}

export function writeResult(name: string, result: Record<string, unknown>): string {
  const dir = path.resolve('bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ ...benchMeta(), ...result }, null, 2) + '\n');
  console.log(`\nwrote ${file}`);
  return file;
}
