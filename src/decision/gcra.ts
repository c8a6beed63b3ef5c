/**
 * GCRA (generic cell rate algorithm) for "N per period" rate limits: bursts up to N, then evenly
 * spaced. The state is one number per key, the theoretical arrival time (TAT, ms) of the next
 * action. Pure: the in-memory counters and the control plane's budget ledger share it.
 */
import type { RateLimit } from '../policy/types';

export interface GcraState {
  /** Actions that would be allowed at once now. */
  available: number;
  /** Milliseconds until one action is allowed again (0 when available > 0). */
  retryAfterMs: number;
}

/** Emission interval: the spacing of evenly spread actions (ms). */
export function emissionMs(rate: RateLimit): number {
  return rate.periodMs / rate.limit;
}

/** How many actions `tat` leaves for now, and when the next one is possible. */
export function gcraState(tat: number, rate: RateLimit, nowMs: number): GcraState {
  const t = emissionMs(rate);
  const tau = rate.periodMs - t; // burst tolerance: a full window's worth
  const from = Math.max(tat, nowMs);
  const slack = tau - (from - nowMs);
  if (slack < -1e-6) return { available: 0, retryAfterMs: Math.ceil(-slack) };
  return { available: Math.floor(slack / t + 1e-9) + 1, retryAfterMs: 0 };
}

/** The TAT after `units` actions taken at `nowMs` (the caller checked they are available). */
export function gcraTake(tat: number, rate: RateLimit, nowMs: number, units: number): number {
  return Math.max(tat, nowMs) + units * emissionMs(rate);
}
