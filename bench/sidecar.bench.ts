/**
 * The sidecar's CheckPermission end to end, beside its floors, all in one run:
 *
 * - floors: a grpc-js echo server (bench/lib/echo-server.ts) answering the same
 *   CheckPermissionResponse bytes a real sidecar ALLOW carries, and the disk's fdatasync
 *   latency (100-byte write + fdatasync in the temp dir the sidecars' data dirs live in);
 * - `act sidecar` from the built dist/ (ACT_BENCH_DIST) at --audit-durability os and disk,
 *   synced from a real control plane whose store holds 100,000 agents (10,000 quick) besides
 *   the seed's, so each sidecar's replica holds them too; the seed's check (agent, Customer
 *   Support Policy without allowed_hours and with unreachable limits, a real token, the seed's
 *   resource and context);
 * - with ACT_BENCH_BASELINE=<another build's dist> (e.g. a worktree of an earlier commit, built),
 *   the same two sidecars and their own control plane from that build, measured in the same
 *   rounds: the A/B.
 *
 * One load generator (bench/lib/loadgen.ts, its own process, one grpc-js connection, pinned to
 * CPU 0 while every server is pinned to CPU 1 when taskset and two CPUs exist; the control
 * planes are not pinned) drives every target over TCP and over a unix socket: latency with 1
 * call in flight (p50/p99/p99.9), throughput with 16 and 64 in flight, server CPU µs per call
 * from /proc/<pid>/stat around the timed part, and the server's own event-loop delay (p99, max)
 * over it from its /metrics. Over TCP, round 1 also runs 60 s (3 s quick) open loop at 2,000
 * calls/s: a call is sent when due whether or not earlier ones answered, and its latency counts
 * from then. Resident memory of each sidecar is read after its 64-in-flight run. The sidecar's
 * figures include shipping its audit records to its control plane on the same machine (its CPU
 * per call is `cp_cpu`); the spool is drained between runs. The full run makes two rounds, each
 * running every target in turn; each figure is the best of the rounds (lowest latency and CPU,
 * highest throughput), the closest to the uncontended cost on a shared machine. Quick: one
 * round, fewer calls, and over the unix socket latency only.
 *
 * Run standalone with `npx tsx bench/sidecar.bench.ts [--quick]`.
 */
import path from 'node:path';
import { runLoad, type LoadArgs, type Phase, type PhaseResult } from './lib/load';
import { fdatasyncFloor } from './lib/floors';
import {
  CAN_PIN,
  DIST,
  metric,
  requireDist,
  rssMb,
  Scope,
  startControlPlane,
  startSidecar,
  waitFor,
  type SidecarProc,
} from './lib/procs';
import { CHECK, createWorld, seedAgents, waitAllow } from './lib/world';

export const describe =
  'CheckPermission over gRPC against a grpc-js echo server (same response bytes) and `act sidecar` at audit ' +
  'durability os and disk (replicas holding 100k agents), driven by one load generator in its own process ' +
  '(pinned to another CPU than the servers), over TCP and a unix socket: latency at 1 in flight ' +
  "(p50/p99/p99.9), throughput at 16/64 in flight, server CPU µs per call from /proc, the server's " +
  'event-loop delay, 60 s open loop at 2,000/s; floor for disk: 100-byte write + fdatasync on the same ' +
  'filesystem. Best of 2 interleaved rounds (1 quick). ACT_BENCH_BASELINE=<dist> adds another build (A/B).';

export function unit(key: string): string {
  if (key.includes('cpu_us')) return 'µs CPU/call';
  if (key.includes('_us')) return 'µs';
  if (key.includes('rps')) return 'calls/s';
  if (key.includes('_mb')) return 'MB';
  if (key.includes('entries')) return 'agents';
  return '';
}

type Target = 'echo' | 'os' | 'disk' | 'os_base' | 'disk_base';
const TRANSPORTS = ['tcp', 'unix'] as const;
const SERVER_CPU = 1;
const LOADGEN_CPU = 0;
const RATE = 2000;

