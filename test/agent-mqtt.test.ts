/**
 * The real agent daemon wiring under MQTT control (real mosquitto): commands reach the agent,
 * config changes are validated, written to the file and versioned; bad values change nothing.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { PNG } from 'pngjs';
import { pino } from 'pino';
import { Agent, openAgentStore } from '../agent/agent.ts';
import { AgentSettingsSchema, type AgentSettings } from '../config/schema.ts';
import { ConfigManager } from '../config/watch.ts';
import { Mosquitto } from './helpers/mosquitto.ts';
import { VIDEOS } from '../testdata/fixtures.ts';

let broker: Mosquitto;
beforeAll(async () => { broker = await Mosquitto.start(); });
afterAll(async () => { await broker.dispose(); });

test('set_config / stop_source / get_state from an MQTT client act on the running agent', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-mqtt-'));
  const file = path.join(dir, 'agent.yaml');
  writeFileSync(file, [
    'deviceId: cam-mqtt',
    `source: { kind: file, uri: ${JSON.stringify(VIDEOS.people)}, fps: 10 }`,
    'cheapModel: { enabled: false }',
    'oneadapt: { enabled: true, targetKbps: 400 }',
    'server: { url: "ws://127.0.0.1:1/ingest" } # no server: segments wait in the outbox',
    `mqtt: { enabled: true, url: "mqtt://127.0.0.1:${broker.port}" }`,
    `storage: { dir: ${JSON.stringify(dir)} }`,
    'http: { host: 127.0.0.1, port: 0 }',
    'log: { level: silent }',
    '',
  ].join('\n'));
  const log = pino({ level: 'silent' });
  const probe = new ConfigManager({ file, schema: AgentSettingsSchema, watch: false });
  const first = probe.start() as AgentSettings;
  const store = openAgentStore(first, log);
  const config = new ConfigManager({ file, schema: AgentSettingsSchema, store, watch: false });
  const agent = new Agent(config.start() as AgentSettings, { logger: log, config, store });
  await agent.start();

  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`);
  const responses: Record<string, any> = {};
  client.on('message', (topic, payload) => { responses[topic.split('/').pop()!] = JSON.parse(payload.toString()); });
  await client.subscribeAsync('camstream/cam-mqtt/response/#', { qos: 1 });
  const ask = async (cmd: string, body: object) => {
    delete responses[cmd];
    await client.publishAsync(`camstream/cam-mqtt/request/${cmd}`, JSON.stringify(body), { qos: 1 });
    const t0 = Date.now();
    while (!responses[cmd]) {
      if (Date.now() - t0 > 15000) throw new Error(`no response to ${cmd}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return responses[cmd];
  };

  const ok = await ask('set_config', { transaction: 'a1', who: 'ops', keys: { 'oneadapt.targetKbps': 123 } });
  expect(ok).toMatchObject({ status: 'ok', transaction: 'a1' });
  expect(readFileSync(file, 'utf8')).toMatch(/targetKbps: 123/);
  expect(store.latestConfigVersion()).toMatchObject({ who: 'mqtt:ops' });

  const bad = await ask('set_config', { transaction: 'a2', keys: { 'encoder.baseQp': 99 } });
  expect(bad.status).toBe('error');
  expect(bad.error).toMatch(/encoder\.baseQp/);
  expect(readFileSync(file, 'utf8')).not.toMatch(/baseQp: 99/);

  // hot reload: turning AccMPEG on loads the cheap model and adds the threshold knob to OneAdapt, capture keeps running
  expect((await ask('get_state', { transaction: 'h0' })).data.extra).toMatchObject({ accmpeg: false, adapting: ['resolution', 'fps', 'qp'] });
  expect((await ask('set_config', { transaction: 'h1', keys: { 'cheapModel.enabled': true } })).status).toBe('ok');
  const t1 = Date.now();
  while (!(agent.state().extra as { accmpeg: boolean }).accmpeg) {
    if (Date.now() - t1 > 15000) throw new Error('cheap model not loaded after set_config');
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(agent.state().extra).toMatchObject({ adapting: ['resolution', 'fps', 'qp', 'threshold'] });

  const t2 = Date.now();
  while (!agent.state().segmentsEncoded) {
    if (Date.now() - t2 > 20000) throw new Error('no segment encoded');
    await new Promise((r) => setTimeout(r, 50));
  }
  const snap = await ask('snapshot', { transaction: 's1' });
  expect(snap).toMatchObject({ status: 'ok' });
  const png = PNG.sync.read(Buffer.from(snap.data.pngBase64, 'base64'));
  expect([png.width, png.height]).toEqual([768, 432]);

  const st = await ask('get_state', { transaction: 'a3' });
  expect(st.data).toMatchObject({ deviceId: 'cam-mqtt', sourceRunning: true });
  await ask('stop_source', { transaction: 'a4' });
  expect((await ask('get_state', { transaction: 'a5' })).data.sourceRunning).toBe(false);

  await client.endAsync();
  await agent.stop();
  store.close();
});
