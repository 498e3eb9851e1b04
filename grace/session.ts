/**
 * Grace++ sender and receiver state machines with reference synchronisation.
 *
 * Each P-frame f references frame f−1. The receiver decodes f from whatever packets of f arrived
 * (lost elements zero; no packet at all = the reference is kept unchanged) and reports, per frame,
 * which packet indices it used. The sender keeps two chains:
 *   - exact:      the receiver's reconstructions, re-derived from the feedback (same latent subset,
 *                 same model, same reference, deterministic ONNX run → bit-identical), for every
 *                 frame up to the last contiguously acknowledged one;
 *   - optimistic: for frames still in flight, the reconstruction assuming every packet arrives,
 *                 built on the exact chain (rebuilt when feedback reports a loss).
 * A new frame is encoded against the latest state of the chain, so a loss corrupts the receiver's
 * reference for at most ~one RTT of frames; after that the sender encodes against exactly what the
 * receiver holds and the encoder corrects the difference.
 */
import { GraceModelError, type GraceModel } from './model.ts';
import { depacketise, maskLatent, packetise, PacketError, quantise, type CdfTables, type QLatent } from './packet.ts';
import { RansError } from './rans.ts';

export interface SessionOptions {
  width: number;
  height: number;
  minPackets?: number;
  mtu?: number;
  /** frames of history to keep (must exceed the feedback delay in frames); default 256 */
  history?: number;
}

interface SentFrame {
  rung: number;
  q: QLatent;
  count: number;
}

export interface EncodedFrame {
  frameId: number;
  refId: number;
  rung: number;
  packets: Uint8Array[];
  /** sender-side time spent in the encoder network + entropy coding, ms */
  encodeMs: number;
}

export class GraceSender {
  private readonly exact = new Map<number, Float32Array>();
  private lastExact = -1;
  private readonly opt = new Map<number, Float32Array>();
  private optValid = true;
  private readonly sent = new Map<number, SentFrame>();
  private readonly feedback = new Map<number, boolean[]>();
  private lastSent = -1;
  /** decoder runs spent on reference synchronisation (for the benchmark's cost accounting) */
  syncDecodes = 0;

  constructor(private readonly models: readonly GraceModel[], private readonly tables: CdfTables, private readonly o: SessionOptions) {
    for (const m of models) m.checkSize(o.width, o.height);
  }

  /** Both sides start from the same intra-coded reconstruction (frame `frameId`). */
  start(intraRecon: Float32Array, frameId = 0): void {
    this.exact.clear(); this.opt.clear(); this.sent.clear(); this.feedback.clear();
    this.exact.set(frameId, intraRecon);
    this.lastExact = frameId;
    this.lastSent = frameId;
    this.optValid = true;
  }

  private stateOf(id: number): Float32Array {
    const s = id <= this.lastExact ? this.exact.get(id) : this.opt.get(id);
    if (!s) throw new Error(`no reconstruction of frame ${id}`);
    return s;
  }

  private async rebuildOptimistic(): Promise<void> {
    if (this.optValid) return;
    for (let id = this.lastExact + 1; id <= this.lastSent; id++) {
      const f = this.sent.get(id)!;
      this.opt.set(id, await this.models[f.rung].decode(f.q, this.stateOf(id - 1), this.o.width, this.o.height));
      this.syncDecodes++;
    }
    this.optValid = true;
  }

  /** Encode the next frame (ids must increase by one) with ladder rung `rung`. */
  async encode(rgb: Float32Array, rung: number): Promise<EncodedFrame> {
    const model = this.models[rung];
    if (!model) throw new RangeError(`no ladder rung ${rung}`);
    await this.rebuildOptimistic();
    const frameId = this.lastSent + 1;
    const refId = frameId - 1;
    const ref = this.stateOf(refId);
    const t0 = performance.now();
    const { y, c, h, w } = await model.encode(rgb, ref, this.o.width, this.o.height);
    const q = quantise(y, c, h, w, this.tables.maxAbs);
    const packets = packetise(q, this.tables, { model: rung, frameId, refId, width: this.o.width, height: this.o.height, minPackets: this.o.minPackets, mtu: this.o.mtu });
    const encodeMs = performance.now() - t0;
    this.sent.set(frameId, { rung, q, count: packets.length });
    this.opt.set(frameId, await model.decode(q, ref, this.o.width, this.o.height));
    this.lastSent = frameId;
    this.prune();
    return { frameId, refId, rung, packets, encodeMs };
  }

