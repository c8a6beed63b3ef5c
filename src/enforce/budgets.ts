/**
 * Leased budgets: a policy's rate limit and daily maximum are ONE budget per agent and policy,
 * owned by the control plane's ledger. Every enforcement point (each sidecar, each control-plane
 * replica's central checks) spends only slices of it that it leased; the units of a slice count
 * as spent at the ledger the moment they are granted.
 *
 * - Daily maximum: a slice is valid until the ledger's day ends. Nothing is ever admitted beyond
 *   the maximum (over-admission 0); units leased by a point that crashes are lost for the rest of
 *   that day (under-admission of at most one slice per point), units of a point that stops cleanly
 *   are given back.
 * - Rate limit: the ledger runs one GCRA limiter (bursts up to N, then one every period/N) at
 *   grant time; a slice is spendable for a tenth of the period (at most 10 s) from when it was
 *   asked for. Fleet-wide the admissions are those of that one limiter, each moved later by at most
 *   the slice's life: in any window of one period at most 2N − 1 + ⌈N/10⌉ (a single GCRA limiter
 *   alone admits up to 2N − 1 in a window: a burst of N, then N − 1 spaced).
 * - Offline: a point spends what it holds and then fails closed with BUDGET_UNAVAILABLE.
 * - Crash: counts live at the ledger (durable before the grant is answered), not here, so a
 *   SIGKILL or restart of any point loses no count.
 *
 * The hot path is synchronous: `decide()` reads slices through CounterReader; a miss (no slice
 * units left, ledger not known to be empty) is recorded and the pipeline awaits `acquire()` and
 * decides again. A slice of 4 or more units is refilled in the background when half of it is
 * spent or three quarters of its life is gone; smaller ones are not (an idle point would hold the
 * last units of a small budget).
 */
import type { DecisionResult, BudgetCheck, CounterReader, CounterUpdate } from '../decision/types';
import type { RateLimit } from '../policy/types';
import type { BudgetKind, LeasePort, LeaseReturn } from './ports';

/** A point that could not reach the ledger asks again after this long. */
const DOWN_RETRY_MS = 1000;
/** Slices this small are not refilled ahead of need. */
const PREFETCH_FROM_UNITS = 4;
/** A budget the ledger said was empty is asked again after at most this long (releases free units). */
const MAX_BLOCK_MS: Record<BudgetKind, number> = { DAILY: 30_000, RATE: 10_000 };

interface Chunk {
  units: number;
  /** Units granted (for sizing the next lease). */
  granted: number;
  /** Monotonic ms when it was asked for, and after which its units may not be spent. */
  from: number;
  until: number;
  leaseId: string;
  window: string;
}

interface Slice {
  kind: BudgetKind;
  /** `${agent_id}|${policy_id}` */
  key: string;
  agentId: string;
  policyId: string;
  limit: number;
  chunks: Chunk[];
  /** Last known units left upstream (for the remaining_* details). */
  upstream: number;
  /** The ledger said the budget is spent: do not ask before (monotonic ms). */
  blockedUntil: number;
  /** The ledger's retry_after at the block (ms, for details). */
  blockedRetryMs: number;
  /** The ledger was unreachable: do not ask before (monotonic ms). */
  downUntil: number;
  want: number;
  lastGrantAt: number;
  lastGranted: number;
  inflight: Promise<void> | undefined;
}

export interface BudgetStats {
  slices: number;
  leases: number;
  leaseFailures: number;
  unitsHeld: number;
}

/** Monotonic milliseconds (wall-clock jumps must not stretch a lease). */
const mono = (): number => performance.now();

export class LeaseBudgets implements CounterReader {
  private readonly slices = new Map<string, Slice>();
  private readonly missed = new Set<Slice>();
  private readonly down = new Set<string>();
  private leases = 0;
  private leaseFailures = 0;

  constructor(private readonly port: LeasePort) {}

  // ---- CounterReader (decide() reads these synchronously) ----

  rate(key: string, rate: RateLimit): BudgetCheck {
    return this.check('RATE', key, rate.limit);
  }

  daily(key: string, _day: string, max: number): BudgetCheck {
    // The ledger's day bounds the slice (its validity ends with the ledger's day).
    return this.check('DAILY', key, max);
  }

