/**
 * Per-source hash chains over audit records: each record carries its source's
 * sequence number, the previous record's hash and its own SHA-256 over a
 * canonical form. Editing, dropping or reordering a stored record breaks the chain.
 */
import { createHash } from 'node:crypto';
import type { AuditRecord } from '../gen/act/v1/admin';

/** Canonical JSON: object keys sorted, no whitespace. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/** SHA-256 (hex) over every field of the record except `hash`. */
export function auditHash(r: AuditRecord): string {
  const { hash: _ignored, ...rest } = r;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

/** Assigns seq, prev_hash and hash to records of one source, in order. */
export class AuditChain {
  constructor(
    readonly source: string,
    private seq: number,
    private prevHash: string,
  ) {}

  seal(r: AuditRecord): AuditRecord {
    r.source = this.source;
    r.seq = ++this.seq;
    r.prev_hash = this.prevHash;
    r.hash = auditHash(r);
    this.prevHash = r.hash;
    return r;
  }

  get last(): { seq: number; hash: string } {
    return { seq: this.seq, hash: this.prevHash };
  }
}

export interface ChainProblem {
  audit_id: string;
  seq: number;
  problem: string;
}

/**
 * Verifies the records of one source, in seq order. `start` is the expected
 * previous (seq, hash) when the check begins mid-chain; default: the chain's beginning.
 */
export function verifyChain(
  records: Iterable<AuditRecord>,
  start: { seq: number; hash: string } = { seq: 0, hash: '' },
): ChainProblem[] {
  const problems: ChainProblem[] = [];
  let { seq, hash } = start;
  for (const r of records) {
    if (r.seq !== seq + 1)
      problems.push({ audit_id: r.audit_id, seq: r.seq, problem: `expected seq ${seq + 1}` });
    if (r.prev_hash !== hash)
      problems.push({ audit_id: r.audit_id, seq: r.seq, problem: 'prev_hash does not match' });
    if (auditHash(r) !== r.hash)
      problems.push({ audit_id: r.audit_id, seq: r.seq, problem: 'hash does not match content' });
    seq = r.seq;
    hash = r.hash;
  }
  return problems;
}
