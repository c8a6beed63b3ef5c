/**
 * The sidecar registry: who is connected (to any control-plane replica), what it serves, which
 * revision it has applied, when it was last heard from — and the propagation receipts built on
 * it (a revocation or policy change waits until every connected sidecar in scope applied it).
 *
 * Each replica keeps its own sessions in memory and writes them to the ops table `sidecars`
 * at most every FLUSH_MS, so every replica can list and wait on every sidecar. A sidecar id is
 * bound to the API key that first used it: another key may not speak (or ship audit) as it.
 */
import type { Clock } from '../../common/clock';
import { ActError } from '../../common/errors';
import type { Propagation, SidecarInfo } from '../../gen/act/v1/admin';
import type { ApiKeyRecord } from '../../store/records';
import type { Store } from '../../store/types';
import { formatTime } from '../validate';

/** A row of the ops table `sidecars`. */
export interface SidecarRow {
  sidecar_id: string;
  api_key_id: string;
  agent_ids: string[];
  /** Policies a scoped sidecar holds (for policy-change receipts); absent when it serves all. */
  policy_ids?: string[];
  applied_revision: number;
  last_contact_ms: number;
  connected: boolean;
  control_plane: string;
  version: string;
  connected_at_ms: number;
  /** Set when the stream ended without the sidecar ending it (a partition, a crash). */
  cut_off?: boolean;
}

/** How often live session state is written for other replicas. */
const FLUSH_MS = 100;
/** A row not refreshed for this long is not connected (its replica died). */
const LIVE_FOR_MS = 10_000;
/**
 * A sidecar cut off this recently may still decide from its replica (its staleness bound is 30 s
 * by default): receipts list it until then.
 */
const CUT_OFF_FOR_MS = 60_000;
/** Rows of sidecars gone this long are forgotten (their id binding too). */
const FORGET_AFTER_MS = 7 * 86_400_000;
const LIST_LIMIT = 100_000;

export interface PropagationScope {
  /** The agent whose sidecars must apply (revocations). */
  agentId?: string;
  /** The policy whose holders must apply (policy changes). */
  policyId?: string;
}

