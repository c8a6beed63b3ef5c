/**
 * The control plane's audit sink for its own (central) decisions: records are sealed into this
 * replica's hash chain in arrival order and ingested in order, many per transaction (group
 * commit), one batch in flight at a time — so the store always sees seq n before n+1, also on
 * PostgreSQL where concurrent transactions could commit out of order.
 */
import { AuditChain } from '../audit/chain';
import type { AuditRecord } from '../gen/act/v1/admin';
import type { AuditSink } from '../enforce/ports';
import type { Store } from '../store/types';

interface Pending {
  record: AuditRecord;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Records per ingest transaction, at most. */
const BATCH = 500;

export class StoreAuditSink implements AuditSink {
  private queue: Pending[] = [];
  private running: Promise<void> | undefined;

  private constructor(
    private readonly store: Store,
    private chain: AuditChain,
  ) {}

  /** Continues the chain of `source` from its stored head. */
  static async open(store: Store, source: string): Promise<StoreAuditSink> {
    return new StoreAuditSink(store, await chainFrom(store, source));
  }

  get source(): string {
    return this.chain.source;
  }

  append(record: AuditRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.chain.seal(record);
      this.queue.push({ record, resolve, reject });
      this.running ??= this.drain();
    });
  }

  /** Resolves when everything appended so far is stored or failed. */
  async flush(): Promise<void> {
    await this.running;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, BATCH);
        try {
          await this.store.audit.ingest(batch.map((p) => p.record));
          for (const p of batch) p.resolve();
        } catch (err) {
          // Records sealed after these link to them: they cannot be stored either. Fail them all
          // and continue the chain from what the store really holds.
          const rest = this.queue.splice(0);
          for (const p of [...batch, ...rest]) p.reject(err);
          this.chain = await chainFrom(this.store, this.chain.source).catch(() => this.chain);
        }
      }
    } finally {
      this.running = undefined;
    }
  }
}

async function chainFrom(store: Store, source: string): Promise<AuditChain> {
  const last = await store.audit.lastOfSource(source);
  return new AuditChain(source, last?.seq ?? 0, last?.hash ?? '');
}
