/**
 * The virtual-time delay simulation behind bench:grace (grace/sim.ts): scripted losses on a link with a
 * 100 ms RTT (50 ms one way), no bottleneck, frames every 100 ms encoded in 10 ms and decoded in 5 ms,
 * so every expected time below can be worked out by hand.
 */
import { NetEm, type LossModel } from '../grace/netem.ts';
import { simulateGrace, simulateH264, type FrameSpec } from '../grace/sim.ts';

const frames = (n: number, intraAt: number[] = []): FrameSpec[] =>
  Array.from({ length: n }, (_, i) => ({ packets: [1000, 1000, 1000, 1000], encodeMs: 10, intra: intraAt.includes(i) }));
const net = (loss: LossModel) => ({ loss, rttMs: 100, bandwidthKbps: 0, seed: 1 });
const grace = (lost: number[]) => simulateGrace(frames(3), { net: net({ kind: 'list', lost }), intervalMs: 100, decodeMs: 5, slackMs: 30 });

describe('Grace++ receiver in the simulation', () => {
  test('no loss: each frame renders one way + decode after it is sent', () => {
    expect(grace([]).delays).toEqual([65, 65, 65]);
  });
  test('a hole before the last packet is known lost when the last arrives: no wait', () => {
    const r = grace([1]);
    expect(r.delays[0]).toBe(65);
    expect(r.notRendered).toBe(0);
  });
  test('a lost last packet is waited for until the deadline (first arrival + slack)', () => {
    expect(grace([3]).delays[0]).toBe(10 + 50 + 30 + 5);
  });
  test('a frame with no packet is not rendered; the viewer waits for the next one', () => {
    const r = grace([0, 1, 2, 3]);
    expect(r.notRendered).toBe(1);
    expect(r.delays[0]).toBe(165);
  });
});

describe('H.264 baselines in the simulation', () => {
  const h264 = (lost: number[], recovery: Parameters<typeof simulateH264>[1]['recovery'], intraAt: number[] = [0]) =>
    simulateH264(frames(4, intraAt), { net: net({ kind: 'list', lost }), intervalMs: 100, decodeMs: 5, recovery });
  test('NACK: the gap is seen when the next packet arrives, the resend comes one RTT later, later frames wait in order', () => {
    const r = h264([1], { kind: 'nack' });
    expect(r.delays[0]).toBe(60 + 100 + 5);
    expect(r.delays[1]).toBe(170 - 100); // complete at 160, rendered after frame 0
    expect(r.bytes).toBe(17000); // 16 packets + one resend
  });
  test('FEC: one parity packet per four repairs one loss without waiting; parity bytes counted', () => {
    const r = h264([1], { kind: 'fec', redundancy: 0.25 });
    expect(r.delays[0]).toBe(65);
    expect(r.bytes).toBe(4 * 5 * 1000);
  });
  test('skip: the broken frame and those after it are dropped until the requested intra frame', () => {
    const r = h264([5], { kind: 'skip' }); // frame 1's second packet
    expect(r.notRendered).toBe(1);
    expect(r.delays[0]).toBe(65);
    // the loss is known at the receiver at 160 (frame 1's last packet), at the sender at 210: frame 2 (sent at 210) is intra
    expect(r.delays[2]).toBe(65);
    expect(r.delays[3]).toBe(65);
  });
});

describe('NetEm', () => {
  test('scripted losses hit exactly the listed packets', () => {
    const n = new NetEm(net({ kind: 'list', lost: [0, 2] }));
    expect([0, 1, 2, 3].map((i) => n.send(i, 100))).toEqual([null, 51, null, 53]);
  });
  test('Gilbert–Elliott: the long-run loss rate and mean burst length are the configured ones', () => {
    const n = new NetEm(net({ kind: 'ge', p: 0.05, burst: 4 }));
    const lost = Array.from({ length: 200_000 }, (_, i) => n.send(i, 100) === null);
    const rate = lost.filter(Boolean).length / lost.length;
    let bursts = 0;
    lost.forEach((l, i) => { if (l && !lost[i - 1]) bursts++; });
    expect(rate).toBeGreaterThan(0.045);
    expect(rate).toBeLessThan(0.055);
    expect(lost.filter(Boolean).length / bursts).toBeGreaterThan(3.6);
    expect(lost.filter(Boolean).length / bursts).toBeLessThan(4.4);
  });
});
