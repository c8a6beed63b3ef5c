/**
 * The sidecar's replica of the control plane's state: one LMDB file with a named db
 * per entity kind and a `meta` db (revision, store id, last contact). It is the
 * DecisionView `decide()` reads on every check, and the writer the sync client feeds
 * with snapshots and deltas. (Budgets are not kept here: they are leased from the
 * control plane, see src/enforce/budgets.ts.)
 *
 * Invariants:
 * - Every delta commits in ONE child transaction together with its revision, so a crash
 *   leaves either the old or the new revision on disk, never a mix (lmdb-js does not
 *   roll back `root.transaction(cb)` when cb throws; `childTransaction` aborts as a whole).
 * - A snapshot is buffered in memory chunk by chunk (100k entities are a few tens of MB
 *   for a moment) and committed in one child transaction that clears the entity dbs and
 *   writes the new state: until then the old state keeps being served (last-known-good).
 * - Writes are serialized in-process (a promise chain), so the revision check of a delta
 *   sees every earlier write.
 * - In-memory caches (agents, compiled policies, key objects) are invalidated only after
 *   a commit, so they never hold uncommitted data. Between the commit and the
 *   invalidation (one continuation) a check may still see the previous state: the same
 *   as if it had run just before the commit.
 * - Changes mean what src/replica/apply-change.ts says (shared with the control plane's
 *   view); a policy that does not compile and a key that does not parse are absent.
 */
