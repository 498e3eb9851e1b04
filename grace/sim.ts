/**
 * Virtual-time packet simulation of frame delay for Grace++ and the H.264 loss-recovery baselines,
 * over the same emulated link (grace/netem.ts). Pure: inputs are per-frame packet sizes and measured
 * encode/decode times; outputs are per-frame render times.
 *
 * Frame delay = render time − capture time. A frame that is never rendered gets the delay until the
 * display next shows a newer frame (what the viewer waits), and is counted in `notRendered`.
 * Stall = Σ over gaps between display updates of max(0, gap − 2·frame interval).
 */
import { NetEm, type NetEmOptions } from './netem.ts';

export interface FrameSpec {
  /** bytes of each packet of the frame as sent (headers included) */
  packets: number[];
  encodeMs: number;
  /** H.264: an intra frame (decodable without the previous ones) */
  intra?: boolean;
}

export interface DelayResult {
  delays: number[];
  notRendered: number;
  stallMs: number;
  bytes: number;
}

/** Tiny discrete-event queue (time-ordered, FIFO among equal times). */
class Events {
  private q: { t: number; k: number; fn: () => void }[] = [];
  private k = 0;
  at(t: number, fn: () => void): void {
    this.q.push({ t, k: this.k++, fn });
  }
  run(): void {
    while (this.q.length) {
      let best = 0;
      for (let i = 1; i < this.q.length; i++) if (this.q[i].t < this.q[best].t || (this.q[i].t === this.q[best].t && this.q[i].k < this.q[best].k)) best = i;
      const [e] = this.q.splice(best, 1);
      this.now = e.t;
      e.fn();
    }
  }
  now = 0;
}

function summarise(capture: number[], render: (number | null)[], intervalMs: number, bytes: number): DelayResult {
  const n = capture.length;
  const delays: number[] = [];
  let notRendered = 0;
  // display time of frame f = earliest render time of any frame ≥ f; frames never superseded within
  // the run count until the run's end (last render or capture + one interval): an under-estimate
  const finite = render.filter((t): t is number => t !== null);
  const end = Math.max(capture[n - 1], ...finite) + intervalMs;
  let nextShown = end;
  const shown = new Array<number>(n);
  for (let f = n - 1; f >= 0; f--) {
    if (render[f] !== null) nextShown = Math.min(nextShown, render[f]!);
    shown[f] = nextShown;
  }
  for (let f = 0; f < n; f++) {
    if (render[f] === null) notRendered++;
    delays.push((render[f] ?? shown[f]) - capture[f]);
  }
  const times = render.filter((t): t is number => t !== null).sort((a, b) => a - b);
  let stall = 0;
  for (let i = 1; i < times.length; i++) stall += Math.max(0, times[i] - times[i - 1] - 2 * intervalMs);
  return { delays, notRendered, stallMs: stall, bytes };
}

export interface GraceSimOptions {
  net: NetEmOptions;
  intervalMs: number;
  decodeMs: number;
  /** frame deadline after the first packet's arrival */
  slackMs: number;
}

/**
 * Grace++: decode whatever arrived once the frame's last packet is in (holes before it are lost: FIFO link)
 * or, when the tail is lost, at the deadline; no retransmission; a frame with no packet is not rendered. Intra-refresh frames (x264) need every packet: a lost one is NACKed and resent one RTT
 * later, again until it arrives.
 */
export function simulateGrace(frames: FrameSpec[], o: GraceSimOptions): DelayResult {
  const net = new NetEm(o.net);
  const capture = frames.map((_, i) => i * o.intervalMs);
  const render: (number | null)[] = [];
  let decoderFree = 0;
  let bytes = 0;
  frames.forEach((f, i) => {
    const sendAt = capture[i] + f.encodeMs;
    const arrivals = f.packets.map((b) => { bytes += b; return net.send(sendAt, b); });
    if (f.intra) {
      const times = arrivals.map((a, k) => {
        let t = sendAt;
        while (a === null) {
          t += o.net.rttMs;
          bytes += f.packets[k];
          a = net.send(t, f.packets[k]);
        }
        return a;
      });
      decoderFree = Math.max(Math.max(...times), decoderFree) + o.decodeMs;
      render.push(decoderFree);
      return;
    }
    const got = arrivals.filter((a): a is number => a !== null);
    if (got.length === 0) {
      render.push(null);
      return;
    }
    const first = Math.min(...got);
    const deadline = first + o.slackMs;
    // loss detection by sequence (the link is FIFO): once the frame's last packet is in, every packet still
    // missing is lost, so the frame decodes then; when the tail itself is lost, at the deadline
    const tail = arrivals[arrivals.length - 1];
    const ready = tail !== null ? Math.min(tail, deadline) : deadline;
    const done = Math.max(ready, decoderFree) + o.decodeMs;
    decoderFree = done;
    render.push(done);
  });
  return summarise(capture, render, o.intervalMs, bytes);
}

export type H264Recovery = { kind: 'nack' } | { kind: 'fec'; redundancy: number } | { kind: 'skip' };

export interface H264SimOptions {
  net: NetEmOptions;
  intervalMs: number;
  decodeMs: number;
  recovery: H264Recovery;
  /** packet size of an intra frame sent after a keyframe request (skip mode) */
  intraPackets?: number[];
  /** receiver's retransmission timer: re-NACK after this long without the packet; default RTT + 20 ms */
  rtoMs?: number;
}

