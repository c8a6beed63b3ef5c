/**
 * Control-plane store benchmarks, both engines in one run: LMDB in a temp dir, and PostgreSQL on a
 * throwaway cluster started for the run (test/support/postgres.ts; fsync and synchronous_commit on,
 * as in production), on this machine's disk.
 *
 * - audit append (batches of 100/1000, LMDB), audit ingest of sealed hash chains in batches of 500
 *   (the sidecars' path: chain checks included) on both engines, and on PostgreSQL also 4 sources
 *   ingesting at once (several sidecars, one replica);
 * - audit export and paged query;
 * - admin writes: sequential single-row write transactions (one put + one change), durable when
 *   they resolve; on PostgreSQL also 3 replicas writing at once (they serialize on the revision row).
 *
 * Run standalone with `npx tsx bench/store.bench.ts [--quick]`, or `run()` from the bench runner.
 * Results are records/s, pages/s or ops/s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AuditChain } from '../src/audit/chain';
import { newSortableId } from '../src/common/ids';
import { openLmdbStore, type AuditRecord, type Store } from '../src/store';
import { openPostgresStore } from '../src/store/postgres/postgres-store';
import { startPostgresCluster } from '../test/support/postgres';

/** Records' times: recent, so PostgreSQL puts them in monthly partitions as in production. */
const T0 = Date.now() - 3_600_000;
/** Audit ingest target on PostgreSQL (records/s, batches of 500). */
export const PG_INGEST_TARGET = 20_000;

function record(i: number): AuditRecord {
  return {
    audit_id: newSortableId('audit', T0 + i),
    time: new Date(T0 + i).toISOString(),
    agent_id: `agent_${i % 50}`,
    token_id: `tok_${i % 500}`,
    action: i % 3 === 0 ? 'files.write' : 'files.read',
    resource: `file:/data/${i % 1000}.csv`,
    decision: 1 + (i % 3),
    reason_code: i % 7,
    reason: 'allowed by policy_a',
    context: { ip: '10.0.0.1', reason: 'nightly report' },
    policy_ids: ['policy_a', 'policy_b'],
    policy_revision: 42,
    source: `sc_${i % 4}`,
    latency_us: 150,
    seq: i,
    prev_hash: 'ab'.repeat(32),
    hash: 'cd'.repeat(32),
    approval_id: '',
    allowed: i % 3 === 0,
  };
}

const perSec = (n: number, ms: number): number => Math.round(n / (ms / 1000));

interface Counter {
  next: number;
}

/** Sealed batches of `size` for `sources` chains, made before timing (sealing is the sidecar's cost). */
function sealedBatches(c: Counter, sources: string[], batches: number, size: number): AuditRecord[][][] {
  return sources.map((source) => {
    const chain = new AuditChain(source, 0, '');
    return Array.from({ length: batches }, () =>
      Array.from({ length: size }, () => chain.seal(record(c.next++))),
    );
  });
}

async function auditIngest(
  store: Store,
  c: Counter,
  prefix: string,
  sources: number,
  total: number,
): Promise<number> {
  const size = 500;
  const perSource = Math.ceil(total / size / sources);
  const work = sealedBatches(
    c,
    Array.from({ length: sources }, (_, k) => `${prefix}${k}`),
    perSource,
    size,
  );
  const t0 = performance.now();
  // Each source ships its batches in order, one at a time (as a sidecar's shipper does).
  await Promise.all(
    work.map(async (batches) => {
      for (const b of batches) await store.audit.ingest(b);
    }),
  );
  return perSec(sources * perSource * size, performance.now() - t0);
}

async function adminWrites(stores: Store[], writes: number, tag: string): Promise<number> {
  const per = Math.ceil(writes / stores.length);
  const t0 = performance.now();
  await Promise.all(
    stores.map(async (s, k) => {
      for (let i = 0; i < per; i++) {
        await s.write(async (w) => {
          w.put('agents', `agent_${tag}_${k}_${i}`, { name: `a${i}` });
          w.emit({ kind: { $case: 'agent_deleted', value: `agent_${tag}_${k}_${i}` } });
        });
      }
    }),
  );
  return perSec(per * stores.length, performance.now() - t0);
}

async function exportAndQuery(store: Store, results: Record<string, number>, prefix: string): Promise<void> {
  let t0 = performance.now();
  let seen = 0;
  for await (const r of store.audit.export({})) if (r.audit_id) seen++;
  results[`${prefix}audit_export`] = perSec(seen, performance.now() - t0);
  // Newest-first pages of 100 for one agent (index walk).
  const pages = 200;
  t0 = performance.now();
  let cursor = '';
  for (let i = 0; i < pages; i++) {
    const page = await store.audit.query({ agent_id: 'agent_7' }, cursor, 100);
    cursor = page.nextCursor;
  }
  results[`${prefix}audit_query_page100`] = perSec(pages, performance.now() - t0);
}

