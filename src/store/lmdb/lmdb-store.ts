/**
 * The embedded control-plane store: one LMDB environment file with a named
 * sub-database per table, a change log keyed by revision, a meta db and the
 * audit trail.
 *
 * Invariants:
 * - Write transactions are serialized in-process (a promise chain), so `fn` may
 *   await reads and the in-memory revision is only advanced by the one writer.
 * - A write that put/deleted anything or emitted any change commits in ONE LMDB
 *   transaction together with `revision + 1` and that revision's change-log entry.
 *   Every bumped revision gets a log entry (possibly with no changes) so the log
 *   is gap-free and "too old" is a simple bound check.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { Change } from '../../gen/act/v1/sync';
import type {
  ChangeEntry,
  CommitEvent,
  Row,
  ScanOptions,
  Store,
  StoreReader,
  StoreWriter,
  TableName,
} from '../types';
import { committedRows, compareKeys, inWindow } from './key-range';
import { LmdbAuditStore } from './lmdb-audit';
import { LmdbOpsStore } from './lmdb-ops';

/** Configuration of the embedded LMDB store. */
export interface LmdbStoreConfig {
  /** Directory holding `control-plane.mdb`; created with mode 0700 if missing. */
  dataDir: string;
  /** Revisions kept in the change log for sidecar catch-up. Default 100_000. */
  changeLogRetention?: number;
  /** Initial LMDB map size in bytes. Default: lmdb-js's default (it grows the map as needed). */
  mapSizeBytes?: number;
  /** Audit records examined at most per `audit.query` call. Default 50_000. */
  auditScanBudget?: number;
}

const TABLES: readonly TableName[] = [
  'agents',
  'policies',
  'tokens',
  'keys',
  'approvals',
  'apikeys',
  'index',
];
const DEFAULT_RETENTION = 100_000;
const DEFAULT_CHANGES_LIMIT = 10_000;

/** A buffered write is the value, or `DELETED` for a delete. */
const DELETED = Symbol('deleted');
type Pending = unknown;

/**
 * Opens (creating if needed) the LMDB store in `config.dataDir`. The store id is
 * generated on first open and kept for the life of the data directory.
 */
