/**
 * Grace++ as a segment codec for the agent → server uplink (config `encoder.codec: grace`): the
 * first frame is an x264 intra frame, the rest Grace++ P-frames chosen from the ladder by target
 * bitrate; all packets of every frame are stored, so the server decodes exactly what a lossless
 * receiver would. (The loss-resilient path — UDP, deadlines, feedback — is grace/transport.ts.)
 *
 * Container: "GRS1" | u16 width | u16 height | u32 intra bytes | intra (H.264 Annex B) |
 *            u16 P-frame count | per frame: u8 packet count, then per packet u16 length + bytes.
 */
import { decodeSegment, encodeSegment, scaleFrameAsync } from '../encoder/index.ts';
import type { YuvFrame } from '../encoder/frame.ts';
import { rgbPlanarToYuv, yuvToRgbPlanar } from './color.ts';
import { RateSelector } from './ladder.ts';
import { GraceModel, loadLadder, loadTables } from './model.ts';
import type { CdfTables } from './packet.ts';
import { GraceReceiver, GraceSender } from './session.ts';

const MAGIC = 0x47525331; // "GRS1"
/** largest frame a segment may declare (4K UHD): bounds the memory a hostile segment can make us allocate */
const MAX_PIXELS = 3840 * 2160;

/** What the agent uploads for a Grace++ segment (the shape of oneadapt's Rendered, with codec 'grace'). */
export interface GraceRendered {
  encoded: { codec: 'grace'; width: number; height: number; data: Uint8Array };
  sent: number[];
  qpMap: null;
  rungs: number[];
}

export class GraceSegmentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraceSegmentError';
  }
}

export interface GraceEncodeOptions {
  targetKbps: number;
  fps: number;
  intraQp?: number;
}

export class GraceSegmentCodec {
  private readonly selector: RateSelector;

  private constructor(private readonly models: GraceModel[], private readonly tables: CdfTables, bpp: number[]) {
    this.selector = new RateSelector(bpp);
  }

  static async load(threads = 1): Promise<GraceSegmentCodec> {
    const ladder = loadLadder();
    const models = await Promise.all(ladder.rungs.map((n) => GraceModel.load(n, { threads })));
    return new GraceSegmentCodec(models, loadTables(), ladder.bpp ?? ladder.rungs.map((_, i) => 0.05 * 2 ** i));
  }

