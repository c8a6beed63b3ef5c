/**
 * Control-plane store benchmarks on a real LMDB file in a temp dir: audit append
 * throughput (durable batches of 100 and 1000), audit export and query, and
 * store write commits. Run standalone with `npx tsx bench/store.bench.ts [--quick]`,
 * or call `run()` from the bench runner. Results are records/s (or ops/s).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { newSortableId } from '../src/common/ids';
import { openLmdbStore, type AuditRecord } from '../src/store';

const T0 = 1_700_000_000_000;

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

/** Benchmarks the LMDB store; `quick` cuts record counts for CI smoke runs. */
export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'act-store-bench-'));
  const store = await openLmdbStore({ dataDir: dir });
  try {
    const results: Record<string, number> = {};
    let next = 0;

    for (const batch of [100, 1000]) {
      const total = (opts.quick ? 20 : 100) * batch;
      const t0 = performance.now();
      for (let done = 0; done < total; done += batch) {
        const recs = Array.from({ length: batch }, () => record(next++));
        await store.audit.append(recs); // sequential: each batch is one durable commit
      }
      results[`store.audit_append_b${batch}`] = perSec(total, performance.now() - t0);
    }

    // Fill to the export size, then stream everything oldest first.
    const exportSize = opts.quick ? 20_000 : 100_000;
    while (next < exportSize) {
      const n = Math.min(5000, exportSize - next);
      await store.audit.append(Array.from({ length: n }, () => record(next++)));
    }
    let t0 = performance.now();
    let seen = 0;
    for await (const r of store.audit.export({})) if (r.audit_id) seen++;
    results['store.audit_export'] = perSec(seen, performance.now() - t0);

    // Newest-first pages of 100 for one agent (index walk).
    const pages = opts.quick ? 50 : 500;
    t0 = performance.now();
    let cursor = '';
    for (let i = 0; i < pages; i++) {
      const page = await store.audit.query({ agent_id: 'agent_7' }, cursor, 100);
      cursor = page.nextCursor;
    }
    results['store.audit_query_page100'] = perSec(pages, performance.now() - t0);

    // Sequential durable store writes (one put + one change each).
    const writes = opts.quick ? 200 : 2000;
    t0 = performance.now();
    for (let i = 0; i < writes; i++) {
      await store.write(async (w) => {
        w.put('agents', `agent_${i}`, { name: `a${i}` });
        w.emit({ kind: { $case: 'agent_deleted', value: `agent_${i}` } });
      });
    }
    results['store.write_commit'] = perSec(writes, performance.now() - t0);
    return results;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      for (const [name, ops] of Object.entries(r))
        console.log(`${name.padEnd(28)} ${ops.toLocaleString('en-US')} /s`);
    },
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