export class SidecarRegistry {
  private readonly live = new Map<string, SidecarRow>();
  private readonly dirty = new Set<string>();
  /** Final states of sessions that ended, not yet written. */
  private readonly pending = new Map<string, SidecarRow>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private currentRevision = 0;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    /** This replica's name in `control_plane`. */
    private readonly replicaId: string,
  ) {}

  /** The store's latest revision (kept by the caller for lag figures). */
  set revision(r: number) {
    this.currentRevision = r;
  }

  /**
   * Binds `ids` to `apiKeyId` (the stream's key); refuses an id bound to another key that still
   * exists.
   */
  async claim(ids: readonly string[], apiKeyId: string): Promise<void> {
    for (const id of ids) {
      // Already this key's (a reconnect): nothing to write.
      if ((await this.store.ops.get<SidecarRow>('sidecars', id))?.api_key_id === apiKeyId) continue;
      // Checked and bound in one atomic update: two keys saying Hello at once under a new id
      // must not both pass a check made before either wrote.
      let free = '';
      for (;;) {
        const holder = await this.store.ops.update<SidecarRow, string>('sidecars', id, (cur) => {
          const held = cur?.api_key_id ?? '';
          if (held !== '' && held !== apiKeyId && held !== free) return { value: cur, result: held };
          return { value: { ...(cur ?? emptyRow(id)), api_key_id: apiKeyId }, result: '' };
        });
        if (holder === '') break;
        const owner = await this.store.read((r) => r.get<ApiKeyRecord>('apikeys', holder));
        if (owner) {
          throw new ActError(
            'PERMISSION_DENIED',
            `sidecar id ${JSON.stringify(id)} belongs to another API key (${holder}); use a different --sidecar-id`,
          );
        }
        // The holder's key was deleted: take the id over, unless another key took it meanwhile.
        free = holder;
      }
    }
  }

  connected(
    s: Omit<SidecarRow, 'last_contact_ms' | 'connected' | 'control_plane' | 'connected_at_ms'>,
  ): void {
    const now = this.clock();
    this.live.set(s.sidecar_id, {
      ...s,
      last_contact_ms: now,
      connected: true,
      control_plane: this.replicaId,
      connected_at_ms: now,
    });
    this.touch(s.sidecar_id);
  }

  applied(sidecarId: string, revision: number): void {
    const row = this.live.get(sidecarId);
    if (!row) return;
    row.applied_revision = Math.max(row.applied_revision, revision);
    row.last_contact_ms = this.clock();
    this.touch(sidecarId);
  }

  contact(sidecarId: string): void {
    const row = this.live.get(sidecarId);
    if (!row) return;
    row.last_contact_ms = this.clock();
    this.touch(sidecarId);
  }

  policies(sidecarId: string, policyIds: string[]): void {
    const row = this.live.get(sidecarId);
    if (!row) return;
    row.policy_ids = policyIds;
    this.touch(sidecarId);
  }

  /** The stream ended; `cleanly` when the sidecar ended it (a stop), not a lost connection. */
  disconnected(sidecarId: string, cleanly = false): void {
    const row = this.live.get(sidecarId);
    if (!row) return;
    row.connected = false;
    row.cut_off = !cleanly;
    row.last_contact_ms = this.clock();
    this.touch(sidecarId);
    this.live.delete(sidecarId);
    // The final state goes out at once: another replica may already have this sidecar.
    this.pending.set(sidecarId, row);
    void this.flush(); // deliberately not awaited; failures are retried by the next flush
  }

  /** Every sidecar seen recently, most recently seen first, from all replicas. */
  async list(includeDisconnected: boolean): Promise<{ sidecars: SidecarInfo[]; revision: number }> {
    await this.flush();
    const revision = await this.store.revision();
    const rows = await this.rows();
    const now = this.clock();
    const out = rows
      .filter((r) => r.last_contact_ms > 0)
      .filter((r) => includeDisconnected || isConnected(r, now))
      .sort((a, b) => b.last_contact_ms - a.last_contact_ms)
      .map((r) => info(r, revision, now));
    return { sidecars: out, revision };
  }

  /**
   * Waits up to `waitMs` until every connected sidecar in scope has applied `revision`; answers
   * which did and which did not.
   */
  async waitFor(revision: number, scope: PropagationScope, waitMs: number): Promise<Propagation> {
    const started = performance.now();
    for (;;) {
      await this.flush();
      const now = this.clock();
      const rows = (await this.rows()).filter((r) => covers(r, scope));
      const inScope = rows.filter((r) => isConnected(r, now));
      const pending = inScope.filter((r) => r.applied_revision < revision).map((r) => r.sidecar_id);
      const cutOff = rows
        .filter((r) => !isConnected(r, now) && isCutOff(r, now) && r.applied_revision < revision)
        .map((r) => r.sidecar_id);
      const waited = performance.now() - started;
      if ((pending.length === 0 && cutOff.length === 0) || waited >= waitMs) {
        return {
          revision,
          applied: inScope.length - pending.length,
          total: inScope.length,
          pending_sidecar_ids: pending.sort(),
          complete: pending.length === 0 && cutOff.length === 0,
          waited_ms: Math.round(waited),
          disconnected_sidecar_ids: cutOff.sort(),
        };
      }
      await new Promise((r) => setTimeout(r, Math.min(25, Math.max(1, waitMs - waited))));
    }
  }

  /** Figures for metrics: connected sidecars, those behind the current revision, the largest lag. */
  gauges(): { connected: number; behind: number; maxLag: number } {
    let behind = 0;
    let maxLag = 0;
    for (const r of this.live.values()) {
      const lag = Math.max(0, this.currentRevision - r.applied_revision);
      if (lag > 0) behind++;
      maxLag = Math.max(maxLag, lag);
    }
    return { connected: this.live.size, behind, maxLag };
  }

  /** Writes the changed live rows now (also on a timer). */
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const rows = [...this.pending.values()];
    this.pending.clear();
    for (const id of this.dirty) {
      const r = this.live.get(id);
      if (r) rows.push({ ...r });
    }
    this.dirty.clear();
    if (rows.length === 0) return this.flushing;
    this.flushing = this.flushing
      .then(() =>
        this.store.ops.putMany(
          'sidecars',
          rows.map((r) => ({ key: r.sidecar_id, value: r })),
        ),
      )
      .catch(() => {
        // Not written (e.g. the database is down): write them again next time.
        for (const r of rows) if (this.live.has(r.sidecar_id)) this.dirty.add(r.sidecar_id);
      });
    return this.flushing;
  }

  /** Forgets sidecars not seen for a week (run periodically). */
  async prune(): Promise<number> {
    const now = this.clock();
    const old = (await this.rows()).filter((r) => !r.connected && now - r.last_contact_ms > FORGET_AFTER_MS);
    await this.store.ops.delete(
      'sidecars',
      old.map((r) => r.sidecar_id),
    );
    return old.length;
  }

  async stop(): Promise<void> {
    for (const id of [...this.live.keys()]) this.disconnected(id);
    await this.flush();
  }

  private touch(id: string): void {
    this.dirty.add(id);
    if (this.timer === undefined) {
      this.timer = setTimeout(() => void this.flush(), FLUSH_MS);
      this.timer.unref();
    }
  }

  private async rows(): Promise<SidecarRow[]> {
    const rows = await this.store.ops.scan<SidecarRow>('sidecars', { limit: LIST_LIMIT });
    const byId = new Map(rows.map((r) => [r.key, r.value]));
    // This replica's sessions are fresher in memory than in the table.
    for (const [id, r] of this.live) byId.set(id, r);
    return [...byId.values()];
  }
}

