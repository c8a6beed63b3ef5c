/**
 * In-memory usage counters (the control plane's central enforcement and tests).
 * The sidecar persists the same updates in LMDB so daily counts survive restarts.
 */
import type { CounterReader, CounterUpdate } from './types';

export interface CounterWriter {
  apply(updates: readonly CounterUpdate[]): void;
}

export class InMemoryCounters implements CounterReader, CounterWriter {
  private readonly rates = new Map<string, number>();
  private readonly daily = new Map<string, { day: string; count: number; expiresAtMs: number }>();

  rateTat(key: string): number {
    return this.rates.get(key) ?? 0;
  }

  dailyCount(key: string, day: string): number {
    const d = this.daily.get(key);
    return d !== undefined && d.day === day ? d.count : 0;
  }

  apply(updates: readonly CounterUpdate[]): void {
    for (const u of updates) {
      if (u.kind === 'rate') {
        this.rates.set(u.key, u.tat);
      } else {
        const d = this.daily.get(u.key);
        if (d !== undefined && d.day === u.day) d.count++;
        else this.daily.set(u.key, { day: u.day, count: 1, expiresAtMs: u.expiresAtMs });
      }
    }
  }

  /** Drops entries that can no longer affect a decision (rate windows passed, days over). */
  prune(nowMs: number): void {
    for (const [k, tat] of this.rates) if (tat <= nowMs) this.rates.delete(k);
    for (const [k, d] of this.daily) if (d.expiresAtMs <= nowMs) this.daily.delete(k);
  }
}
