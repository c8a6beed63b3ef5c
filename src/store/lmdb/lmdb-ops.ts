/**
 * Operational tables in the LMDB environment (`ops_<table>` sub-databases): one process owns
 * the environment, so serializing updates in-process is enough to make each one atomic.
 */
import type { Database, RootDatabase } from 'lmdb';
import type { OpsStore, OpsTable, Row, ScanOptions } from '../types';
import { committedRows } from './key-range';

const OPS_TABLES: readonly OpsTable[] = ['budgets', 'sidecars', 'outbox'];

export class LmdbOpsStore implements OpsStore {
  private readonly dbs = new Map<OpsTable, Database<unknown, string>>();
  /** Serializes updates so a read-modify-write never interleaves with another. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly root: RootDatabase) {
    for (const t of OPS_TABLES) this.dbs.set(t, root.openDB<unknown, string>({ name: `ops_${t}` }));
  }

  async get<T>(table: OpsTable, key: string): Promise<T | undefined> {
    return this.db(table).get(key) as T | undefined;
  }

  async scan<T>(table: OpsTable, opts: ScanOptions): Promise<Row<T>[]> {
    const out: Row<T>[] = [];
    if (opts.limit <= 0) return out;
    for (const row of committedRows(this.db(table), opts)) {
      out.push(row as Row<T>);
      if (out.length >= opts.limit) break;
    }
    return out;
  }

  update<T, R>(
    table: OpsTable,
    key: string,
    fn: (current: T | undefined) => { value: T | undefined; result: R },
  ): Promise<R> {
    const db = this.db(table);
    return this.serial(async () => {
      let result: R | undefined;
      await this.root.childTransaction(() => {
        const next = fn(db.get(key) as T | undefined);
        if (next.value === undefined) db.removeSync(key);
        else db.putSync(key, next.value);
        result = next.result;
      });
      await this.root.flushed;
      return result as R;
    });
  }

  putMany<T>(table: OpsTable, rows: readonly Row<T>[]): Promise<void> {
    const db = this.db(table);
    return this.serial(async () => {
      if (rows.length === 0) return;
      await this.root.childTransaction(() => {
        for (const r of rows) db.putSync(r.key, r.value);
      });
      await this.root.flushed;
    });
  }

  delete(table: OpsTable, keys: readonly string[]): Promise<void> {
    const db = this.db(table);
    return this.serial(async () => {
      if (keys.length === 0) return;
      await this.root.childTransaction(() => {
        for (const k of keys) db.removeSync(k);
      });
      await this.root.flushed;
    });
  }

  /** Resolves when queued updates have finished (close). */
  async drain(): Promise<void> {
    await this.tail.catch(() => undefined);
  }

  private serial<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.tail.then(fn);
    // The chain survives a failed update; the caller sees the rejection through `run`.
    this.tail = run.catch(() => undefined);
    return run;
  }

  private db(table: OpsTable): Database<unknown, string> {
    const db = this.dbs.get(table);
    if (!db) throw new Error(`unknown ops table: ${String(table)}`);
    return db;
  }
}