  /** Receiver feedback: which packet indices of `frameId` it decoded ([] = none); any order of frames. */
  async onFeedback(frameId: number, received: readonly boolean[]): Promise<void> {
    if (frameId <= this.lastExact || frameId > this.lastSent) return; // stale or bogus
    const f = this.sent.get(frameId)!;
    if (received.length !== f.count && received.length !== 0) throw new RangeError(`feedback for frame ${frameId} names ${received.length} packets, it had ${f.count}`);
    this.feedback.set(frameId, received.length === 0 ? new Array<boolean>(f.count).fill(false) : [...received]);
    while (this.feedback.has(this.lastExact + 1)) {
      const id = this.lastExact + 1;
      const got = this.feedback.get(id)!;
      this.feedback.delete(id);
      const fr = this.sent.get(id)!;
      const ref = this.exact.get(id - 1)!;
      let state: Float32Array;
      if (got.every(Boolean) && this.optValid) state = this.opt.get(id)!; // computed on exactly this reference
      else if (!got.some(Boolean)) state = ref;
      else {
        state = await this.models[fr.rung].decode(maskLatent(fr.q, id, got), ref, this.o.width, this.o.height);
        this.syncDecodes++;
      }
      if (!got.every(Boolean)) this.optValid = false;
      this.exact.set(id, state);
      this.opt.delete(id);
      this.lastExact = id;
    }
    this.prune();
  }

  /** The receiver's reconstruction of `frameId` as re-derived here (known once acknowledged). */
  exactState(frameId: number): Float32Array | undefined {
    return frameId <= this.lastExact ? this.exact.get(frameId) : undefined;
  }

  get acknowledged(): number {
    return this.lastExact;
  }

  private prune(): void {
    const keep = this.o.history ?? 256;
    for (const m of [this.exact, this.sent]) for (const id of m.keys()) if (id < this.lastExact - keep) m.delete(id);
    for (const id of this.sent.keys()) if (id <= this.lastExact) this.sent.delete(id);
  }
}

export interface ReceivedFrame {
  frameId: number;
  /** reconstruction (the reference of the next frame); the previous one when nothing arrived */
  rgb: Float32Array;
  received: boolean[];
  rendered: boolean;
  decodeMs: number;
}

export class GraceReceiver {
  private readonly states = new Map<number, Float32Array>();
  private last = -1;
  /** no model's latent at this frame size is larger: a packet header declaring more is rejected unread */
  private readonly maxElements: number;

  constructor(private readonly models: readonly GraceModel[], private readonly tables: CdfTables, private readonly o: SessionOptions) {
    this.maxElements = Math.max(...models.map((m) => m.channels * Math.ceil(o.width / m.stride) * Math.ceil(o.height / m.stride)));
  }

  start(intraRecon: Float32Array, frameId = 0): void {
    this.states.clear();
    this.states.set(frameId, intraRecon);
    this.last = frameId;
  }

  get lastFrame(): number {
    return this.last;
  }

  /**
   * Decode the next frame from the packets that arrived by its deadline (possibly none). Packets of
   * other frames, wrong sizes or corrupt payloads are ignored.
   */
  async decode(frameId: number, packets: readonly Uint8Array[]): Promise<ReceivedFrame> {
    if (frameId !== this.last + 1) throw new RangeError(`frames decode in order: expected ${this.last + 1}, got ${frameId}`);
    const ref = this.states.get(this.last)!;
    const t0 = performance.now();
    let rgb = ref;
    let received: boolean[] = [];
    let rendered = false;
    const mine = packets.filter((p) => p.length >= 9 && new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(5) === frameId);
    if (mine.length > 0) {
      try {
        const d = depacketise(mine, this.tables, this.maxElements);
        const h = d.header;
        const model = this.models[h.model];
        if (model && h.refId === this.last && h.width === this.o.width && h.height === this.o.height) {
          rgb = await model.decode(d.latent, ref, this.o.width, this.o.height);
          received = d.received;
          rendered = true;
        }
      } catch (e) {
        // what the packets cause (malformed, corrupt, a latent that does not fit the model): nothing decodable, keep
        // the reference. Anything else (onnxruntime failing) is the receiver's fault and must not pass for a loss.
        if (!(e instanceof PacketError || e instanceof RansError || e instanceof GraceModelError)) throw e;
      }
    }
    this.states.set(frameId, rgb);
    this.states.delete(frameId - (this.o.history ?? 256));
    this.last = frameId;
    return { frameId, rgb, received, rendered, decodeMs: performance.now() - t0 };
  }
}
