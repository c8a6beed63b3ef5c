/** Audit: record building, per-source hash chains, and the sidecar's durable spool. */
export * from './chain';
export * from './record';
export {
  AuditSpool,
  SpoolError,
  SPOOL_DEFAULTS,
  validateSpoolConfig,
  type AuditBatch,
  type AuditSpoolConfig,
  type Durability,
  type SpoolErrorCode,
  type SpoolLogger,
} from './spool';
export type { RecoveryReport } from './segment-log';
