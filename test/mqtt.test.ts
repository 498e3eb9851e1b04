/** MqttControl against a real mosquitto broker (started by the test on a free port). */
import { connectAsync, type MqttClient, type IPublishPacket } from 'mqtt';
import { pino } from 'pino';
import { z } from 'zod';
import { MqttControl, type AgentState, type CommandHandlers } from '../agent/mqtt.ts';
import { Mosquitto } from './helpers/mosquitto.ts';

const silent = pino({ level: 'silent' });
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function baseState(over: Partial<AgentState> = {}): AgentState {
  return {
    deviceId: 'cam1',
    t: Date.now(),
    sourceRunning: true,
    pipelineRunning: true,
    knobs: { 'oneadapt.targetKbps': 300, 'cheapModel.threshold': 0.2 },
    bitrateKbps: 287.5,
    f1: 0.81,
    queueDepth: 2,
    fps: 10,
    ...over,
  };
}

class FakeAgent implements CommandHandlers {
  calls: Array<{ name: string; args: unknown[] }> = [];
  config: Record<string, unknown> = { 'oneadapt.targetKbps': 300 };
  sourceRunning = true;
  failNext: string | null = null;
  private record(name: string, ...args: unknown[]): void {
    this.calls.push({ name, args });
    if (this.failNext) {
      const msg = this.failNext;
      this.failNext = null;
      throw new Error(msg);
    }
  }
  async setConfig(keys: Record<string, unknown>, who: string): Promise<unknown> {
    this.record('setConfig', keys, who);
    Object.assign(this.config, keys);
    return { applied: Object.keys(keys) };
  }
  async startSource(): Promise<void> {
    this.record('startSource');
    this.sourceRunning = true;
  }
  async stopSource(): Promise<void> {
    this.record('stopSource');
    this.sourceRunning = false;
  }
  async snapshot(): Promise<{ width: number; height: number; pngBase64?: string }> {
    this.record('snapshot');
    return { width: 32, height: 16, pngBase64: 'iVBORw0KGgo=' };
  }
  async restartPipeline(): Promise<void> {
    this.record('restartPipeline');
  }
  getState(): AgentState {
    this.record('getState');
    return baseState({ sourceRunning: this.sourceRunning, knobs: { 'oneadapt.targetKbps': Number(this.config['oneadapt.targetKbps']) } });
  }
}