  private check(kind: BudgetKind, key: string, limit: number): BudgetCheck {
    const s = this.slice(kind, key, limit);
    const t = mono();
    const units = held(s, t);
    if (units > 0) return { ok: true, remaining: units - 1 + s.upstream, retryAfterMs: 0 };
    if (t < s.downUntil) {
      this.down.add(sliceId(kind, key));
      return { ok: false, remaining: 0, retryAfterMs: Math.ceil(s.downUntil - t) };
    }
    if (t < s.blockedUntil) {
      return { ok: false, remaining: 0, retryAfterMs: Math.max(1, Math.ceil(s.blockedRetryMs)) };
    }
    this.missed.add(s);
    return { ok: false, remaining: 0, retryAfterMs: 0 };
  }

  // ---- the pipeline's side ----

  /** Starts a decision: forgets the misses of the previous one. */
  beginDecision(): void {
    this.missed.clear();
    this.down.clear();
  }

  /** Whether the last decision read a budget that needs a lease first. */
  hasMisses(): boolean {
    return this.missed.size > 0;
  }

  /** Leases slices for the last decision's misses (never rejects; failures mark the slice down). */
  async acquire(): Promise<void> {
    const wanted = [...this.missed];
    this.missed.clear();
    await Promise.all(wanted.map((s) => this.fetch(s)));
  }

  /**
   * Rewrites a budget denial caused by an unreachable ledger: the point's slice is spent and no
   * other could be had, which is not the same as the budget being used up.
   */
  explain(r: DecisionResult): DecisionResult {
    if (this.down.size === 0 || r.claims === undefined) return r;
    const kind =
      r.reasonCode === 'RATE_LIMITED' ? 'RATE' : r.reasonCode === 'DAILY_LIMIT_EXCEEDED' ? 'DAILY' : '';
    if (kind === '' || !r.details.policy_id) return r;
    if (!this.down.has(sliceId(kind, `${r.claims.agent_id}|${r.details.policy_id}`))) return r;
    const what = kind === 'RATE' ? 'rate limit' : 'daily maximum';
    return {
      ...r,
      reasonCode: 'BUDGET_UNAVAILABLE',
      reason: `This enforcement point's share of the ${what} is spent and the control plane cannot be reached to lease more; failing closed`,
      details: { policy_id: r.details.policy_id, retry_after_ms: DOWN_RETRY_MS },
    };
  }

  /** Spends an ALLOW's units (synchronously after the decision that saw them). */
  apply(usage: readonly CounterUpdate[]): void {
    if (usage.length === 0) return;
    const t = mono();
    for (const u of usage) {
      const s = this.slices.get(sliceId(u.kind === 'rate' ? 'RATE' : 'DAILY', u.key));
      if (s === undefined) continue;
      for (const c of s.chunks) {
        if (c.units > 0 && c.until > t) {
          c.units--;
          break;
        }
      }
      // Refill ahead of need so checks rarely wait on the ledger: when half the last grant is
      // spent, or when what is held expires soon (a rate slice lives a tenth of the period: at a
      // steady pace it expires before half is spent, and the next check would wait a round trip).
      if (
        s.lastGranted >= PREFETCH_FROM_UNITS &&
        s.inflight === undefined &&
        t >= s.downUntil &&
        (held(s, t) <= Math.floor(s.lastGranted / 2) || expiresSoon(s, t))
      ) {
        void this.fetch(s); // deliberately not awaited: a background refill; failures mark the slice down
      }
    }
  }

  /** Gives back an ALLOW's units when the check did not end in ALLOW after all. */
  refund(usage: readonly CounterUpdate[]): void {
    const t = mono();
    for (const u of usage) {
      const s = this.slices.get(sliceId(u.kind === 'rate' ? 'RATE' : 'DAILY', u.key));
      const c = s?.chunks.find((x) => x.until > t);
      if (c) c.units++;
    }
  }

  /** Returns unused daily units to the ledger (clean shutdown). */
  async release(): Promise<number> {
    const t = mono();
    const returns: LeaseReturn[] = [];
    for (const s of this.slices.values()) {
      if (s.kind !== 'DAILY') continue;
      for (const c of s.chunks) {
        if (c.units > 0 && c.until > t)
          returns.push({
            leaseId: c.leaseId,
            agentId: s.agentId,
            policyId: s.policyId,
            window: c.window,
            unused: c.units,
          });
        c.units = 0;
      }
    }
    if (returns.length > 0) await this.port.release(returns);
    return returns.reduce((n, r) => n + r.unused, 0);
  }

