/**
 * The control plane's audit trail in LMDB, in the store's environment.
 *
 * - `audit`: audit_id -> AuditRecord; ids start with their time, so key order is
 *   chronological and a time range is a key range.
 * - `audit_by_agent`, `audit_by_token`: `${id}/${audit_id}` -> true, so a query
 *   for one agent or token walks only that agent's/token's records. The separator is
 *   '/', not NUL: lmdb-js (ordered-binary) reads long string keys holding a NUL back
 *   as multi-part array keys, which broke agent_id filters for real-length ids.
 * - `audit_last_by_source`: source -> { audit_id, seq } of its highest-seq record
 *   (the head of its hash chain; batches may arrive out of order on retries).
 * - `audit_count` in the shared meta db.
 */
import type { Database, RootDatabase } from 'lmdb';
import {
  auditIdAt,
  checkAuditKeys,
  decodeCursor,
  encodeCursor,
  matchesFilter as matches,
} from '../audit-common';
import { planIngest, type ChainHead } from '../chain-ingest';
import type { AuditFilter, AuditPage, AuditRecord, AuditStore, IngestResult } from '../types';
import { compareKeys, prefixEnd } from './key-range';

/** Records examined (not returned) at most per `query` call before it returns a cursor. */
export const DEFAULT_AUDIT_SCAN_BUDGET = 50_000;
/** Keys read per fresh read transaction during `export`. */
const EXPORT_CHUNK = 1000;
const COUNT_KEY = 'audit_count';
/** Between the agent/token id and the audit id in index keys (ids never hold a '/'; matches() rechecks). */
const INDEX_SEP = '/';

/**
 * The agent/token id as an index-key part. NUL becomes U+FFFD: ordered-binary reads a key holding
 * NUL back as a multi-part key, so an agent id with a NUL was never found. Lossy, which is fine:
 * query and export re-check every candidate with matches().
 */
function indexPart(id: string): string {
  return id.includes('\0') ? id.replace(/\0/g, '\ufffd') : id;
}

interface SourceHead {
  audit_id: string;
  seq: number;
  /** The head record's hash (absent in heads written before ingest() existed). */
  hash?: string;
}

/** Records deleted per transaction by prune(). */
const PRUNE_CHUNK = 2000;

/** Whether `a` comes after `b` in a source's chain: higher seq, or the same seq and a later id. */
function isAfter(a: SourceHead, b: SourceHead): boolean {
  return a.seq > b.seq || (a.seq === b.seq && compareKeys(a.audit_id, b.audit_id) > 0);
}

/** Which key space a filter walks, and its bounds: [low, high) in key order. */
interface Plan {
  db: Database<unknown, string>;
  /** '' for the primary db, `${agent_or_token}/` for an index. */
  keyPrefix: string;
  indexed: boolean;
  low: string | undefined;
  high: string | undefined;
}

/** Options of the LMDB audit store. */
export interface LmdbAuditOptions {
  /** Records examined at most per query call. Default {@link DEFAULT_AUDIT_SCAN_BUDGET}. */
  scanBudget?: number;
}

/** {@link AuditStore} over LMDB sub-databases of the store's environment. */
export class LmdbAuditStore implements AuditStore {
  private readonly records: Database<AuditRecord, string>;
  private readonly byAgent: Database<boolean, string>;
  private readonly byToken: Database<boolean, string>;
  private readonly lastBySource: Database<SourceHead, string>;
  private readonly listeners = new Set<(records: AuditRecord[]) => void>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly scanBudget: number;

  constructor(
    private readonly root: RootDatabase,
    private readonly meta: Database<unknown, string>,
    opts: LmdbAuditOptions = {},
  ) {
    this.records = root.openDB<AuditRecord, string>({ name: 'audit' });
    this.byAgent = root.openDB<boolean, string>({ name: 'audit_by_agent' });
    this.byToken = root.openDB<boolean, string>({ name: 'audit_by_token' });
    this.lastBySource = root.openDB<SourceHead, string>({ name: 'audit_last_by_source' });
    this.scanBudget = opts.scanBudget ?? DEFAULT_AUDIT_SCAN_BUDGET;
  }

