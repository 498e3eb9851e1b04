import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { AgentStore } from '../agent/store.ts';
import { ConfigError, configPathFromArgv, loadAgentConfig, loadConfigFile, loadServerConfig, parseConfigText } from '../config/load.ts';
import { AgentSettingsSchema, MAX_SOURCE_SIDE, type AgentSettings } from '../config/schema.ts';
import { MAX_FRAME_SIDE } from '../wire/protocol.ts';
import { ConfigManager, diffKeys } from '../config/watch.ts';
import { writeFileAtomic } from '../config/atomic-file.ts';

const ROOT = resolve(import.meta.dirname, '..');
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'camstream-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const MINIMAL = `# minimal agent
deviceId: cam1
source:
  kind: file
  uri: /tmp/clip.mp4
`;

function parseError(text: string, file = 'agent.yaml'): ConfigError {
  try {
    parseConfigText(text, AgentSettingsSchema, file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const waitFor = async (cond: () => boolean, ms = 5000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('load', () => {
  test('example files are valid', () => {
    const a = loadAgentConfig(join(ROOT, 'config/examples/agent.yaml'));
    expect(a.deviceId).toBe('cam-lobby-01');
    expect(a.cheapModel).toMatchObject({ enabled: true, threshold: 0.5, minFraction: 0.05, dilate: 1, highQp: 38, lowQp: 44, calibrate: { enabled: false } });
    const s = loadServerConfig(join(ROOT, 'config/examples/server.yaml'));
    expect(s.detector.device).toBe('cuda');
    expect(s.listen.port).toBe(8443);
  });

  test('a minimal file gets every default', () => {
    const c = parseConfigText(MINIMAL, AgentSettingsSchema, 'x.yaml').value;
    expect(c.profile).toBe('edge-cpu');
    expect(c.source).toEqual({ kind: 'file', uri: '/tmp/clip.mp4', loop: true });
    expect(c.encoder).toEqual({ codec: 'h264', baseQp: 30, preset: 'veryfast', segmentFrames: 10, graceKbps: 400 });
    expect(c.cheapModel).toEqual({ everyK: 10, threshold: 0.5, minFraction: 0.05, dilate: 1, smooth: false, highQp: 38, lowQp: 44, calibrate: { enabled: false, targetRecall: 0.9, samples: 30, minSamples: 5 }, enabled: true });
    expect(c.oneadapt.enabled).toBe(false);
    expect(c.mqtt).toMatchObject({ enabled: false, baseTopic: 'camstream', discoveryPrefix: 'homeassistant' });
    expect(c.server.url).toMatch(/^ws:\/\//);
    expect(c.http.port).toBe(8081);
    expect(c.log.level).toBe('info');
    expect(c.storage.dir).toBe('/var/lib/camstream');
  });

  test('JSON files load too', () => {
    const f = join(dir, 'agent.json');
    writeFileSync(f, JSON.stringify({ deviceId: 'j1', source: { kind: 'v4l2', uri: '/dev/video0' } }, null, 2));
    expect(loadAgentConfig(f).source.kind).toBe('v4l2');
  });

  test('wrong value names field, line and column', () => {
    const e = parseError(MINIMAL + 'encoder:\n  codec: h264\n  baseQp: 99\n');
    expect(e.issues).toEqual([expect.objectContaining({ path: 'encoder.baseQp', line: 8, col: 3, kind: 'schema' })]);
    expect(e.message).toContain('agent.yaml:8:3: encoder.baseQp:');
  });

  test('wrong type and bad enum', () => {
    const e = parseError(MINIMAL + 'profile: edge-tpu\nhttp:\n  port: "eighty"\n');
    expect(e.issues.map((i) => [i.path, i.line])).toEqual([
      ['profile', 6],
      ['http.port', 8],
    ]);
  });

  test('unknown field (typo) names the key and line', () => {
    const e = parseError(MINIMAL + 'cheapModel:\n  treshold: 0.3\n');
    expect(e.issues).toEqual([expect.objectContaining({ path: 'cheapModel.treshold', line: 7, col: 3 })]);
    expect(e.message).toMatch(/unknown field/);
  });

  test('missing required field points at its parent', () => {
    const e = parseError('deviceId: cam1\nsource:\n  kind: rtsp\n');
    expect(e.issues).toEqual([expect.objectContaining({ path: 'source.uri', line: 2 })]);
    expect(e.message).toMatch(/required field is missing/);
  });

  test('cross-field rules name the field', () => {
    const e = parseError(MINIMAL + 'cheapModel:\n  enabled: true\n  highQp: 45\n');
    expect(e.issues.map((i) => [i.path, i.line])).toEqual([
      ['cheapModel.highQp', 8],
    ]);
  });

  test('YAML syntax errors carry the line', () => {
    const e = parseError('deviceId: cam1\nsource: {kind: file, uri: x\nlog:\n  level: info\n');
    expect(e.issues[0].kind).toBe('syntax');
    expect(e.issues[0].line).toBeGreaterThanOrEqual(2);
    expect(e.message).toMatch(/agent\.yaml:\d+:\d+: YAML syntax error/);
    const dup = parseError(MINIMAL + 'deviceId: again\n');
    expect(dup.issues[0]).toMatchObject({ kind: 'syntax', line: 6 });
  });

  test('unreadable file is a ConfigError too', () => {
    expect(() => loadConfigFile(join(dir, 'missing.yaml'), AgentSettingsSchema)).toThrow(ConfigError);
    expect(() => loadConfigFile(join(dir, 'missing.yaml'), AgentSettingsSchema)).toThrow(/ENOENT/);
    expect(() => loadConfigFile(join(dir, 'missing.yaml'), AgentSettingsSchema)).not.toThrow(/ENOENT ENOENT/);
  });

  test('--config from argv', () => {
    expect(configPathFromArgv(['node', 'main.ts', '--config', '/etc/a.yaml'], 'd')).toBe('/etc/a.yaml');
    expect(configPathFromArgv(['--config=/x.yaml'], 'd')).toBe('/x.yaml');
    expect(configPathFromArgv([], 'd')).toBe('d');
    // a --config without its file is an error, not a silent fall-back to the default path
    expect(() => configPathFromArgv(['node', 'main.ts', '--config'], 'd')).toThrow(/--config needs a file path/);
    expect(() => configPathFromArgv(['--config', '--max-segments=3'], 'd')).toThrow(ConfigError);
    expect(() => configPathFromArgv(['--config='], 'd')).toThrow(ConfigError);
  });

  test('diffKeys lists changed leaves', () => {
    expect(diffKeys({ a: { b: 1, c: 2 }, d: [1] }, { a: { b: 1, c: 3 }, d: [1, 2], e: 1 })).toEqual(['a.c', 'd', 'e']);
  });
});

describe('ConfigManager', () => {
  let file: string;
  let store: AgentStore;
  let mgr: ConfigManager<typeof AgentSettingsSchema> | undefined;
  beforeEach(() => {
    file = join(dir, 'agent.yaml');
    writeFileSync(file, MINIMAL + 'encoder:\n  baseQp: 30 # keep this comment\n');
    store = new AgentStore(join(dir, 'state/agent.db'));
  });
  afterEach(() => {
    mgr?.stop();
    mgr = undefined;
    store.close();
  });

  test('start() throws ConfigError on a bad first file', () => {
    writeFileSync(file, 'deviceId: [\n');
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false });
    expect(() => mgr!.start()).toThrow(ConfigError);
  });

  test('reload() (the SIGHUP path) picks up a good edit and emits change with keys', () => {
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false, store });
    mgr.start();
    expect(store.listConfigVersions(10)).toHaveLength(1); // startup version
    const changes: [AgentSettings, AgentSettings, string[]][] = [];
    mgr.on('change', (n, p, k) => changes.push([n, p, k]));
    writeFileSync(file, MINIMAL + 'encoder:\n  baseQp: 34\n');
    const r = mgr.reload();
    expect(r).toMatchObject({ ok: true, changed: true, changedKeys: ['encoder.baseQp'] });
    expect(changes).toHaveLength(1);
    expect(changes[0][0].encoder.baseQp).toBe(34);
    expect(changes[0][1].encoder.baseQp).toBe(30);
    expect(mgr.current.encoder.baseQp).toBe(34);
    expect(store.latestConfigVersion()).toMatchObject({ who: 'file' });
    // unchanged file: no event, no version
    expect(mgr.reload()).toMatchObject({ ok: true, changed: false });
    expect(changes).toHaveLength(1);
    expect(store.listConfigVersions(10)).toHaveLength(2);
  });

  test('installSighup(): a real SIGHUP reloads (child process), a bad file keeps running', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/helpers/config-sighup-child.ts'), file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => out.includes('READY info'), 60000); // tsx start-up is slow on a loaded machine
      writeFileSync(file, MINIMAL + 'log:\n  level: debug\n');
      child.kill('SIGHUP');
      await waitFor(() => out.includes('CHANGE log.level debug'));
      writeFileSync(file, MINIMAL + 'log:\n  level: loud\n');
      child.kill('SIGHUP');
      await waitFor(() => out.includes('ERROR log.level 7'));
      expect(child.exitCode).toBeNull();
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('a bad edit keeps the last good config and emits error naming field and line', () => {
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false });
    mgr.start();
    const errors: ConfigError[] = [];
    mgr.on('error', (e) => errors.push(e));
    writeFileSync(file, MINIMAL + 'encoder:\n  baseQp: -3\n');
    const r = mgr.reload();
    expect(r.ok).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toContain(':7:3: encoder.baseQp');
    expect(mgr.current.encoder.baseQp).toBe(30);
  });

  test('no error listener: a bad edit is logged, never thrown', () => {
    const logged: object[] = [];
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false, logger: { info() {}, warn() {}, error: (o) => logged.push(o) } });
    mgr.start();
    writeFileSync(file, 'deviceId: [');
    expect(() => mgr!.reload()).not.toThrow();
    expect(logged).toHaveLength(1);
  });

  test('file watch: in-place write, bad edit, and editor-style rename-over', async () => {
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, debounceMs: 50 });
    mgr.start();
    const keys: string[][] = [];
    const errors: ConfigError[] = [];
    mgr.on('change', (_n, _p, k) => keys.push(k));
    mgr.on('error', (e) => errors.push(e));

    writeFileSync(file, MINIMAL + 'encoder:\n  baseQp: 31\n');
    await waitFor(() => mgr!.current.encoder.baseQp === 31);

    writeFileSync(file, MINIMAL + 'encoder:\n  baseQp: 31\n  codec: vp9\n');
    await waitFor(() => errors.length === 1);
    expect(errors[0].issues[0]).toMatchObject({ path: 'encoder.codec', line: 8 });
    expect(mgr.current.encoder.codec).toBe('h264');

    // vim/atomic-save style: write a temp file, rename over the original (new inode)
    const tmp = join(dir, '.agent.yaml.swp');
    writeFileSync(tmp, MINIMAL + 'encoder:\n  baseQp: 33\n');
    renameSync(tmp, file);
    await waitFor(() => mgr!.current.encoder.baseQp === 33);
    // and the watch still works after the replace
    writeFileSync(file, MINIMAL + 'encoder:\n  baseQp: 35\n');
    await waitFor(() => mgr!.current.encoder.baseQp === 35);
    expect(keys.every((k) => k.length === 1 && k[0] === 'encoder.baseQp')).toBe(true);
  });

  test('set() validates, writes atomically keeping comments, versions, emits change', () => {
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false, store });
    mgr.start();
    const changes: string[][] = [];
    mgr.on('change', (_n, _p, k) => changes.push(k));
    const r = mgr.set({ 'encoder.baseQp': 36, 'mqtt.enabled': true, 'oneadapt.targetKbps': 500 }, 'mqtt:ops', 'night mode');
    expect(r.changedKeys).toEqual(['encoder.baseQp', 'mqtt.enabled', 'oneadapt.targetKbps']);
    expect(r.version).toBe(store.latestConfigVersion()!.id);
    expect(store.latestConfigVersion()).toMatchObject({ who: 'mqtt:ops', reason: 'night mode' });
    expect(changes).toEqual([r.changedKeys]);
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('# minimal agent');
    expect(text).toContain('baseQp: 36 # keep this comment');
    expect(store.latestConfigVersion()!.text).toBe(text);
    // the file on disk is what a fresh load sees
    expect(loadAgentConfig(file).oneadapt.targetKbps).toBe(500);
    // invalid set: throws ConfigError, writes nothing, keeps config
    expect(() => mgr!.set({ 'encoder.baseQp': 77 }, 'x', 'y')).toThrow(ConfigError);
    expect(readFileSync(file, 'utf8')).toBe(text);
    expect(mgr.current.encoder.baseQp).toBe(36);
    // undefined removes a key (back to its default)
    mgr.set({ 'oneadapt.targetKbps': undefined }, 'x', 'reset');
    expect(mgr.current.oneadapt.targetKbps).toBeUndefined();
    expect(store.listConfigVersions(10).map((v) => v.reason)).toEqual(['reset', 'night mode', 'startup']);
  });

  test('set() refuses while the file on disk is invalid, so an operator\'s half-done edit is not overwritten', () => {
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false });
    mgr.start();
    const edit = MINIMAL + 'encoder:\n  baseQp: [oops\n';
    writeFileSync(file, edit);
    expect(() => mgr!.set({ 'encoder.preset': 'fast' }, 'mqtt:ops', 'remote')).toThrow(/file on disk is invalid.*fix it first/s);
    expect(readFileSync(file, 'utf8')).toBe(edit); // the edit is still there
    writeFileSync(file, MINIMAL + 'log:\n  level: warn\n'); // fixed
    mgr.set({ 'encoder.preset': 'fast' }, 'mqtt:ops', 'remote');
    expect(mgr.current.encoder.preset).toBe('fast');
  });

  test('set() builds on a newer good file on disk', () => {
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false });
    mgr.start();
    writeFileSync(file, MINIMAL + 'log:\n  level: warn\n');
    mgr.set({ 'encoder.preset': 'fast' }, 'x', 'y');
    expect(mgr.current.log.level).toBe('warn');
    expect(mgr.current.encoder.preset).toBe('fast');
  });
  test('a full disk while recording the config history: the edit still applies, is logged, nothing throws', () => {
    const logged: object[] = [];
    const full = {
      latestConfigVersion: () => store.latestConfigVersion(),
      saveConfigVersion: (): number => { throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }); },
    };
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false, store: full, logger: { info() {}, warn() {}, error: (o) => logged.push(o) } });
    expect(() => mgr!.start()).not.toThrow(); // startup records a version: logged, the agent still starts
    const changes: string[][] = [];
    mgr.on('change', (_n, _p, k) => changes.push(k));
    writeFileSync(file, MINIMAL + 'encoder:\n  baseQp: 34\n');
    expect(mgr.reload()).toMatchObject({ ok: true, changedKeys: ['encoder.baseQp'] }); // the SIGHUP / file-watch path
    const r = mgr.set({ 'encoder.baseQp': 36 }, 'mqtt:ops', 'night'); // the MQTT set_config path
    expect(r).toMatchObject({ changedKeys: ['encoder.baseQp'], version: undefined });
    expect(changes).toEqual([['encoder.baseQp'], ['encoder.baseQp']]);
    expect(mgr.current.encoder.baseQp).toBe(36);
    expect(logged.filter((o) => JSON.stringify(o).includes('disk is full'))).toHaveLength(3);
  });

  test('a change listener that throws is logged, not thrown out of reload() (a timer or SIGHUP would crash)', () => {
    const logged: object[] = [];
    mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false, logger: { info() {}, warn() {}, error: (o) => logged.push(o) } });
    mgr.start();
    mgr.on('change', () => { throw new Error('pipeline restart failed'); });
    writeFileSync(file, MINIMAL + 'encoder:\n  baseQp: 34\n');
    expect(mgr.reload()).toMatchObject({ ok: true, changedKeys: ['encoder.baseQp'] });
    expect(JSON.stringify(logged)).toContain('pipeline restart failed');
  });

  test('writeFileAtomic that fails after writing its temp file leaves no temp file behind', () => {
    const ro = join(dir, 'ro');
    mkdirSync(join(ro, 'agent.yaml'), { recursive: true });
    writeFileSync(join(ro, 'agent.yaml', 'keep'), 'x');
    // the target is a non-empty directory: the temp file is written and synced, then the rename fails
    expect(() => writeFileAtomic(join(ro, 'agent.yaml'), 'new\n')).toThrow();
    expect(readFileSync(join(ro, 'agent.yaml', 'keep'), 'utf8')).toBe('x');
    expect(readdirSync(ro).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

test('a source frame size the protocol would reject is refused in the config, not segment by segment', () => {
  const base = { deviceId: 'cam', source: { kind: 'file', uri: '/x.mp4', width: 8200, height: 16 }, server: { url: 'ws://127.0.0.1:1/ingest' } };
  const r = AgentSettingsSchema.safeParse(base);
  expect(r.success).toBe(false);
  expect(JSON.stringify(r.error!.issues)).toMatch(/8192/);
  expect(MAX_SOURCE_SIDE).toBe(MAX_FRAME_SIDE);
  expect(AgentSettingsSchema.parse({ ...base, source: { ...base.source, width: 8192 } }).source.width).toBe(8192);
});
