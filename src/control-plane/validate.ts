/** Field validation shared by the REST and gRPC edges (through the service). */
import { ActError, invalid } from '../common/errors';

export const LIMITS = {
  name: 200,
  description: 2000,
  metadataEntries: 64,
  metadataKey: 64,
  metadataValue: 512,
  policyIdsPerToken: 32,
  pageSize: 500,
  token: 8192,
  action: 256,
  resource: 1024,
  contextBytes: 16384,
  batchItems: 100,
  comment: 2000,
};

const METADATA_KEY_RE = /^[A-Za-z0-9_.\-/]+$/;

export function requireString(v: unknown, field: string, opts: { min?: number; max: number }): string {
  if (typeof v !== 'string') throw invalid(field, `${field} must be a string`);
  const min = opts.min ?? 0;
  if (v.length < min)
    throw invalid(field, min === 1 ? `${field} is required` : `${field} must be at least ${min} characters`);
  if (v.length > opts.max) throw invalid(field, `${field} must be at most ${opts.max} characters`);
  // eslint-disable-next-line no-control-regex -- rejecting control characters is the point
  if (/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/.test(v))
    throw invalid(field, `${field} contains control characters`);
  return v;
}

export function optionalString(v: unknown, field: string, max: number): string {
  if (v === undefined || v === null) return '';
  return requireString(v, field, { max });
}

export function validateMetadata(
  v: unknown,
  field = 'metadata',
  maxEntries = LIMITS.metadataEntries,
): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v))
    throw invalid(field, `${field} must be an object of string values`);
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > maxEntries) throw invalid(field, `${field} may have at most ${maxEntries} entries`);
  const out: Record<string, string> = {};
  for (const [k, val] of entries) {
    if (k.length === 0 || k.length > LIMITS.metadataKey || !METADATA_KEY_RE.test(k)) {
      throw invalid(
        `${field}.${k}`,
        `${field} keys must be 1-${LIMITS.metadataKey} characters of A-Z a-z 0-9 _ . - /`,
      );
    }
    if (typeof val !== 'string') throw invalid(`${field}.${k}`, `${field}.${k} must be a string`);
    if (val.length > LIMITS.metadataValue)
      throw invalid(`${field}.${k}`, `${field}.${k} must be at most ${LIMITS.metadataValue} characters`);
    out[k] = val;
  }
  return out;
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/i;

/** Parses an RFC 3339 timestamp strictly; returns Unix ms. */
export function parseTime(v: unknown, field: string): number {
  if (typeof v !== 'string' || !RFC3339_RE.test(v)) {
    throw invalid(field, `${field} must be an RFC 3339 time such as "2025-12-31T23:59:59Z"`);
  }
  const ms = Date.parse(v);
  if (!Number.isFinite(ms)) throw invalid(field, `${field} is not a valid time`);
  return ms;
}

/** RFC 3339 in UTC; whole seconds print without a fraction (as the seed writes them). */
export function formatTime(ms: number): string {
  const s = new Date(ms).toISOString();
  return s.endsWith('.000Z') ? s.slice(0, -5) + 'Z' : s;
}

export function pageSize(v: unknown, def: number, max: number, field = 'limit'): number {
  if (v === undefined || v === null || v === 0 || v === '') return def;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max) {
    throw invalid(field, `${field} must be an integer from 1 to ${max}`);
  }
  return n;
}

export function requireId(v: unknown, prefix: string, field: string): string {
  if (typeof v !== 'string' || v.length === 0) throw invalid(field, `${field} is required`);
  if (v.length > 80 || !/^[a-z]+_[0-9A-Za-z_]+$/.test(v) || !v.startsWith(prefix + '_')) {
    throw new ActError(
      'NOT_FOUND',
      `${field} ${JSON.stringify(v.slice(0, 80))} does not name an existing ${prefix}`,
      { field },
    );
  }
  return v;
}

/** Opaque cursors: base64url of the last key. */
export function encodeCursor(key: string | undefined): string {
  return key === undefined ? '' : Buffer.from(key, 'utf8').toString('base64url');
}

export function decodeCursor(c: unknown, field = 'cursor'): string | undefined {
  if (c === undefined || c === null || c === '') return undefined;
  if (typeof c !== 'string' || c.length > 512 || !/^[A-Za-z0-9_-]+$/.test(c))
    throw invalid(field, `${field} is not a valid cursor`);
  return Buffer.from(c, 'base64url').toString('utf8');
}

type Json = Record<string, unknown>;

/**
 * Rejects fields a request does not know, naming the first one (and the closest known name),
 * instead of ignoring it: `{"nmae":"x"}` is a typo, not an agent without a name.
 */
export function rejectUnknown(body: Json, known: readonly string[], prefix = ''): void {
  for (const k of Object.keys(body)) {
    if (known.includes(k)) continue;
    const near = closest(k, known);
    throw invalid(
      prefix + k,
      `unknown field ${JSON.stringify(prefix + k)}${near ? ` (did you mean ${JSON.stringify(prefix + near)}?)` : ''}; known: ${known.join(', ')}`,
    );
  }
}

/** The known name within edit distance 2 of `k`, if any. */
function closest(k: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of known) {
    const d = editDistance(k.toLowerCase(), c.toLowerCase(), bestD);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) >= cap) return cap;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** An optional boolean given as a JSON boolean or, in a query string, "true"/"false". */
export function optionalBool(v: unknown, field: string): boolean {
  if (v === undefined || v === null || v === '') return false;
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  throw invalid(field, `${field} must be true or false`);
}

/** A wait bound: "5s", "500ms", "2m", a bare "5" (seconds), or a number of ms; at most `maxMs`; 0 when absent. */
export function parseWait(v: unknown, field: string, maxMs = 60_000): number {
  if (v === undefined || v === null || v === '' || v === 0) return 0;
  let ms: number | undefined;
  if (typeof v === 'number' && Number.isInteger(v)) ms = v;
  else if (typeof v === 'string') {
    const m = /^(\d{1,7})(ms|s|m)?$/.exec(v.trim());
    if (m) ms = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  }
  if (ms === undefined || ms < 0 || ms > maxMs)
    throw invalid(field, `${field} must be a duration such as "5s" or "500ms", at most ${maxMs / 1000}s`);
  return ms;
}
