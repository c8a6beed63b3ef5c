/**
 * The budget ledger: the owner of every policy's rate limit and daily maximum, one budget per
 * agent and policy for the whole fleet. Enforcement points lease slices (src/enforce/budgets.ts
 * explains the scheme and its bounds); the ledger grants them in ops-table rows updated
 * atomically (across replicas on PostgreSQL), durable before the grant is answered.
 *
 * Rows (ops table `budgets`):
 * - `daily|<day>|<agent>|<policy>` → { spent, max }: units granted that day (day in the policy's
 *   day time zone);
 * - `rate|<agent>|<policy>` → { tat }: the GCRA theoretical arrival time after every grant;
 * - `lease|<day>|<lease id>` → { agent, policy, granted, returned }: each daily lease, so a release
 *   gives back at most what that lease still holds (a release cannot make up units).
 */
import type { Clock } from '../common/clock';
import { newSortableId } from '../common/ids';
import type { DecisionView } from '../decision/types';
import { emissionMs, gcraState, gcraTake } from '../decision/gcra';
import type { LeaseGrant, LeaseRequest, LeaseReturn } from '../enforce/ports';
import { dayKey, msUntilNextDay } from '../policy';
import type { OpsStore } from '../store/types';

interface DailyRow {
  spent: number;
  max: number;
}

interface RateRow {
  tat: number;
}

interface LeaseRow {
  agent_id: string;
  policy_id: string;
  granted: number;
  returned: number;
}

/** Longest a rate slice is valid (a tenth of the period otherwise). */
const MAX_RATE_VALID_MS = 10_000;
/** Daily rows are kept this long after their day for inspection, then pruned. */
const DAILY_KEEP_MS = 2 * 86_400_000;

export class BudgetLedger {
  constructor(
    private readonly ops: OpsStore,
    /** Where the ledger reads the current policies (the control plane's view). */
    private readonly view: Pick<DecisionView, 'policy'>,
    private readonly clock: Clock,
  ) {}

  async lease(req: LeaseRequest): Promise<LeaseGrant> {
    const now = this.clock();
    const leaseId = newSortableId('lease', now);
    const policy = this.view.policy(req.policyId);
    const want = Math.max(1, Math.min(100_000, Math.floor(req.want)));
    if (req.kind === 'DAILY') {
      const max = policy?.maxActionsPerDay;
      if (policy === undefined || max === undefined)
        return { leaseId, granted: 0, window: '', validMs: 0, remaining: 0, retryAfterMs: 1000, limit: 0 };
      const tz = policy.dayTimeZone;
      const day = dayKey(now, tz);
      const untilTomorrow = msUntilNextDay(now, tz);
      const { granted, left } = await this.ops.update<DailyRow, { granted: number; left: number }>(
        'budgets',
        `daily|${day}|${req.agentId}|${req.policyId}`,
        (cur) => {
          const spent = cur?.spent ?? 0;
          const left = Math.max(0, max - spent);
          // A quarter of what is left at most, so one point cannot strand the rest of the day.
          const g = Math.min(want, left, Math.max(1, Math.ceil(left / 4)));
          return { value: { spent: spent + g, max }, result: { granted: g, left: left - g } };
        },
      );
      if (granted > 0)
        await this.ops.putMany<LeaseRow>('budgets', [
          {
            key: `lease|${day}|${leaseId}`,
            value: { agent_id: req.agentId, policy_id: req.policyId, granted, returned: 0 },
          },
        ]);
      return {
        leaseId,
        granted,
        window: day,
        validMs: untilTomorrow,
        remaining: left,
        retryAfterMs: granted > 0 ? 0 : untilTomorrow,
        limit: max,
      };
    }
    const rate = policy?.rateLimit;
    if (policy === undefined || rate === undefined)
      return { leaseId, granted: 0, window: '', validMs: 0, remaining: 0, retryAfterMs: 1000, limit: 0 };
    const validMs = Math.min(MAX_RATE_VALID_MS, Math.max(1, Math.floor(rate.periodMs / 10)));
    // Never more than the rate produces over the slice's life, so a slice cannot hoard a burst.
    const cap = Math.max(1, Math.ceil(validMs / emissionMs(rate)));
    const out = await this.ops.update<RateRow, { granted: number; remaining: number; retry: number }>(
      'budgets',
      `rate|${req.agentId}|${req.policyId}`,
      (cur) => {
        const tat = cur?.tat ?? 0;
        const s = gcraState(tat, rate, now);
        const g = Math.min(want, cap, s.available);
        const next = g > 0 ? gcraTake(tat, rate, now, g) : tat;
        return {
          value: { tat: next },
          result: { granted: g, remaining: Math.max(0, s.available - g), retry: s.retryAfterMs },
        };
      },
    );
    return {
      leaseId,
      granted: out.granted,
      window: '',
      validMs,
      remaining: out.remaining,
      retryAfterMs: out.granted > 0 ? 0 : Math.max(1, out.retry),
      limit: rate.limit,
    };
  }

  /**
   * Gives back unused daily units: at most what each named lease still holds, for the agent and
   * policy it was granted for; returns for a day that has ended, or for no such lease, are dropped.
   */
  async release(returns: readonly LeaseReturn[]): Promise<number> {
    let total = 0;
    for (const r of returns) {
      const unused = Math.max(0, Math.floor(r.unused));
      if (unused === 0 || !/^\d{4}-\d{2}-\d{2}$/.test(r.window) || !/^lease_[0-9a-z]{6,64}$/.test(r.leaseId))
        continue;
      // First the lease gives up what it still holds (so a second release of it gets nothing) ...
      const back = await this.ops.update<LeaseRow, number>(
        'budgets',
        `lease|${r.window}|${r.leaseId}`,
        (cur) => {
          if (!cur || cur.agent_id !== r.agentId || cur.policy_id !== r.policyId)
            return { value: cur, result: 0 };
          const n = Math.min(unused, cur.granted - cur.returned);
          return { value: { ...cur, returned: cur.returned + n }, result: n };
        },
      );
      if (back === 0) continue;
      // ... then the day's budget gets it back (a crash in between loses units, never makes them).
      total += await this.ops.update<DailyRow, number>(
        'budgets',
        `daily|${r.window}|${r.agentId}|${r.policyId}`,
        (cur) => {
          if (cur === undefined) return { value: undefined, result: 0 };
          const n = Math.min(back, cur.spent);
          return { value: { ...cur, spent: cur.spent - n }, result: n };
        },
      );
    }
    return total;
  }

  /** Drops daily rows of days long past and rate rows whose TAT has passed. */
  async prune(): Promise<number> {
    const now = this.clock();
    const oldest = dayKey(now - DAILY_KEEP_MS, 'UTC');
    const stale: string[] = [];
    let after: string | undefined;
    for (;;) {
      const rows = await this.ops.scan<DailyRow | RateRow>('budgets', {
        limit: 1000,
        ...(after !== undefined ? { after } : {}),
      });
      for (const row of rows) {
        if ((row.key.startsWith('daily|') || row.key.startsWith('lease|')) && row.key.slice(6, 16) < oldest)
          stale.push(row.key);
        else if (row.key.startsWith('rate|') && (row.value as RateRow).tat < now - 86_400_000)
          stale.push(row.key);
      }
      if (rows.length < 1000) break;
      after = rows[rows.length - 1]!.key;
    }
    await this.ops.delete('budgets', stale);
    return stale.length;
  }
}
