/**
 * Audit shipping from the sidecar's spool to the control plane (built dist/, ACT_BENCH_DIST):
 *
 * 1. Under load: the load generator runs 64 checks in flight against `act sidecar`
 *    (--audit-durability disk) while act_audit_shipped_total and act_audit_spool_depth are
 *    polled: records/s acknowledged upstream during the run, the deepest spool seen, and the
 *    time from the last check to an empty spool.
 * 2. Outage: the control plane is SIGKILLed and checks go on (the replica stays fresh for the
 *    run: --stale-after 10m, a longer bound rather than serve-stale) — the spool depth and bytes
 *    at the end of the outage. Then the control plane restarts on the same data dir and gRPC
 *    port: the time until the sidecar's Sync stream is back (its reconnect backoff, up to 10 s),
 *    and from then until the spool is empty, i.e. the drain rate in records/s.
 *
 * Every check of both phases must be acknowledged (shipped_total counts them) at the end.
 * Run standalone with `npx tsx bench/audit-drain.bench.ts [--quick]`.
 */
import path from 'node:path';
import { runLoad } from './lib/load';
import { metric, requireDist, round1, Scope, startControlPlane, startSidecar, waitFor } from './lib/procs';
import { CHECK, createWorld, waitAllow } from './lib/world';

export const describe =
  'Audit records from the sidecar spool to the control plane: records/s acknowledged during a 64-in-flight load; ' +
  'spool depth after a control-plane outage (SIGKILL) with checks going on, then reconnect and drain time after a restart.';

export const unit = (key: string): string =>
  key.endsWith('_ms')
    ? 'ms'
    : key.endsWith('_mb')
      ? 'MB'
      : key.endsWith('_per_s') || key.endsWith('_rps')
        ? 'records/s'
        : key.endsWith('_attempts')
          ? 'attempts'
          : 'records';

export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  requireDist();
  const scope = new Scope();
  const out: Record<string, number> = {};
  try {
    const root = scope.dir('audit-drain');
    const cpDir = path.join(root, 'cp');
    let cp = await startControlPlane(scope, cpDir);
    const grpcPort = cp.grpcPort;
    // Checks go on through the outage: a policy without leased budgets (see createWorld).
    const world = await createWorld(cp.api, { budgets: false });
    const sc = await startSidecar(scope, path.join(root, 'sc'), `127.0.0.1:${grpcPort}`, 'disk', [
      '--stale-after',
      '10m',
    ]);
    await waitAllow(sc.unix, world.token);
    const m = (name: string) => metric(sc.url, name).then((v) => v ?? NaN);
    const drained = (timeoutMs: number) =>
      waitFor('empty spool', async () => ((await m('act_audit_spool_depth')) === 0 ? true : undefined), {
        timeoutMs,
        intervalMs: 10,
      });
    await drained(30_000);
    const shipped0 = await m('act_audit_shipped_total');
    const loadArgs = (durationMs: number) => ({
      target: sc.unix,
      tokens: [world.token],
      ...CHECK,
      phases: [{ name: 'c64', concurrency: 64, warmup: 0, count: 10_000_000, durationMs }],
      serverPids: [sc.proc.pid],
    });

    // 1. Shipping under load.
    let maxDepth = 0;
    let polling = true;
    const poller = (async () => {
      while (polling) {
        maxDepth = Math.max(maxDepth, await m('act_audit_spool_depth'));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const loadStart = performance.now();
    const [loaded] = await runLoad(scope, loadArgs(opts.quick ? 1500 : 6000), 'loadgen under load');
    const loadEnd = performance.now();
    const shippedAtEnd = await m('act_audit_shipped_total');
    polling = false;
    await poller;
    await drained(60_000);
    const tailMs = performance.now() - loadEnd;
    out['audit.load_checks_per_s'] = loaded!.rps;
    // The loadgen's spawn is inside [loadStart, loadEnd]; the shipped rate is over the checks' own time.
    out['audit.load_shipped_per_s'] = Math.round(
      (shippedAtEnd - shipped0) / (Math.min(loaded!.elapsed_ms, loadEnd - loadStart) / 1000),
    );
    out['audit.load_max_depth'] = maxDepth;
    out['audit.load_last_check_to_empty_ms'] = Math.round(tailMs);

    // 2. Outage: SIGKILL the control plane, keep checking.
    const linesBefore = sc.proc.output.length;
    await cp.proc.kill();
    const [during] = await runLoad(scope, loadArgs(opts.quick ? 1000 : 10_000), 'loadgen during outage');
    const depth = await m('act_audit_spool_depth');
    out['audit.outage_checks'] = during!.count;
    out['audit.outage_checks_per_s'] = during!.rps;
    out['audit.outage_depth'] = depth;
    out['audit.outage_spool_mb'] = round1((await m('act_audit_spool_bytes')) / 1e6);

    // Restart on the same data dir and port; time reconnect and drain.
    const t0 = performance.now();
    cp = await startControlPlane(scope, cpDir, { grpcPort });
    const tListening = performance.now();
    await waitFor(
      'sync reconnected',
      async () => ((await m('act_sync_connected')) === 1 ? true : undefined),
      {
        timeoutMs: 30_000,
        intervalMs: 5,
      },
    );
    const tConnected = performance.now();
    // The sidecar's own reconnect attempts (its backoff: full jitter, 200 ms doubling to 10 s); a
    // failed attempt can also wait out grpc-js's channel backoff (1 s × 1.6 per failure, up to 120 s).
    out['audit.reconnect_attempts'] = sc.proc.output
      .slice(linesBefore)
      .filter((l) => l.includes('"sync disconnected"')).length;
    await drained(120_000);
    const tDrained = performance.now();
    out['audit.restart_to_listening_ms'] = Math.round(tListening - t0);
    out['audit.listening_to_reconnected_ms'] = Math.round(tConnected - tListening);
    out['audit.reconnected_to_empty_ms'] = Math.round(tDrained - tConnected);
    out['audit.drain_per_s'] = Math.round(depth / ((tDrained - tConnected) / 1000));

    const shipped = (await m('act_audit_shipped_total')) - shipped0;
    const checks = loaded!.count + during!.count;
    if (shipped !== checks) throw new Error(`shipped ${shipped} audit records for ${checks} checks`);
    out['audit.shipped_total'] = shipped;
    return out;
  } finally {
    await scope.close();
  }
}

export function notes(r: Record<string, number>): string[] {
  return [
    `spool drains at ${r['audit.drain_per_s']!.toLocaleString('en-US')} records/s once reconnected ` +
      `(${r['audit.outage_depth']} records in ${r['audit.reconnected_to_empty_ms']} ms); ` +
      `reconnect after the restart took ${r['audit.listening_to_reconnected_ms']} ms ` +
      `(after ${r['audit.reconnect_attempts']} failed attempts: the sidecar's backoff, ≤ 10 s, on top of grpc-js's channel backoff)`,
  ];
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(40)} ${v} ${unit(k)}`);
      for (const line of notes(r)) console.log(line);
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
