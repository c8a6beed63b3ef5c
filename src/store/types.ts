/**
 * The control plane's store: a small transactional table interface that both
 * engines (embedded LMDB, PostgreSQL) implement, plus the audit trail. Domain
 * logic (validation, ids, revocation cascades) lives in control-plane/, once.
 *
 * Every write transaction that changes anything commits atomically together with
 * one new revision and its change-log entry; sync reads the log.
 */
import type { AuditRecord } from '../gen/act/v1/admin';
import type { Change } from '../gen/act/v1/sync';

export type { AuditRecord, Change };

/** Tables of the store. Values are plain JSON-compatible objects. */
export type TableName =
  | 'agents' // agent_id -> AgentRecord
  | 'policies' // policy_id -> PolicyRecord
  | 'tokens' // token_id -> TokenRecord
  | 'keys' // key_id -> SigningKeyRecord
  | 'approvals' // approval_id -> ApprovalRecord
  | 'apikeys' // api_key_id -> ApiKeyRecord
  | 'index'; // secondary keys, e.g. "agent-name:<lowercased name>" -> agent_id, "token-child:<parent>:<child>" -> 1

export interface ScanOptions {
  /** Only keys starting with this prefix. */
  prefix?: string;
  /** Start strictly after this key (ascending) or strictly before it (reverse). */
  after?: string;
  /** Maximum rows returned. */
  limit: number;
  /** Descending key order. */
  reverse?: boolean;
}

export interface Row<T> {
  key: string;
  value: T;
}

export interface StoreReader {
  get<T>(table: TableName, key: string): Promise<T | undefined>;
  scan<T>(table: TableName, opts: ScanOptions): Promise<Row<T>[]>;
  /** The revision this reader's snapshot reflects (inside a write: the last committed one). */
  revision(): Promise<number>;
}

/** Writes are buffered and committed atomically when the write callback resolves. */
export interface StoreWriter extends StoreReader {
  put<T>(table: TableName, key: string, value: T): void;
  del(table: TableName, key: string): void;
  /** Records a change for sidecars; all changes of a transaction share its revision. */
  emit(change: Change): void;
}

export interface ChangeEntry {
  revision: number;
  changes: Change[];
}

export interface CommitEvent {
  revision: number;
  changes: Change[];
}

export interface AuditFilter {
  agent_id?: string;
  token_id?: string;
  action?: string;
  /** 'ALLOW' | 'DENY' | 'APPROVAL_REQUIRED' as the wire enum number. */
  decision?: number;
  /** ReasonCode wire enum number. */
  reason_code?: number;
  /** Inclusive lower bound, Unix ms. */
  sinceMs?: number;
  /** Exclusive upper bound, Unix ms. */
  untilMs?: number;
}

export interface AuditPage {
  records: AuditRecord[];
  /** Opaque; '' when there is nothing more. */
  nextCursor: string;
}

/** Why an ingested batch was refused (nothing of it is stored). */
export class ChainViolation extends Error {
  constructor(
    message: string,
    /** The record at fault. */
    readonly auditId: string,
  ) {
    super(message);
    this.name = 'ChainViolation';
  }
}

/** What `ingest` did with a batch. */
export interface IngestResult {
  /** Records stored by this call. */
  stored: number;
  /** Records already stored (same audit id and hash): skipped. */
  duplicates: number;
  /** Records accepted after a gap in their source's seq (records lost upstream, e.g. drop-oldest). */
  gaps: number;
  /** Sources whose chain started again at seq 1 (a sidecar with a new spool under an old id). */
  restarts: number;
}

export interface AuditStore {
  /**
   * Stores records idempotently by audit_id; returns how many were new. Atomic per call. No chain
   * checks; a source's head becomes its highest-seq record. For trusted writers and tools.
   */
  append(records: AuditRecord[]): Promise<number>;
  /**
   * Stores records from an enforcement point after checking each against its source's stored chain,
   * atomically with every other ingest of that source (across replicas): the hash must be the
   * record's own (`auditHash`), a stored audit id must have the same hash (else refused), seq n+1 must
   * link to the head's hash, seq <= head is refused unless it is a duplicate or a restart (seq 1,
   * prev_hash ''), seq > head + 1 is a gap (accepted, counted). Successive records of a batch must link.
   * The head becomes the last accepted record. Throws ChainViolation and stores nothing on any refusal.
   */
  ingest(records: AuditRecord[]): Promise<IngestResult>;
  /** Deletes records with audit-id time before `beforeMs` (retention); returns how many. Heads stay. */
  prune(beforeMs: number): Promise<number>;
  /** Newest first. Scans at most a bounded number of records per call; may return fewer than limit with a cursor. */
  query(filter: AuditFilter, cursor: string, limit: number): Promise<AuditPage>;
  /** Oldest first, lazily, in bounded memory. */
  export(filter: AuditFilter): AsyncIterable<AuditRecord>;
  /** Records appended after the call, for follow mode; returns an unsubscribe function. */
  onAppend(listener: (records: AuditRecord[]) => void): () => void;
  /** Last stored record of a source (sidecar id or "control-plane"), for hash chains. */
  lastOfSource(source: string): Promise<AuditRecord | undefined>;
  count(): Promise<number>;
}

/**
 * Operational tables: state shared by every control-plane replica on the store that is not
 * replicated to sidecars and never bumps the revision (budget ledgers, the sidecar registry,
 * outgoing notifications). Keys order bytewise, as in the main tables.
 */
export type OpsTable = 'budgets' | 'sidecars' | 'outbox';

export interface OpsStore {
  get<T>(table: OpsTable, key: string): Promise<T | undefined>;
  scan<T>(table: OpsTable, opts: ScanOptions): Promise<Row<T>[]>;
  /**
   * Atomic read-modify-write of one row, durable when it resolves. `fn` gets the committed value and
   * returns the new one (undefined deletes the row) with a result. Updates of a row are serialized
   * across every replica sharing the store: no update is lost. `fn` must be synchronous and pure (it
   * may run again on a retry).
   */
  update<T, R>(
    table: OpsTable,
    key: string,
    fn: (current: T | undefined) => { value: T | undefined; result: R },
  ): Promise<R>;
  /** Upserts rows in one transaction (last writer wins). */
  putMany<T>(table: OpsTable, rows: readonly Row<T>[]): Promise<void>;
  /** Deletes rows; missing keys are ignored. */
  delete(table: OpsTable, keys: readonly string[]): Promise<void>;
}

export interface Store {
  /** 'lmdb' (embedded, one process) or 'postgres' (several control-plane replicas). */
  readonly kind: 'lmdb' | 'postgres';
  /** Random id of this store instance (a sidecar seeing another id must take a snapshot). */
  readonly storeId: string;
  /** The latest committed revision. */
  revision(): Promise<number>;
  read<R>(fn: (r: StoreReader) => Promise<R>): Promise<R>;
  /**
   * Runs fn with exclusive write access (transactions are serialized) and commits
   * its writes atomically. A transaction that wrote nothing and emitted nothing
   * does not bump the revision. If fn throws, nothing is written.
   */
  write<R>(fn: (w: StoreWriter) => Promise<R>): Promise<{ result: R; revision: number }>;
  /** Change-log entries after `revision`, oldest first; 'too-old' when the log no longer reaches back. */
  changesSince(revision: number, limit?: number): Promise<ChangeEntry[] | 'too-old'>;
  /** Called after each commit that bumped the revision. Returns an unsubscribe function. */
  onCommit(listener: (e: CommitEvent) => void): () => void;
  readonly audit: AuditStore;
  readonly ops: OpsStore;
  close(): Promise<void>;
}
