/**
 * Findings 5, 6 and the health part of 7 (issue #13): reload() never throws and names file and line;
 * enumerated settings are enums; a hot-reloaded deviceId does not take effect before a restart;
 * /healthz reflects the pipeline (a missing source is not "ok"), while the systemd watchdog keeps being fed as
 * long as the agent retries (restarting cannot bring a camera back; test/agent-health-watchdog.test.ts has more).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { AgentStore } from '../../agent/store.ts';
import { ConfigError, loadAgentConfig } from '../../config/load.ts';
import { AgentSettingsSchema } from '../../config/schema.ts';
import { ConfigManager } from '../../config/watch.ts';
import { VIDEOS } from '../../testdata/fixtures.ts';
import { waitFor } from './helpers.ts';
import { fakeSystemd } from '../helpers/fake-systemd.ts';

const BOMB = ['a: &a [x,x,x,x,x,x,x,x,x]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]', 'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]', ''].join('\n');

function agentYaml(deviceId: string, extra = '', level = 'silent'): string {
  return [
    `deviceId: ${deviceId}`,
    `source: { kind: file, uri: ${JSON.stringify(VIDEOS.people)}, fps: 10 }`,
    'cheapModel: { enabled: false }',
    'server: { url: "ws://127.0.0.1:1/ingest", token: "a-token-of-sixteen-chars" }',
    'http: { host: 127.0.0.1, port: 0 }',
    `log: { level: ${level} }`,
    extra,
  ].join('\n');
}

test('finding 6: an alias bomb is rejected by reload() (no throw) and at start, naming file and line', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cfg-bomb-'));
  const file = path.join(dir, 'agent.yaml');
  writeFileSync(file, agentYaml('cam-a', `storage: { dir: ${JSON.stringify(dir)} }`));
  const mgr = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false });
  mgr.start();
  writeFileSync(file, agentYaml('cam-a') + BOMB);
  let r: ReturnType<typeof mgr.reload> | undefined;
  expect(() => (r = mgr.reload())).not.toThrow();
  expect(r!.ok).toBe(false);
  const err = (r as { error: ConfigError }).error;
  expect(err.message).toContain(`${file}:8:`); // the first alias (line 8), not a stack trace
  expect(err.message).toMatch(/Excessive alias count/);
  expect(mgr.current.deviceId).toBe('cam-a'); // last good config in force
  expect(() => loadAgentConfig(file)).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:8:\\d+: YAML rejected`));
  mgr.stop();
});

test('finding 7: encoder.preset is an enum; a typo is rejected with its line', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cfg-enum-'));
  const file = path.join(dir, 'agent.yaml');
  writeFileSync(file, agentYaml('cam-a', 'encoder: { preset: turbo }'));
  expect(() => loadAgentConfig(file)).toThrow(/agent\.yaml:7:\d+: encoder\.preset: Invalid option: expected one of "ultrafast"\|/);
});

test('finding 5: a hot-reloaded deviceId does not change the running identity (applies after a restart)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'cfg-id-'));
  const file = path.join(dir, 'agent.yaml');
  writeFileSync(file, agentYaml('cam-a', `storage: { dir: ${JSON.stringify(dir)} }`, 'warn'));
  const store = new AgentStore(path.join(dir, 'cam-a.db'));
  const config = new ConfigManager({ file, schema: AgentSettingsSchema, store, watch: false });
  const settings = config.start();
  const lines: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
  const agent = new Agent(settings, { logger, config, store });
  await agent.start();
  try {
    await waitFor(() => agent.segmentsEncoded >= 1, 60_000);
    writeFileSync(file, agentYaml('cam-b', `storage: { dir: ${JSON.stringify(dir)} }`, 'warn'));
    expect(config.reload().ok).toBe(true);
    const n = agent.segmentsEncoded;
    await waitFor(() => agent.segmentsEncoded >= n + 2, 60_000);
    const rows = store.pending(100);
    expect(rows.length).toBeGreaterThanOrEqual(3);
    for (const r of rows) {
      expect(r.cameraId).toBe('cam-a');
      expect((r.meta as { cameraId: string }).cameraId).toBe('cam-a');
      expect(r.segmentId).toMatch(/^cam-a-[0-9a-f]{32}$/);
    }
    expect(agent.state().deviceId).toBe('cam-a');
    expect(lines.some((l) => /"keys":\["deviceId"\].*these settings apply after a restart/.test(l))).toBe(true);
  } finally {
    await agent.stop();
    config.stop();
    store.close();
  }
});

test('finding 7: a missing source makes /healthz 503 "source down" (detail in STATUS=), and the watchdog stays fed while it retries', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'health-'));
  const sd = fakeSystemd(dir, 200_000);
  const got = sd.got;
  const settings = AgentSettingsSchema.parse({
    deviceId: 'cam-missing',
    source: { kind: 'file', uri: path.join(dir, 'no-such-camera.mp4') },
    cheapModel: { enabled: false },
    server: { url: 'ws://127.0.0.1:1/ingest', token: 'a-token-of-sixteen-chars' },
    storage: { dir },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'silent' },
  });
  const agent = new Agent(settings, { logger: pino({ level: 'silent' }), retryMs: 100 });
  try {
    await agent.start();
    const page = (agent as unknown as { page: { url: string } }).page;
    const h = await fetch(page.url + '/healthz');
    expect(h.status).toBe(503);
    expect(await h.json()).toEqual({ status: 'unhealthy', reason: 'source down' }); // open endpoint: coarse reason only
    expect(agent.state().extra?.health).toMatch(/^source: capture .*no-such-camera\.mp4: file not found/);
    await new Promise((r) => setTimeout(r, 600)); // three watchdog periods
    expect(got).toContain('READY=1\nSTATUS=streaming ' + settings.source.uri);
    expect(got.some((m) => /^STATUS=unhealthy: source: capture .*file not found/.test(m))).toBe(true);
    // a source that is down with a retry scheduled is not a stuck process: systemd must not restart the agent
    expect(got.filter((m) => m === 'WATCHDOG=1').length).toBeGreaterThanOrEqual(3);
  } finally {
    await agent.stop();
    sd.restore();
  }
});
