/** The sidecar's LMDB replica: a read view for decisions, a writer for sync. */
export {
  LmdbReplica,
  type LmdbReplicaConfig,
  type ReplicaDump,
  type ReplicaStats,
  type ReplicaWriter,
} from './lmdb-replica';