export async function openLmdbStore(config: LmdbStoreConfig): Promise<Store> {
  const retention = config.changeLogRetention ?? DEFAULT_RETENTION;
  if (!Number.isInteger(retention) || retention < 1) {
    throw new Error(`changeLogRetention must be a positive integer, got ${retention}`);
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const root = open({
    path: join(config.dataDir, 'control-plane.mdb'),
    maxDbs: 32,
    ...(config.mapSizeBytes !== undefined ? { mapSize: config.mapSizeBytes } : {}),
  });
  try {
    const tables = new Map<TableName, Database<unknown, string>>();
    for (const t of TABLES) tables.set(t, root.openDB<unknown, string>({ name: `t_${t}` }));
    // Change-log values are arrays of protobuf-encoded Changes: the generated codec
    // round-trips every field exactly (Buffer bytes, oneof unions), msgpack would not.
    const changelog = root.openDB<Uint8Array[], number>({ name: 'changelog' });
    const meta = root.openDB<unknown, string>({ name: 'meta' });

    let storeId = meta.get('store_id') as string | undefined;
    if (storeId === undefined) {
      const fresh = randomUUID();
      await root.transaction(() => {
        if (meta.get('store_id') === undefined) meta.putSync('store_id', fresh);
      });
      await root.flushed;
      storeId = meta.get('store_id') as string;
    }
    const revision = (meta.get('revision') as number | undefined) ?? 0;
    let oldest = revision + 1; // oldest retained log revision; revision + 1 when the log is empty
    for (const key of changelog.getKeys({ limit: 1 })) oldest = key;

    const audit = new LmdbAuditStore(root, meta, { scanBudget: config.auditScanBudget });
    const ops = new LmdbOpsStore(root);
    return new LmdbStore(root, tables, changelog, meta, audit, ops, storeId, revision, oldest, retention);
  } catch (err) {
    await root.close();
    throw err;
  }
}

class LmdbStore implements Store {
  readonly kind = 'lmdb' as const;
  /** Serializes write transactions up to their commit (not their flush). */
  private tail: Promise<unknown> = Promise.resolve();
  /** Announces commits in revision order once each is durable. */
  private announced: Promise<unknown> = Promise.resolve();
  /** Highest committed revision (may not be flushed or announced yet). */
  private committed: number;
  private readonly listeners = new Set<(e: CommitEvent) => void>();
  private closed = false;

  constructor(
    private readonly root: RootDatabase,
    private readonly tables: Map<TableName, Database<unknown, string>>,
    private readonly changelog: Database<Uint8Array[], number>,
    private readonly meta: Database<unknown, string>,
    readonly audit: LmdbAuditStore,
    readonly ops: LmdbOpsStore,
    readonly storeId: string,
    private current: number,
    private oldest: number,
    private readonly retention: number,
  ) {
    this.committed = current;
  }

  async revision(): Promise<number> {
    return this.current;
  }

  async read<R>(fn: (r: StoreReader) => Promise<R>): Promise<R> {
    this.assertOpen();
    // A pinned read transaction gives fn one consistent snapshot across its awaits.
    const txn = this.root.useReadTransaction();
    try {
      return await fn({
        get: async <T>(table: TableName, key: string) =>
          this.db(table).get(key, { transaction: txn }) as T | undefined,
        scan: async <T>(table: TableName, opts: ScanOptions) =>
          take(committedRows(this.db(table), opts, { transaction: txn }), opts.limit) as Row<T>[],
        // Committed but not yet announced revisions are in the snapshot too: report what it holds.
        revision: async () => (this.meta.get('revision', { transaction: txn }) as number | undefined) ?? 0,
      });
    } finally {
      txn.done();
    }
  }

  write<R>(fn: (w: StoreWriter) => Promise<R>): Promise<{ result: R; revision: number }> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    const run = this.tail.then(() => this.runWrite(fn));
    // The chain must survive a failed write; the caller still sees the rejection via `run`.
    // The next writer starts once this one has committed; the flush to disk is awaited
    // outside the chain, so concurrent writers share one fsync (group commit).
    this.tail = run.catch(() => undefined);
    return run.then(async (r) => {
      await r.durable;
      return { result: r.result, revision: r.revision };
    });
  }

  private async runWrite<R>(
    fn: (w: StoreWriter) => Promise<R>,
  ): Promise<{ result: R; revision: number; durable: Promise<unknown> }> {
    const buffer = new Map<TableName, Map<string, Pending>>();
    const changes: Change[] = [];
    let open = true;
    const overlay = (table: TableName): Map<string, Pending> => {
      let m = buffer.get(table);
      if (!m) buffer.set(table, (m = new Map()));
      return m;
    };
    const assertOpen = (): void => {
      if (!open) throw new Error('write transaction already finished');
    };
    const writer: StoreWriter = {
      get: async <T>(table: TableName, key: string) => {
        const v = buffer.get(table)?.get(key);
        if (v === DELETED) return undefined;
        if (v !== undefined) return v as T;
        return this.db(table).get(key) as T | undefined;
      },
      scan: async <T>(table: TableName, opts: ScanOptions) =>
        mergedScan(this.db(table), buffer.get(table), opts) as Row<T>[],
      revision: async () => this.committed,
      put: (table, key, value) => {
        assertOpen();
        this.db(table); // validates the table name early
        if (value === undefined) throw new Error('cannot put undefined; use del');
        overlay(table).set(key, value);
      },
      del: (table, key) => {
        assertOpen();
        this.db(table);
        overlay(table).set(key, DELETED);
      },
      emit: (change) => {
        assertOpen();
        changes.push(change);
      },
    };

    let result: R;
    try {
      result = await fn(writer);
    } finally {
      open = false; // late put/emit calls from a leaked promise must not slip into a later commit
    }
    let wrote = false;
    for (const m of buffer.values()) if (m.size > 0) wrote = true;
    if (!wrote && changes.length === 0) return { result, revision: this.committed, durable: this.announced };

    const rev = this.committed + 1;
    const encoded = changes.map((c) => Change.encode(c).finish());
    const trimTo = rev - this.retention; // log keys <= trimTo fall out of retention
    // childTransaction, not transaction: lmdb-js batches a transaction() callback with
    // other writes and keeps its partial writes when it throws (e.g. a key over 1978
    // bytes); a child transaction is aborted as a whole on a throw.
    await this.root.childTransaction(() => {
      for (const [table, m] of buffer) {
        const db = this.db(table);
        for (const [key, v] of m) {
          if (v === DELETED) db.removeSync(key);
          else db.putSync(key, v);
        }
      }
      this.changelog.putSync(rev, encoded);
      for (let r = this.oldest; r <= trimTo; r++) this.changelog.removeSync(r);
      this.meta.putSync('revision', rev);
    });
    this.committed = rev;
    const flushed = this.root.flushed;
    // Durable before anyone (caller, sidecars) hears of it; announced strictly in revision order.
    const durable = (this.announced = this.announced.then(async () => {
      await flushed;
      this.current = rev;
      if (trimTo >= this.oldest) this.oldest = trimTo + 1;
      const event: CommitEvent = { revision: rev, changes };
      for (const l of [...this.listeners]) {
        try {
          l(event);
        } catch {
          // A faulty listener must not fail a committed write or starve the others.
        }
      }
    }));
    return { result, revision: rev, durable };
  }

  async changesSince(revision: number, limit = DEFAULT_CHANGES_LIMIT): Promise<ChangeEntry[] | 'too-old'> {
    this.assertOpen();
    // A revision from "the future" means another store's history: the sidecar must resync.
    if (revision < this.oldest - 1 || revision > this.current) return 'too-old';
    const out: ChangeEntry[] = [];
    // Bounded by the announced revision: a commit still being flushed is not served yet.
    const range = { start: revision + 1, end: this.current + 1, limit };
    for (const { key, value } of this.changelog.getRange(range)) {
      // Copy out of lmdb's buffer so decoded bytes fields own their memory.
      out.push({ revision: key, changes: value.map((b) => Change.decode(new Uint8Array(b))) });
    }
    return out;
  }

  onCommit(listener: (e: CommitEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail; // let queued writes finish
    await this.announced;
    await this.audit.drain();
    await this.ops.drain();
    this.listeners.clear();
    await this.root.close();
  }

  private db(table: TableName): Database<unknown, string> {
    const db = this.tables.get(table);
    if (!db) throw new Error(`unknown table: ${String(table)}`);
    return db;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('store is closed');
  }
}

function take<T>(it: Iterable<T>, limit: number): T[] {
  const out: T[] = [];
  if (limit <= 0) return out;
  for (const x of it) {
    out.push(x);
    if (out.length >= limit) break;
  }
  return out;
}

/**
 * Committed rows overlaid with a transaction's buffered puts/deletes, in scan
 * order: a merge of the lazy committed range with the sorted overlay keys.
 */
function mergedScan(
  db: Database<unknown, string>,
  overlay: Map<string, Pending> | undefined,
  opts: ScanOptions,
): Row<unknown>[] {
  if (!overlay || overlay.size === 0) return take(committedRows(db, opts), opts.limit);
  const dir = opts.reverse ? -1 : 1;
  const pending = [...overlay.keys()]
    .filter((k) => inWindow(k, opts))
    .sort((a, b) => dir * compareKeys(a, b));
  const out: Row<unknown>[] = [];
  if (opts.limit <= 0) return out;
  let i = 0;
  const emitPending = (key: string): boolean => {
    const v = overlay.get(key);
    if (v !== DELETED) out.push({ key, value: v });
    return out.length >= opts.limit;
  };
  for (const row of committedRows(db, opts)) {
    // Buffered keys that sort before this committed key come first.
    while (i < pending.length && dir * compareKeys(pending[i], row.key) < 0) {
      if (emitPending(pending[i++])) return out;
    }
    if (i < pending.length && pending[i] === row.key) {
      if (emitPending(pending[i++])) return out; // the buffered value shadows the committed one
      continue;
    }
    out.push(row);
    if (out.length >= opts.limit) return out;
  }
  while (i < pending.length) if (emitPending(pending[i++])) return out;
  return out;
}
