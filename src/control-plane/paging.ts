/** Paging and filters over the store's tables, shared by the per-resource services. */
import { invalid } from '../common/errors';
import type { StoreReader, TableName } from '../store/types';
import { LIMITS, decodeCursor, encodeCursor, pageSize } from './validate';

/** One page of a list, newest first, with the cursor of the next ('' on the last page). */
export interface Page<T> {
  items: T[];
  next_cursor: string;
}

/**
 * Newest first (ids are time-sortable), keeping rows that pass `keep`, scanning at most 20 pages;
 * `q.limit` 1-500 (default 50) and `q.cursor` from a previous page.
 */
export async function filteredPage<T>(
  r: StoreReader,
  table: 'agents' | 'policies' | 'tokens' | 'approvals',
  q: { limit?: unknown; cursor?: unknown },
  keep: (v: T) => boolean,
): Promise<Page<T>> {
  const limit = pageSize(q.limit, 50, LIMITS.pageSize);
  const items: T[] = [];
  let cursor = decodeCursor(q.cursor);
  for (let round = 0; round < 20; round++) {
    const rows = await r.scan<T>(table, {
      limit: limit + 1,
      reverse: true,
      ...(cursor !== undefined ? { after: cursor } : {}),
    });
    for (const row of rows) {
      if (items.length === limit) return { items, next_cursor: encodeCursor(cursor) };
      cursor = row.key;
      if (keep(row.value)) items.push(row.value);
    }
    if (rows.length <= limit) return { items, next_cursor: '' };
  }
  return { items, next_cursor: encodeCursor(cursor) };
}

/** Every key under a prefix of a table, in order. */
export async function scanAll(r: StoreReader, table: TableName, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let after: string | undefined;
  for (;;) {
    const rows = await r.scan(table, { prefix, limit: 1000, ...(after !== undefined ? { after } : {}) });
    for (const row of rows) keys.push(row.key);
    if (rows.length < 1000) return keys;
    after = rows[rows.length - 1]!.key;
  }
}

/** An enum filter given by name (any case) or number; undefined when absent. */
export function parseEnumFilter<E extends Record<string, string | number>>(
  v: unknown,
  e: E,
  field: string,
): number | undefined {
  if (v === undefined || v === null || v === '' || v === 0) return undefined;
  if (typeof v === 'number' && typeof e[v] === 'string' && v > 0) return v;
  if (typeof v === 'string') {
    const n = e[v.toUpperCase() as keyof E];
    if (typeof n === 'number' && n > 0) return n;
  }
  const names = Object.keys(e).filter(
    (k) => isNaN(Number(k)) && !k.endsWith('UNSPECIFIED') && k !== 'UNRECOGNIZED',
  );
  throw invalid(field, `${field} must be one of ${names.join(', ')}`);
}
