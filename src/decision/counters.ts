/**
 * In-memory budgets: the reference implementation of CounterReader (tests, benches, the pure
 * decision cases). Enforcement points use leased budgets (src/enforce/budgets.ts) so a budget
 * is one per agent and policy across the fleet.
 */
import type { RateLimit } from '../policy/types';
import { gcraState, gcraTake } from './gcra';
import type { BudgetCheck, CounterReader, CounterUpdate } from './types';

export interface CounterWriter {
  apply(updates: readonly CounterUpdate[]): void;
}

export class InMemoryCounters implements CounterReader, CounterWriter {
  private readonly rates = new Map<string, number>();
  private readonly days = new Map<string, { day: string; count: number; expiresAtMs: number }>();

  rate(key: string, rate: RateLimit, nowMs: number): BudgetCheck {
    const s = gcraState(this.rates.get(key) ?? 0, rate, nowMs);
    return { ok: s.available > 0, remaining: Math.max(0, s.available - 1), retryAfterMs: s.retryAfterMs };
  }

  daily(key: string, day: string, max: number): BudgetCheck {
    const d = this.days.get(key);
    const used = d !== undefined && d.day === day ? d.count : 0;
    return { ok: used < max, remaining: Math.max(0, max - used - 1), retryAfterMs: 0 };
  }

  apply(updates: readonly CounterUpdate[]): void {
    for (const u of updates) {
      if (u.kind === 'rate') {
        this.rates.set(u.key, gcraTake(this.rates.get(u.key) ?? 0, u.rate, u.atMs, 1));
      } else {
        const d = this.days.get(u.key);
        if (d !== undefined && d.day === u.day) d.count++;
        else this.days.set(u.key, { day: u.day, count: 1, expiresAtMs: u.expiresAtMs });
      }
    }
  }

  /** Drops entries that can no longer affect a decision (rate windows passed, days over). */
  prune(nowMs: number): void {
    for (const [k, tat] of this.rates) if (tat <= nowMs) this.rates.delete(k);
    for (const [k, d] of this.days) if (d.expiresAtMs <= nowMs) this.days.delete(k);
  }
}
