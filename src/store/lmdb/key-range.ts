/**
 * Key-range helpers shared by the LMDB store and audit trail: LMDB orders string
 * keys by their UTF-8 bytes, which is code point order, not JS `<` (UTF-16 units).
 */
import type { Database, RangeOptions } from 'lmdb';
import type { Row, ScanOptions } from '../types';

/** Compares two strings in UTF-8 byte (= code point) order, like LMDB does. */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++; // both are the same astral code point: skip its low surrogate
  }
  return a.length - b.length;
}

/** A key greater than every key starting with `prefix` (up to a few max code points). */
export function prefixEnd(prefix: string): string {
  return prefix + '\u{10ffff}'.repeat(4);
}

/** Whether `key` falls in the window described by `opts` (prefix and `after`, not limit). */
export function inWindow(key: string, opts: ScanOptions): boolean {
  if (opts.prefix !== undefined && !key.startsWith(opts.prefix)) return false;
  if (opts.after !== undefined) {
    const c = compareKeys(key, opts.after);
    if (opts.reverse ? c >= 0 : c <= 0) return false;
  }
  return true;
}

/** The lmdb range for a scan window; the bounds are loose and callers filter with `inWindow`. */
export function rangeFor(opts: ScanOptions): RangeOptions {
  const prefix = opts.prefix ?? '';
  let lo: string | undefined = prefix === '' ? undefined : prefix;
  let hi: string | undefined = prefix === '' ? undefined : prefixEnd(prefix);
  if (opts.after !== undefined) {
    if (opts.reverse) {
      if (hi === undefined || compareKeys(opts.after, hi) < 0) hi = opts.after;
    } else if (lo === undefined || compareKeys(opts.after, lo) > 0) {
      lo = opts.after;
    }
  }
  // Reverse ranges in lmdb-js run from `start` (high) down to `end` (low).
  return opts.reverse ? { start: hi, end: lo, reverse: true } : { start: lo, end: hi };
}

/** Iterates committed rows of `db` in the scan window, in scan order, lazily. */
export function* committedRows<T>(
  db: Database<T, string>,
  opts: ScanOptions,
  extra: RangeOptions = {},
): Generator<Row<T>> {
  for (const { key, value } of db.getRange({ ...rangeFor(opts), ...extra })) {
    if (!inWindow(key, opts)) {
      // Past the prefix in scan direction: nothing further can match.
      if (opts.prefix !== undefined && !key.startsWith(opts.prefix)) {
        const c = compareKeys(key, opts.prefix);
        if (opts.reverse ? c < 0 : c > 0) return;
      }
      continue;
    }
    yield { key, value };
  }
}
