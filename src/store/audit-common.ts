/**
 * Audit-trail pieces every driver shares: the filter predicate (each driver re-checks its candidates
 * with it, so an index that is only a guide never changes a result), time bounds as audit-id bounds,
 * the query cursor, and the rules for an audit id and a source.
 */
import { invalid } from '../common/errors';
import { sortableIdTime } from '../common/ids';
import type { AuditFilter, AuditRecord } from './types';

/** Longest audit id or source accepted (ids are 32 characters; sidecar ids about as long). */
export const MAX_AUDIT_KEY_CHARS = 256;

const ID_PREFIX = 'audit_';
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
/** NUL, or a surrogate that is not half of a pair. */
const ILL_FORMED = /\0|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Why `value` cannot be an audit id or source, or undefined if it can: a non-empty string of at
 * most {@link MAX_AUDIT_KEY_CHARS} characters of well-formed text without NUL. Both are keys in
 * every engine (PostgreSQL text cannot hold NUL; a lone surrogate has no UTF-8 form).
 */
export function auditKeyProblem(value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '') return 'is missing';
  if (value.length > MAX_AUDIT_KEY_CHARS) return `is longer than ${MAX_AUDIT_KEY_CHARS} characters`;
  if (ILL_FORMED.test(value)) return 'holds NUL or a lone surrogate';
  return undefined;
}

/** Throws INVALID_ARGUMENT if the record's audit id or source cannot be stored (append's check). */
export function checkAuditKeys(r: AuditRecord): void {
  const idProblem = auditKeyProblem(r.audit_id);
  if (idProblem) throw invalid('audit_id', `audit record audit_id ${idProblem}`);
  // append() accepts records without a source (trusted writers); a given one must be a valid key.
  if (r.source !== undefined && r.source !== '') {
    const sourceProblem = auditKeyProblem(r.source);
    if (sourceProblem) throw invalid('source', `audit record source ${sourceProblem}`);
  }
}

/** Whether `r` passes every filter. */
export function matchesFilter(r: AuditRecord, f: AuditFilter): boolean {
  if (f.agent_id !== undefined && r.agent_id !== f.agent_id) return false;
  if (f.token_id !== undefined && r.token_id !== f.token_id) return false;
  if (f.action !== undefined && r.action !== f.action) return false;
  if (f.decision !== undefined && r.decision !== f.decision) return false;
  if (f.reason_code !== undefined && r.reason_code !== f.reason_code) return false;
  if (f.sinceMs !== undefined || f.untilMs !== undefined) {
    const t = sortableIdTime(r.audit_id);
    if (t === undefined) return false;
    if (f.sinceMs !== undefined && t < f.sinceMs) return false;
    if (f.untilMs !== undefined && t >= f.untilMs) return false;
  }
  return true;
}

/**
 * The smallest possible audit id at `ms`: the prefix plus the 10-char Crockford
 * time of common/ids.ts (kept in step with it; a test checks the two agree).
 */
export function auditIdAt(ms: number): string {
  let out = '';
  let t = Math.max(0, Math.floor(ms));
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return ID_PREFIX + out;
}

/**
 * The time of an audit id in canonical form (`audit_` + 10 time characters + …), else undefined.
 * Such an id sorts between `auditIdAt(t)` and `auditIdAt(t + 1)`, which lets a driver place it by
 * time without changing what key-order range operations (query, prune) see.
 */
export function canonicalAuditTime(id: string): number | undefined {
  if (!id.startsWith(ID_PREFIX) || id.length < ID_PREFIX.length + 10) return undefined;
  return sortableIdTime(id);
}

export function encodeCursor(auditId: string): string {
  return Buffer.from(JSON.stringify({ a: auditId })).toString('base64url');
}

export function decodeCursor(cursor: string): string {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { a?: unknown };
    if (typeof v.a === 'string' && v.a !== '') return v.a;
  } catch {
    // fall through to the error below
  }
  throw invalid('cursor', 'invalid audit cursor');
}
