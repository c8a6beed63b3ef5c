/**
 * Ids in the seed's style: `agent_…`, `policy_…`, `audit_…`. The random part is
 * 16 bytes of crypto randomness; audit and approval ids start with a time part so
 * they sort by creation time.
 */
import { randomFillSync } from 'node:crypto';

export type IdPrefix =
  'agent' | 'policy' | 'tok' | 'key' | 'audit' | 'approval' | 'ak' | 'sc' | 'batch' | 'lease';

const ID_RE = /^[a-z]+_[0-9a-z]{6,64}$/;

// Ids are made on every check (audit ids): draw their randomness from a pool refilled
// 4 KiB at a time instead of one crypto call per id.
const pool = Buffer.alloc(4096);
let poolPos = pool.length;

/** Takes `n` bytes of the pool (refilling it first when short); returns where they start. */
function reserve(n: number): number {
  if (poolPos + n > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const at = poolPos;
  poolPos += n;
  return at;
}

function randomBytes(n: number): Buffer {
  const at = reserve(n);
  return pool.subarray(at, at + n);
}

/** The time part of the last sortable id, reused within the same millisecond. */
let lastTimeMs = -1;
let lastTime = '';

/** A random id: `${prefix}_` + 26 base32 characters. */
export function newId(prefix: IdPrefix): string {
  return `${prefix}_${base32(randomBytes(16))}`;
}

/**
 * A time-sortable id: 10 characters of millisecond time (Crockford base32,
 * lexicographic = chronological), then 16 random characters (ULID layout).
 */
export function newSortableId(prefix: IdPrefix, nowMs: number): string {
  // One id per check: the time part is reused within a millisecond, and the 16 random
  // characters take 5 bits from each of 16 pool bytes (80 bits, as 10 bytes in base32).
  if (nowMs !== lastTimeMs) {
    lastTimeMs = nowMs;
    lastTime = encodeTime(nowMs);
  }
  const at = reserve(16);
  let rand = '';
  for (let i = 0; i < 16; i++) rand += ALPHABET[pool[at + i]! & 31];
  return `${prefix}_${lastTime}${rand}`;
}

/** Whether `s` looks like an id with the given prefix. */
export function isId(s: unknown, prefix: IdPrefix): s is string {
  return typeof s === 'string' && s.startsWith(prefix + '_') && s.length <= 80 && ID_RE.test(s);
}

/** Extracts the millisecond time from a sortable id, or undefined. */
export function sortableIdTime(id: string): number | undefined {
  const i = id.indexOf('_');
  const t = id.slice(i + 1, i + 11);
  if (t.length !== 10) return undefined;
  let ms = 0;
  for (const ch of t) {
    const v = ALPHABET.indexOf(ch);
    if (v < 0) return undefined;
    ms = ms * 32 + v;
  }
  return ms;
}

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

function encodeTime(ms: number): string {
  let out = '';
  let t = Math.max(0, Math.floor(ms));
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return out;
}

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}
