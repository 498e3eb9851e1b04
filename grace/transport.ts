/**
 * Grace++ over UDP (`dgram`), with the network emulator applied on the way out of each socket
 * (so loopback behaves like a lossy, delayed, rate-limited path, deterministic by seed).
 *
 * Datagrams: [type u8][seq u32][body]. type 1 = media (body = a Grace++ packet), type 2 = feedback
 * (body = frameId u32, count u8, bitmask of the packet indices the receiver decoded).
 * The receiver decodes frame f when all its packets are in, or when a packet that was sent after every
 * missing one arrives (f's last packet, or any packet of a later frame: the path is taken as FIFO, so the
 * missing ones are lost), or `slackMs` after its first packet arrived (the frame deadline), or — if none
 * of f arrived — once a later frame is due; nothing
 * waits for retransmission. After decoding it reports the subset it used; the sender re-derives the
 * same reconstruction (grace/session.ts).
 */
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { NetEm, type NetEmOptions } from './netem.ts';
import type { GraceReceiver, GraceSender, ReceivedFrame } from './session.ts';

/** datagram types (first byte) */
export const T_MEDIA = 1;
export const T_FEEDBACK = 2;
/** a media datagram more than this many frames past the last decoded one is not a frame of this stream */
const MAX_FRAMES_AHEAD = 64;

/** A UDP socket whose outgoing datagrams go through an emulated link. */
class EmulatedSocket {
  readonly sock = dgram.createSocket('udp4');
  private readonly net: NetEm;
  private readonly t0 = performance.now();
  private readonly timers = new Set<NodeJS.Timeout>();
  private seq = 0;

  constructor(net: NetEmOptions) {
    this.net = new NetEm(net);
  }

  async bind(port = 0): Promise<number> {
    await new Promise<void>((res, rej) => {
      this.sock.once('error', rej);
      this.sock.bind(port, '127.0.0.1', () => res());
    });
    return this.sock.address().port;
  }

  send(type: number, body: Uint8Array, port: number): void {
    const buf = Buffer.alloc(5 + body.length);
    buf.writeUInt8(type, 0);
    buf.writeUInt32BE(this.seq++ >>> 0, 1);
    buf.set(body, 5);
    const now = performance.now() - this.t0;
    const at = this.net.send(now, buf.length);
    if (at === null) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      this.sock.send(buf, port, '127.0.0.1');
    }, Math.max(0, at - now));
    this.timers.add(t);
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.sock.close();
  }
}

export interface UdpSenderOptions {
  net: NetEmOptions;
  /** receiver's port on 127.0.0.1 */
  port: number;
}

/** Sends encoded frames; applies the receiver's feedback to the sender's reference chain. */
export class GraceUdpSender {
  private readonly link: EmulatedSocket;
  private chain: Promise<void> = Promise.resolve();
  feedbackCount = 0;

  constructor(private readonly sender: GraceSender, private readonly o: UdpSenderOptions) {
    this.link = new EmulatedSocket(o.net);
    this.link.sock.on('message', (msg, rinfo) => {
      if (rinfo.port !== this.o.port) return; // feedback only from the receiver we send to
      const fb = parseFeedback(msg);
      if (!fb) return;
      this.feedbackCount++;
      // feedback is applied in arrival order, serialised with encoding (both touch the chain)
      this.chain = this.chain.then(() => this.sender.onFeedback(fb.frameId, fb.received)).catch(() => undefined);
    });
  }

  bind(): Promise<number> {
    return this.link.bind();
  }

  /** Encode and send one frame; resolves once its packets are handed to the (emulated) link. */
  sendFrame(rgb: Float32Array, rung: number): Promise<{ frameId: number; bytes: number; packets: number }> {
    const job = this.chain.then(async () => {
      const f = await this.sender.encode(rgb, rung);
      for (const p of f.packets) this.link.send(T_MEDIA, p, this.o.port);
      return { frameId: f.frameId, bytes: f.packets.reduce((a, p) => a + p.length + 5, 0), packets: f.packets.length };
    });
    this.chain = job.then(() => undefined, () => undefined);
    return job;
  }

  /** Wait until queued feedback has been applied. */
  async settle(): Promise<void> {
    await this.chain;
  }

  close(): void {
    this.link.close();
  }
}

function parseFeedback(msg: Buffer): { frameId: number; received: boolean[] } | null {
  if (msg.length < 10 || msg[0] !== T_FEEDBACK) return null;
  const frameId = msg.readUInt32BE(5);
  const count = msg[9];
  if (msg.length !== 10 + Math.ceil(count / 8)) return null;
  const received = Array.from({ length: count }, (_, i) => Boolean(msg[10 + (i >> 3)] & (1 << (i & 7))));
  return { frameId, received };
}

