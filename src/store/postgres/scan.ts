/** Key-value reads shared by the store's tables and the ops tables (keys as bytea, see keys.ts). */
import type { Row, ScanOptions } from '../types';
import { decodeKey, encodeKey, prefixUpperBound } from './keys';

/** Something that runs a query: a pool or a checked-out client. */
export interface Queryable {
  query<R extends Record<string, unknown>>(
    text: string,
    values?: unknown[],
  ): Promise<{ rows: R[]; rowCount: number | null }>;
}

/**
 * A checked-out client whose queries run one after another in call order, however the caller
 * awaits them (`fn` may read in parallel; pg 8 deprecates overlapping queries on one client).
 */
export function serialized(client: Queryable): Queryable & { settled(): Promise<void> } {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    /** Resolves when every query issued so far has finished. */
    settled: async () => {
      await tail;
    },
    query<R extends Record<string, unknown>>(text: string, values?: unknown[]) {
      const run = tail.then(() => client.query<R>(text, values));
      // The chain survives a failed query; the caller sees the rejection through `run`.
      tail = run.catch(() => undefined);
      return run;
    },
  };
}

export async function getRow<T>(db: Queryable, table: string, key: string): Promise<T | undefined> {
  const { rows } = await db.query<{ value: T }>(`SELECT value FROM ${table} WHERE key = $1`, [
    encodeKey(key),
  ]);
  return rows[0]?.value;
}

/** One page of a table in scan order (bytewise key order, = LMDB's). */
export async function scanRows<T>(db: Queryable, table: string, opts: ScanOptions): Promise<Row<T>[]> {
  if (!(opts.limit > 0)) return [];
  const where: string[] = [];
  const params: unknown[] = [];
  const bound = (op: string, v: Buffer) => {
    params.push(v);
    where.push(`key ${op} $${params.length}`);
  };
  if (opts.prefix !== undefined && opts.prefix !== '') {
    const lo = encodeKey(opts.prefix);
    bound('>=', lo);
    const hi = prefixUpperBound(lo);
    if (hi) bound('<', hi);
  }
  if (opts.after !== undefined) bound(opts.reverse ? '<' : '>', encodeKey(opts.after));
  params.push(Math.floor(opts.limit));
  const sql =
    `SELECT key, value FROM ${table}` +
    (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') +
    ` ORDER BY key ${opts.reverse ? 'DESC' : 'ASC'} LIMIT $${params.length}`;
  const { rows } = await db.query<{ key: Buffer; value: T }>(sql, params);
  return rows.map((r) => ({ key: decodeKey(r.key), value: r.value }));
}
