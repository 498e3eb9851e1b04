/**
 * A DNNGrad map from the server cannot force a large allocation on the agent: decodeMbMap checks the declared grid
 * against the expected one (or a cell cap) before inflating; the pipeline expects the camera's own macroblock grid
 * for the frame size the reply names; the decisions list stays bounded.
 */
import { deflateRawSync } from 'node:zlib';
import { encodeMbMap, decodeMbMap, MAX_MB_CELLS } from '../wire/mbmap.ts';
import { EdgePipeline } from '../agent/pipeline.ts';
import { mbGrid, type MbMap } from '../encoder/frame.ts';
import type { Reply } from '../wire/protocol.ts';
import type { Decision } from '../oneadapt/adapt.ts';

const map = (rows: number, cols: number): MbMap => ({ rows, cols, data: Float32Array.from({ length: rows * cols }, (_, i) => (i % 7) + 1) });

test('a map declaring a huge grid is rejected before anything is inflated', () => {
  const good = encodeMbMap(map(3, 4));
  // 4000×4000 declared, and a body that really inflates to 16 MB of codes (a ~16 kB "bomb")
  const body = deflateRawSync(Buffer.alloc(4000 * 4000, 1), { level: 9 });
  const bomb = Buffer.concat([good.subarray(0, 16), body]);
  bomb.writeUInt16LE(4000, 4);
  bomb.writeUInt16LE(4000, 6);
  expect(bomb.length).toBeLessThan(100_000);
  // the expected grid: rejected by the header alone
  expect(() => decodeMbMap(bomb, { rows: 45, cols: 80 })).toThrow(/MB map is 4000x4000, expected 45x80/);
  // no expected grid: the default cap (the largest frame the protocol allows)
  expect(() => decodeMbMap(bomb)).toThrow(new RegExp(`more than ${MAX_MB_CELLS}`));
  expect(() => decodeMbMap(bomb, { maxCells: 1000 })).toThrow(/more than 1000/);
  const rss0 = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 20; i++) expect(() => decodeMbMap(bomb)).toThrow();
  expect(process.memoryUsage().arrayBuffers - rss0).toBeLessThan(16 << 20);
});

test('a legit map still decodes, with or without the expected grid', () => {
  const m = map(45, 80);
  const buf = encodeMbMap(m);
  for (const back of [decodeMbMap(buf), decodeMbMap(buf, { rows: 45, cols: 80 }), decodeMbMap(buf, { maxCells: 45 * 80 })]) {
    expect([back.rows, back.cols]).toEqual([45, 80]);
    expect(Array.from(back.data).every((v, i) => Math.abs(v - m.data[i]) <= 0.05 * m.data[i])).toBe(true);
  }
  // the largest grid the protocol allows (8192×8192) is within the default cap
  const g = mbGrid(8192, 8192);
  expect(g.rows * g.cols).toBeLessThanOrEqual(MAX_MB_CELLS);
  expect(decodeMbMap(encodeMbMap(map(g.rows, g.cols))).data.length).toBe(g.rows * g.cols);
});

const reply = (d: Partial<NonNullable<Reply['dnngrad']>> & { data: string }): Reply => ({
  type: 'reply', segmentId: 's', seq: 0, detections: [], f1: null, duplicate: false, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 },
  dnngrad: { frameIndex: 0, rows: 6, cols: 8, proxy: 1, ...d },
});

test('the pipeline takes a DNNGrad map only on the macroblock grid of the frame size the reply names', () => {
  const p = new EdgePipeline({ probes: null });
  const ok = encodeMbMap(map(6, 8)).toString('base64');
  // 128×96 → 6×8 macroblocks
  expect(() => p.onReply(reply({ width: 128, height: 96, data: ok }))).not.toThrow();
  // rows/cols that are not the grid of that size
  expect(() => p.onReply(reply({ width: 1280, height: 720, data: ok }))).toThrow(/45x80/);
  // the map's own grid differs from what the reply declares
  const big = encodeMbMap(map(45, 80)).toString('base64');
  expect(() => p.onReply(reply({ width: 128, height: 96, data: big }))).toThrow(/MB map is 45x80, expected 6x8/);
  // a frame size beyond what the protocol allows
  expect(() => p.onReply(reply({ rows: 4096, cols: 4096, width: 65536, height: 65536, data: ok }))).toThrow(/frame size/);
  // once a segment was processed: no larger than this camera's frame (the resolution knob only scales down)
  (p as unknown as { srcSize: { width: number; height: number } }).srcSize = { width: 128, height: 96 };
  expect(() => p.onReply(reply({ rows: 12, cols: 16, width: 256, height: 192, data: ok }))).toThrow(/frame size 256x192 is larger than this camera's 128x96/);
  expect(() => p.onReply(reply({ data: ok }))).not.toThrow(); // no size: the source's, 6×8
  (p as unknown as { srcSize: null }).srcSize = null;
  // no size in the reply and no segment yet: the declared grid, bounded by the protocol's largest frame
  expect(() => p.onReply(reply({ data: ok }))).not.toThrow();
  expect(() => p.onReply(reply({ rows: 4000, cols: 4000, data: ok }))).toThrow(/4000x4000 map, more than/);
  expect(() => p.onReply(reply({ rows: 45, cols: 80, data: ok }))).toThrow(/MB map is 6x8, expected 45x80/);
});

test('decisions are bounded (default 100, configurable)', () => {
  const d = (i: number) => ({ i }) as unknown as Decision;
  const p = new EdgePipeline({ probes: null });
  for (let i = 0; i < 250; i++) (p as unknown as { recordDecision(x: Decision): void }).recordDecision(d(i));
  expect(p.decisions.length).toBe(100);
  expect((p.decisions[0] as unknown as { i: number }).i).toBe(150);
  expect(p.decisionsTotal).toBe(250);
  const q = new EdgePipeline({ probes: null, maxDecisions: 10 });
  for (let i = 0; i < 25; i++) (q as unknown as { recordDecision(x: Decision): void }).recordDecision(d(i));
  expect(q.decisions.map((x) => (x as unknown as { i: number }).i)).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24]);
});