async function runLmdb(quick: boolean, results: Record<string, number>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'act-store-bench-'));
  const store = await openLmdbStore({ dataDir: dir });
  try {
    const c: Counter = { next: 0 };
    for (const batch of [100, 1000]) {
      const total = (quick ? 20 : 100) * batch;
      const t0 = performance.now();
      for (let done = 0; done < total; done += batch) {
        const recs = Array.from({ length: batch }, () => record(c.next++));
        await store.audit.append(recs); // sequential: each batch is one durable commit
      }
      results[`store.audit_append_b${batch}`] = perSec(total, performance.now() - t0);
    }
    results['store.audit_ingest_b500'] = await auditIngest(store, c, 'sc_l', 1, quick ? 20_000 : 100_000);
    // Fill to the export size, then stream everything oldest first.
    const exportSize = quick ? 40_000 : 200_000;
    while (c.next < exportSize) {
      const n = Math.min(5000, exportSize - c.next);
      await store.audit.append(Array.from({ length: n }, () => record(c.next++)));
    }
    await exportAndQuery(store, results, 'store.');
    results['store.write_commit'] = await adminWrites([store], quick ? 200 : 2000, 'l');
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runPostgres(quick: boolean, results: Record<string, number>): Promise<void> {
  const cluster = await startPostgresCluster(); // production settings: fsync, synchronous_commit on
  const stores: Store[] = [];
  try {
    const url = await cluster.createDatabase();
    for (let i = 0; i < 3; i++) stores.push(await openPostgresStore({ databaseUrl: url }));
    const store = stores[0]!;
    const c: Counter = { next: 0 };
    // Warm-up: the month's partition is created and the connections opened.
    await auditIngest(store, c, 'sc_warm', 1, 2000);
    const total = quick ? 20_000 : 100_000;
    const cpu0 = process.cpuUsage();
    const server0 = cluster.serverCpuSeconds();
    results['store.pg.audit_ingest_b500'] = await auditIngest(store, c, 'sc_p', 1, total);
    // CPU per record, this process and the server together: what the rate would be with the CPU to
    // ourselves (on a machine shared with other work the wall-clock rate above is lower).
    const cpu = process.cpuUsage(cpu0);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6 + (cluster.serverCpuSeconds() - server0);
    results['store.pg.audit_ingest_b500_per_cpu_second'] = Math.round(total / cpuSeconds);
    results['store.pg.audit_ingest_b500_4_sources'] = await auditIngest(
      store,
      c,
      'sc_q',
      4,
      quick ? 20_000 : 100_000,
    );
    await exportAndQuery(store, results, 'store.pg.');
    const writes = quick ? 200 : 2000;
    results['store.pg.write_commit'] = await adminWrites([store], writes, 'p');
    results['store.pg.write_commit_3_replicas'] = await adminWrites(stores, writes, 'q');
  } finally {
    await Promise.all(stores.map((s) => s.close()));
    await cluster.stop();
  }
}

/** Benchmarks both store engines; `quick` cuts record counts for CI smoke runs. */
export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  const results: Record<string, number> = {};
  await runLmdb(opts.quick, results);
  await runPostgres(opts.quick, results);
  return results;
}

/** Units by result key. */
export function unit(key: string): string {
  if (key.endsWith('_per_cpu_second')) return 'records/CPU-s';
  if (key.includes('audit_query')) return 'pages/s';
  if (key.includes('audit')) return 'records/s';
  return 'ops/s';
}

/** The PostgreSQL ingest target's verdict. */
export function notes(r: Record<string, number>): string[] {
  const v = r['store.pg.audit_ingest_b500'];
  if (v === undefined) return [];
  const verdict = v >= PG_INGEST_TARGET ? 'PASS' : 'FAIL';
  const perCpu = r['store.pg.audit_ingest_b500_per_cpu_second'];
  return [
    `PostgreSQL audit ingest, batches of 500, one source: ${v.toLocaleString('en-US')} records/s — ` +
      `target ≥ ${PG_INGEST_TARGET.toLocaleString('en-US')}: ${verdict}` +
      (perCpu === undefined
        ? ''
        : ` (${perCpu.toLocaleString('en-US')} records per CPU second of client and server together)`),
  ];
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      for (const [name, ops] of Object.entries(r))
        console.log(`${name.padEnd(40)} ${ops.toLocaleString('en-US')} /s`);
      for (const line of notes(r)) console.log(line);
    },
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