/** The phases of one run; quick mode times only latency (1 in flight) over the unix socket. */
function phases(quick: boolean, transport: 'tcp' | 'unix', round: number): Phase[] {
  if (quick && transport === 'unix')
    return [{ name: 'c1', concurrency: 1, warmup: 300, count: 1000, durationMs: 800 }];
  const open: Phase[] =
    transport === 'tcp' && round === 1
      ? [
          {
            name: 'rate',
            concurrency: 16,
            warmup: 1000,
            rate: RATE,
            count: RATE * (quick ? 3 : 60),
            durationMs: (quick ? 3 : 60) * 1000,
          },
        ]
      : [];
  return quick
    ? [
        { name: 'c1', concurrency: 1, warmup: 300, count: 1000, durationMs: 800 },
        { name: 'c16', concurrency: 16, warmup: 300, count: 3000, durationMs: 700 },
        { name: 'c64', concurrency: 64, warmup: 300, count: 4000, durationMs: 900 },
        ...open,
      ]
    : [
        { name: 'c1', concurrency: 1, warmup: 1000, count: 10_000, durationMs: 8000 },
        { name: 'c16', concurrency: 16, warmup: 2000, count: 20_000, durationMs: 5000 },
        { name: 'c64', concurrency: 64, warmup: 2000, count: 25_000, durationMs: 5000 },
        ...open,
      ];
}