function emptyRow(id: string): SidecarRow {
  return {
    sidecar_id: id,
    api_key_id: '',
    agent_ids: [],
    applied_revision: 0,
    last_contact_ms: 0,
    connected: false,
    control_plane: '',
    version: '',
    connected_at_ms: 0,
  };
}

function isConnected(r: SidecarRow, now: number): boolean {
  return r.connected && now - r.last_contact_ms < LIVE_FOR_MS;
}

/** Lost its stream (or went silent) recently without stopping: may still be serving. */
function isCutOff(r: SidecarRow, now: number): boolean {
  if (now - r.last_contact_ms >= CUT_OFF_FOR_MS) return false;
  return r.connected ? now - r.last_contact_ms >= LIVE_FOR_MS : r.cut_off === true;
}

function covers(r: SidecarRow, s: PropagationScope): boolean {
  const all = r.agent_ids.length === 0 || r.agent_ids.includes('*');
  if (s.agentId !== undefined && !all && !r.agent_ids.includes(s.agentId)) return false;
  // A scoped sidecar whose policies are not known yet (its session is starting) may hold any.
  if (s.policyId !== undefined && !all && r.policy_ids !== undefined && !r.policy_ids.includes(s.policyId))
    return false;
  return true;
}

function info(r: SidecarRow, revision: number, now: number): SidecarInfo {
  return {
    sidecar_id: r.sidecar_id,
    agent_ids: r.agent_ids.length === 0 ? ['*'] : r.agent_ids,
    applied_revision: r.applied_revision,
    lag_revisions: Math.max(0, revision - r.applied_revision),
    last_contact: formatTime(r.last_contact_ms),
    connected: isConnected(r, now),
    control_plane: r.control_plane,
    version: r.version,
    connected_at: r.connected_at_ms ? formatTime(r.connected_at_ms) : '',
    api_key_id: r.api_key_id,
  };
}
