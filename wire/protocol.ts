/**
 * Agent ↔ server wire protocol over one WebSocket.
 *
 * Binary messages (agent → server segments) are framed as
 *   uint32 BE header length | UTF-8 JSON header | payload bytes
 * where the payload is the segment's video bytestream followed by the optional
 * high-quality reference frame (its own bytestream). Text messages are JSON.
 * Every message is validated here with zod, and nowhere else.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';

export const PROTOCOL_VERSION = 1;

/** the largest frame side a segment (and so a reply's DNNGrad frame) may have */
export const MAX_FRAME_SIDE = 8192;

/** a frame side: YUV420p frames (every codec path here) have even sides */
const evenSide = z.number().int().positive().max(MAX_FRAME_SIDE).refine((v) => v % 2 === 0, 'must be even (YUV420p)');

export const KnobsSchema = z.record(z.string().max(64), z.number()).refine((k) => Object.keys(k).length <= 32, 'at most 32 knobs');

export const SegmentHeaderSchema = z.object({
  type: z.literal('segment'),
  v: z.literal(PROTOCOL_VERSION),
  segmentId: z.string().min(1).max(200),
  cameraId: z.string().min(1).max(200),
  seq: z.number().int().nonnegative(),
  /** 'grace': a Grace++ segment (grace/segment.ts) */
  codec: z.enum(['h264', 'h265', 'grace']),
  width: evenSide,
  height: evenSide,
  fps: z.number().positive().max(240),
  frameCount: z.number().int().positive().max(1000),
  ptsMs: z.array(z.number()).max(1000),
  capturedAt: z.number(),
  knobs: KnobsSchema,
  videoBytes: z.number().int().positive(),
  /** one frame of the segment encoded at high quality, sent on sampled segments only (the agent's accuracy
   * monitor, `monitor.referenceEvery`): the server measures the streamed frame's F1 against it */
  ref: z
    .object({
      frameIndex: z.number().int().nonnegative(),
      codec: z.enum(['h264', 'h265']),
      width: evenSide,
      height: evenSide,
      bytes: z.number().int().positive(),
    })
    .optional(),
});
export type SegmentHeader = z.infer<typeof SegmentHeaderSchema>;

/** First message on every connection, exactly once: who the camera is and its secret token. */
export const HelloSchema = z.strictObject({ type: z.literal('hello'), v: z.literal(PROTOCOL_VERSION), cameraId: z.string().min(1).max(64), token: z.string().min(1).max(512) });
export type Hello = z.infer<typeof HelloSchema>;

/** [x1, y1, x2, y2, score, classId] in the segment frame's pixel coordinates */
export const WireDetectionSchema = z.tuple([z.number(), z.number(), z.number(), z.number(), z.number(), z.number().int()]);

export const ReplySchema = z.object({
  type: z.literal('reply'),
  segmentId: z.string(),
  seq: z.number().int(),
  detections: z.array(z.array(WireDetectionSchema)),
  /** F1 of the segment's frame at ref.frameIndex against the detector's output on the reference */
  f1: z.object({ frameIndex: z.number().int(), f1: z.number(), tp: z.number().int(), fp: z.number().int(), fn: z.number().int() }).nullable(),
  /** per-macroblock DNNGrad of the decoded streamed frame at frameIndex (encodeMbMap, base64), on that frame's
   * macroblock grid; width/height: that frame's size (the streamed size, possibly scaled by the resolution knob) */
  dnngrad: z
    .object({ frameIndex: z.number().int(), rows: z.number().int(), cols: z.number().int(), width: z.number().int().positive().optional(), height: z.number().int().positive().optional(), proxy: z.number(), data: z.string() })
    .nullable(),
  timings: z.object({ decodeMs: z.number(), detectMs: z.number(), gradMs: z.number() }),
  /** true when this reply was served from the server's store (a resent segment) */
  duplicate: z.boolean().default(false),
});
export type Reply = z.infer<typeof ReplySchema>;

/**
 * What an error means for the agent's outbox (the delivery guarantee rests on this):
 *  - `retryable: true`  (code 'server': store/disk/processor trouble, overload): the segment stays in the
 *    outbox and is sent again later;
 *  - `retryable: false, code 'invalid_segment'`: the segment itself is bad (malformed, undecodable); the
 *    server kept its bytes in its failures table, the agent may drop it;
 *  - `retryable: false`, codes 'auth' | 'identity' | 'protocol': the connection is wrong (bad token,
 *    segment of another camera, hello missing or repeated); the agent stops its uplink and keeps every
 *    segment; the server closes the connection.
 */
