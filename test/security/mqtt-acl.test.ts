/**
 * Finding 4 of issue #13 on a real mosquitto with the documented password file and ACL
 * (deploy/mosquitto/aclfile): a camera's credentials reach only its own topics, anonymous clients are
 * refused, set_config changes only the allowlisted keys with bounded values, and a repeated
 * transaction id gets the stored answer, also after a restart.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAsync, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { AgentStore } from '../../agent/store.ts';
import { MqttControl, type AgentState, type CommandHandlers, type CommandResponse } from '../../agent/mqtt.ts';
import { REMOTE_CONFIG_KEYS } from '../../config/schema.ts';
import { Mosquitto } from '../helpers/mosquitto.ts';
import { waitFor } from './helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PASSWORDS = { 'fleet-admin': 'admin-pass-0123456789', camA: 'camA-pass-0123456789', camB: 'camB-pass-0123456789', 'camstream-server': 'server-pass-0123456789' };
const silent = pino({ level: 'silent' });

class FakeAgent implements CommandHandlers {
  calls: string[] = [];
  constructor(readonly id: string) {}
  async setConfig(keys: Record<string, unknown>) {
    this.calls.push(`setConfig ${JSON.stringify(keys)}`);
    return { changedKeys: Object.keys(keys) };
  }
  async startSource() {
    this.calls.push('startSource');
  }
  async stopSource() {
    this.calls.push('stopSource');
  }
  async restartPipeline() {
    this.calls.push('restartPipeline');
  }
  async snapshot() {
    this.calls.push('snapshot');
    return { width: 2, height: 2, pngBase64: 'AAAA' };
  }
  getState(): AgentState {
    return { deviceId: this.id, t: Date.now(), sourceRunning: true, pipelineRunning: true, knobs: {}, bitrateKbps: null, f1: null, queueDepth: 0, fps: null };
  }
}

let broker: Mosquitto;
const opened: Array<{ stop(): Promise<void> } | MqttClient> = [];

beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'camstream-acl-'));
  const pw = path.join(dir, 'passwd');
  for (const [i, [user, pass]] of Object.entries(PASSWORDS).entries()) execFileSync('mosquitto_passwd', [...(i === 0 ? ['-c'] : []), '-b', pw, user, pass]);
  broker = await Mosquitto.start(undefined, { passwordFile: pw, aclFile: path.join(ROOT, 'deploy/mosquitto/aclfile') });
});
afterAll(async () => {
  for (const o of opened) await ('stop' in o ? o.stop() : o.endAsync(true));
  await broker?.dispose();
});

async function camera(id: 'camA' | 'camB', store?: AgentStore): Promise<{ mqtt: MqttControl; fake: FakeAgent }> {
  const fake = new FakeAgent(id);
  const mqtt = new MqttControl({
    url: broker.url,
    deviceId: id,
    username: id,
    password: PASSWORDS[id],
    handlers: fake,
    configKeys: REMOTE_CONFIG_KEYS,
    logger: silent,
    ...(store ? { responses: { get: (k) => store.getCommandResponse(k) as CommandResponse | undefined, put: (k, r) => store.putCommandResponse(k, r) } } : {}),
  });
  await mqtt.start();
  expect(mqtt.connected).toBe(true);
  opened.push(mqtt);
  publishStateOnce(mqtt, fake);
  return { mqtt, fake };
}
const publishStateOnce = (m: MqttControl, f: FakeAgent) => m.publishState(f.getState());

async function client(user?: keyof typeof PASSWORDS, password?: string): Promise<MqttClient & { got: Array<{ topic: string; payload: string }> }> {
  const c = await connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0, ...(user ? { username: user, password: password ?? PASSWORDS[user] } : {}) });
  const got: Array<{ topic: string; payload: string }> = [];
  c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
  opened.push(c);
  return Object.assign(c, { got });
}

async function ask(c: MqttClient & { got: Array<{ topic: string; payload: string }> }, cam: string, cmd: string, body: object): Promise<Record<string, unknown>> {
  const tx = (body as { transaction?: string }).transaction;
  const topic = `camstream/${cam}/response/${cmd}`;
  await c.subscribeAsync(topic, { qos: 1 });
  const before = c.got.length;
  await c.publishAsync(`camstream/${cam}/request/${cmd}`, JSON.stringify(body), { qos: 1 });
  await waitFor(() => c.got.slice(before).some((m) => m.topic === topic && JSON.parse(m.payload).transaction === tx), 10_000);
  return JSON.parse(c.got.slice(before).find((m) => m.topic === topic && JSON.parse(m.payload).transaction === tx)!.payload);
}

test('anonymous clients and wrong passwords are refused', async () => {
  await expect(connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0 })).rejects.toThrow(/not authorized|bad user name or password/i);
  await expect(connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0, username: 'camA', password: 'guess' })).rejects.toThrow(/not authorized|bad user name or password/i);
});

test("a camera's credentials reach only its own topics", async () => {
  const b = await camera('camB');
  const admin = await client('fleet-admin');
  // the operator can command camB
  expect(await ask(admin, 'camB', 'get_state', { transaction: 'op-1' })).toMatchObject({ status: 'ok', data: { deviceId: 'camB' } });
  // someone holding camA's password tries to command camB and to read camB's topics
  const thief = await client('camA');
  // mosquitto 2.0 grants wildcard subscriptions and applies the ACL to each delivery
  await thief.subscribeAsync(['camstream/camB/#', 'camstream/+/response/+', 'homeassistant/#'], { qos: 1 });
  await expect(thief.publishAsync('camstream/camB/request/set_config', JSON.stringify({ transaction: 'evil', keys: { 'oneadapt.targetKbps': 1 } }), { qos: 1 })).rejects.toThrow(/Not authorized/);
  await expect(thief.publishAsync('camstream/camB/request/snapshot', JSON.stringify({ transaction: 'evil-snap' }), { qos: 1 })).rejects.toThrow(/Not authorized/);
  await expect(thief.publishAsync('camstream/camB/status', 'offline', { qos: 1, retain: true })).rejects.toThrow(/Not authorized/);
  await ask(admin, 'camB', 'get_state', { transaction: 'op-2' }); // camB's answers flow meanwhile
  await new Promise((r) => setTimeout(r, 500));
  expect(b.fake.calls).toEqual([]); // nothing ran on camB (get_state is not a handler call)
  expect(thief.got).toEqual([]); // saw none of camB's state, responses or discovery
  const status = await client('fleet-admin');
  await status.subscribeAsync('camstream/camB/status', { qos: 1 });
  await waitFor(() => status.got.length > 0);
  expect(status.got[0].payload).toBe('online'); // the forged 'offline' never landed
});

test("the server's ask login reads questions and writes answers, and cannot command a camera", async () => {
  const b = await camera('camB');
  const srv = await client('camstream-server');
  const admin = await client('fleet-admin');
  await srv.subscribeAsync(['camstream/server/ask', 'camstream/camB/#'], { qos: 1 });
  await admin.subscribeAsync('camstream/server/ask/+', { qos: 1 });
  await admin.publishAsync('camstream/server/ask', JSON.stringify({ id: 'q1', question: 'trucks?' }), { qos: 1 });
  await waitFor(() => srv.got.some((m) => m.topic === 'camstream/server/ask'));
  await srv.publishAsync('camstream/server/ask/q1', JSON.stringify({ type: 'done' }), { qos: 1 });
  await waitFor(() => admin.got.some((m) => m.topic === 'camstream/server/ask/q1'));
  await expect(srv.publishAsync('camstream/camB/request/set_config', JSON.stringify({ transaction: 'x', keys: { 'oneadapt.targetKbps': 1 } }), { qos: 1 })).rejects.toThrow(/Not authorized/);
  await ask(admin, 'camB', 'get_state', { transaction: 'srv-1' }); // camB's topics carry traffic meanwhile
  await new Promise((r) => setTimeout(r, 300));
  expect(b.fake.calls).toEqual([]);
  expect(srv.got.filter((m) => m.topic.startsWith('camstream/camB/'))).toEqual([]);
});

test('set_config: only tunable keys, bounded values', async () => {
  const { fake } = await camera('camA');
  const admin = await client('fleet-admin');
  for (const [i, key, value] of [
    [1, 'server.url', 'ws://rogue.example:8080/ingest'],
    [2, 'server.token', 'x'.repeat(32)],
    [3, 'deviceId', 'camB'],
    [4, 'source.uri', '/etc/shadow'],
    [5, 'storage.dir', '/tmp'],
    [6, 'mqtt.url', 'mqtt://rogue.example'],
    [7, 'http.tokens', 'x'],
  ] as const) {
    const r = await ask(admin, 'camA', 'set_config', { transaction: `bad-${i}`, keys: { [key]: value } });
    expect(r.status).toBe('error');
    expect(String(r.error)).toContain(`keys.${key}: unknown key`);
  }
  const turbo = await ask(admin, 'camA', 'set_config', { transaction: 'turbo', keys: { 'encoder.preset': 'turbo' } });
  expect(String(turbo.error)).toMatch(/keys\.encoder\.preset: Invalid option/);
  const huge = await ask(admin, 'camA', 'set_config', { transaction: 'huge', keys: { 'log.level': 'x'.repeat(5 << 20) } });
  expect(String(huge.error)).toMatch(/too big|at most 256/i);
  expect(fake.calls).toEqual([]);
  const ok = await ask(admin, 'camA', 'set_config', { transaction: 'good', keys: { 'oneadapt.targetKbps': 300, 'cheapModel.threshold': 0.4, 'log.level': 'debug' } });
  expect(ok.status).toBe('ok');
  expect(fake.calls).toEqual(['setConfig {"oneadapt.targetKbps":300,"cheapModel.threshold":0.4,"log.level":"debug"}']);
});

test('a repeated transaction id gets the stored answer, also after a restart', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'camstream-tx-'));
  const store = new AgentStore(path.join(dir, 'agent.db'));
  const first = await camera('camB', store);
  const admin = await client('fleet-admin');
  const r1 = await ask(admin, 'camB', 'stop_source', { transaction: 'tx-42' });
  expect(r1).toMatchObject({ status: 'ok', transaction: 'tx-42' });
  await first.mqtt.stop();
  const again = await camera('camB', store); // restarted agent, same store
  const r2 = await ask(admin, 'camB', 'stop_source', { transaction: 'tx-42' });
  expect(r2).toEqual(r1);
  expect(first.fake.calls).toEqual(['stopSource']);
  expect(again.fake.calls).toEqual([]);
  // bounded: the oldest answers go
  for (let i = 0; i < 1100; i++) store.putCommandResponse(`k${i}`, { status: 'ok', data: {} });
  expect(store.getCommandResponse('k0')).toBeUndefined();
  expect(store.getCommandResponse('k1099')).toBeDefined();
  // and so is the config history (every set_config is a version)
  for (let i = 0; i < 600; i++) store.saveConfigVersion(`v${i}`, 'mqtt', 'test');
  expect(store.listConfigVersions(1000)).toHaveLength(500);
  expect(store.latestConfigVersion()!.text).toBe('v599');
  store.close();
});