  /** Drops slices that hold nothing and are not blocked (bounded memory). */
  prune(): void {
    const t = mono();
    for (const [id, s] of this.slices) {
      if (s.inflight === undefined && held(s, t) === 0 && t >= s.blockedUntil && t >= s.downUntil)
        this.slices.delete(id);
    }
  }

  stats(): BudgetStats {
    const t = mono();
    let units = 0;
    for (const s of this.slices.values()) units += held(s, t);
    return {
      slices: this.slices.size,
      leases: this.leases,
      leaseFailures: this.leaseFailures,
      unitsHeld: units,
    };
  }

  private slice(kind: BudgetKind, key: string, limit: number): Slice {
    const id = sliceId(kind, key);
    let s = this.slices.get(id);
    if (s === undefined) {
      const bar = key.indexOf('|');
      s = {
        kind,
        key,
        agentId: key.slice(0, bar),
        policyId: key.slice(bar + 1),
        limit,
        chunks: [],
        upstream: 0,
        blockedUntil: 0,
        blockedRetryMs: 0,
        downUntil: 0,
        want: initialWant(limit),
        lastGrantAt: 0,
        lastGranted: 0,
        inflight: undefined,
      };
      this.slices.set(id, s);
    } else if (s.limit !== limit) {
      // The policy changed: start over with the new limit's sizing.
      s.limit = limit;
      s.want = initialWant(limit);
      s.blockedUntil = 0;
    }
    return s;
  }

  /** One lease request per slice at a time; concurrent misses share it. */
  private fetch(s: Slice): Promise<void> {
    s.inflight ??= (async () => {
      const sentAt = mono();
      // Sizing: a grant half spent within a second asks for twice as much; a slice that expired
      // mostly unspent was sized beyond this point's pace, so ask for half (units held here are
      // spent at the ledger and unavailable to every other point).
      if (s.lastGrantAt > 0 && sentAt - s.lastGrantAt < 1000 && held(s, sentAt) <= s.lastGranted / 2)
        s.want = Math.min(s.want * 2, maxWant(s.limit));
      else if (
        s.chunks.some((c) => c.until <= sentAt && c.granted >= PREFETCH_FROM_UNITS && c.units > c.granted / 2)
      )
        s.want = Math.max(initialWant(s.limit), Math.ceil(s.want / 2));
      try {
        const g = await this.port.lease({
          agentId: s.agentId,
          policyId: s.policyId,
          kind: s.kind,
          want: s.want,
        });
        this.leases++;
        s.downUntil = 0;
        s.upstream = g.remaining;
        if (g.granted > 0) {
          s.chunks = s.chunks.filter((c) => c.units > 0 && c.until > sentAt);
          s.chunks.push({
            units: g.granted,
            granted: g.granted,
            from: sentAt,
            until: sentAt + g.validMs,
            leaseId: g.leaseId,
            window: g.window,
          });
          s.chunks.sort((a, b) => a.until - b.until);
          s.blockedUntil = 0;
          s.lastGrantAt = sentAt;
          s.lastGranted = g.granted;
        } else {
          const retry = g.retryAfterMs > 0 ? g.retryAfterMs : 1000;
          s.blockedRetryMs = retry;
          s.blockedUntil = sentAt + Math.min(retry, MAX_BLOCK_MS[s.kind]);
        }
      } catch {
        this.leaseFailures++;
        s.downUntil = mono() + DOWN_RETRY_MS;
      } finally {
        s.inflight = undefined;
      }
    })();
    return s.inflight;
  }
}

function sliceId(kind: BudgetKind, key: string): string {
  return `${kind}|${key}`;
}

/** Whether the last chunk still holding units has less than a quarter of its life left. */
function expiresSoon(s: Slice, t: number): boolean {
  const c = s.chunks[s.chunks.length - 1];
  return c !== undefined && c.until > t && c.until - t < (c.until - c.from) / 4;
}

function held(s: Slice, t: number): number {
  let n = 0;
  for (const c of s.chunks) if (c.until > t) n += c.units;
  return n;
}

/** A twentieth of the limit, 1 to 100 units: small budgets are leased one unit at a time. */
function initialWant(limit: number): number {
  return Math.max(1, Math.min(100, Math.floor(limit / 20)));
}

function maxWant(limit: number): number {
  return Math.max(1, Math.min(10_000, Math.floor(limit / 10)));
}
