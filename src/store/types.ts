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

export interface AuditStore {
  /** Stores records idempotently by audit_id; returns how many were new. Atomic per call. */
  append(records: AuditRecord[]): Promise<number>;
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

export interface Store {
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
  close(): Promise<void>;
}