export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  requireDist();
  const baseline = process.env.ACT_BENCH_BASELINE ? path.resolve(process.env.ACT_BENCH_BASELINE) : undefined;
  const scope = new Scope();
  // `${transport}.${target}` → one phase → result map per round
  const raw: Record<string, Record<string, PhaseResult>[]> = {};
  const rss: Record<string, number[]> = {};
  const rssAnon: Record<string, number[]> = {};
  const floors: { p50: number; p99: number }[] = [];
  const out: Record<string, number> = {};
  const rounds = opts.quick ? 1 : 2;
  const entries = opts.quick ? 10_000 : 100_000;
  try {
    const root = scope.dir('sidecar');
    if (!CAN_PIN) console.log('  (taskset or a second CPU missing: processes are not pinned)');

    /** A control plane (of `dist`) with `entries` seeded agents, the seed's world, two sidecars. */
    const stack = async (dist: string, tag: string) => {
      const bin = path.join(dist, 'bin/act.js');
      const cpDir = path.join(root, `cp${tag}`);
      const t0 = performance.now();
      await seedAgents(dist, cpDir, entries);
      const cp = await startControlPlane(scope, cpDir, { bin, name: `control-plane${tag}` });
      const world = await createWorld(cp.api);
      const sc = async (level: 'os' | 'disk') =>
        startSidecar(scope, path.join(root, `sc-${level}${tag}`), `127.0.0.1:${cp.grpcPort}`, level, [], {
          bin,
          cpu: SERVER_CPU,
          name: `sidecar-${level}${tag}`,
        });
      const sidecars = { os: await sc('os'), disk: await sc('disk') };
      for (const s of Object.values(sidecars)) {
        await waitAllow(s.tcp, world.token, 120_000);
        await waitAllow(s.unix, world.token);
      }
      console.log(
        `  ${tag ? `baseline ${dist}: ` : ''}control plane with ${entries} seeded agents and 2 sidecars synced in ${Math.round(performance.now() - t0)} ms`,
      );
      return { cp, world, sidecars };
    };
    const main = await stack(DIST, '');
    const base = baseline ? await stack(baseline, '_base') : undefined;
    const sample = await waitAllow(main.sidecars.os.tcp, main.world.token);

    // The echo server answers the bytes a real sidecar ALLOW has.
    const echo = scope.helper(
      'echo-server',
      'echo-server.ts',
      { socket: path.join(root, 'echo.sock'), response: sample },
      [],
      SERVER_CPU,
    );
    const listening = await echo.waitJson((r) => r.type === 'listening');
    interface T {
      pids: number[];
      tcp: string;
      unix: string;
      metrics: string;
      token: string;
      sc?: SidecarProc;
    }
    const side = (s: SidecarProc, cpPid: number, token: string): T => ({
      pids: [s.proc.pid, cpPid],
      tcp: s.tcp,
      unix: s.unix,
      metrics: `${s.url}/metrics`,
      token,
      sc: s,
    });
    const targets: Partial<Record<Target, T>> = {
      echo: {
        pids: [echo.pid],
        tcp: `127.0.0.1:${Number(listening.port)}`,
        unix: String(listening.unix),
        metrics: String(listening.metrics),
        token: main.world.token,
      },
      os: side(main.sidecars.os, main.cp.proc.pid, main.world.token),
      disk: side(main.sidecars.disk, main.cp.proc.pid, main.world.token),
      ...(base
        ? {
            os_base: side(base.sidecars.os, base.cp.proc.pid, base.world.token),
            disk_base: side(base.sidecars.disk, base.cp.proc.pid, base.world.token),
          }
        : {}),
    };

    // Rounds interleave the targets, so each sees the machine in a similar state; a figure is the
    // best of the rounds (lowest latency and CPU, highest throughput): on a shared machine the
    // best is the closest to the uncontended cost.
    for (let round = 1; round <= rounds; round++) {
      floors.push(fdatasyncFloor(root, opts.quick ? 500 : 2000));
      for (const transport of TRANSPORTS) {
        for (const [target, t] of Object.entries(targets) as [Target, T][]) {
          const args: LoadArgs = {
            target: t[transport],
            tokens: [t.token],
            ...CHECK,
            phases: phases(opts.quick, transport, round),
            serverPids: t.pids,
            metricsUrl: t.metrics,
          };
          const results = await runLoad(scope, args, `loadgen ${target} ${transport}`, LOADGEN_CPU);
          const r = Object.fromEntries(results.map((x) => [x.phase, x]));
          (raw[`${transport}.${target}`] ??= []).push(r);
          if (t.sc) {
            if (r.c64) {
              (rss[target] ??= []).push(rssMb(t.sc.proc.pid));
              (rssAnon[target] ??= []).push(rssMb(t.sc.proc.pid, 'RssAnon'));
            }
            // Let the audit records reach the control plane before the next run.
            const url = t.sc.url;
            await waitFor(
              'audit spool drained',
              async () => ((await metric(url, 'act_audit_spool_depth')) === 0 ? true : undefined),
              { timeoutMs: 120_000, intervalMs: 50 },
            );
          }
          const c1 = r.c1!;
          console.log(
            `  ${rounds > 1 ? `round ${round} ` : ''}${target.padEnd(9)} ${transport.padEnd(4)} c1 p50 ${c1.p50_us} p99 ${c1.p99_us} p99.9 ${c1.p999_us} µs, loop delay p99 ${c1.server_eld_p99_us ?? '?'} µs` +
              (r.c64
                ? ` | c16 ${r.c16!.rps}/s | c64 ${r.c64.rps}/s, server ${r.c64.server_cpu_us_per_call[0]} µs CPU/call`
                : ' (quick: no throughput run over unix)') +
              (r.rate
                ? ` | ${RATE}/s open loop: p50 ${r.rate.p50_us} p99 ${r.rate.p99_us} p99.9 ${r.rate.p999_us} µs`
                : ''),
          );
        }
      }
    }

    out['fdatasync_p50_us'] = Math.min(...floors.map((f) => f.p50));
    out['fdatasync_p99_us'] = Math.min(...floors.map((f) => f.p99));
    out['replica_entries'] = entries;
    const metrics: [string, (r: Record<string, PhaseResult>) => number | undefined][] = [
      ['c1_p50_us', (r) => r.c1!.p50_us],
      ['c1_p90_us', (r) => r.c1!.p90_us],
      ['c1_p99_us', (r) => r.c1!.p99_us],
      ['c1_p999_us', (r) => r.c1!.p999_us],
      ['c1_max_us', (r) => r.c1!.max_us],
      ['c1_eld_p99_us', (r) => r.c1!.server_eld_p99_us],
      ['c1_eld_max_us', (r) => r.c1!.server_eld_max_us],
      ['c16_rps', (r) => r.c16?.rps],
      ['c64_rps', (r) => r.c64?.rps],
      ['c64_p50_us', (r) => r.c64?.p50_us],
      ['c64_p99_us', (r) => r.c64?.p99_us],
      ['c64_eld_p99_us', (r) => r.c64?.server_eld_p99_us],
      ['c1_cpu_us', (r) => r.c1!.server_cpu_us_per_call[0]],
      ['c16_cpu_us', (r) => r.c16?.server_cpu_us_per_call[0]],
      ['c64_cpu_us', (r) => r.c64?.server_cpu_us_per_call[0]],
      ['c64_cp_cpu_us', (r) => r.c64?.server_cpu_us_per_call[1]],
      ['c64_client_cpu_us', (r) => r.c64?.client_cpu_us_per_call],
      ['rate_p50_us', (r) => r.rate?.p50_us],
      ['rate_p99_us', (r) => r.rate?.p99_us],
      ['rate_p999_us', (r) => r.rate?.p999_us],
      ['rate_max_us', (r) => r.rate?.max_us],
      ['rate_eld_p99_us', (r) => r.rate?.server_eld_p99_us],
      ['rate_cpu_us', (r) => r.rate?.server_cpu_us_per_call[0]],
      ['rate_send_lag_max_us', (r) => r.rate?.send_lag_max_us],
    ];
    for (const transport of TRANSPORTS)
      for (const [name, get] of metrics)
        for (const target of Object.keys(targets)) {
          const vs = raw[`${transport}.${target}`]!.map(get).filter((v): v is number => v !== undefined);
          if (vs.length > 0)
            out[`${transport}.${name}.${target}`] = name.includes('rps') ? Math.max(...vs) : Math.min(...vs);
        }
    for (const [target, vs] of Object.entries(rss)) out[`c64_rss_mb.${target}`] = Math.round(Math.max(...vs));
    // Anonymous memory (heap, buffers); the rest of RSS is file-backed (node's code, the LMDB replica's map).
    for (const [target, vs] of Object.entries(rssAnon))
      out[`c64_rss_anon_mb.${target}`] = Math.round(Math.max(...vs));
    return out;
  } finally {
    await scope.close();
  }
}