/** A second client that watches topics and sends requests. */
class Observer {
  messages: Array<{ topic: string; payload: string; retain: boolean }> = [];
  constructor(readonly client: MqttClient) {
    client.on('message', (topic: string, payload: Buffer, packet: IPublishPacket) => {
      this.messages.push({ topic, payload: payload.toString(), retain: packet.retain });
    });
  }
  static async connect(url: string, subs: string[], clientId?: string): Promise<Observer> {
    const client = await connectAsync(url, { clientId: clientId ?? `obs-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 200, protocolVersion: 5 });
    const o = new Observer(client);
    await client.subscribeAsync(subs, { qos: 1 });
    return o;
  }
  on(topic: string): Array<{ topic: string; payload: string; retain: boolean }> {
    return this.messages.filter((m) => m.topic === topic);
  }
  responses(topic: string, transaction: unknown): Array<Record<string, unknown>> {
    return this.on(topic)
      .map((m) => JSON.parse(m.payload) as Record<string, unknown>)
      .filter((r) => r.transaction === transaction);
  }
  async request(agent: MqttControl, cmd: string, payload: string | object, transaction?: unknown): Promise<Record<string, unknown>> {
    const body = typeof payload === 'string' ? payload : JSON.stringify(payload);
    const respTopic = agent.responseTopic(cmd);
    const before = this.on(respTopic).length;
    await this.client.publishAsync(agent.requestTopic(cmd), body, { qos: 1 });
    await waitFor(
      () => (transaction === undefined ? this.on(respTopic).length > before : this.responses(respTopic, transaction).length > 0),
      10_000,
      `response on ${respTopic}`,
    );
    if (transaction === undefined) return JSON.parse(this.on(respTopic)[before].payload) as Record<string, unknown>;
    return this.responses(respTopic, transaction)[0];
  }
  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

describe('MqttControl (real mosquitto)', () => {
  let broker: Mosquitto;
  let agent: MqttControl;
  let fake: FakeAgent;
  let obs: Observer;

  beforeAll(async () => {
    broker = await Mosquitto.start();
  });
  afterAll(async () => {
    await broker?.dispose();
  });

  beforeEach(async () => {
    fake = new FakeAgent();
    agent = new MqttControl({
      url: broker.url,
      deviceId: 'cam1',
      handlers: fake,
      logger: silent,
      reconnectPeriodMs: 2000, // slow enough that the restart test can publish before the agent is back
      swVersion: '0.1.0',
      configKeys: {
        'oneadapt.targetKbps': z.number().positive(),
        'cheapModel.threshold': z.number().min(0).max(1),
        'oneadapt.enabled': z.boolean(),
      },
    });
    await agent.start();
    expect(agent.connected).toBe(true);
    obs = await Observer.connect(broker.url, ['camstream/cam1/#', 'homeassistant/#']);
  });
  afterEach(async () => {
    await obs?.close();
    await agent?.stop();
  });

  test('retained online status, state and Home Assistant discovery', async () => {
    agent.publishState(baseState());
    // a late subscriber gets the retained messages
    const late = await Observer.connect(broker.url, ['camstream/cam1/status', 'camstream/cam1/state', 'homeassistant/sensor/#']);
    try {
      await waitFor(() => late.on('camstream/cam1/state').length > 0 && late.on(agent.discoveryTopic('fps')).length > 0, 5000, 'retained');
      const status = late.on('camstream/cam1/status');
      expect(status[0]).toMatchObject({ payload: 'online', retain: true });
      const state = JSON.parse(late.on('camstream/cam1/state')[0].payload);
      expect(state).toMatchObject({ deviceId: 'cam1', bitrateKbps: 287.5, f1: 0.81, queueDepth: 2, fps: 10 });
      expect(state.knobs['oneadapt.targetKbps']).toBe(300);
      for (const key of ['bitrate', 'f1', 'queue_depth', 'fps']) {
        const msgs = late.on(`homeassistant/sensor/cam1_${key}/config`);
        expect(msgs.length).toBeGreaterThan(0);
        expect(msgs[0].retain).toBe(true);
        const cfg = JSON.parse(msgs[0].payload);
        expect(cfg).toMatchObject({
          state_topic: 'camstream/cam1/state',
          availability_topic: 'camstream/cam1/status',
          payload_available: 'online',
          payload_not_available: 'offline',
          unique_id: `camstream_cam1_${key}`,
        });
        expect(cfg.device.identifiers).toEqual(['camstream_cam1']);
        expect(cfg.value_template).toMatch(/value_json\./);
      }
      expect(() => agent.publishState({ ...baseState(), queueDepth: -1 })).toThrow(/queueDepth/);
    } finally {
      await late.close();
    }
  });

  test('request/response echoes the transaction id', async () => {
    const r1 = await obs.request(agent, 'set_config', { transaction: 'tx-1', keys: { 'oneadapt.targetKbps': 450 } }, 'tx-1');
    expect(r1).toEqual({ status: 'ok', data: { applied: ['oneadapt.targetKbps'] }, transaction: 'tx-1' });
    expect(fake.calls).toEqual([{ name: 'setConfig', args: [{ 'oneadapt.targetKbps': 450 }, 'mqtt'] }]);

    const r2 = await obs.request(agent, 'get_state', { transaction: 42 }, 42);
    expect(r2.status).toBe('ok');
    expect((r2.data as AgentState).knobs['oneadapt.targetKbps']).toBe(450);

    const r3 = await obs.request(agent, 'stop_source', { transaction: 'tx-3', who: 'alice' }, 'tx-3');
    expect(r3).toEqual({ status: 'ok', data: {}, transaction: 'tx-3' });
    expect(fake.sourceRunning).toBe(false);
    await obs.request(agent, 'start_source', '', undefined); // empty payload is allowed for argument-less commands
    expect(fake.sourceRunning).toBe(true);

    const r4 = await obs.request(agent, 'snapshot', { transaction: 'snap' }, 'snap');
    expect(r4.data).toMatchObject({ width: 32, height: 16 });
    await obs.request(agent, 'restart_pipeline', { transaction: 'rp' }, 'rp');

    fake.failNext = 'encoder is busy';
    const r5 = await obs.request(agent, 'restart_pipeline', { transaction: 'rp2' }, 'rp2');
    expect(r5).toEqual({ status: 'error', error: 'encoder is busy', transaction: 'rp2' });

    const r6 = await obs.request(agent, 'set_config', { transaction: 'who', who: 'ops', keys: { 'oneadapt.enabled': true } }, 'who');
    expect(r6.status).toBe('ok');
    expect(fake.calls.at(-1)).toEqual({ name: 'setConfig', args: [{ 'oneadapt.enabled': true }, 'mqtt:ops'] });
    expect(fake.calls.map((c) => c.name)).toEqual(['setConfig', 'getState', 'stopSource', 'startSource', 'snapshot', 'restartPipeline', 'restartPipeline', 'setConfig']);
  });

  test('malformed requests get an error naming the problem and change nothing', async () => {
    const cases: Array<[string, string, RegExp]> = [
      ['set_config', '{"transaction": "a", "keys": {', /invalid JSON/],
      ['set_config', '[1,2,3]', /payload: .*expected object/i],
      ['set_config', JSON.stringify({ transaction: 'b', keys: 'oneadapt.targetKbps=3' }), /keys: .*expected record/i],
      ['set_config', JSON.stringify({ transaction: 'c', keys: {} }), /keys: at least one key/],
      ['set_config', JSON.stringify({ transaction: 'd', keys: { 'oneadapt.targetKbps': 'fast' } }), /keys\.oneadapt\.targetKbps/],
      ['set_config', JSON.stringify({ transaction: 'e', keys: { 'oneadapt.targetKbps': -5 } }), /keys\.oneadapt\.targetKbps: .*>0/],
      ['set_config', JSON.stringify({ transaction: 'f', keys: { 'no.such.knob': 1 } }), /keys\.no\.such\.knob: unknown key/],
      // names every plain object inherits: unknown keys, not a TypeError that ended the agent (and, with the
      // persistent session, a crash loop as the broker redelivered the message)
      ['set_config', JSON.stringify({ transaction: 'f2', keys: { constructor: 1 } }), /keys\.constructor: unknown key/],
      ['set_config', JSON.stringify({ transaction: 'f3', keys: { toString: 1, __defineGetter__: 2 } }), /keys\.toString: unknown key.*keys\.__defineGetter__: unknown key/],
      ['set_config', '{"transaction": "f4", "keys": {"__proto__": 1}}', /keys|unknown key|at least one key/],
      ['set_config', JSON.stringify({ transaction: 'g', keys: { 'oneadapt.targetKbps': { nested: 1 } } }), /keys\.oneadapt\.targetKbps/],
      // one good key and one bad key: nothing is applied
      ['set_config', JSON.stringify({ transaction: 'h', keys: { 'oneadapt.targetKbps': 100, 'cheapModel.threshold': 7 } }), /cheapModel\.threshold/],
      ['set_config', JSON.stringify({ transaction: 'i', kyes: { 'oneadapt.targetKbps': 100 } }), /kyes|keys/],
      ['stop_source', JSON.stringify({ transaction: 'j', now: true }), /now/],
      ['get_state', JSON.stringify({ transaction: { id: 1 } }), /transaction/],
      ['format_disk', JSON.stringify({ transaction: 'k' }), /unknown command 'format_disk'/],
    ];
    for (const [cmd, body, re] of cases) {
      const r = await obs.request(agent, cmd, body);
      expect(r.status).toBe('error');
      expect(String(r.error)).toMatch(re);
      const parsed = (() => {
        try {
          return JSON.parse(body) as { transaction?: unknown };
        } catch {
          return {};
        }
      })();
      if (typeof parsed.transaction === 'string') expect(r.transaction).toBe(parsed.transaction);
    }
    expect(fake.calls).toEqual([]);
    expect(fake.config).toEqual({ 'oneadapt.targetKbps': 300 });
  });

  test('a command repeated with the same transaction id runs once; the repeat gets the same answer', async () => {
    const body = JSON.stringify({ transaction: 'dup-1', keys: { 'oneadapt.targetKbps': 200 } });
    await obs.client.publishAsync(agent.requestTopic('set_config'), body, { qos: 1 });
    await obs.client.publishAsync(agent.requestTopic('set_config'), body, { qos: 1 });
    await obs.request(agent, 'get_state', { transaction: 'after' }, 'after'); // commands are serialized
    await sleep(200);
    const answers = obs.responses(agent.responseTopic('set_config'), 'dup-1');
    expect(answers).toHaveLength(2);
    expect(answers[1]).toEqual(answers[0]);
    expect(fake.calls.filter((c) => c.name === 'setConfig')).toHaveLength(1);
  });

  test('a command that times out is answered, but the next one waits for it; a repeat gets its real outcome', async () => {
    const order: string[] = [];
    class SlowAgent extends FakeAgent {
      override async restartPipeline(): Promise<void> {
        order.push('restart:start');
        await sleep(800);
        order.push('restart:end');
      }
      override async stopSource(): Promise<void> {
        order.push('stop');
        await super.stopSource();
      }
    }
    const slow = new MqttControl({ url: broker.url, deviceId: 'camslow', handlers: new SlowAgent(), logger: silent, configKeys: {}, commandTimeoutMs: 200 });
    await slow.start();
    const o = await Observer.connect(broker.url, ['camstream/camslow/#']);
    try {
      const r1 = await o.request(slow, 'restart_pipeline', { transaction: 'slow-1' }, 'slow-1');
      expect(r1).toMatchObject({ status: 'error', transaction: 'slow-1' });
      expect(String(r1.error)).toMatch(/did not finish within 200 ms; it is still running/);
      const r2 = await o.request(slow, 'stop_source', { transaction: 'next' }, 'next');
      expect(r2).toMatchObject({ status: 'ok', transaction: 'next' });
      expect(order).toEqual(['restart:start', 'restart:end', 'stop']); // one at a time
      // the repeat of the timed-out transaction is not run again and gets what really happened
      await o.client.publishAsync(slow.requestTopic('restart_pipeline'), JSON.stringify({ transaction: 'slow-1' }), { qos: 1 });
      await waitFor(() => o.responses(slow.responseTopic('restart_pipeline'), 'slow-1').length === 2, 5000, 'repeat answer');
      expect(o.responses(slow.responseTopic('restart_pipeline'), 'slow-1')[1]).toEqual({ status: 'ok', data: {}, transaction: 'slow-1' });
      expect(order.filter((e) => e === 'restart:start')).toHaveLength(1);
    } finally {
      await o.close();
      await slow.stop();
    }
  });

  test('while stopping: commands are refused with a clear answer, and stop() is bounded even with a handler that never returns', async () => {
    class HungAgent extends FakeAgent {
      override async restartPipeline(): Promise<void> {
        await new Promise(() => undefined); // never settles
      }
    }
    const hung = new HungAgent();
    const m = new MqttControl({ url: broker.url, deviceId: 'camstop', handlers: hung, logger: silent, configKeys: {}, commandTimeoutMs: 300 });
    await m.start();
    const o = await Observer.connect(broker.url, ['camstream/camstop/#']);
    try {
      await o.request(m, 'restart_pipeline', { transaction: 'hang' }, 'hang'); // answered at the timeout, still running
      m.refuseCommands();
      const r = await o.request(m, 'start_source', { transaction: 'late' });
      expect(r).toMatchObject({ status: 'error', error: expect.stringMatching(/agent is stopping/), transaction: 'late' });
      expect(hung.calls.map((c) => c.name)).not.toContain('startSource');
      const t0 = Date.now();
      await m.stop();
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      await o.close();
    }
  });

  test('a retained command is never executed', async () => {
    // someone publishes a command with retain=true; a fresh subscriber would get it on every subscribe
    await obs.client.publishAsync('camstream/camret/request/stop_source', JSON.stringify({ transaction: 'ret' }), { qos: 1, retain: true });
    const other = new MqttControl({ url: broker.url, deviceId: 'camret', handlers: fake, logger: silent, configKeys: {} });
    const events: string[] = [];
    other.on('command', (e) => events.push(e.status));
    await other.start();
    await waitFor(() => events.length > 0, 5000, 'retained delivery');
    await sleep(200);
    expect(events).toEqual(['ignored']);
    expect(fake.calls).toEqual([]);
    // published with retain while the agent is subscribed (live delivery), and the usual clear (retained, empty):
    // neither runs (retain-as-published keeps the flag)
    await obs.client.publishAsync('camstream/camret/request/stop_source', JSON.stringify({ transaction: 'ret2' }), { qos: 1, retain: true });
    await obs.client.publishAsync('camstream/camret/request/stop_source', '', { qos: 1, retain: true }); // clear it
    await waitFor(() => events.length >= 3, 5000, 'live retained deliveries');
    await sleep(200);
    expect(events).toEqual(['ignored', 'ignored', 'ignored']);
    expect(fake.calls).toEqual([]);
    await other.stop();
  });

  test("last will: unclean disconnect publishes retained 'offline', then the agent comes back 'online'", async () => {
    const statusTopic = agent.statusTopic;
    await waitFor(() => obs.on(statusTopic).length > 0, 5000, 'initial status');
    obs.messages.length = 0;
    agent.mqttClient!.stream.destroy(); // socket dies without DISCONNECT
    await waitFor(() => obs.on(statusTopic).some((m) => m.payload === 'offline'), 10_000, 'offline will');
    await waitFor(() => obs.on(statusTopic).some((m) => m.payload === 'online'), 10_000, 'online again');
    const seq = obs.on(statusTopic).map((m) => m.payload);
    expect(seq.indexOf('offline')).toBeLessThan(seq.lastIndexOf('online'));
    // the will was retained: a late subscriber sees the latest retained value
    const late = await Observer.connect(broker.url, [statusTopic]);
    await waitFor(() => late.on(statusTopic).length > 0, 5000, 'retained status');
    expect(late.on(statusTopic)[0]).toMatchObject({ payload: 'online', retain: true });
    await late.close();
    // and a clean stop() leaves 'offline' retained
    await agent.stop();
    const late2 = await Observer.connect(broker.url, [statusTopic]);
    await waitFor(() => late2.on(statusTopic).length > 0, 5000, 'retained status');
    expect(late2.on(statusTopic)[0]).toMatchObject({ payload: 'offline', retain: true });
    await late2.close();
    await agent.start();
  });

  test('broker restart: reconnect, republish online/state, and a command sent while the agent was away is answered once', async () => {
    agent.publishState(baseState({ bitrateKbps: 123 }));
    const reconnects: boolean[] = [];
    agent.on('connect', (i) => reconnects.push(i.sessionPresent));
    await obs.close();

    // slow the agent's reconnect so the command below is published before it is back
    await broker.stop();
    await waitFor(() => !agent.connected, 5000, 'agent to notice the broker is gone');
    await broker.start();

    // a fresh client sends the command while the agent is still disconnected
    const caller = await Observer.connect(broker.url, ['camstream/cam1/response/#', 'camstream/cam1/status', 'camstream/cam1/state'], 'caller');
    const agentWasConnected = agent.connected;
    await caller.client.publishAsync(agent.requestTopic('set_config'), JSON.stringify({ transaction: 'while-away', keys: { 'oneadapt.targetKbps': 777 } }), { qos: 1 });
    await waitFor(() => caller.responses(agent.responseTopic('set_config'), 'while-away').length > 0, 15_000, 'queued command answered');
    await sleep(1000); // give a duplicate a chance to show up
    try {
      expect(agentWasConnected).toBe(false);
      expect(caller.responses(agent.responseTopic('set_config'), 'while-away')).toEqual([
        { status: 'ok', data: { applied: ['oneadapt.targetKbps'] }, transaction: 'while-away' },
      ]);
      expect(fake.calls.filter((c) => c.name === 'setConfig')).toHaveLength(1);
      expect(fake.config['oneadapt.targetKbps']).toBe(777);
      expect(reconnects).toEqual([true]); // the broker restored our persistent session from its db
      // republished live (not just the retained copy from before the restart)
      await waitFor(() => caller.on('camstream/cam1/status').some((m) => m.payload === 'online' && !m.retain), 5000, 'live online');
      await waitFor(() => caller.on('camstream/cam1/state').some((m) => !m.retain && JSON.parse(m.payload).bitrateKbps === 123), 5000, 'live state');
    } finally {
      await caller.close();
      obs = await Observer.connect(broker.url, ['camstream/cam1/#']);
    }
  });

  test('commands sent while the broker is down are queued by the sender and answered once after both reconnect', async () => {
    const sender = await Observer.connect(broker.url, ['camstream/cam1/response/#'], 'sender');
    await broker.stop();
    await waitFor(() => !agent.connected && !sender.client.connected, 5000, 'disconnects');
    const pub = sender.client.publishAsync(agent.requestTopic('restart_pipeline'), JSON.stringify({ transaction: 'down' }), { qos: 1 });
    await sleep(300);
    await broker.start();
    await pub;
    await waitFor(() => sender.responses(agent.responseTopic('restart_pipeline'), 'down').length > 0, 15_000, 'answer');
    await sleep(1000);
    expect(sender.responses(agent.responseTopic('restart_pipeline'), 'down')).toHaveLength(1);
    expect(fake.calls.filter((c) => c.name === 'restartPipeline')).toHaveLength(1);
    await sender.close();
  });
});
