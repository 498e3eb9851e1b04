/**
 * `npm run build` (tsc → dist/) gives services that run with plain node and production dependencies only:
 * the emitted code imports nothing but Node built-ins, the package's dependencies and its own files, and the
 * compiled server starts, serves /metrics and stops on SIGTERM.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DETECTOR_MODEL, requireFile } from '../testdata/fixtures.ts';
import { hashToken } from '../proc/auth.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// inside the checkout (.tmp/ is git-ignored) so that the compiled code finds the package root and build/
const OUT = path.join(ROOT, '.tmp', `dist-test-${process.pid}`);

beforeAll(() => {
  mkdirSync(path.dirname(OUT), { recursive: true });
  const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', OUT], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc build failed:\n${r.stdout}${r.stderr}`);
}, 240_000);
afterAll(() => rmSync(OUT, { recursive: true, force: true }));

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? jsFiles(path.join(dir, e.name)) : e.name.endsWith('.js') ? [path.join(dir, e.name)] : []));
}

test('emitted code imports only built-ins, production dependencies and its own .js files', () => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  const files = jsFiles(OUT);
  expect(files.map((f) => path.relative(OUT, f))).toEqual(expect.arrayContaining(['agent/main.js', 'server/main.js', 'encoder/kernels.js']));
  const bad: string[] = [];
  for (const f of files) {
    const src = readFileSync(f, 'utf8');
    for (const m of src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith('.')) {
        if (!spec.endsWith('.js')) bad.push(`${path.relative(OUT, f)}: relative import ${spec} not rewritten to .js`);
        continue;
      }
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
      if (spec.startsWith('node:') || builtinModules.includes(name)) continue;
      if (!(name in pkg.dependencies)) bad.push(`${path.relative(OUT, f)}: imports ${spec}${name in pkg.devDependencies ? ' (a devDependency)' : ''}`);
    }
  }
  expect(bad).toEqual([]);
});

const API_TOKEN = 'dist-test-api-token-0123456789';

test('the compiled server runs under plain node: starts, answers /metrics, stops on SIGTERM', async () => {
  requireFile(DETECTOR_MODEL);
  const dir = mkdtempSync(path.join(tmpdir(), 'camstream-dist-'));
  const port = 20000 + (process.pid % 20000);
  const cfg = path.join(dir, 'server.yaml');
  writeFileSync(cfg, `deviceId: dist-test\nprofile: server-cpu\nlisten:\n  host: 127.0.0.1\n  port: ${port}\ndetector:\n  modelPath: ${DETECTOR_MODEL}\n  device: cpu\nauth:\n  apiTokens: [${hashToken(API_TOKEN)}]\nstorage:\n  dir: ${dir}/state\nlog:\n  level: info\n`);
  const child = spawn(process.execPath, [path.join(OUT, 'server/main.js'), '--config', cfg], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    let metrics = '';
    for (let i = 0; i < 120 && !metrics; i++) {
      await new Promise((r) => setTimeout(r, 500));
      if (child.exitCode !== null) throw new Error(`compiled server exited ${child.exitCode}:\n${out}`);
      metrics = await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${API_TOKEN}` } }).then((r) => (r.ok ? r.text() : ''), () => '');
    }
    expect(metrics).toMatch(/^# HELP /m);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

test('the JetPack 4 container runs the compiled agent and only scripts that exist', () => {
  const df = readFileSync(path.join(ROOT, 'deploy/jetson/Dockerfile.jetpack4'), 'utf8');
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const entry = /^ENTRYPOINT \["node", "\/opt\/camstream\/(dist\/[^"]+)"\]/m.exec(df);
  expect(entry).not.toBeNull();
  expect(jsFiles(OUT).map((f) => `dist/${path.relative(OUT, f)}`)).toContain(entry![1]);
  const scripts = [...df.matchAll(/npm run ([\w:]+)/g)].map((m) => m[1]);
  expect(scripts).toEqual(expect.arrayContaining(['build:native', 'build:cuda', 'build']));
  for (const s of scripts) expect(pkg.scripts[s]).toBeDefined();
  expect(df).toMatch(/npm prune --omit=dev/);
});