function feedbackBody(frameId: number, received: readonly boolean[]): Uint8Array {
  const b = Buffer.alloc(5 + Math.ceil(received.length / 8));
  b.writeUInt32BE(frameId >>> 0, 0);
  b.writeUInt8(received.length, 4);
  received.forEach((r, i) => { if (r) b[5 + (i >> 3)] |= 1 << (i & 7); });
  return b;
}

export interface UdpReceiverOptions {
  /** reverse path (feedback) emulation; default lossless with the forward RTT */
  net: NetEmOptions;
  /** frame deadline after its first packet, ms */
  slackMs: number;
  /** the sender's port on 127.0.0.1; absent: the port of the first media datagram (then fixed) */
  peerPort?: number;
}

interface Pending {
  packets: Uint8Array[];
  count: number;
  firstAt: number;
  ready: boolean;
  timer?: NodeJS.Timeout;
}

/** Receives media, decodes each frame at its deadline, sends feedback. Emits 'frame' (ReceivedFrame & { at }) and 'decodeError' (error, frameId) when the decoder itself fails. */
export class GraceUdpReceiver extends EventEmitter {
  private readonly link: EmulatedSocket;
  private readonly pending = new Map<number, Pending>();
  private senderPort = 0;
  private decoding = false;
  private maxSeen = -1;
  rejected = 0;

  constructor(private readonly receiver: GraceReceiver, private readonly o: UdpReceiverOptions) {
    super();
    this.link = new EmulatedSocket(o.net);
    this.link.sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo.port));
  }

  bind(): Promise<number> {
    return this.link.bind();
  }

  private onMessage(msg: Buffer, port: number): void {
    if (msg.length < 5 + 22 || msg[0] !== T_MEDIA) {
      this.rejected++;
      return;
    }
    const body = new Uint8Array(msg.buffer, msg.byteOffset + 5, msg.length - 5).slice();
    const dv = new DataView(body.buffer);
    const frameId = dv.getUint32(5);
    const count = dv.getUint8(4);
    const index = dv.getUint8(3);
    // one peer only: the configured one, else the first that sent media (a datagram from anyone else, e.g. a
    // forged frame id far ahead, must not make the receiver skip the real stream's frames)
    const peer = this.o.peerPort ?? (this.senderPort || port);
    if (port !== peer || frameId <= this.receiver.lastFrame || count === 0 || frameId > this.receiver.lastFrame + MAX_FRAMES_AHEAD) {
      this.rejected++; // another sender, late (past its deadline), or implausible
      return;
    }
    this.senderPort = port;
    let p = this.pending.get(frameId);
    if (!p) {
      p = { packets: [], count, firstAt: performance.now(), ready: false };
      const entry = p;
      p.timer = setTimeout(() => { entry.ready = true; void this.pump(); }, this.o.slackMs);
      this.pending.set(frameId, p);
    }
    if (p.ready) return;
    p.packets.push(body);
    // complete, or its last packet is in (holes before it are lost); a malformed or duplicate packet that
    // only claims to be the last makes the frame decode early with what it has: never worse than a loss
    if (p.packets.length >= p.count || index === p.count - 1) {
      clearTimeout(p.timer);
      p.ready = true;
    }
    // any packet of this frame was sent after every packet of earlier frames: those still pending are done
    for (const [id, q] of this.pending) {
      if (id < frameId && !q.ready) {
        clearTimeout(q.timer);
        q.ready = true;
      }
    }
    this.maxSeen = Math.max(this.maxSeen, frameId);
    void this.pump();
  }

  /** Decode frames in order while the next one is due. */
  private async pump(): Promise<void> {
    if (this.decoding) return;
    this.decoding = true;
    try {
      for (;;) {
        const next = this.receiver.lastFrame + 1;
        const p = this.pending.get(next);
        // a frame none of whose packets came is given up once a later frame is ready
        const laterReady = [...this.pending.entries()].some(([id, q]) => id > next && q.ready);
        if (!(p?.ready || (!p && laterReady))) break;
        let f: ReceivedFrame;
        try {
          f = await this.receiver.decode(next, p?.packets ?? []);
        } catch (e) {
          // the decoder itself failed (not the packets): report it and skip the frame as if nothing had come
          // (the sender learns it from the feedback), so one failure neither stalls the stream nor ends the process
          this.emit('decodeError', e instanceof Error ? e : new Error(String(e)), next);
          f = await this.receiver.decode(next, []);
        }
        if (p) clearTimeout(p.timer);
        this.pending.delete(next);
        if (this.senderPort) this.link.send(T_FEEDBACK, feedbackBody(next, f.received), this.senderPort);
        this.emit('frame', { ...f, at: performance.now() });
      }
    } finally {
      this.decoding = false;
    }
  }

  close(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.link.close();
  }
}