/**
 * H.264 (each frame needs the previous one, except intra frames):
 *  - nack: the receiver NACKs a missing packet when a later packet arrives (or its timer fires) and
 *    again every RTO until it arrives; frames render in order once complete;
 *  - fec: Reed–Solomon over each frame's packets (ceil(r·k) parity packets; any k of k+m recover the
 *    frame — the MDS property), with NACK of the data packets as a fallback when more than m are lost;
 *  - skip: no repair; an incomplete frame and all frames after it are dropped until an intra frame,
 *    which the receiver requests on detecting the loss (PLI) and the sender sends next.
 */
export function simulateH264(frames: FrameSpec[], o: H264SimOptions): DelayResult {
  const fwd = new NetEm(o.net);
  const owd = o.net.rttMs / 2;
  const rto = o.rtoMs ?? o.net.rttMs + 20;
  const ev = new Events();
  const n = frames.length;
  const capture = frames.map((_, i) => i * o.intervalMs);
  const complete = new Array<number | null>(n).fill(null);
  const render = new Array<number | null>(n).fill(null);
  let bytes = 0;

  // ---- skip: packets go once; PLI makes the next frame sent after the request an intra frame
  if (o.recovery.kind === 'skip') {
    let pliAt = Infinity; // when the sender learns of a loss
    let broken = false;
    let decoderFree = 0;
    for (let i = 0; i < n; i++) {
      const sendAt = capture[i] + frames[i].encodeMs;
      let intra = frames[i].intra ?? false;
      let pk = frames[i].packets;
      if (!intra && sendAt >= pliAt) {
        intra = true;
        pk = o.intraPackets ?? pk;
        pliAt = Infinity;
      }
      const arr = pk.map((b) => { bytes += b; return fwd.send(sendAt, b); });
      const ok = arr.every((a) => a !== null);
      if (!ok) {
        if (pliAt === Infinity) pliAt = Math.max(...arr.filter((a): a is number => a !== null), sendAt + owd) + owd;
        broken = true;
        continue;
      }
      if (intra) broken = false;
      if (broken) continue;
      decoderFree = Math.max(Math.max(...(arr as number[])), decoderFree) + o.decodeMs;
      render[i] = decoderFree;
    }
    return summarise(capture, render, o.intervalMs, bytes);
  }

  const fec = o.recovery.kind === 'fec' ? o.recovery.redundancy : 0;
  interface Pk { frame: number; idx: number; bytes: number; parity: boolean; arrived: number | null }
  const perFrame: Pk[][] = [];
  const arrivedCount = new Array<number>(n).fill(0);
  let lastArrivalSeq = -1;
  const seqOf: Pk[] = [];
  const nacked = new Set<Pk>();

  const tryComplete = (f: number, t: number): void => {
    if (complete[f] !== null) return;
    const k = frames[f].packets.length;
    const dataIn = perFrame[f].filter((p) => !p.parity && p.arrived !== null).length;
    if (arrivedCount[f] >= k || dataIn === k) {
      complete[f] = t;
      // render in order
      for (let g = 0; g < n; g++) {
        if (render[g] !== null) continue;
        if (complete[g] === null) break;
        const prev = g === 0 ? 0 : render[g - 1]!;
        render[g] = Math.max(complete[g]!, prev) + o.decodeMs;
      }
    }
  };

  const deliver = (p: Pk, sendAt: number): void => {
    bytes += p.bytes;
    const a = fwd.send(sendAt, p.bytes);
    if (a === null) return;
    ev.at(a, () => {
      if (p.arrived !== null) return;
      p.arrived = a;
      arrivedCount[p.frame]++;
      const s = seqOf.indexOf(p);
      // gap detection: NACK packets before this one that are still missing
      // (with FEC, holes inside the frame still being received wait: parity may fill them)
      for (let j = lastArrivalSeq + 1; j < s; j++) if (!(fec > 0 && seqOf[j].frame === p.frame)) scheduleNack(seqOf[j], a);
      lastArrivalSeq = Math.max(lastArrivalSeq, s);
      tryComplete(p.frame, a);
    });
  };

  const scheduleNack = (p: Pk, t: number): void => {
    if (nacked.has(p) || p.parity) return;
    nacked.add(p);
    const nack = (at: number): void => {
      if (p.arrived !== null || complete[p.frame] !== null) return;
      ev.at(at + owd, () => deliver(p, ev.now)); // NACK reaches the sender, retransmission goes out
      ev.at(at + rto, () => nack(ev.now)); // receiver's retransmission timer
    };
    nack(t);
  };

  frames.forEach((f, i) => {
    const sendAt = capture[i] + f.encodeMs;
    const k = f.packets.length;
    const m = fec > 0 ? Math.ceil(fec * k) : 0;
    const maxB = Math.max(...f.packets);
    const list: Pk[] = [
      ...f.packets.map((b, idx) => ({ frame: i, idx, bytes: b, parity: false, arrived: null })),
      ...Array.from({ length: m }, (_, j) => ({ frame: i, idx: k + j, bytes: maxB, parity: true, arrived: null })),
    ];
    perFrame.push(list);
    seqOf.push(...list);
    ev.at(sendAt, () => {
      for (const p of list) deliver(p, sendAt);
      // tail-loss timer: missing packets of this frame are NACKed if nothing revealed them
      ev.at(sendAt + owd + o.intervalMs, () => { if (complete[i] === null) for (const p of list) if (p.arrived === null) scheduleNack(p, ev.now); });
    });
  });
  ev.run();
  return summarise(capture, render, o.intervalMs, bytes);
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
