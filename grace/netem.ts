/**
 * Network emulator (pure, deterministic by seed): i.i.d. or Gilbert–Elliott burst loss, a fixed
 * one-way delay (RTT/2), and a FIFO bottleneck of given bandwidth. Used by the UDP transport on
 * loopback (grace/transport.ts) and by the virtual-time benchmark (grace/sim.ts) alike.
 */
import { z } from 'zod';
import { rng } from '../numeric/random.ts';

export const LossModel = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('none') }),
  z.object({ kind: z.literal('iid'), p: z.number().min(0).max(1) }),
  /** Gilbert–Elliott: Good state loses nothing, Bad loses everything; mean loss p, mean burst length `burst` packets */
  z.object({ kind: z.literal('ge'), p: z.number().min(0).max(0.99), burst: z.number().min(1) }),
  /** these packets (0-based, in the order handed to the link) are lost, no others: scripted losses for tests */
  z.object({ kind: z.literal('list'), lost: z.array(z.number().int().min(0)) }),
]);
export type LossModel = z.infer<typeof LossModel>;

export const NetEmOptions = z.object({
  loss: LossModel,
  rttMs: z.number().min(0),
  /** bottleneck rate in kbit/s; 0 = unlimited */
  bandwidthKbps: z.number().min(0),
  seed: z.number().int(),
});
export type NetEmOptions = z.infer<typeof NetEmOptions>;

export function describeLoss(l: LossModel): string {
  if (l.kind === 'none') return 'none';
  if (l.kind === 'iid') return `iid ${(l.p * 100).toFixed(0)}%`;
  if (l.kind === 'list') return `packets ${l.lost.join(',')} lost`;
  return `GE ${(l.p * 100).toFixed(0)}% burst ${l.burst}`;
}

/** One direction of an emulated link. */
export class NetEm {
  private readonly rnd: () => number;
  private bad = false;
  private linkFreeAt = 0;
  readonly o: NetEmOptions;
  sent = 0;
  lost = 0;

  constructor(o: NetEmOptions) {
    this.o = NetEmOptions.parse(o);
    this.rnd = rng(o.seed);
  }

  private uniform(): number {
    return this.rnd();
  }

  private drop(): boolean {
    const l = this.o.loss;
    if (l.kind === 'none') return false;
    if (l.kind === 'list') return l.lost.includes(this.sent - 1);
    if (l.kind === 'iid') return this.uniform() < l.p;
    // state transition, then loss by state
    const pBG = 1 / l.burst;
    const pGB = l.p === 0 ? 0 : (l.p * pBG) / (1 - l.p);
    this.bad = this.bad ? this.uniform() >= pBG : this.uniform() < pGB;
    return this.bad;
  }

  /** A packet of `bytes` handed to the link at `timeMs`: its arrival time, or null when lost. */
  send(timeMs: number, bytes: number): number | null {
    this.sent++;
    const serial = this.o.bandwidthKbps > 0 ? (bytes * 8) / this.o.bandwidthKbps : 0; // ms
    const departs = Math.max(timeMs, this.linkFreeAt) + serial;
    this.linkFreeAt = departs;
    if (this.drop()) {
      this.lost++;
      return null;
    }
    return departs + this.o.rttMs / 2;
  }
}
