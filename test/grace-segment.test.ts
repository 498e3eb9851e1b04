/** @jest-environment ./test/helpers/ort-env.cjs */
import { RateSelector } from '../grace/ladder.ts';
import { GraceSegmentCodec, GraceSegmentError } from '../grace/segment.ts';
import { psnrY } from '../grace/quality.ts';
import { loadFrames, sharedPath } from '../testdata/fixtures.ts';

describe('ladder rate selection', () => {
  const sel = (): RateSelector => new RateSelector([0.05, 0.1, 0.2]);
  test('picks the highest rung that fits the target, the lowest when none does', () => {
    const s = sel();
    // 480×272 at 10 fps: rung bits/frame = 6528, 13056, 26112 → 65, 131, 261 kbps
    expect(s.pick(50, 10, 480, 272)).toBe(0);
    expect(s.pick(140, 10, 480, 272)).toBe(1);
    expect(s.pick(300, 10, 480, 272)).toBe(2);
  });
  test('a scene that codes larger than profiled moves down the ladder', () => {
    const s = sel();
    expect(s.pick(300, 10, 480, 272)).toBe(2);
    for (let i = 0; i < 10; i++) s.observe(2, (3 * 26112) / 8, 480, 272); // 3× the profile
    expect(s.sceneFactor).toBeGreaterThan(2.5);
    expect(s.pick(300, 10, 480, 272)).toBe(0);
  });
  test('rejects an empty or non-positive profile', () => {
    expect(() => new RateSelector([])).toThrow(RangeError);
    expect(() => new RateSelector([0.1, 0])).toThrow(RangeError);
  });
});

describe('Grace++ segment codec (agent → server)', () => {
  let codec: GraceSegmentCodec;
  beforeAll(async () => {
    codec = await GraceSegmentCodec.load();
  });
  afterAll(async () => {
    await codec.release();
  });
  const frames = loadFrames(sharedPath('videos', 'parking-person-bicycle-432p.mp4'), 6, { width: 192, height: 112, fps: 5, startS: 10 });

  test('encodes a segment the server decodes frame for frame, close to the source', async () => {
    const { data, rungs } = await codec.encode(frames, { targetKbps: 200, fps: 5 });
    expect(rungs).toHaveLength(5);
    const out = await codec.decode(data);
    expect(out).toHaveLength(6);
    for (let i = 0; i < 6; i++) {
      expect([out[i].width, out[i].height]).toEqual([192, 112]);
      expect(psnrY(frames[i], out[i])).toBeGreaterThan(22);
    }
    // a different target changes the bytes
    const small = await codec.encode(frames, { targetKbps: 1, fps: 5 });
    expect(small.rungs.every((r) => r === 0)).toBe(true);
  });

  test('malformed segments are rejected with a clear error', async () => {
    const { data } = await codec.encode(frames.slice(0, 3), { targetKbps: 200, fps: 5 });
    await expect(codec.decode(data.subarray(0, data.length - 7))).rejects.toThrow(GraceSegmentError);
    await expect(codec.decode(Buffer.concat([data, Buffer.from([1, 2])]))).rejects.toThrow(/trailing/);
    const bad = Buffer.from(data);
    bad[0] = 0;
    await expect(codec.decode(bad)).rejects.toThrow(/not a Grace/);
    await expect(codec.decode(new Uint8Array(5))).rejects.toThrow(GraceSegmentError);
    const odd = Buffer.from(data);
    odd.writeUInt16BE(190, 4);
    await expect(codec.decode(odd)).rejects.toThrow(GraceSegmentError);
  });
});
