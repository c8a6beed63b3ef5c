/**
 * The engines the store conformance suite runs against, real ones only: LMDB in a temp dir and
 * PostgreSQL on the run's throwaway cluster (test/support/postgres.ts), a fresh database per location.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newSortableId } from '../../../src/common/ids';
import { openLmdbStore, type AuditRecord, type Store } from '../../../src/store';
import { openPostgresStore } from '../../../src/store/postgres/postgres-store';
import { testDatabaseUrl } from '../../support/postgres';

export interface EngineOptions {
  changeLogRetention?: number;
  auditScanBudget?: number;
}

export interface Engine {
  name: 'lmdb' | 'postgres';
  /** Whether several store instances (replicas) can share one location at once. */
  multiInstance: boolean;
  /** A new, empty location: a data dir, or a database URL. */
  location(): Promise<string>;
  /** Opens a store at `location` (another instance, or a reopen after close). */
  open(location: string, opts?: EngineOptions): Promise<Store>;
  /** Removes what `location()` made (called once, after the suite). */
  cleanup(): Promise<void>;
}

export function lmdbEngine(): Engine {
  let base: string | undefined;
  let n = 0;
  return {
    name: 'lmdb',
    multiInstance: false,
    async location() {
      base ??= mkdtempSync(join(tmpdir(), 'act-store-'));
      return join(base, `s${n++}`);
    },
    open: (dataDir, opts = {}) => openLmdbStore({ dataDir, ...opts }),
    async cleanup() {
      if (base) rmSync(base, { recursive: true, force: true });
      base = undefined;
    },
  };
}

export function postgresEngine(): Engine {
  return {
    name: 'postgres',
    multiInstance: true,
    location: () => testDatabaseUrl(),
    // A fast poll keeps cross-instance tests short should a notification be missed (none should be).
    open: (databaseUrl, opts = {}) => openPostgresStore({ databaseUrl, pollMs: 200, ...opts }),
    // The databases go with the cluster at the end of the run.
    async cleanup() {},
  };
}

export const ENGINES: readonly (() => Engine)[] = [lmdbEngine, postgresEngine];

/**
 * A suite's stores: `fresh()` opens a store at a new location, `open()` another instance (or a
 * reopen) at a given one; everything is closed and removed in `after`.
 */
export function useStores(engine: Engine) {
  const open = new Set<Store>();
  after(async () => {
    await Promise.all([...open].map((s) => s.close()));
    await engine.cleanup();
  });
  const track = (s: Store) => {
    open.add(s);
    const close = s.close.bind(s);
    s.close = async () => {
      open.delete(s);
      await close();
    };
    return s;
  };
  return {
    async fresh(opts: EngineOptions = {}) {
      const location = await engine.location();
      return { s: track(await engine.open(location, opts)), location };
    },
    async open(location: string, opts: EngineOptions = {}) {
      return track(await engine.open(location, opts));
    },
  };
}

/** Waits until `cond()` holds (cross-instance delivery is asynchronous), failing after `ms`. */
export async function eventually(cond: () => boolean | Promise<boolean>, what: string, ms = 10_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const T0 = 1_700_000_000_000;

export function auditRec(o: {
  ms: number;
  agent?: string;
  token?: string;
  action?: string;
  decision?: number;
  reason?: number;
  source?: string;
  seq?: number;
  context?: Record<string, unknown>;
}): AuditRecord {
  return {
    audit_id: newSortableId('audit', o.ms),
    time: new Date(o.ms).toISOString(),
    agent_id: o.agent ?? 'agent_a',
    token_id: o.token ?? 'tok_1',
    action: o.action ?? 'files.read',
    resource: 'file:/tmp/x',
    decision: o.decision ?? 1,
    reason_code: o.reason ?? 0,
    reason: '',
    context: o.context ?? { ip: '10.0.0.1', nested: { n: 1 } },
    policy_ids: ['policy_a'],
    policy_revision: 3,
    source: o.source ?? 'sc_1',
    latency_us: 120,
    seq: o.seq ?? 1,
    prev_hash: '',
    hash: 'ab'.repeat(32),
    approval_id: '',
    allowed: (o.decision ?? 1) === 1,
  };
}
