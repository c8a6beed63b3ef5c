import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ActError } from '../../../src/common/errors';
import {
  dayKey,
  msUntilNextDay,
  parseAllowedHours,
  parseRateLimit,
  parseTimeZone,
  validateMaxPerDay,
} from '../../../src/policy';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

function throwsOn(field: string, f: () => unknown, re?: RegExp): void {
  assert.throws(
    f,
    (e: unknown) =>
      e instanceof ActError &&
      e.code === 'INVALID_ARGUMENT' &&
      e.field === field &&
      (!re || re.test(e.message)),
  );
}

/** Every exception from a parser is an ActError INVALID_ARGUMENT carrying the field. */
function onlyActError(f: () => unknown, field: string): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ActError, String(e));
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.equal(e.field, field);
  }
}

describe('policy/constraints: rate limit', () => {
  it('accepts a table', () => {
    const table: [string, number, number][] = [
      ['100 per minute', 100, MIN],
      ['5 per second', 5, 1000],
      ['1000 per hour', 1000, HOUR],
      ['10 per day', 10, DAY],
      ['100/minute', 100, MIN],
      ['100/min', 100, MIN],
      ['  100 PER Minute ', 100, MIN],
      ['1 per 10 seconds', 1, 10_000],
      ['3 / 2 h', 3, 2 * HOUR],
      ['7 per 2 days', 7, 2 * DAY],
      ['1000000000 per s', 1e9, 1000],
      ['20/5m', 20, 5 * MIN],
    ];
    for (const [s, limit, periodMs] of table) {
      const r = parseRateLimit(s, 'constraints.rate_limit');
      assert.deepEqual([r.limit, r.periodMs, r.raw], [limit, periodMs, s], s);
    }
  });

  it('rejects garbage with the field and the accepted form', () => {
    for (const s of [
      '',
      'fast',
      '0 per minute',
      '1000000001 per minute',
      '10 per fortnight',
      '-1 per s',
      '1.5 per s',
      '10 per 0 s',
      '1 per 32 days',
      '10 per',
      'per minute',
      '10 minute',
    ]) {
      throwsOn('constraints.rate_limit', () => parseRateLimit(s, 'constraints.rate_limit'), /100 per minute/);
    }
  });

  it('property: random strings never throw anything but ActError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => onlyActError(() => parseRateLimit(s, 'f'), 'f')),
    );
  });
});

describe('policy/constraints: max per day and time zones', () => {
  it('validates max_actions_per_day', () => {
    for (const n of [0, 1, 1000, 1e9]) assert.equal(validateMaxPerDay(n, 'm'), n);
    for (const n of [-1, 1.5, 1e9 + 1, NaN, Infinity])
      throwsOn('m', () => validateMaxPerDay(n, 'm'), /0\.\.1000000000/);
  });

  it('validates zones', () => {
    assert.equal(parseTimeZone('Europe/Berlin', 'tz'), 'Europe/Berlin');
    assert.equal(parseTimeZone('UTC', 'tz'), 'UTC');
    assert.equal(parseTimeZone('Z', 'tz'), 'UTC');
    assert.equal(parseTimeZone('GMT', 'tz'), 'UTC');
    assert.equal(parseTimeZone('+0200', 'tz'), '+02:00');
    for (const z of ['Mars/Olympus', '', '+15:00', 'Europe/Berlin; drop', '../../etc'])
      throwsOn('tz', () => parseTimeZone(z, 'tz'), /IANA/);
  });
});

