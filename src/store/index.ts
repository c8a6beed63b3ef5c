/** The control plane's store: the contract and its embedded LMDB implementation. */
export * from './types';
export { openLmdbStore, type LmdbStoreConfig } from './lmdb/lmdb-store';
export { LmdbAuditStore, type LmdbAuditOptions } from './lmdb/lmdb-audit';
export { planIngest, type ChainHead, type IngestPlan } from './chain-ingest';
