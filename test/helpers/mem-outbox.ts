/** An in-memory Outbox for uplink tests (agent/uplink.ts), with what the tests inspect: the reads and the acks. */
import type { Outbox, OutboxItem } from '../../agent/uplink.ts';

export class MemOutbox implements Outbox {
  items: OutboxItem[] = [];
  /** every pending() call: its limit and the ids it was asked to leave out */
  calls: { limit: number; exclude: string[] }[] = [];
  /** segments that left the outbox by ack (the server answered them) */
  dropped: string[] = [];
  pending(limit: number, exclude?: ReadonlySet<string>): OutboxItem[] {
    this.calls.push({ limit, exclude: [...(exclude ?? [])] });
    return this.items.filter((i) => !exclude?.has(i.segmentId)).slice(0, limit);
  }
  ack(id: string): void {
    if (this.items.some((i) => i.segmentId === id)) this.dropped.push(id);
    this.items = this.items.filter((i) => i.segmentId !== id);
  }
  depth(): number {
    return this.items.length;
  }
  pendingIds(ids: Iterable<string>): Set<string> {
    const want = new Set(ids);
    return new Set(this.items.filter((i) => want.has(i.segmentId)).map((i) => i.segmentId));
  }
}