describe('policy/constraints: allowed hours', () => {
  const F = 'constraints.allowed_hours';
  const utc = (y: number, mo: number, d: number, h: number, mi = 0) => Date.UTC(y, mo - 1, d, h, mi);

  it('accepts a table', () => {
    for (const s of [
      '09:00-17:00 UTC',
      '09:00-17:00',
      'Mon-Fri 09:00-17:00 Europe/Berlin',
      'Sat,Sun 10:00-14:00 America/New_York',
      '22:00-06:00 UTC',
      '00:00-24:00',
      'mon,wed-fri 8:30-12:00 +02:00',
      'Fri-Mon 09:00-10:00 Z',
    ]) {
      parseAllowedHours(s, F);
    }
    assert.equal(parseAllowedHours('09:00-17:00', F).timeZone, 'UTC');
    assert.equal(parseAllowedHours('Mon-Fri 09:00-17:00 Europe/Berlin', F).timeZone, 'Europe/Berlin');
  });

  it('rejects garbage with the field', () => {
    for (const s of [
      '',
      'always',
      '9-17',
      '09:00-17:00 Mars/Base',
      'Xyz 09:00-17:00',
      '25:00-26:00',
      '09:60-10:00',
      '24:00-01:00',
      '09:00-09:00',
      'Mon-Fri 09:00-17:00 UTC extra',
      'Mon Tue 09:00-10:00',
      'Mon-Tue-Wed 09:00-10:00',
    ]) {
      throwsOn(F, () => parseAllowedHours(s, F));
    }
  });

  it('property: random strings never throw anything but ActError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 50 }), (s) => onlyActError(() => parseAllowedHours(s, F), F)),
    );
    const piece = fc.constantFrom(
      'Mon',
      'Fri',
      '-',
      ',',
      ' ',
      '09:00',
      '24:00',
      '17:30',
      'UTC',
      'Europe/Berlin',
      '+02:00',
      'x',
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }), (a) =>
        onlyActError(() => parseAllowedHours(a.join(''), F), F),
      ),
    );
  });

  it('UTC business hours: inside and outside, end exclusive', () => {
    const h = parseAllowedHours('09:00-17:00 UTC', F);
    assert.equal(h.contains(utc(2026, 1, 5, 8, 59)), false);
    assert.equal(h.contains(utc(2026, 1, 5, 9, 0)), true);
    assert.equal(h.contains(utc(2026, 1, 5, 16, 59)), true);
    assert.equal(h.contains(utc(2026, 1, 5, 17, 0)), false);
    assert.equal(h.nextOpen(utc(2026, 1, 5, 8, 0)), utc(2026, 1, 5, 9, 0));
    assert.equal(h.nextOpen(utc(2026, 1, 5, 18, 0)), utc(2026, 1, 6, 9, 0));
    assert.equal(h.nextOpen(utc(2026, 1, 5, 12, 0) + 123), utc(2026, 1, 5, 12, 0) + 123);
  });

  it('across midnight: the day range applies to the start day', () => {
    const h = parseAllowedHours('Fri 22:00-06:00 UTC', F); // 2026-01-09 is a Friday
    assert.equal(h.contains(utc(2026, 1, 9, 21, 59)), false);
    assert.equal(h.contains(utc(2026, 1, 9, 22, 0)), true);
    assert.equal(h.contains(utc(2026, 1, 10, 5, 59)), true); // Saturday morning, started Friday
    assert.equal(h.contains(utc(2026, 1, 10, 6, 0)), false);
    assert.equal(h.contains(utc(2026, 1, 10, 23, 0)), false); // Saturday night: not a start day
    assert.equal(h.contains(utc(2026, 1, 9, 3, 0)), false); // Friday morning: Thursday did not start
    assert.equal(h.nextOpen(utc(2026, 1, 10, 6, 0)), utc(2026, 1, 16, 22, 0));
    const every = parseAllowedHours('22:00-06:00', F);
    assert.equal(every.contains(utc(2026, 1, 5, 23, 30)), true);
    assert.equal(every.contains(utc(2026, 1, 5, 12, 0)), false);
  });

  it('day ranges and whole days', () => {
    const h = parseAllowedHours('Mon-Fri 09:00-17:00 UTC', F);
    assert.equal(h.contains(utc(2026, 1, 9, 10)), true); // Friday
    assert.equal(h.contains(utc(2026, 1, 10, 10)), false); // Saturday
    assert.equal(h.nextOpen(utc(2026, 1, 10, 10)), utc(2026, 1, 12, 9)); // Monday
    const wrap = parseAllowedHours('Fri-Mon 00:00-24:00 UTC', F);
    assert.equal(wrap.contains(utc(2026, 1, 11, 23, 59)), true); // Sunday
    assert.equal(wrap.contains(utc(2026, 1, 13, 0, 0)), false); // Tuesday
    assert.equal(wrap.nextOpen(utc(2026, 1, 13, 5)), utc(2026, 1, 16, 0)); // Friday midnight
  });

  it('fixed offsets', () => {
    const h = parseAllowedHours('09:00-17:00 +02:00', F);
    assert.equal(h.contains(utc(2026, 1, 5, 7, 0)), true);
    assert.equal(h.contains(utc(2026, 1, 5, 6, 59)), false);
    assert.equal(h.nextOpen(utc(2026, 1, 5, 16, 0)), utc(2026, 1, 6, 7, 0));
  });

  it('Europe/Berlin across the spring DST change (2026-03-29)', () => {
    const h = parseAllowedHours('09:00-17:00 Europe/Berlin', F);
    assert.equal(h.contains(utc(2026, 3, 28, 8, 0)), true); // 09:00 CET
    assert.equal(h.contains(utc(2026, 3, 28, 7, 59)), false);
    assert.equal(h.contains(utc(2026, 3, 29, 7, 0)), true); // 09:00 CEST
    assert.equal(h.contains(utc(2026, 3, 29, 6, 59)), false);
    assert.equal(h.contains(utc(2026, 3, 29, 15, 0)), false); // 17:00 CEST
    assert.equal(h.nextOpen(utc(2026, 3, 28, 20, 0)), utc(2026, 3, 29, 7, 0));
    // A window starting inside the gap (02:00-03:00 does not exist) opens at the change.
    const gap = parseAllowedHours('Sun 02:30-04:00 Europe/Berlin', F);
    assert.equal(gap.nextOpen(utc(2026, 3, 28, 12, 0)), utc(2026, 3, 29, 1, 0));
    assert.equal(gap.contains(utc(2026, 3, 29, 1, 0)), true); // 03:00 CEST
    assert.equal(gap.contains(utc(2026, 3, 29, 0, 59)), false); // 01:59 CET
  });

  it('Europe/Berlin across the autumn DST change (2026-10-25)', () => {
    const h = parseAllowedHours('09:00-17:00 Europe/Berlin', F);
    assert.equal(h.contains(utc(2026, 10, 24, 7, 0)), true); // 09:00 CEST
    assert.equal(h.contains(utc(2026, 10, 25, 7, 0)), false); // 08:00 CET
    assert.equal(h.contains(utc(2026, 10, 25, 8, 0)), true); // 09:00 CET
    assert.equal(h.nextOpen(utc(2026, 10, 24, 20, 0)), utc(2026, 10, 25, 8, 0));
    // 02:00-02:30 happens twice; after the first pass it reopens at the change.
    const twice = parseAllowedHours('02:00-02:30 Europe/Berlin', F);
    assert.equal(twice.contains(utc(2026, 10, 25, 0, 10)), true); // 02:10 CEST
    assert.equal(twice.contains(utc(2026, 10, 25, 0, 45)), false); // 02:45 CEST
    assert.equal(twice.nextOpen(utc(2026, 10, 25, 0, 45)), utc(2026, 10, 25, 1, 0)); // 02:00 CET
    assert.equal(twice.contains(utc(2026, 10, 25, 1, 29)), true);
    assert.equal(twice.nextOpen(utc(2026, 10, 25, 1, 30)), utc(2026, 10, 26, 1, 0));
  });

  it('America/New_York weekends, EST and EDT', () => {
    const h = parseAllowedHours('Sat,Sun 10:00-14:00 America/New_York', F);
    assert.equal(h.contains(utc(2026, 1, 10, 15, 0)), true); // Sat 10:00 EST
    assert.equal(h.contains(utc(2026, 1, 10, 14, 59)), false);
    assert.equal(h.contains(utc(2026, 1, 12, 15, 0)), false); // Monday
    assert.equal(h.contains(utc(2026, 7, 11, 14, 0)), true); // Sat 10:00 EDT
    assert.equal(h.nextOpen(utc(2026, 3, 2, 12, 0)), utc(2026, 3, 7, 15, 0)); // Sat before DST
    assert.equal(h.nextOpen(utc(2026, 3, 7, 20, 0)), utc(2026, 3, 8, 14, 0)); // Sun, first EDT day
  });

  it('property: nextOpen is open and nothing earlier is (minute scan)', () => {
    const specs = [
      'Mon-Fri 09:00-17:00 Europe/Berlin',
      'Sat 23:30-00:15 America/New_York',
      '02:00-02:30 Europe/Berlin',
      'Sun 02:30-04:00 Europe/Berlin',
      'Tue 12:00-12:05 Australia/Lord_Howe',
    ];
    const start = utc(2026, 3, 20, 0);
    fc.assert(
      fc.property(
        fc.constantFrom(...specs),
        fc.integer({ min: 0, max: (230 * DAY) / MIN }),
        (spec, minutes) => {
          const h = parseAllowedHours(spec, F);
          const now = start + minutes * MIN;
          const open = h.nextOpen(now);
          assert.ok(open >= now && h.contains(open), `${spec} ${new Date(now).toISOString()}`);
          for (let t = open - MIN; t >= now; t -= MIN)
            assert.equal(h.contains(t), false, `${spec} open earlier at ${new Date(t).toISOString()}`);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('policy/constraints: day keys', () => {
  it('dayKey and msUntilNextDay around midnight in a zone', () => {
    const beforeMidnight = Date.UTC(2026, 0, 5, 22, 59); // 23:59 in Berlin (CET)
    assert.equal(dayKey(beforeMidnight, 'Europe/Berlin'), '2026-01-05');
    assert.equal(dayKey(beforeMidnight + MIN, 'Europe/Berlin'), '2026-01-06');
    assert.equal(dayKey(beforeMidnight, 'UTC'), '2026-01-05');
    assert.equal(msUntilNextDay(beforeMidnight, 'Europe/Berlin'), MIN);
    assert.equal(msUntilNextDay(beforeMidnight + MIN, 'Europe/Berlin'), DAY);
    assert.equal(msUntilNextDay(Date.UTC(2026, 0, 5, 12), 'UTC'), 12 * HOUR);
    assert.equal(dayKey(Date.UTC(2026, 0, 5, 4, 59), 'America/New_York'), '2026-01-04');
    assert.equal(dayKey(Date.UTC(2026, 0, 5, 5, 0), 'America/New_York'), '2026-01-05');
    assert.equal(dayKey(Date.UTC(2024, 1, 29, 12), '+14:00'), '2024-03-01');
    assert.equal(dayKey(Date.UTC(1969, 11, 31, 23), 'UTC'), '1969-12-31');
  });

  it('msUntilNextDay across DST days is 23 or 25 hours', () => {
    assert.equal(msUntilNextDay(Date.UTC(2026, 2, 28, 23, 0), 'Europe/Berlin'), 23 * HOUR); // 00:00 CET on the 29th
    assert.equal(msUntilNextDay(Date.UTC(2026, 9, 24, 22, 0), 'Europe/Berlin'), 25 * HOUR); // 00:00 CEST on the 25th
    // America/Santiago skips midnight (00:00 -> 01:00) on 2026-09-06: the day starts at the change.
    const before = Date.UTC(2026, 8, 6, 3, 59); // 23:59 -04 on the 5th
    const ms = msUntilNextDay(before, 'America/Santiago');
    assert.equal(ms, MIN);
    assert.equal(dayKey(before + ms, 'America/Santiago'), '2026-09-06');
  });

  it('property: dayKey changes exactly at now + msUntilNextDay', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', '-09:30'),
        fc.integer({ min: 0, max: 3 * 366 * 24 * 60 }),
        (tz, minutes) => {
          const now = Date.UTC(2025, 0, 1) + minutes * MIN;
          const ms = msUntilNextDay(now, tz);
          assert.ok(ms > 0 && ms <= 25 * HOUR);
          assert.equal(dayKey(now + ms - 1, tz), dayKey(now, tz));
          assert.notEqual(dayKey(now + ms, tz), dayKey(now, tz));
        },
      ),
      { numRuns: 500 },
    );
  });
});
