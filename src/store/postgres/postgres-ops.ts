/**
 * Operational tables on PostgreSQL (`act_ops_<table>`). Every write of a row takes a transaction-scoped
 * advisory lock on (table, key) first, so `update`'s read-modify-write is serialized with every
 * other write of that row on every replica, including the first write of a row that does not exist
 * yet (a row lock could not cover that). Locks of a multi-row write are taken in one global order,
 * so two such writes cannot deadlock.
 */
import type pg from 'pg';
import type { OpsStore, OpsTable, Row, ScanOptions } from '../types';
import { storeError } from './errors';
import { lockedTransaction } from './locked-tx';
import { encodeKey, LockSpace, lockKey, MAX_KEY_BYTES } from './keys';
import { OPS_TABLES } from './migrations';
import { getRow, scanRows, type Queryable } from './scan';

const TABLE_SET = new Set<string>(OPS_TABLES);

export class PostgresOpsStore implements OpsStore {
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(private readonly pool: pg.Pool) {}

  async get<T>(table: OpsTable, key: string): Promise<T | undefined> {
    const name = opsTable(table);
    try {
      return await getRow<T>(this.pool as unknown as Queryable, name, key);
    } catch (err) {
      throw storeError(err, 'reading an ops table');
    }
  }

  async scan<T>(table: OpsTable, opts: ScanOptions): Promise<Row<T>[]> {
    const name = opsTable(table);
    try {
      return await scanRows<T>(this.pool as unknown as Queryable, name, opts);
    } catch (err) {
      throw storeError(err, 'reading an ops table');
    }
  }

  async update<T, R>(
    table: OpsTable,
    key: string,
    fn: (current: T | undefined) => { value: T | undefined; result: R },
  ): Promise<R> {
    const name = opsTable(table);
    const k = checkedKey(key);
    return this.track(
      this.tx(table, [key], async (client) => {
        const { rows } = await client.query<{ value: T }>(`SELECT value FROM ${name} WHERE key = $1`, [k]);
        const next = fn(rows[0]?.value);
        if (next.value === undefined) await client.query(`DELETE FROM ${name} WHERE key = $1`, [k]);
        else {
          await client.query(
            `INSERT INTO ${name} (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
            [k, JSON.stringify(next.value)],
          );
        }
        return next.result;
      }),
    );
  }

  async putMany<T>(table: OpsTable, rows: readonly Row<T>[]): Promise<void> {
    const name = opsTable(table);
    // Last writer wins within the batch too (as in a loop of puts).
    const last = new Map<string, T>();
    for (const r of rows) last.set(r.key, r.value);
    if (last.size === 0) return;
    const keys = [...last.keys()].map(checkedKey);
    const values = [...last.values()].map((v) => JSON.stringify(v));
    return this.track(
      this.tx(table, [...last.keys()], async (client) => {
        await client.query(
          `INSERT INTO ${name} (key, value) SELECT * FROM unnest($1::bytea[], $2::json[])
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
          [keys, values],
        );
      }),
    );
  }

  async delete(table: OpsTable, keys: readonly string[]): Promise<void> {
    const name = opsTable(table);
    const unique = [...new Set(keys)];
    if (unique.length === 0) return;
    const encoded = unique.map(checkedKey);
    return this.track(
      this.tx(table, unique, async (client) => {
        await client.query(`DELETE FROM ${name} WHERE key = ANY($1)`, [encoded]);
      }),
    );
  }

  /** Resolves when the writes started so far have settled (close). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  /** Runs `body` in a transaction holding the row locks of `keys`; retried on deadlock/serialization. */
  private tx<R>(table: OpsTable, keys: string[], body: (c: pg.PoolClient) => Promise<R>): Promise<R> {
    return lockedTransaction(
      this.pool,
      {
        space: LockSpace.opsRow,
        keys: keys.map((k) => lockKey(`${table}\0${k}`)),
        doing: 'writing an ops table',
      },
      body,
    );
  }

  private track<R>(p: Promise<R>): Promise<R> {
    this.inFlight.add(p);
    // Tracked only so close() can wait; the caller observes the result through `p`.
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
    return p;
  }
}

function opsTable(table: OpsTable): string {
  if (!TABLE_SET.has(table)) throw new Error(`unknown ops table: ${String(table)}`);
  return `act_ops_${table}`;
}

function checkedKey(key: string): Buffer {
  const k = encodeKey(key);
  if (k.length > MAX_KEY_BYTES)
    throw new Error(`Key size is larger than the maximum key size (${MAX_KEY_BYTES}): ${k.length} bytes`);
  return k;
}
