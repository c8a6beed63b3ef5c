/** The disk floor: one small write + fdatasync, as the `disk` audit level pays per group commit. */
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pct, round1 } from './procs';

/** p50/p99/max µs of a 100-byte append + fdatasync on a file in `dir`, over `n` samples (after 20). */
export function fdatasyncFloor(dir: string, n: number): { p50: number; p99: number; max: number } {
  const fd = openSync(join(dir, 'fdatasync-floor.log'), 'a');
  const buf = Buffer.alloc(100, 0x61);
  const times = new Float64Array(n);
  try {
    for (let i = -20; i < n; i++) {
      const t = process.hrtime.bigint();
      writeSync(fd, buf);
      fdatasyncSync(fd);
      if (i >= 0) times[i] = Number(process.hrtime.bigint() - t) / 1000;
    }
  } finally {
    closeSync(fd);
  }
  times.sort();
  return { p50: round1(pct(times, 0.5)), p99: round1(pct(times, 0.99)), max: round1(times[n - 1]!) };
}