  /** Encode frames (sides multiples of 8) into one self-contained segment. */
  async encode(frames: YuvFrame[], o: GraceEncodeOptions): Promise<{ data: Uint8Array; rungs: number[] }> {
    if (frames.length === 0) throw new GraceSegmentError('empty segment');
    const { width, height } = frames[0];
    if (frames.some((f) => f.width !== width || f.height !== height)) throw new GraceSegmentError('frames of one segment must share a size');
    this.models[0].checkSize(width, height);
    const intra = await encodeSegment([frames[0]], [null], { baseQp: o.intraQp ?? 24, gop: 1, preset: 'veryfast', tune: 'zerolatency' });
    const intraRecon = yuvToRgbPlanar((await decodeSegment(intra.data)).frames[0]);
    const tx = new GraceSender(this.models, this.tables, { width, height });
    tx.start(intraRecon);
    const parts: Uint8Array[] = [];
    const head = Buffer.alloc(12);
    head.writeUInt32BE(MAGIC, 0);
    head.writeUInt16BE(width, 4);
    head.writeUInt16BE(height, 6);
    head.writeUInt32BE(intra.data.length, 8);
    parts.push(head, intra.data);
    const count = Buffer.alloc(2);
    count.writeUInt16BE(frames.length - 1);
    parts.push(count);
    const rungs: number[] = [];
    for (let i = 1; i < frames.length; i++) {
      const rung = this.selector.pick(o.targetKbps, o.fps, width, height);
      const f = await tx.encode(yuvToRgbPlanar(frames[i]), rung);
      // lossless uplink: everything arrives, so the reference chain is the full decode
      await tx.onFeedback(f.frameId, f.packets.map(() => true));
      rungs.push(rung);
      const n = Buffer.alloc(1);
      n.writeUInt8(f.packets.length);
      parts.push(n);
      let bytes = 0;
      for (const p of f.packets) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(p.length);
        parts.push(len, p);
        bytes += p.length;
      }
      this.selector.observe(rung, bytes, width, height);
    }
    return { data: Buffer.concat(parts), rungs };
  }

  /** Decode a segment made by encode(); throws GraceSegmentError on malformed input. */
  /** Decode a segment; `expect` (the segment header's claims) bounds what an untrusted segment may expand to. */
  async decode(data: Uint8Array, expect: { frames?: number; width?: number; height?: number } = {}): Promise<YuvFrame[]> {
    const b = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let pos = 0;
    const need = (n: number): void => {
      if (pos + n > b.length) throw new GraceSegmentError(`segment truncated at byte ${pos} (needs ${n} more)`);
    };
    need(12);
    if (b.readUInt32BE(0) !== MAGIC) throw new GraceSegmentError('not a Grace++ segment');
    const width = b.readUInt16BE(4), height = b.readUInt16BE(6), intraLen = b.readUInt32BE(8);
    pos = 12;
    if (width * height > MAX_PIXELS) throw new GraceSegmentError(`segment declares ${width}x${height}, more than ${MAX_PIXELS} pixels`);
    if ((expect.width !== undefined && width !== expect.width) || (expect.height !== undefined && height !== expect.height)) {
      throw new GraceSegmentError(`segment is ${width}x${height}, its header says ${expect.width}x${expect.height}`);
    }
    try {
      this.models[0].checkSize(width, height);
    } catch (e) {
      throw new GraceSegmentError((e as Error).message);
    }
    need(intraLen);
    const intraFrames = (await decodeSegment(b.subarray(pos, pos + intraLen), 'h264', { maxFrames: 1, maxPixels: width * height })).frames;
    pos += intraLen;
    if (intraFrames.length !== 1 || intraFrames[0].width !== width || intraFrames[0].height !== height) throw new GraceSegmentError('intra frame does not match the segment size');
    need(2);
    const n = b.readUInt16BE(pos);
    pos += 2;
    if (expect.frames !== undefined && n + 1 > expect.frames) throw new GraceSegmentError(`segment holds ${n + 1} frames, its header says ${expect.frames}`);
    const rx = new GraceReceiver(this.models, this.tables, { width, height, history: 1 }); // one reference kept, not one RGB frame per frame
    const first = intraFrames[0];
    rx.start(yuvToRgbPlanar(first));
    const out: YuvFrame[] = [first];
    for (let i = 1; i <= n; i++) {
      need(1);
      const k = b[pos++];
      const packets: Uint8Array[] = [];
      for (let j = 0; j < k; j++) {
        need(2);
        const len = b.readUInt16BE(pos);
        pos += 2;
        need(len);
        packets.push(new Uint8Array(b.subarray(pos, pos + len)));
        pos += len;
      }
      const r = await rx.decode(i, packets);
      if (!r.rendered) throw new GraceSegmentError(`frame ${i} has no decodable packet`);
      out.push(rgbPlanarToYuv(r.rgb, width, height, i));
    }
    if (pos !== b.length) throw new GraceSegmentError(`${b.length - pos} trailing bytes after the last frame`);
    return out;
  }

  /**
   * Agent side: every frame of the segment, scaled down to sides that are multiples of 8 when needed
   * (the codec's stride), coded at `targetKbps`.
   */
  async render(frames: YuvFrame[], o: GraceEncodeOptions): Promise<GraceRendered> {
    const { width: w0, height: h0 } = frames[0];
    const width = Math.floor(w0 / 8) * 8, height = Math.floor(h0 / 8) * 8;
    const coded = width === w0 && height === h0 ? frames : await Promise.all(frames.map((f) => scaleFrameAsync(f, width, height, 'area')));
    const { data, rungs } = await this.encode(coded, o);
    return { encoded: { codec: 'grace', width, height, data }, sent: frames.map((_, i) => i), qpMap: null, rungs };
  }

  async release(): Promise<void> {
    await Promise.all(this.models.map((m) => m.release()));
  }
}
