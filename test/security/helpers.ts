/**
 * Security test helpers: an ingest server with a counting processor and known camera tokens,
 * and a raw WebSocket client that writes exact bytes to the socket (for frames `ws` would never send).
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { CameraTokens, hashToken } from '../../proc/auth.ts';
import { IngestServer, type IngestLimits, type ReplyStore, type SegmentProcessor } from '../../server/ingest.ts';
import { packSegment, type SegmentHeader } from '../../wire/protocol.ts';
import { ServerStore } from '../../server/store.ts';

export const TOKENS = { camA: 'camA-secret-token-0123456789', camB: 'camB-secret-token-0123456789' } as const;
export const cameraAuth = new CameraTokens({ camA: hashToken(TOKENS.camA), camB: hashToken(TOKENS.camB) });

export function header(cameraId: string, segmentId: string, seq: number, videoBytes: number): SegmentHeader {
  return { type: 'segment', v: 1, segmentId, cameraId, seq, codec: 'h264', width: 64, height: 48, fps: 10, frameCount: 10, ptsMs: [], capturedAt: Date.now(), knobs: { qp: 30 }, videoBytes };
}

/** A segment message whose video bytes are all `fill` (the processor echoes it as the detection count). */
export function segment(cameraId: string, segmentId: string, seq: number, fill = seq % 256, bytes = 100): Buffer {
  return packSegment(header(cameraId, segmentId, seq, bytes), Buffer.alloc(bytes, fill));
}

/** Records what it processed; the reply's single detection carries the first video byte (whose content got stored). */
export class EchoProcessor implements SegmentProcessor {
  seen: string[] = [];
  failNext = 0;
  delayMs = 0;
  async process(h: SegmentHeader, video: Buffer) {
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('onnxruntime: out of memory');
    }
    this.seen.push(`${h.cameraId}/${h.segmentId}`);
    return { segmentId: h.segmentId, seq: h.seq, detections: [[[0, 0, 1, 1, video[0] / 255, 0]]] as [number, number, number, number, number, number][][], f1: null, dnngrad: null, timings: { decodeMs: 0, detectMs: 0, gradMs: 0 } };
  }
}

export async function startIngest(limits: Partial<IngestLimits> = {}, store: ReplyStore = new ServerStore(':memory:'), processor = new EchoProcessor(), httpHandler?: http.RequestListener) {
  const server = new IngestServer({ host: '127.0.0.1', port: 0, processor, store, auth: cameraAuth, limits, httpHandler });
  const rejected: string[] = [];
  server.on('rejected', (r) => rejected.push(r));
  const port = await server.start();
  return { server, port, store, processor, rejected, url: `ws://127.0.0.1:${port}/ingest` };
}

/** Raw client: does the HTTP upgrade by hand, then lets the test write exact frame bytes. */
export class RawWs {
  private buf = Buffer.alloc(0);
  closed = false;
  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d) => (this.buf = Buffer.concat([this.buf, d])));
    sock.on('close', () => (this.closed = true));
    sock.on('error', () => (this.closed = true));
  }

  static async connect(port: number): Promise<RawWs> {
    const sock = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const ws = new RawWs(sock);
    const key = randomBytes(16).toString('base64');
    sock.write(`GET /ingest HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    await waitFor(() => ws.buf.includes('\r\n\r\n') || ws.closed, 5000);
    const head = ws.buf.toString('latin1');
    if (!head.startsWith('HTTP/1.1 101')) throw new Error(`upgrade refused: ${head.split('\r\n')[0] || 'connection closed'}`);
    ws.buf = ws.buf.subarray(ws.buf.indexOf('\r\n\r\n') + 4);
    return ws;
  }

  write(bytes: Buffer | number[]): void {
    this.sock.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
  }

  /** A masked client frame (opcode 1 text, 2 binary) with exact payload bytes. */
  frame(opcode: number, payload: Buffer, fin = true): void {
    const mask = randomBytes(4);
    const len = payload.length;
    const head = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len]) : len < 65536 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, len >> 8, len & 255]) : (() => {
      const b = Buffer.alloc(10);
      b[0] = (fin ? 0x80 : 0) | opcode;
      b[1] = 0x80 | 127;
      b.writeBigUInt64BE(BigInt(len), 2);
      return b;
    })();
    const masked = Buffer.from(payload.map((v, i) => v ^ mask[i % 4]));
    this.write(Buffer.concat([head, mask, masked]));
  }

  /** Text messages the server sent (unmasked server frames, small ones only). */
  texts(): string[] {
    const out: string[] = [];
    let b = this.buf;
    while (b.length >= 2) {
      const op = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (b.length < 4) break;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) break;
      if (b.length < off + len) break;
      if (op === 1) out.push(b.subarray(off, off + len).toString('utf8'));
      b = b.subarray(off + len);
    }
    return out;
  }

  end(): void {
    this.sock.destroy();
  }
}

export const waitFor = async (cond: () => boolean, ms = 10_000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
