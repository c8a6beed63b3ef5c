/**
 * Picks the control plane's storage engine: PostgreSQL when a database URL is configured (several
 * control-plane replicas on one database), else embedded LMDB in the data directory (one process).
 */
import type { Store } from './types';
import { openLmdbStore, type LmdbStoreConfig } from './lmdb/lmdb-store';
import type { PostgresStoreConfig } from './postgres/postgres-store';

/** Configuration of `openStore`. */
export interface StoreConfig {
  /** PostgreSQL URL (`ACT_DATABASE_URL`). Set (non-empty): PostgreSQL; unset: LMDB in `dataDir`. */
  databaseUrl?: string | undefined;
  /** LMDB data directory (`ACT_DATA_DIR`); not used with PostgreSQL. */
  dataDir: string;
  /** Revisions kept in the change log for sidecar catch-up. Default 100_000. */
  changeLogRetention?: number | undefined;
  /** Audit records examined at most per `audit.query` call. Default 50_000. */
  auditScanBudget?: number | undefined;
  /** Options only the LMDB engine reads. */
  lmdb?: Pick<LmdbStoreConfig, 'mapSizeBytes'>;
  /** Options only the PostgreSQL engine reads (pool size, timeouts, poll interval, fault hook). */
  postgres?: Omit<PostgresStoreConfig, 'databaseUrl' | 'changeLogRetention' | 'auditScanBudget'>;
}

/** Opens the configured engine. */
export async function openStore(config: StoreConfig): Promise<Store> {
  const common = {
    ...(config.changeLogRetention !== undefined ? { changeLogRetention: config.changeLogRetention } : {}),
    ...(config.auditScanBudget !== undefined ? { auditScanBudget: config.auditScanBudget } : {}),
  };
  if (config.databaseUrl !== undefined && config.databaseUrl !== '') {
    // Loaded only when used: an LMDB control plane (and its cold start) never loads pg.
    const { openPostgresStore } = await import('./postgres/postgres-store.js');
    return openPostgresStore({ ...config.postgres, ...common, databaseUrl: config.databaseUrl });
  }
  return openLmdbStore({ ...config.lmdb, ...common, dataDir: config.dataDir });
}