const fmt = (x: number, d = 1) => x.toLocaleString('en-US', { maximumFractionDigits: d });
const verdict = (ok: boolean) => (ok ? 'PASS' : 'FAIL');

/** Ratios to the floors, each target's PASS/FAIL per transport, and the A/B when there is one. */
export function notes(r: Record<string, number>): string[] {
  const lines: string[] = [];
  const f50 = r['fdatasync_p50_us']!;
  const f99 = r['fdatasync_p99_us']!;
  const signed = (x: number) => (x >= 0 ? `+${fmt(x)}` : `−${fmt(-x)}`);
  lines.push(`floor: fdatasync p50 ${fmt(f50)} µs, p99 ${fmt(f99)} µs`);
  for (const t of TRANSPORTS) {
    const g = (m: string, target: string) => r[`${t}.${m}.${target}`];
    const e50 = g('c1_p50_us', 'echo')!;
    const e99 = g('c1_p99_us', 'echo')!;
    const eRps = g('c64_rps', 'echo');
    const eCpu = g('c64_cpu_us', 'echo');
    const tput = eRps !== undefined && eCpu !== undefined;
    lines.push(
      `${t}: echo 1 in flight p50 ${fmt(e50)} µs, p99 ${fmt(e99)} µs, p99.9 ${fmt(g('c1_p999_us', 'echo')!)} µs, ` +
        `loop delay p99 ${fmt(g('c1_eld_p99_us', 'echo') ?? NaN)} µs` +
        (tput
          ? `; 64 in flight ${fmt(eRps, 0)}/s, server ${fmt(eCpu)} µs CPU/call, ` +
            `client ${fmt(g('c64_client_cpu_us', 'echo')!)} µs CPU/call`
          : ' (quick: latency only over unix)'),
    );
    for (const lvl of ['os', 'disk', 'os_base', 'disk_base']) {
      const p50 = g('c1_p50_us', lvl);
      if (p50 === undefined) continue;
      const p99 = g('c1_p99_us', lvl)!;
      const rps = g('c64_rps', lvl);
      const cpu = g('c64_cpu_us', lvl);
      lines.push(
        `${t} ${lvl}: p50 ${fmt(p50)} µs (echo ${signed(p50 - e50)}), p99 ${fmt(p99)} µs (${fmt(p99 / e99, 2)}× echo), ` +
          `p99.9 ${fmt(g('c1_p999_us', lvl)!)} µs, loop delay p99 ${fmt(g('c1_eld_p99_us', lvl) ?? NaN)} µs` +
          (tput && rps !== undefined && cpu !== undefined
            ? `; 64 in flight ${fmt(rps, 0)}/s = ${fmt((100 * rps) / eRps, 0)} % of echo; ` +
              `CPU ${fmt(cpu)} µs/call = ${fmt(cpu / eCpu, 2)}× echo`
            : ''),
      );
    }
    if (g('rate_p99_us', 'echo') !== undefined) {
      const parts = ['echo', 'os', 'disk', 'os_base', 'disk_base']
        .filter((x) => g('rate_p50_us', x) !== undefined)
        .map(
          (x) =>
            `${x} p50 ${fmt(g('rate_p50_us', x)!)} / p99 ${fmt(g('rate_p99_us', x)!)} / p99.9 ${fmt(g('rate_p999_us', x)!)} / max ${fmt(g('rate_max_us', x)!)} µs`,
        );
      lines.push(`${t} open loop at ${RATE}/s: ${parts.join('; ')}`);
    }
    const os50 = g('c1_p50_us', 'os')!;
    const os99 = g('c1_p99_us', 'os')!;
    const d50 = g('c1_p50_us', 'disk')!;
    const d99 = g('c1_p99_us', 'disk')!;
    lines.push(
      `${t} target os p50 ≤ echo p50 + 100 µs (${fmt(os50)} ≤ ${fmt(e50 + 100)}): ${verdict(os50 <= e50 + 100)}`,
      `${t} target os p99 ≤ 1.5× echo p99 (${fmt(os99)} ≤ ${fmt(1.5 * e99)}): ${verdict(os99 <= 1.5 * e99)}`,
      `${t} target disk p50 ≤ echo p50 + fdatasync p50 + 150 µs (${fmt(d50)} ≤ ${fmt(e50 + f50 + 150)}): ` +
        verdict(d50 <= e50 + f50 + 150),
      `${t} target disk p99 ≤ echo p99 + fdatasync p99 + 500 µs (${fmt(d99)} ≤ ${fmt(e99 + f99 + 500)}): ` +
        verdict(d99 <= e99 + f99 + 500),
    );
    if (!tput) continue;
    for (const lvl of ['os', 'disk']) {
      const rps = g('c64_rps', lvl)!;
      const cpu = g('c64_cpu_us', lvl)!;
      lines.push(
        `${t} target ${lvl} 64 in flight ≥ 85 % of echo (${fmt(rps, 0)} ≥ ${fmt(0.85 * eRps, 0)}/s): ${verdict(rps >= 0.85 * eRps)}`,
        `${t} target ${lvl} CPU/check ≤ 1.6× echo (${fmt(cpu)} ≤ ${fmt(1.6 * eCpu)} µs): ${verdict(cpu <= 1.6 * eCpu)}`,
      );
    }
  }
  for (const lvl of ['os', 'disk']) {
    const m = r[`c64_rss_mb.${lvl}`];
    if (m !== undefined)
      lines.push(
        `target ${lvl} resident memory under 64 in flight with ${fmt(r['replica_entries']!, 0)} replica entries ≤ 150 MB (${m} MB, of it anonymous ${r[`c64_rss_anon_mb.${lvl}`] ?? '?'} MB; the rest is file-backed: node's code and the LMDB replica's map): ${verdict(m <= 150)}`,
      );
  }
  // The A/B: this build against the baseline, same run.
  if (r['tcp.c1_p50_us.os_base'] !== undefined) {
    lines.push('A/B (baseline → this build, same run):');
    for (const t of TRANSPORTS)
      for (const lvl of ['os', 'disk'])
        for (const m of [
          'c1_p50_us',
          'c1_p99_us',
          'c1_p999_us',
          'c64_rps',
          'c64_cpu_us',
          'rate_p99_us',
          'rate_p999_us',
        ]) {
          const a = r[`${t}.${m}.${lvl}_base`];
          const b = r[`${t}.${m}.${lvl}`];
          if (a !== undefined && b !== undefined)
            lines.push(`  ${t} ${lvl} ${m}: ${fmt(a)} → ${fmt(b)} (${signed(((b - a) / a) * 100)} %)`);
        }
    for (const lvl of ['os', 'disk']) {
      const a = r[`c64_rss_mb.${lvl}_base`];
      const b = r[`c64_rss_mb.${lvl}`];
      if (a !== undefined && b !== undefined)
        lines.push(
          `  ${lvl} rss under 64 in flight: ${a} → ${b} MB (anonymous ${r[`c64_rss_anon_mb.${lvl}_base`]} → ${r[`c64_rss_anon_mb.${lvl}`]} MB)`,
        );
    }
  }
  return lines;
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(36)} ${fmt(v)} ${unit(k)}`);
      for (const line of notes(r)) console.log(line);
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
