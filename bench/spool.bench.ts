/**
 * Audit spool benchmarks on real files in a temp dir: append latency (p50/p99, µs) with one
 * append in flight and throughput (records/s) with 64 in flight, for `disk` (group commit) and
 * `os` (in the kernel, flushed every 5 ms) durability, beside the floor: one small write plus
 * fdatasync on the same filesystem. Run standalone with `npx tsx bench/spool.bench.ts [--quick]`.
 */
import * as fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AuditSpool, type Durability } from '../src/audit';
import { AuditRecord } from '../src/gen/act/v1/admin';

export const describe =
  'Audit spool on a temp dir: append latency with 1 in flight (p50/p99 µs) and records/s with 64 in flight, ' +
  'for disk (fdatasync group commit) and os (written to the kernel, fdatasync every 5 ms) durability; ' +
  'floor: one 256-byte write + fdatasync on the same filesystem.';

export const unit = (key: string): string => (key.endsWith('_us') ? 'µs' : 'records/s');

const T0 = 1_700_000_000_000;
const record = (i: number): AuditRecord =>
  AuditRecord.fromPartial({
    audit_id: `audit_${String(i).padStart(12, '0')}`,
    time: new Date(T0 + i).toISOString(),
    agent_id: `agent_${i % 50}`,
    token_id: `tok_${i % 500}`,
    action: 'files.read',
    resource: `file:/data/${i % 1000}.csv`,
    decision: 1,
    reason: 'allowed by policy_a',
    context: { ip: '10.0.0.1', reason: 'nightly report' },
    policy_ids: ['policy_a', 'policy_b'],
    policy_revision: 42,
    latency_us: 150,
    allowed: true,
  });

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}
const us = (ms: number): number => Math.round(ms * 1000 * 10) / 10;
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function latency(
  dir: string,
  durability: Durability,
  n: number,
): Promise<{ p50: number; p99: number }> {
  const spool = await AuditSpool.open({ dir, source: 'sc_bench', durability });
  const times: number[] = [];
  try {
    for (let i = 0; i < n + 50; i++) {
      const t = performance.now();
      await spool.append(record(i));
      if (i >= 50) times.push(performance.now() - t);
      if (i % 64 === 0) await tick(); // let the os-mode flush timer run, untimed
    }
  } finally {
    await spool.close();
  }
  times.sort((a, b) => a - b);
  return { p50: us(pct(times, 0.5)), p99: us(pct(times, 0.99)) };
}

async function throughput(dir: string, durability: Durability, n: number, inFlight: number): Promise<number> {
  const spool = await AuditSpool.open({ dir, source: 'sc_bench', durability });
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      await spool.append(record(next++));
      if (next % 64 === 0) await tick();
    }
  };
  try {
    const t = performance.now();
    await Promise.all(Array.from({ length: inFlight }, worker));
    return Math.round(n / ((performance.now() - t) / 1000));
  } finally {
    await spool.close();
  }
}

async function fdatasyncFloor(dir: string, n: number): Promise<{ p50: number; p99: number }> {
  const fd = fs.openSync(join(dir, 'floor.log'), 'a');
  const buf = Buffer.alloc(256, 1);
  const times: number[] = [];
  try {
    for (let i = 0; i < n + 20; i++) {
      const t = performance.now();
      fs.writeSync(fd, buf);
      await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
      if (i >= 20) times.push(performance.now() - t);
    }
  } finally {
    fs.closeSync(fd);
  }
  times.sort((a, b) => a - b);
  return { p50: us(pct(times, 0.5)), p99: us(pct(times, 0.99)) };
}

export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  const root = mkdtempSync(join(tmpdir(), 'act-spool-bench-'));
  const nLat = opts.quick ? 300 : 2000;
  const nTput = opts.quick ? 5000 : 50_000;
  const out: Record<string, number> = {};
  try {
    const floor = await fdatasyncFloor(join(root), nLat);
    out.fdatasync_p50_us = floor.p50;
    out.fdatasync_p99_us = floor.p99;
    for (const d of ['disk', 'os'] as Durability[]) {
      const lat = await latency(join(root, `${d}-lat`), d, nLat);
      out[`${d}_append_1_in_flight_p50_us`] = lat.p50;
      out[`${d}_append_1_in_flight_p99_us`] = lat.p99;
      out[`${d}_append_64_in_flight_records_per_s`] = await throughput(join(root, `${d}-tput`), d, nTput, 64);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return out;
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(40)} ${v} ${unit(k)}`);
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
