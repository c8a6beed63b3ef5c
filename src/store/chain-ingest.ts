/**
 * The chain rules of `AuditStore.ingest`, once for every driver: a driver reads the heads and the
 * stored hashes inside its transaction, asks `planIngest` what to store, and writes the plan.
 * Pure apart from SHA-256.
 */
import { auditHash } from '../audit/chain';
import type { AuditRecord } from '../gen/act/v1/admin';
import { auditKeyProblem } from './audit-common';
import { ChainViolation, type IngestResult } from './types';

/** A source's chain head: its last accepted record. */
export interface ChainHead {
  audit_id: string;
  seq: number;
  hash: string;
}

export interface IngestPlan {
  /** Records to store, in batch order. */
  insert: AuditRecord[];
  /** New heads of the sources the batch moved. */
  heads: Map<string, ChainHead>;
  result: IngestResult;
}

function refuse(r: AuditRecord, why: string): never {
  throw new ChainViolation(
    `audit record ${String(r.audit_id).slice(0, 80)} (seq ${r.seq}): ${why}`,
    r.audit_id,
  );
}

/**
 * Decides a batch against the stored chain heads.
 * @param headOf the stored head of a source, if any
 * @param storedHash the stored hash of an audit id, if that id is stored
 * @param hashOf the record's own hash (default `auditHash`; a driver that encodes the record anyway
 *   may compute it from that encoding)
 * @throws ChainViolation naming the first record that breaks a rule (nothing is stored then)
 */
export function planIngest(
  records: readonly AuditRecord[],
  headOf: (source: string) => ChainHead | undefined,
  storedHash: (auditId: string) => string | undefined,
  hashOf: (r: AuditRecord) => string = auditHash,
): IngestPlan {
  const result: IngestResult = { stored: 0, duplicates: 0, gaps: 0, restarts: 0 };
  const heads = new Map<string, ChainHead>();
  const insert: AuditRecord[] = [];
  const inBatch = new Map<string, string>();
  for (const r of records) {
    const idProblem = auditKeyProblem(r.audit_id);
    if (idProblem) refuse(r, `audit_id ${idProblem}`);
    const sourceProblem = auditKeyProblem(r.source);
    if (sourceProblem) refuse(r, `source ${sourceProblem}`);
    if (!Number.isSafeInteger(r.seq) || r.seq < 1) refuse(r, 'seq must be a positive integer');
    if (hashOf(r) !== r.hash) refuse(r, 'hash does not match the record');
    const seen = inBatch.get(r.audit_id) ?? storedHash(r.audit_id);
    if (seen !== undefined) {
      if (seen !== r.hash) refuse(r, 'another record with this audit_id is stored');
      result.duplicates++;
      continue;
    }
    const head = heads.get(r.source) ?? headOf(r.source);
    if (r.seq === 1 && r.prev_hash === '') {
      if (head !== undefined) result.restarts++;
    } else if (head !== undefined) {
      if (r.seq === head.seq + 1) {
        if (r.prev_hash !== head.hash) refuse(r, `prev_hash does not link to seq ${head.seq}`);
      } else if (r.seq > head.seq + 1) {
        result.gaps++;
      } else {
        refuse(r, `seq is at or before the chain head (seq ${head.seq}) and not a stored record`);
      }
    }
    heads.set(r.source, { audit_id: r.audit_id, seq: r.seq, hash: r.hash });
    inBatch.set(r.audit_id, r.hash);
    insert.push(r);
    result.stored++;
  }
  return { insert, heads, result };
}