  append(records: AuditRecord[]): Promise<number> {
    const p = this.doAppend(records);
    this.inFlight.add(p);
    // Tracked only so close() can wait; the caller observes the result through `p`.
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  private async doAppend(records: AuditRecord[]): Promise<number> {
    for (const r of records) checkAuditKeys(r);
    if (records.length === 0) return 0;
    const fresh: AuditRecord[] = [];
    // A child transaction so a throw mid-batch aborts it whole (see lmdb-store.ts).
    await this.root.childTransaction(() => {
      const seen = new Set<string>();
      const heads = new Map<string, SourceHead>();
      for (const r of records) {
        // Dedupe inside the write txn: it is serialized with every other append.
        if (seen.has(r.audit_id)) continue;
        seen.add(r.audit_id);
        if (this.records.doesExist(r.audit_id)) continue;
        this.putRecord(r);
        // The batch's highest record per source; the stored head is read and written once per source.
        const top = heads.get(r.source);
        if (!top || isAfter(r, top)) heads.set(r.source, { audit_id: r.audit_id, seq: r.seq, hash: r.hash });
        fresh.push(r);
      }
      for (const [source, top] of heads) {
        const head = this.lastBySource.get(source);
        if (!head || isAfter(top, head)) this.lastBySource.putSync(source, top);
      }
      if (fresh.length > 0) {
        this.meta.putSync(COUNT_KEY, ((this.meta.get(COUNT_KEY) as number | undefined) ?? 0) + fresh.length);
      }
    });
    await this.root.flushed; // the caller acks the batch upstream: it must be durable
    this.notify(fresh);
    return fresh.length;
  }

  ingest(records: AuditRecord[]): Promise<IngestResult> {
    const p = this.doIngest(records);
    this.inFlight.add(p);
    // Tracked only so close() can wait; the caller observes the result through `p`.
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  private async doIngest(records: AuditRecord[]): Promise<IngestResult> {
    if (records.length === 0) return { stored: 0, duplicates: 0, gaps: 0, restarts: 0 };
    let fresh: AuditRecord[] = [];
    let result: IngestResult | undefined;
    // The plan is made inside the write transaction, which is serialized with every other append.
    await this.root.childTransaction(() => {
      const plan = planIngest(
        records,
        (source) => this.headOf(source),
        // Most ids are new: an existence check reads no value (a get decodes the whole record).
        (id) => (this.records.doesExist(id) ? this.records.get(id)?.hash : undefined),
      );
      for (const r of plan.insert) this.putRecord(r);
      for (const [source, head] of plan.heads) this.lastBySource.putSync(source, head);
      if (plan.insert.length > 0) {
        this.meta.putSync(
          COUNT_KEY,
          ((this.meta.get(COUNT_KEY) as number | undefined) ?? 0) + plan.insert.length,
        );
      }
      fresh = plan.insert;
      result = plan.result;
    });
    await this.root.flushed; // the caller acks the batch upstream: it must be durable
    this.notify(fresh);
    return result!;
  }

  private headOf(source: string): ChainHead | undefined {
    const h = this.lastBySource.get(source);
    if (!h) return undefined;
    return { audit_id: h.audit_id, seq: h.seq, hash: h.hash ?? this.records.get(h.audit_id)?.hash ?? '' };
  }

  private putRecord(r: AuditRecord): void {
    this.records.putSync(r.audit_id, r);
    if (r.agent_id) this.byAgent.putSync(`${indexPart(r.agent_id)}${INDEX_SEP}${r.audit_id}`, true);
    if (r.token_id) this.byToken.putSync(`${indexPart(r.token_id)}${INDEX_SEP}${r.audit_id}`, true);
  }

  private notify(fresh: AuditRecord[]): void {
    if (fresh.length === 0) return;
    for (const l of [...this.listeners]) {
      try {
        l(fresh);
      } catch {
        // A faulty follower must not fail an append that is already stored.
      }
    }
  }

  async prune(beforeMs: number): Promise<number> {
    const end = auditIdAt(beforeMs);
    let total = 0;
    for (;;) {
      const ids: string[] = [];
      for (const key of this.records.getKeys({ end, limit: PRUNE_CHUNK })) ids.push(key);
      if (ids.length === 0) return total;
      await this.root.childTransaction(() => {
        for (const id of ids) {
          const r = this.records.get(id);
          if (r?.agent_id) this.byAgent.removeSync(`${indexPart(r.agent_id)}${INDEX_SEP}${id}`);
          if (r?.token_id) this.byToken.removeSync(`${indexPart(r.token_id)}${INDEX_SEP}${id}`);
          this.records.removeSync(id);
        }
        const n = (this.meta.get(COUNT_KEY) as number | undefined) ?? 0;
        this.meta.putSync(COUNT_KEY, Math.max(0, n - ids.length));
      });
      await this.root.flushed;
      total += ids.length;
      if (ids.length < PRUNE_CHUNK) return total;
    }
  }

  async query(filter: AuditFilter, cursor: string, limit: number): Promise<AuditPage> {
    const plan = this.plan(filter);
    const max = Math.max(1, Math.floor(limit));
    let high = plan.high;
    if (cursor !== '') {
      const k = plan.keyPrefix + decodeCursor(cursor);
      if (high === undefined || compareKeys(k, high) < 0) high = k;
    }
    const out: AuditRecord[] = [];
    let examined = 0;
    let lastId = '';
    // Newest first: walk down from `high` (exclusive) to `low`.
    for (const key of plan.db.getKeys({ start: high, end: plan.low, reverse: true })) {
      if (high !== undefined && compareKeys(key, high) >= 0) continue;
      if (plan.low !== undefined && compareKeys(key, plan.low) < 0) break;
      // There is another candidate: stop here if the page is full or the budget spent.
      if (out.length >= max || examined >= this.scanBudget)
        return { records: out, nextCursor: encodeCursor(lastId) };
      examined++;
      lastId = key.slice(plan.keyPrefix.length);
      const rec = this.load(plan, key);
      if (rec && matches(rec, filter)) out.push(rec);
    }
    return { records: out, nextCursor: '' };
  }

  async *export(filter: AuditFilter): AsyncGenerator<AuditRecord> {
    const plan = this.plan(filter);
    let after: string | undefined;
    for (;;) {
      // Each chunk is read synchronously and fully before yielding, so no read
      // transaction or cursor stays open while the consumer is slow.
      const chunk: AuditRecord[] = [];
      let n = 0;
      let done = true;
      const range =
        after === undefined
          ? { start: plan.low, end: plan.high }
          : { start: after, end: plan.high, exclusiveStart: true };
      for (const key of plan.db.getKeys(range)) {
        if (after !== undefined && compareKeys(key, after) <= 0) continue;
        if (plan.high !== undefined && compareKeys(key, plan.high) >= 0) break;
        if (n >= EXPORT_CHUNK) {
          done = false;
          break;
        }
        n++;
        after = key;
        const rec = this.load(plan, key);
        if (rec && matches(rec, filter)) chunk.push(rec);
      }
      yield* chunk;
      if (done) return;
    }
  }

  onAppend(listener: (records: AuditRecord[]) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async lastOfSource(source: string): Promise<AuditRecord | undefined> {
    const head = this.lastBySource.get(source);
    return head ? this.records.get(head.audit_id) : undefined;
  }

  async count(): Promise<number> {
    return (this.meta.get(COUNT_KEY) as number | undefined) ?? 0;
  }

  /** Resolves when appends started so far have settled (used by close). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
    this.listeners.clear();
  }

  private plan(filter: AuditFilter): Plan {
    let db: Database<unknown, string> = this.records;
    let keyPrefix = '';
    if (filter.agent_id !== undefined) {
      db = this.byAgent;
      keyPrefix = `${indexPart(filter.agent_id)}${INDEX_SEP}`;
    } else if (filter.token_id !== undefined) {
      db = this.byToken;
      keyPrefix = `${indexPart(filter.token_id)}${INDEX_SEP}`;
    }
    const indexed = keyPrefix !== '';
    // Time bounds as id bounds: no real id equals a bound (ids have random chars after the time).
    const low =
      filter.sinceMs !== undefined ? keyPrefix + auditIdAt(filter.sinceMs) : indexed ? keyPrefix : undefined;
    const high =
      filter.untilMs !== undefined
        ? keyPrefix + auditIdAt(filter.untilMs)
        : indexed
          ? prefixEnd(keyPrefix)
          : undefined;
    return { db, keyPrefix, indexed, low, high };
  }

  private load(plan: Plan, key: string): AuditRecord | undefined {
    return this.records.get(plan.indexed ? key.slice(plan.keyPrefix.length) : key);
  }
}

/** Kept here too for callers that imported it from this module. */
export { auditIdAt };
