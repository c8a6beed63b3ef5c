/** The control plane's store: the contract, `openStore()`, and its LMDB and PostgreSQL drivers. */
export * from './types';
export { openStore, type StoreConfig } from './open-store';
export { openLmdbStore, type LmdbStoreConfig } from './lmdb/lmdb-store';
export { LmdbAuditStore, type LmdbAuditOptions } from './lmdb/lmdb-audit';
// The PostgreSQL driver is loaded by openStore only when configured (pg costs ~60 ms to load);
// import src/store/postgres/postgres-store directly for openPostgresStore itself.
export type { PostgresStoreConfig } from './postgres/postgres-store';
export { planIngest, type ChainHead, type IngestPlan } from './chain-ingest';
