import { invalid } from '../common/errors';
import type { AllowedHours, RateLimit } from './types';
import { resolveZone, ZONE_FORMS, type Zone } from './time-zone';

export { dayKey, msUntilNextDay, parseTimeZone } from './time-zone';

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Upper bound on N (rate limit) and on the daily maximum. */
export const MAX_COUNT = 1_000_000_000;
/** Longest rate-limit period accepted. */
const MAX_PERIOD_MS = 31 * DAY;

const UNITS: Record<string, number> = {
  s: SECOND,
  sec: SECOND,
  second: SECOND,
  seconds: SECOND,
  m: MINUTE,
  min: MINUTE,
  minute: MINUTE,
  minutes: MINUTE,
  h: HOUR,
  hour: HOUR,
  hours: HOUR,
  d: DAY,
  day: DAY,
  days: DAY,
};

const RATE_RE = /^(\d{1,10})\s*(?:\s+per\s+|\/)\s*(?:(\d{1,7})\s*)?([a-z]+)$/;
const RATE_FORM =
  'rate_limit must look like "100 per minute" (N per [K] second|minute|hour|day, also "100/min"; N 1..1e9)';

/**
 * Parses "N per [K] unit" or "N/[K]unit": units second(s)|sec|s, minute(s)|min|m,
 * hour(s)|h, day(s)|d; case-insensitive; N in 1..1e9; period at most 31 days.
 * @throws ActError INVALID_ARGUMENT on `field`.
 */
export function parseRateLimit(s: string, field: string): RateLimit {
  const text = typeof s === 'string' ? s.trim().toLowerCase() : '';
  const m = RATE_RE.exec(text);
  const unit = m === null ? undefined : UNITS[m[3]!];
  if (m === null || unit === undefined) throw invalid(field, `${RATE_FORM}; got ${JSON.stringify(s)}`);
  const limit = Number(m[1]);
  if (limit < 1 || limit > MAX_COUNT)
    throw invalid(field, `rate limit N must be 1..${MAX_COUNT}; ${RATE_FORM}`);
  const k = m[2] === undefined ? 1 : Number(m[2]);
  const periodMs = k * unit;
  if (k < 1 || periodMs > MAX_PERIOD_MS)
    throw invalid(field, `rate limit period must be 1 second..31 days; ${RATE_FORM}`);
  return { limit, periodMs, raw: s };
}

/**
 * Validates the daily maximum: an integer 0..1e9, 0 meaning unlimited.
 * @throws ActError INVALID_ARGUMENT on `field`.
 */
export function validateMaxPerDay(n: number, field: string): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_COUNT) {
    throw invalid(
      field,
      `max_actions_per_day must be an integer 0..${MAX_COUNT} (0 = unlimited); got ${String(n)}`,
    );
  }
  return n;
}

const DAY_NAMES = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const FULL_DAY_NAMES = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
const HOURS_FORM =
  'allowed_hours must look like "[Mon-Fri|Sat,Sun] HH:MM-HH:MM [zone]", e.g. "Mon-Fri 09:00-17:00 Europe/Berlin"';

function dayIndex(name: string): number {
  const n = name.toLowerCase();
  const i = DAY_NAMES.indexOf(n);
  return i >= 0 ? i : FULL_DAY_NAMES.indexOf(n);
}

/** Bit mask of days (bit 0 = Sunday) from "Mon-Fri", "Sat,Sun", "Fri-Mon", "Mon,Wed-Fri". */
function parseDays(s: string, field: string): number {
  let mask = 0;
  for (const item of s.split(',')) {
    const [a, b, extra] = item.split('-');
    const from = dayIndex(a ?? '');
    const to = b === undefined ? from : dayIndex(b);
    if (from < 0 || to < 0 || extra !== undefined) {
      throw invalid(
        field,
        `bad day ${JSON.stringify(item)} (days are Mon..Sun, ranges "Mon-Fri", lists "Sat,Sun"); ${HOURS_FORM}`,
      );
    }
    for (let d = from; ; d = (d + 1) % 7) {
      mask |= 1 << d;
      if (d === to) break;
    }
  }
  return mask;
}

function parseClock(s: string, field: string, isEnd: boolean): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(s);
  const h = m === null ? NaN : Number(m[1]);
  const min = m === null ? NaN : Number(m[2]);
  const ok = m !== null && min < 60 && (h < 24 || (isEnd && h === 24 && min === 0));
  if (!ok)
    throw invalid(
      field,
      `bad time ${JSON.stringify(s)} (HH:MM, 00:00..23:59, end may be 24:00); ${HOURS_FORM}`,
    );
  return h * 60 + min;
}

/**
 * A daily window [start, end) in local minutes on the days in `mask`. When end <= start
 * the window crosses midnight and the day mask applies to the day the window starts.
 */
