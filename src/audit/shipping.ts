/**
 * What the sync client ships from: this sidecar's spool and any adopted ones (adoption.ts),
 * behind the one AuditShipping interface. Adopted (older) records go first; an ack or nack is
 * routed to the spool that made the batch.
 */
import type { AdoptedSpool } from './adoption';
import type { AuditSpool } from './spool';

/** What the sync client needs from the audit spool(s). */
export interface AuditShipping {
  /** The next batch of spooled records, still encoded (AuditRecord messages). */
  nextRawBatch(maxRecords: number): { batchId: string; frames: Uint8Array[] } | undefined;
  ack(batchId: string): unknown;
  nack(batchId: string): unknown;
  resetInFlight(): void;
  /** Records not yet acknowledged (pending and in flight). */
  readonly depth: number;
  /** Chain sources other than this sidecar's own id with records still to ship. */
  readonly earlierSources: string[];
}

export class SpoolShipping implements AuditShipping {
  private readonly adopted: AdoptedSpool[] = [];
  private readonly owner = new Map<string, AuditSpool>();

  constructor(private readonly primary: AuditSpool) {}

  add(a: AdoptedSpool): void {
    this.adopted.push(a);
  }

  /** Adopted spools with nothing left to ship (the caller retires them). */
  takeFinished(): AdoptedSpool[] {
    const done: AdoptedSpool[] = [];
    for (let i = this.adopted.length - 1; i >= 0; i--) {
      const a = this.adopted[i]!;
      if (a.spool.depth === 0) {
        done.push(a);
        this.adopted.splice(i, 1);
      }
    }
    return done;
  }

  /** Takes every adopted spool out of shipping (their ids were refused for this sidecar's key). */
  detachAdopted(): AdoptedSpool[] {
    for (const a of this.adopted) a.spool.resetInFlight();
    for (const [id, s] of this.owner) if (s !== this.primary) this.owner.delete(id);
    return this.adopted.splice(0);
  }

  get adoptedSpools(): readonly AdoptedSpool[] {
    return this.adopted;
  }

  nextRawBatch(maxRecords: number): { batchId: string; frames: Uint8Array[] } | undefined {
    for (const s of [...this.adopted.map((a) => a.spool), this.primary]) {
      const b = s.nextRawBatch(maxRecords);
      if (b) {
        this.owner.set(b.batchId, s);
        return b;
      }
    }
    return undefined;
  }

  ack(batchId: string): boolean {
    const s = this.owner.get(batchId);
    this.owner.delete(batchId);
    return s?.ack(batchId) ?? false;
  }

  nack(batchId: string): boolean {
    const s = this.owner.get(batchId);
    this.owner.delete(batchId);
    return s?.nack(batchId) ?? false;
  }

  resetInFlight(): void {
    this.owner.clear();
    this.primary.resetInFlight();
    for (const a of this.adopted) a.spool.resetInFlight();
  }

  get depth(): number {
    let n = this.primary.depth;
    for (const a of this.adopted) n += a.spool.depth;
    return n;
  }

  get earlierSources(): string[] {
    const all = [...this.primary.earlierSources];
    for (const a of this.adopted) all.push(a.source, ...a.spool.earlierSources);
    return [...new Set(all)].sort();
  }
}