export const ERROR_CODES = ['auth', 'identity', 'protocol', 'invalid_segment', 'server'] as const;
export const ErrorCodeSchema = z.enum(ERROR_CODES);
export type ErrorCode = z.infer<typeof ErrorCodeSchema>;
export const ErrorReplySchema = z.object({ type: z.literal('error'), segmentId: z.string().optional(), error: z.string(), code: ErrorCodeSchema, retryable: z.boolean() });
export type ErrorReply = z.infer<typeof ErrorReplySchema>;

export const ServerMessageSchema = z.discriminatedUnion('type', [
  ReplySchema,
  ErrorReplySchema,
  z.object({ type: z.literal('welcome'), v: z.number(), serverId: z.string(), cameraId: z.string() }),
]);
export type ServerMessage = z.infer<typeof ServerMessageSchema>;

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** The segment itself is bad (malformed framing or header, undecodable video): final, never retried. */
export class InvalidSegmentError extends ProtocolError {
  constructor(message: string, readonly segmentId?: string) {
    super(message);
    this.name = 'InvalidSegmentError';
  }
}

/** A segment id nobody can guess or pre-claim: the camera id and 128 random bits. */
export function newSegmentId(cameraId: string): string {
  return `${cameraId}-${randomBytes(16).toString('hex')}`;
}

export function packSegment(header: SegmentHeader, video: Uint8Array, ref?: Uint8Array): Buffer {
  const h = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(h.length);
  return Buffer.concat([len, h, video, ...(ref ? [ref] : [])]);
}

/** WebSocket frame header bytes for a payload (RFC 6455: 2 bytes, +2 or +8 for the length, +4 for the mask a client adds). */
export function wsFrameOverhead(payloadBytes: number, masked: boolean): number {
  return 2 + (payloadBytes < 126 ? 0 : payloadBytes <= 0xffff ? 2 : 8) + (masked ? 4 : 0);
}

/**
 * Every byte one segment costs on the uplink: the WebSocket frame header (masked, client → server), the length
 * prefix, the JSON header, the video and the reference frame, split by what they are for the metrics.
 */
export function segmentWireBytes(header: SegmentHeader): { video: number; reference: number; headers: number; total: number } {
  const json = Buffer.byteLength(JSON.stringify(header), 'utf8');
  const video = header.videoBytes;
  const reference = header.ref?.bytes ?? 0;
  const message = 4 + json + video + reference;
  const headers = message - video - reference + wsFrameOverhead(message, true);
  return { video, reference, headers, total: video + reference + headers };
}

export function unpackSegment(buf: Buffer): { header: SegmentHeader; video: Buffer; ref: Buffer | null } {
  if (buf.length < 4) throw new InvalidSegmentError('segment message shorter than its length prefix');
  const hlen = buf.readUInt32BE(0);
  if (hlen > 1 << 20 || 4 + hlen > buf.length) throw new InvalidSegmentError(`bad header length ${hlen} for a ${buf.length}-byte message`);
  let json: unknown;
  try {
    json = JSON.parse(buf.subarray(4, 4 + hlen).toString('utf8'));
  } catch (e) {
    throw new InvalidSegmentError(`segment header is not JSON: ${(e as Error).message}`);
  }
  const parsed = SegmentHeaderSchema.safeParse(json);
  if (!parsed.success) throw new InvalidSegmentError(`invalid segment header: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const header = parsed.data;
  const body = buf.subarray(4 + hlen);
  const refBytes = header.ref?.bytes ?? 0;
  if (body.length !== header.videoBytes + refBytes) {
    throw new InvalidSegmentError(`segment ${header.segmentId}: payload is ${body.length} bytes, header says ${header.videoBytes}+${refBytes}`, header.segmentId);
  }
  return { header, video: body.subarray(0, header.videoBytes), ref: refBytes ? body.subarray(header.videoBytes) : null };
}

export function parseServerMessage(text: string): ServerMessage {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ProtocolError(`server message is not JSON: ${(e as Error).message}`);
  }
  const parsed = ServerMessageSchema.safeParse(json);
  if (!parsed.success) throw new ProtocolError(`invalid server message: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

export function parseHello(text: string): Hello {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ProtocolError(`hello is not JSON: ${(e as Error).message}`);
  }
  const parsed = HelloSchema.safeParse(json);
  if (!parsed.success) throw new ProtocolError(`invalid hello: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}
