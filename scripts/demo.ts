/**
 * The main job, end to end on the bundled sample video, as two processes:
 *   server (detector + F1 + DNNGrad)  ⇄  agent (cheap model → QP map → x264 → outbox → WebSocket, OneAdapt)
 * Midway the server is killed (SIGKILL) and restarted, to show that the agent's outbox loses nothing.
 * At the end it prints what the server stored: every segment, its bytes, F1 and the knobs used.
 *
 *   npm run demo [-- --segments 24]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ServerStore } from '../server/store.ts';
import { hashToken, newToken } from '../proc/auth.ts';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({ options: { segments: { type: 'string', default: '24' }, port: { type: 'string', default: '18080' } } });
const segments = Number(values.segments);
const port = Number(values.port);
const dir = path.join(root, 'data', 'demo');
const shared = process.env.CAMSTREAM_SHARED ?? path.resolve(root, '..', 'shared');
const model = path.join(shared, 'models', 'yolox_nano.onnx');

if (!existsSync(model)) {
  console.error(`demo: detector model not found at ${model} (../shared beside the repo, or set CAMSTREAM_SHARED)`);
  process.exit(1);
}
rmSync(dir, { recursive: true, force: true });
// the camera authenticates with its own secret; the server keeps only its SHA-256
const camToken = newToken();
mkdirSync(dir, { recursive: true });
writeFileSync(
  path.join(dir, 'server.yaml'),
  `deviceId: demo-server\nprofile: server-cpu\nlisten: { host: 127.0.0.1, port: ${port} }\ndetector: { modelPath: ${JSON.stringify(model)}, device: cpu }\nauth: { cameras: { demo-cam: ${hashToken(camToken)} } }\nstorage: { dir: ${JSON.stringify(path.join(dir, 'server'))} }\n`,
);
writeFileSync(
  path.join(dir, 'agent.yaml'),
  [
    'deviceId: demo-cam',
    'profile: edge-cpu',
    `source: { kind: file, uri: ${JSON.stringify(path.join(root, 'samples', 'people-indoor-432p.mp4'))}, loop: true, fps: 10 }`,
    'encoder: { codec: h264, baseQp: 30, preset: veryfast, segmentFrames: 10 }',
    'cheapModel: { highQp: 30, lowQp: 40 } # AccMPEG with the bundled trained model',
    'oneadapt: { enabled: true, targetKbps: 250 }',
    `server: { url: "ws://127.0.0.1:${port}/ingest", token: ${JSON.stringify(camToken)} }`,
    'mqtt: { enabled: false }',
    `storage: { dir: ${JSON.stringify(path.join(dir, 'agent'))} }`,
    `http: { host: 127.0.0.1, port: ${port + 10} }`,
    'log: { level: info }',
    '',
  ].join('\n'),
);

// one node process per role (node --import tsx), so SIGKILL really kills the server
function start(name: string, script: string, args: string[]): ChildProcess {
  const p = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = name.padEnd(6);
  const out = (buf: Buffer): void => {
    for (const line of buf.toString().split('\n')) {
      if (!line.trim()) continue;
      try {
        const j = JSON.parse(line);
        const { level, time, pid, hostname, app, msg, ...rest } = j;
        void level; void time; void pid; void hostname; void app;
        console.log(`${prefix} ${msg} ${JSON.stringify(rest)}`);
      } catch {
        console.log(`${prefix} ${line}`);
      }
    }
  };
  p.stdout!.on('data', out);
  p.stderr!.on('data', out);
  return p;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exited = (p: ChildProcess) => new Promise<number | null>((r) => (p.exitCode !== null ? r(p.exitCode) : p.on('exit', (c) => r(c))));

let server = start('server', 'server/main.ts', ['--config', path.join(dir, 'server.yaml')]);
await sleep(4000);
const agent = start('agent', 'agent/main.ts', ['--config', path.join(dir, 'agent.yaml'), `--max-segments=${segments}`]);
await sleep(Math.min(12_000, segments * 500));
console.log('demo   >>> killing the server with SIGKILL (agent keeps capturing into its outbox)');
server.kill('SIGKILL');
await exited(server);
await sleep(4000);
console.log('demo   >>> restarting the server');
server = start('server', 'server/main.ts', ['--config', path.join(dir, 'server.yaml')]);
const code = await exited(agent);
server.kill('SIGTERM');
await exited(server);

const store = new ServerStore(path.join(dir, 'server', 'server.db'));
const rows = store.results('demo-cam');
store.close();
console.log('\nsegments stored by the server:');
console.log(' seq   bytes    F1');
for (const r of rows) console.log(`${String(r.seq).padStart(4)} ${String(r.bytes).padStart(7)}  ${r.f1 === null ? '  -' : r.f1.toFixed(3)}`);
const seqs = new Set(rows.map((r) => r.seq));
const missing = [...Array(segments).keys()].filter((s) => !seqs.has(s));
const f1s = rows.map((r) => r.f1).filter((v): v is number => v !== null);
console.log(`\n${rows.length}/${segments} segments stored, missing: ${missing.length ? missing.join(',') : 'none'}; mean F1 vs reference ${(f1s.reduce((a, b) => a + b, 0) / Math.max(1, f1s.length)).toFixed(3)}; total ${rows.reduce((a, r) => a + r.bytes, 0)} bytes`);
if (code !== 0 || missing.length) {
  console.error(`demo: FAILED (agent exit ${code}, ${missing.length} segments missing)`);
  process.exit(1);
}
console.log('demo: ok');