class Window implements AllowedHours {
  constructor(
    readonly raw: string,
    private readonly zone: Zone,
    private readonly mask: number,
    private readonly start: number,
    private readonly end: number,
  ) {}

  get timeZone(): string {
    return this.zone.name;
  }

  contains(nowMs: number): boolean {
    const local = nowMs + this.zone.offsetMs(nowMs);
    const day = Math.floor(local / DAY);
    const minute = Math.floor((local - day * DAY) / MINUTE);
    const weekday = (((day + 4) % 7) + 7) % 7; // 1970-01-01 was a Thursday
    if (this.start < this.end)
      return minute >= this.start && minute < this.end && ((this.mask >> weekday) & 1) === 1;
    if (minute >= this.start) return ((this.mask >> weekday) & 1) === 1;
    return minute < this.end && ((this.mask >> ((weekday + 6) % 7)) & 1) === 1;
  }

  /** Next local wall time >= `local` at which a window starts on an allowed day. */
  private nextLocalStart(local: number): number {
    let day = Math.floor(local / DAY);
    if (local - day * DAY > this.start * MINUTE) day++;
    for (let i = 0; i < 8; i++, day++) {
      if (((this.mask >> ((((day + 4) % 7) + 7) % 7)) & 1) === 1) return day * DAY + this.start * MINUTE;
    }
    return Number.POSITIVE_INFINITY; // unreachable: the mask is never empty
  }

  nextOpen(nowMs: number): number {
    let t = nowMs;
    // Each round either lands on a window start or on an offset change, so a few
    // rounds cover any real zone; the 9-day horizon bounds the loop regardless.
    for (let round = 0; round < 64 && t <= nowMs + 9 * DAY; round++) {
      if (this.contains(t)) return t;
      const off = this.zone.offsetMs(t);
      const candidate = this.nextLocalStart(t + off) - off;
      if (this.zone.fixedOffsetMs !== undefined || this.zone.offsetMs(candidate) === off) {
        // Same offset at both ends: the start wall time exists at `candidate`. A window
        // start inside a DST overlap may first be closed; step past it and look again.
        if (this.contains(candidate)) return candidate;
        t = candidate + MINUTE;
        continue;
      }
      t = this.offsetChange(t, candidate, off);
    }
    return Number.POSITIVE_INFINITY;
  }

  /** First 15-minute bucket start in (from, to] whose offset differs from `off` (binary search). */
  private offsetChange(from: number, to: number, off: number): number {
    const B = 15 * MINUTE;
    let lo = Math.floor(from / B);
    let hi = Math.floor(to / B);
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.zone.offsetMs(mid * B) === off) lo = mid;
      else hi = mid;
    }
    return hi * B;
  }
}

/**
 * Parses allowed hours: "[days] HH:MM-HH:MM [zone]". Days: "Mon-Fri", "Sat,Sun", "Fri-Mon";
 * absent = every day. Zone: IANA, "UTC"/"GMT"/"Z" or "+02:00"; absent = UTC. A window whose
 * end is not after its start ("22:00-06:00") crosses midnight; its days name the start day.
 * "00:00-24:00" is the whole day.
 * @throws ActError INVALID_ARGUMENT on `field`.
 */
export function parseAllowedHours(s: string, field: string): AllowedHours {
  const text = typeof s === 'string' ? s.trim() : '';
  if (text.length === 0 || text.length > 200) throw invalid(field, `${HOURS_FORM}; got ${JSON.stringify(s)}`);
  const tokens = text.split(/\s+/);
  const timeAt = tokens.findIndex((t) => /^\d{1,2}:\d{2}-\d{1,2}:\d{2}$/.test(t));
  if (timeAt < 0 || timeAt > 1 || tokens.length > timeAt + 2)
    throw invalid(field, `${HOURS_FORM}; got ${JSON.stringify(s)}`);
  const mask = timeAt === 1 ? parseDays(tokens[0]!, field) : 0x7f;
  const [a, b] = tokens[timeAt]!.split('-') as [string, string];
  const start = parseClock(a, field, false);
  const end = parseClock(b, field, true);
  if (start === end)
    throw invalid(
      field,
      `allowed_hours window ${JSON.stringify(tokens[timeAt])} is empty (use 00:00-24:00 for all day)`,
    );
  const zoneName = tokens[timeAt + 1] ?? 'UTC';
  let zone: Zone;
  try {
    zone = resolveZone(zoneName, field);
  } catch {
    throw invalid(field, `unknown time zone ${JSON.stringify(zoneName)} in allowed_hours; use ${ZONE_FORMS}`);
  }
  // 24:00 as an end is minute 1440, which the same-day branch handles (minute < 1440).
  return new Window(text, zone, mask, start, end);
}
