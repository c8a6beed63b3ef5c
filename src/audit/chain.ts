/**
 * Per-source hash chains over audit records: each record carries its source's
 * sequence number, the previous record's hash and its own SHA-256 over a
 * canonical form. Editing, dropping or reordering a stored record breaks the chain.
 */
import { createHash } from 'node:crypto';
import { encodeMessage } from '../common/proto-encode';
import { AuditRecord } from '../gen/act/v1/admin';

/**
 * SHA-256 (hex) over the record's protobuf encoding with `hash` left empty. The encoding
 * is deterministic for a given record (fields in number order; `context` keys in the order
 * they arrived, which JSON export and the stores preserve), and it is the same bytes the
 * spool writes, so sealing costs one encode.
 */
export function auditHash(r: AuditRecord): string {
  // Encoded with the hash field cleared, into the shared writer (ingest hashes every record).
  const hash = r.hash;
  r.hash = '';
  try {
    return sha256Hex(encodeMessage(AuditRecord, r));
  } finally {
    r.hash = hash;
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Field 17 (`hash`, a 64-character string): tag 0x8a 0x01, length 64. */
const HASH_FIELD_PREFIX = Buffer.from([0x8a, 0x01, 64]);

/** Assigns seq, prev_hash and hash to records of one source, in order. */
export class AuditChain {
  constructor(
    readonly source: string,
    private seq: number,
    private prevHash: string,
  ) {}

  seal(r: AuditRecord): AuditRecord {
    this.sealEncoded(r);
    return r;
  }

  /**
   * Seals the record and returns its protobuf encoding (hash included): the bytes without
   * the hash are hashed, then the hash field is appended (protobuf fields may come in any
   * order, so decoding the result gives the sealed record).
   */
  sealEncoded(r: AuditRecord): Buffer {
    r.source = this.source;
    r.seq = ++this.seq;
    r.prev_hash = this.prevHash;
    r.hash = '';
    const base = encodeMessage(AuditRecord, r);
    r.hash = sha256Hex(base);
    this.prevHash = r.hash;
    const out = Buffer.allocUnsafe(base.length + HASH_FIELD_PREFIX.length + 64);
    base.copy(out, 0);
    HASH_FIELD_PREFIX.copy(out, base.length);
    out.write(r.hash, base.length + HASH_FIELD_PREFIX.length, 'latin1');
    return out;
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
