import { invalid } from '../common/errors';

/** Offsets change only on 15-minute boundaries (all current tz data), so one lookup per bucket. */
const BUCKET_MS = 15 * 60_000;
/** Bounded per-zone offset cache; cleared wholesale when full (cheap, rare). */
const MAX_CACHED_BUCKETS = 2048;

/** A time zone: UTC offset of an instant, cached for IANA zones. */
export interface Zone {
  /** Canonical name ("UTC", "+02:00", "Europe/Berlin"). */
  readonly name: string;
  /** Offset in ms such that local wall time = utcMs + offsetMs(utcMs). */
  offsetMs(utcMs: number): number;
  /** Constant offset for fixed zones, undefined for IANA zones. */
  readonly fixedOffsetMs: number | undefined;
}

class FixedZone implements Zone {
  constructor(
    readonly name: string,
    readonly fixedOffsetMs: number,
  ) {}
  offsetMs(): number {
    return this.fixedOffsetMs;
  }
}

class IanaZone implements Zone {
  readonly fixedOffsetMs = undefined;
  private readonly dtf: Intl.DateTimeFormat;
  private readonly cache = new Map<number, number>();
  // One-entry memo: checks come in bursts within the same bucket.
  private lastBucket = Number.NaN;
  private lastOffset = 0;

  constructor(readonly name: string) {
    this.dtf = new Intl.DateTimeFormat('en-US', {
      timeZone: name,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  }

  offsetMs(utcMs: number): number {
    const b = Math.floor(utcMs / BUCKET_MS);
    if (b === this.lastBucket) return this.lastOffset;
    let off = this.cache.get(b);
    if (off === undefined) {
      off = this.compute(b * BUCKET_MS);
      if (this.cache.size >= MAX_CACHED_BUCKETS) this.cache.clear();
      this.cache.set(b, off);
    }
    this.lastBucket = b;
    this.lastOffset = off;
    return off;
  }

  private compute(utcMs: number): number {
    const f: Record<string, number> = {};
    for (const p of this.dtf.formatToParts(utcMs)) if (p.type !== 'literal') f[p.type] = Number(p.value);
    // Called with bucket starts (whole seconds), so the formatted fields are exact.
    return Date.UTC(f['year']!, f['month']! - 1, f['day']!, f['hour']!, f['minute']!, f['second']!) - utcMs;
  }
}

const zones = new Map<string, Zone>();
const UTC_ZONE = new FixedZone('UTC', 0);
const OFFSET_RE = /^([+-])(\d{2}):?(\d{2})$/;

/** Accepted time zone forms, for error messages. */
export const ZONE_FORMS = 'an IANA zone such as "Europe/Berlin", "UTC"/"GMT"/"Z", or a fixed offset "+02:00"';

/**
 * Resolves a zone name: "UTC", "GMT", "Z", a fixed offset "+HH:MM" (up to ±14:00), or an
 * IANA name (validated by Intl). Zones are memoised: each builds one Intl formatter.
 * @throws ActError INVALID_ARGUMENT on `field` for an unknown zone.
 */
export function resolveZone(name: string, field: string): Zone {
  const hit = zones.get(name);
  if (hit !== undefined) return hit;
  const upper = name.toUpperCase();
  let zone: Zone;
  if (upper === 'UTC' || upper === 'GMT' || upper === 'Z' || upper === 'ETC/UTC') zone = UTC_ZONE;
  else {
    const m = OFFSET_RE.exec(name);
    if (m !== null) {
      const h = Number(m[2]);
      const min = Number(m[3]);
      if (h > 14 || min > 59 || (h === 14 && min > 0))
        throw invalid(
          field,
          `time zone offset ${JSON.stringify(name)} is out of range (-14:00..+14:00); use ${ZONE_FORMS}`,
        );
      const off = (m[1] === '-' ? -1 : 1) * (h * 60 + min) * 60_000;
      zone = off === 0 ? UTC_ZONE : new FixedZone(`${m[1]}${m[2]}:${m[3]}`, off);
    } else {
      if (name.length === 0 || name.length > 64 || !/^[A-Za-z0-9_+\-/]+$/.test(name)) {
        throw invalid(field, `unknown time zone ${JSON.stringify(name)}; use ${ZONE_FORMS}`);
      }
      let canonical: string;
      try {
        canonical = new Intl.DateTimeFormat(undefined, { timeZone: name }).resolvedOptions().timeZone;
      } catch {
        throw invalid(field, `unknown time zone ${JSON.stringify(name)}; use ${ZONE_FORMS}`);
      }
      zone =
        canonical === 'UTC' || canonical === 'Etc/UTC'
          ? UTC_ZONE
          : (zones.get(canonical) ?? new IanaZone(canonical));
      zones.set(canonical, zone);
    }
  }
  zones.set(name, zone);
  return zone;
}

/** Validates a time zone and returns its canonical name. @throws ActError on `field`. */
export function parseTimeZone(name: string, field: string): string {
  return resolveZone(name, field).name;
}

const DAY_MS = 86_400_000;

/** 'YYYY-MM-DD' of a local day number (days since 1970-01-01). */
function civil(days: number): string {
  // Howard Hinnant's days_from_civil inverse; pure integer arithmetic.
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return `${String(y).padStart(4, '0')}-${m < 10 ? '0' : ''}${m}-${d < 10 ? '0' : ''}${d}`;
}

/** Local day number (days since 1970-01-01 in the zone) of an instant. */
export function localDay(zone: Zone, utcMs: number): number {
  return Math.floor((utcMs + zone.offsetMs(utcMs)) / DAY_MS);
}

/**
 * The local date 'YYYY-MM-DD' of `nowMs` in `timeZone` (the daily maximum's bucket).
 * @throws ActError for an unknown zone.
 */
export function dayKey(nowMs: number, timeZone: string): string {
  return civil(localDay(resolveZone(timeZone, 'timezone'), nowMs));
}

/**
 * Milliseconds from `nowMs` to the start of the next local day in `timeZone`
 * (correct when a DST change falls on or around midnight).
 */
export function msUntilNextDay(nowMs: number, timeZone: string): number {
  const zone = resolveZone(timeZone, 'timezone');
  const o0 = zone.offsetMs(nowMs);
  const next = Math.floor((nowMs + o0) / DAY_MS) + 1;
  const midnight = next * DAY_MS; // local wall time of the next midnight
  const c1 = midnight - o0;
  const o1 = zone.offsetMs(c1);
  if (o1 === o0) return c1 - nowMs;
  // The offset changes before midnight: use the offset there, unless midnight falls in
  // a gap (local day would still be today), in which case the day starts at the change.
  const c2 = midnight - o1;
  return (localDay(zone, c2) === next ? c2 : c1) - nowMs;
}