import type { KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';
import { ActError } from '../common/errors';
import { Policy } from '../gen/act/v1/admin';
import { agentFromWire, approvalFromWire } from '../decision/wire';
import type { Change } from '../gen/act/v1/sync';
import type { AgentView, ApprovalView, DecisionView } from '../decision/types';
import type { Agent, Approval } from '../gen/act/v1/admin';
import type { PublicKey, Revocation } from '../gen/act/v1/sync';
import { applyChange, mergeRevocationExpiry, type ChangeSink } from './apply-change';
import { compilePolicy } from '../policy';
import type { CompiledPolicy } from '../policy/types';
import { publicKeyFromRaw } from '../token';

/** Configuration of the sidecar's replica. */
export interface LmdbReplicaConfig {
  /** Directory holding `replica.mdb`; created with mode 0700 if missing. */
  dataDir: string;
  /** Initial LMDB map size in bytes. Default: lmdb-js's default (it grows the map as needed). */
  mapSizeBytes?: number;
  /** Agents kept decoded in memory. Default 10_000. */
  agentCacheSize?: number;
}

/** Entity counts, for metrics and scope checks. */
export interface ReplicaStats {
  revision: number;
  agents: number;
  policies: number;
  revocations: number;
  keys: number;
  approvals: number;
}

/** Everything stored, by id (tests). */
export interface ReplicaDump {
  agentIds: string[];
  policyIds: string[];
  revokedTokenIds: string[];
  keyIds: string[];
  approvalIds: string[];
}

/** What the sync client writes: snapshots (possibly chunked), deltas and contact times. */
export interface ReplicaWriter {
  readonly revision: number;
  readonly storeId: string;
  beginSnapshot(revision: number, storeId: string): void;
  snapshotChunk(changes: readonly Change[]): void;
  commitSnapshot(): Promise<void>;
  applyDelta(revision: number, changes: readonly Change[]): Promise<void>;
  touch(nowMs: number): void;
}

const DEFAULT_AGENT_CACHE = 10_000;
/** lastContactMs is persisted at most this often. */
const TOUCH_PERSIST_INTERVAL_MS = 1000;

/** A compiled policy with the version it was compiled from; `fresh` = known to match the db. */
interface PolicyEntry {
  version: number;
  compiled: CompiledPolicy | undefined;
  fresh: boolean;
}

/** Ids touched by a write, whose cache entries are dropped once it has committed. */
interface Touched {
  agents: Set<string>;
  policies: Set<string>;
  keys: Set<string>;
  approvals: ApprovalView[];
}

export class LmdbReplica implements DecisionView, ReplicaWriter {
  private rev: number;
  private store: string;
  private contactMs: number;
  private contactPersistedMs: number;
  private tail: Promise<unknown> = Promise.resolve();
  /** Set by close(): new writes are refused. */
  private closing: Promise<void> | undefined;
  /** Set once the environment is closing: fire-and-forget writes are dropped. */
  private closed = false;
  private pending: { revision: number; storeId: string; chunks: (readonly Change[])[] } | undefined;

  private readonly agentCache = new Map<string, AgentView>();
  private readonly policyCache = new Map<string, PolicyEntry>();
  /** null = stored but not a valid key (cached so a bad key is parsed once). */
  private readonly keyCache = new Map<string, KeyObject | null>();

  /** Called after every commit that changed approvals (waiters on the sidecar). */
  onApprovals: ((approvals: ApprovalView[]) => void) | undefined;
  /** Called after every committed snapshot or delta with the new revision (e.g. MCP list_changed). */
  onCommit: ((revision: number) => void) | undefined;

  private constructor(
    private readonly root: RootDatabase,
    private readonly agents: Database<AgentView, string>,
    private readonly policies: Database<Buffer, string>,
    private readonly revocations: Database<number, string>,
    private readonly keys: Database<Buffer, string>,
    private readonly approvals: Database<ApprovalView, string>,
    private readonly meta: Database<unknown, string>,
    private readonly agentCacheSize: number,
  ) {
    this.rev = (meta.get('revision') as number | undefined) ?? 0;
    this.store = (meta.get('store_id') as string | undefined) ?? '';
    this.contactMs = (meta.get('last_contact_ms') as number | undefined) ?? 0;
    this.contactPersistedMs = this.contactMs;
  }

  /** Opens (creating if needed) the replica in `cfg.dataDir`; synchronous. */
  static open(cfg: LmdbReplicaConfig): LmdbReplica {
    const cacheSize = cfg.agentCacheSize ?? DEFAULT_AGENT_CACHE;
    if (!Number.isInteger(cacheSize) || cacheSize < 0) {
      throw new ActError(
        'INVALID_ARGUMENT',
        `agentCacheSize must be a non-negative integer, got ${cacheSize}`,
      );
    }
    mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
    const root = open({
      path: join(cfg.dataDir, 'replica.mdb'),
      maxDbs: 12,
      ...(cfg.mapSizeBytes !== undefined ? { mapSize: cfg.mapSizeBytes } : {}),
    });
    try {
      return new LmdbReplica(
        root,
        root.openDB<AgentView, string>({ name: 'agents' }),
        // Policies as protobuf bytes: the generated codec round-trips every field exactly.
        root.openDB<Buffer, string>({ name: 'policies', encoding: 'binary' }),
        root.openDB<number, string>({ name: 'revocations' }),
        root.openDB<Buffer, string>({ name: 'keys', encoding: 'binary' }),
        root.openDB<ApprovalView, string>({ name: 'approvals' }),
        root.openDB<unknown, string>({ name: 'meta' }),
        cacheSize,
      );
    } catch (err) {
      // Opening failed half-way: release the environment.
      void root.close(); // nothing to flush: no write has been issued
      throw err;
    }
  }

  // ---- read side (hot path) ----

  /** The control-plane revision this replica reflects (0 before the first snapshot). */
  get revision(): number {
    return this.rev;
  }

  /** The control plane's store id the revision belongs to ('' before the first snapshot). */
  get storeId(): string {
    return this.store;
  }

  /** Last contact with the control plane, Unix ms (persisted; 0 = never). */
  get lastContactMs(): number {
    return this.contactMs;
  }

  /** A PublicKeyLookup: an arrow property, since decide() passes it on unbound. */
  publicKey = (keyId: string): KeyObject | undefined => {
    const cached = this.keyCache.get(keyId);
    if (cached !== undefined) return cached ?? undefined;
    const raw = this.keys.get(keyId);
    if (raw === undefined) return undefined; // not cached: unknown ids come from unverified tokens
    let key: KeyObject | null;
    try {
      key = publicKeyFromRaw(raw);
    } catch {
      key = null; // a key that does not parse verifies nothing, like an absent one
    }
    this.keyCache.set(keyId, key);
    return key ?? undefined;
  };

  isRevoked(tokenId: string): boolean {
    // An LMDB existence check (~0.2 µs), no in-memory set: 100k revocations would cost RAM.
    return this.revocations.doesExist(tokenId);
  }

  agent(agentId: string): AgentView | undefined {
    const cached = this.agentCache.get(agentId);
    if (cached !== undefined) return cached;
    const a = this.agents.get(agentId);
    if (a === undefined || this.agentCacheSize === 0) return a;
    // Bounded, first-in-first-out: cheap, and a miss is only a decode.
    if (this.agentCache.size >= this.agentCacheSize) {
      const oldest = this.agentCache.keys().next();
      if (oldest.done !== true) this.agentCache.delete(oldest.value);
    }
    this.agentCache.set(agentId, a);
    return a;
  }

  policy(policyId: string): CompiledPolicy | undefined {
    const entry = this.policyCache.get(policyId);
    if (entry !== undefined && entry.fresh) return entry.compiled;
    const bytes = this.policies.get(policyId);
    if (bytes === undefined) {
      this.policyCache.delete(policyId);
      return undefined;
    }
    let p: Policy;
    try {
      p = Policy.decode(bytes);
    } catch {
      return undefined; // unreachable for bytes we encoded; absent rather than a throw in decide()
    }
    // Compiled once per (policy_id, version): a re-sent unchanged policy keeps its compilation.
    if (entry !== undefined && entry.version === p.version) {
      entry.fresh = true;
      return entry.compiled;
    }
    let compiled: CompiledPolicy | undefined;
    try {
      compiled = compilePolicy(p);
    } catch {
      compiled = undefined; // a policy that does not compile grants nothing
    }
    this.policyCache.set(policyId, { version: p.version, compiled, fresh: true });
    return compiled;
  }

  approval(approvalId: string): ApprovalView | undefined {
    return this.approvals.get(approvalId);
  }

  // ---- staleness ----

  /**
   * Records contact with the control plane (a heartbeat, snapshot or delta). Kept in
   * memory at once; persisted at most once a second so a restarted sidecar with a dead
   * control plane knows how old its data is.
   */
  touch(nowMs: number): void {
    if (nowMs <= this.contactMs) return;
    this.contactMs = nowMs;
    if (nowMs - this.contactPersistedMs >= TOUCH_PERSIST_INTERVAL_MS) this.persistContact();
  }

  private persistContact(): void {
    if (this.closed) return;
    this.contactPersistedMs = this.contactMs;
    // Not awaited: batched by lmdb-js; losing the last second of contact only makes the
    // replica look older after a crash (fails closed sooner, never later).
    this.meta.put('last_contact_ms', this.contactMs).catch(() => undefined);
  }

  // ---- write side (sync client) ----

  /** Starts buffering a snapshot; a snapshot already in progress is discarded. */
  beginSnapshot(revision: number, storeId: string): void {
    this.assertOpen();
    this.pending = { revision, storeId, chunks: [] };
  }

  /** Buffers one chunk of the snapshot begun last. */
  snapshotChunk(changes: readonly Change[]): void {
    if (this.pending === undefined)
      throw new ActError('FAILED_PRECONDITION', 'snapshotChunk without beginSnapshot');
    this.pending.chunks.push(changes);
  }

  /**
   * Atomically replaces every entity db with the buffered snapshot and sets its revision
   * and store id. On failure nothing changes and the snapshot is discarded.
   */
  commitSnapshot(): Promise<void> {
    const snap = this.pending;
    if (snap === undefined) {
      return Promise.reject(new ActError('FAILED_PRECONDITION', 'commitSnapshot without beginSnapshot'));
    }
    this.pending = undefined;
    return this.serial(async () => {
      const touched = newTouched();
      await this.root.childTransaction(() => {
        this.agents.clearSync();
        this.policies.clearSync();
        this.revocations.clearSync();
        this.keys.clearSync();
        this.approvals.clearSync();
        const sink = this.sink(touched);
        for (const chunk of snap.chunks) for (const c of chunk) applyChange(c, sink);
        this.meta.putSync('revision', snap.revision);
        this.meta.putSync('store_id', snap.storeId);
      });
      this.rev = snap.revision;
      this.store = snap.storeId;
      this.agentCache.clear();
      this.keyCache.clear();
      for (const [id, entry] of this.policyCache) {
        if (touched.policies.has(id))
          entry.fresh = false; // re-checked against the stored version
        else this.policyCache.delete(id);
      }
      this.announceApprovals(touched);
    });
  }

  /**
   * Applies a delta's changes and its revision in one transaction; a delta at or below
   * the current revision is ignored. If any change throws, nothing is applied.
   */
  applyDelta(revision: number, changes: readonly Change[]): Promise<void> {
    return this.serial(async () => {
      if (revision <= this.rev) return;
      const touched = newTouched();
      await this.root.childTransaction(() => {
        const sink = this.sink(touched);
        for (const c of changes) applyChange(c, sink);
        this.meta.putSync('revision', revision);
      });
      this.rev = revision;
      for (const id of touched.agents) this.agentCache.delete(id);
      for (const id of touched.keys) this.keyCache.delete(id);
      for (const id of touched.policies) {
        const entry = this.policyCache.get(id);
        if (entry !== undefined) entry.fresh = false;
      }
      this.announceApprovals(touched);
    });
  }

  private announceApprovals(touched: Touched): void {
    try {
      if (touched.approvals.length > 0) this.onApprovals?.(touched.approvals);
      this.onCommit?.(this.rev);
    } catch {
      // A faulty listener must not fail a committed delta.
    }
  }

  /** Drops revocations of tokens past their expiry (such a token is TOKEN_EXPIRED first anyway). */
  pruneRevocations(nowMs: number): Promise<number> {
    return this.serial(async () => {
      let dropped = 0;
      await this.root.childTransaction(() => {
        dropped = 0; // the callback runs once; reset keeps the count honest if it ever re-runs
        for (const { key, value } of this.revocations.getRange()) {
          // 0 = expiry unknown: kept, since dropping it could un-revoke a live token.
          if (value > 0 && value <= nowMs) {
            this.revocations.removeSync(key);
            dropped++;
          }
        }
      });
      return dropped;
    });
  }

  /** A ChangeSink writing into the current write transaction, noting what it touched. */
  private sink(touched: Touched): ChangeSink {
    return {
      putAgent: (a: Agent) => {
        this.agents.putSync(a.agent_id, agentFromWire(a));
        touched.agents.add(a.agent_id);
      },
      deleteAgent: (id) => {
        this.agents.removeSync(id);
        touched.agents.add(id);
      },
      putPolicy: (p) => {
        this.policies.putSync(p.policy_id, Buffer.from(Policy.encode(p).finish()));
        touched.policies.add(p.policy_id);
      },
      deletePolicy: (id) => {
        this.policies.removeSync(id);
        touched.policies.add(id);
      },
      putRevocation: (r: Revocation) =>
        this.revocations.putSync(
          r.token_id,
          mergeRevocationExpiry(this.revocations.get(r.token_id), r.expires_at_ms),
        ),
      putPublicKey: (k: PublicKey) => {
        this.keys.putSync(k.key_id, Buffer.from(k.public_key));
        touched.keys.add(k.key_id);
      },
      deletePublicKey: (id) => {
        this.keys.removeSync(id);
        touched.keys.add(id);
      },
      putApproval: (a: Approval) => {
        const v = approvalFromWire(a);
        this.approvals.putSync(a.approval_id, v);
        touched.approvals.push(v);
      },
    };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing !== undefined)
      return Promise.reject(new ActError('FAILED_PRECONDITION', 'replica is closed'));
    const run = this.tail.then(fn);
    // The chain must survive a failed write; the caller still sees the rejection via `run`.
    this.tail = run.catch(() => undefined);
    return run;
  }

  // ---- introspection and lifecycle ----

  /** Entity counts (O(1) each: LMDB keeps entry counts per db). */
  stats(): ReplicaStats {
    const count = (db: Database<unknown, string>) => (db.getStats() as { entryCount: number }).entryCount;
    return {
      revision: this.rev,
      agents: count(this.agents),
      policies: count(this.policies),
      revocations: count(this.revocations),
      keys: count(this.keys),
      approvals: count(this.approvals),
    };
  }

  /** Every stored id, sorted (tests; scans every db). */
  dump(): ReplicaDump {
    const ids = (db: Database<unknown, string>) => [...db.getKeys()].map(String);
    return {
      agentIds: ids(this.agents),
      policyIds: ids(this.policies),
      revokedTokenIds: ids(this.revocations),
      keyIds: ids(this.keys),
      approvalIds: ids(this.approvals),
    };
  }

  /** Waits for pending writes, persists the last contact time and closes the environment. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.pending = undefined;
    await this.tail; // writes queued before close() finish; later ones are refused
    if (this.contactMs !== this.contactPersistedMs) this.persistContact();
    this.closed = true;
    await this.root.close(); // waits for the batched contact write
  }

  private assertOpen(): void {
    if (this.closing !== undefined) throw new ActError('FAILED_PRECONDITION', 'replica is closed');
  }
}

function newTouched(): Touched {
  return { agents: new Set(), policies: new Set(), keys: new Set(), approvals: [] };
}
