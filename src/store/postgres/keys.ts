/**
 * Keys as `bytea`, so PostgreSQL orders them bytewise whatever the database's collation: UTF-8
 * byte order is code point order, the order LMDB keeps (lmdb/key-range.ts compareKeys). A lone
 * surrogate (which LMDB stores and returns as is) is written as its 3-byte generalized UTF-8 form
 * (WTF-8), so every JS string round-trips and still sorts by code point.
 */
import { createHash } from 'node:crypto';

/** LMDB's maximum key size; enforced here too so both engines accept the same keys. */
export const MAX_KEY_BYTES = 1978;

const SURROGATE = /[\ud800-\udfff]/;

/** The key's bytes: UTF-8, with lone surrogates as 3-byte sequences. */
export function encodeKey(key: string): Buffer {
  if (!SURROGATE.test(key)) return Buffer.from(key, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < key.length; i++) {
    const c = key.codePointAt(i)!;
    if (c > 0xffff) i++; // a well-formed pair: one astral code point
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Buffer.from(out);
}

/** Inverse of {@link encodeKey}. */
export function decodeKey(bytes: Buffer): string {
  // A surrogate's 3-byte form is ED A0..BF xx; plain UTF-8 never holds it.
  let has = false;
  for (let i = bytes.indexOf(0xed); i >= 0 && i + 1 < bytes.length; i = bytes.indexOf(0xed, i + 1)) {
    if (bytes[i + 1]! >= 0xa0) {
      has = true;
      break;
    }
  }
  if (!has) return bytes.toString('utf8');
  let out = '';
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    let c: number;
    if (b < 0x80) {
      c = b;
      i += 1;
    } else if (b < 0xe0) {
      c = ((b & 31) << 6) | (bytes[i + 1]! & 63);
      i += 2;
    } else if (b < 0xf0) {
      c = ((b & 15) << 12) | ((bytes[i + 1]! & 63) << 6) | (bytes[i + 2]! & 63);
      i += 3;
    } else {
      c = ((b & 7) << 18) | ((bytes[i + 1]! & 63) << 12) | ((bytes[i + 2]! & 63) << 6) | (bytes[i + 3]! & 63);
      i += 4;
    }
    out += String.fromCodePoint(c);
  }
  return out;
}

/** The smallest byte string greater than every key that starts with `prefix` (none for ''). */
export function prefixUpperBound(prefix: Buffer): Buffer | undefined {
  // Encoded keys never hold 0xff, so incrementing the last byte cannot carry.
  if (prefix.length === 0) return undefined;
  const out = Buffer.from(prefix);
  out[out.length - 1]!++;
  return out;
}

/**
 * Advisory-lock namespaces (the first key of `pg_advisory_xact_lock(int4, int4)`), one per kind of
 * lock so they never collide with each other.
 */
export const LockSpace = {
  migrate: 0x41435401,
  opsRow: 0x41435402,
  auditSource: 0x41435403,
  auditPartitions: 0x41435404,
} as const;

/** A 32-bit lock key for a string (collisions only serialize two unrelated rows). */
export function lockKey(s: string): number {
  return createHash('sha256').update(s).digest().readInt32BE(0);
}
