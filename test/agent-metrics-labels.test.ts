/** MQTT command names come from the topic a client published on: only known ones become metric labels. */
import { AgentMetrics } from '../agent/metrics.ts';

test('made-up command names count as "unknown", so /metrics does not grow with them', async () => {
  const m = new AgentMetrics({ defaultLabels: { device: 'cam-m' } });
  try {
    m.mqttCommand('get_state', 'ok');
    for (let i = 0; i < 200; i++) m.mqttCommand(`x${'y'.repeat(500)}${i}`, 'error');
    const text = await m.metrics();
    const lines = text.split('\n').filter((l) => l.startsWith('camstream_agent_mqtt_commands') || l.includes('mqtt_commands_total{'));
    expect(lines.some((l) => l.includes('cmd="get_state"') && l.includes('status="ok"') && l.trim().endsWith(' 1'))).toBe(true);
    expect(lines.some((l) => l.includes('cmd="unknown"') && l.includes('status="error"') && l.trim().endsWith(' 200'))).toBe(true);
    expect(text).not.toContain('yyyy');
  } finally {
    m.close();
  }
});
