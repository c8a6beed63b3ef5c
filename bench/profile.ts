/**
 * Where a sidecar's CPU goes per check: runs `act sidecar` (the built dist/, or ACT_BENCH_DIST)
 * under `--cpu-prof` beside a real control plane, drives the seed's check at a given number in
 * flight with the bench's load generator (its own process), stops the sidecar (the profile is
 * written on exit) and prints the self time per function and per area (grpc-js, the HTTP/2
 * layer, lmdb, our modules, GC), as a share of the profiled time and as µs per check.
 *
 *   npx tsx bench/profile.ts [--in-flight 64] [--durability os|disk] [--calls 40000] [--top 40]
 *                            [--keep <dir>]   (keep the .cpuprofile, e.g. for Chrome DevTools)
 *                            [--json <file>]  (µs per check by area and by function, to compare builds)
 *                            [--no-profile]   (only the load figures, for A/B runs of CPU per check)
 *                            [--control-plane] (profile the control plane the sidecar ships to instead)
 *                            [--node-args=--max-semi-space-size=32]  (the sidecar's node flags)
 *                            [--strace]       (strace -c -f of the sidecar over the load: its syscalls)
 *
 * Not part of `npm run bench` (a profile slows what it measures); bench/README.md says what
 * the profiles showed.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad } from './lib/load';
import {
  DIST,
  metric,
  requireDist,
  Scope,
  sleep,
  startControlPlane,
  startSidecar,
  waitFor,
} from './lib/procs';
import { CHECK, createWorld, waitAllow } from './lib/world';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** The area a frame's code belongs to, from its URL. */
export function area(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(idle)' || fn === '(program)' || fn === '(root)') return fn;
  if (url.includes('@grpc/grpc-js')) return 'grpc-js';
  if (url.includes('node_modules/lmdb') || url.includes('msgpackr')) return 'lmdb';
  if (url.includes('node_modules/pino') || url.includes('thread-stream')) return 'pino';
  if (url.includes('node_modules/')) return `npm:${url.split('node_modules/')[1]!.split('/')[0]}`;
  const http2 = /node:internal\/http2|node:http2/;
  if (http2.test(url)) return 'node:http2';
  if (url.startsWith('node:internal/streams') || url.startsWith('node:stream')) return 'node:streams';
  if (url.startsWith('node:')) return 'node:other';
  // Our modules: the first directory under the build (dist/…, or a build elsewhere).
  const m = new RegExp(`^(?:file://)?${DIST.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/([^/]+)/`).exec(url);
  if (m) return `act:${m[1]}`;
  if (url.endsWith('bin/act.js')) return 'act:bundle';
  return url === '' ? '(native)' : 'other';
}

/** A frame's file, short: the package path under node_modules, or the path inside the build. */
function shortUrl(url: string): string {
  return url
    .replace(/^.*node_modules\//, '')
    .replace(/^file:\/\//, '')
    .replace(DIST + '/', '');
}

/** Self time per key (µs) from a profile. */
export function selfTimes(p: CpuProfile, key: (n: ProfileNode) => string): Map<string, number> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const out = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]!)!;
    const k = key(n);
    out.set(k, (out.get(k) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'in-flight': { type: 'string', default: '64' },
      durability: { type: 'string', default: 'os' },
      calls: { type: 'string', default: '40000' },
      top: { type: 'string', default: '40' },
      keep: { type: 'string' },
      json: { type: 'string' },
      'no-profile': { type: 'boolean', default: false },
      'control-plane': { type: 'boolean', default: false },
      'node-args': { type: 'string', default: '' },
      strace: { type: 'boolean', default: false },
    },
  });
  requireDist();
  const inFlight = Number(values['in-flight']);
  const calls = Number(values.calls);
  const durability = values.durability === 'disk' ? 'disk' : 'os';
  const scope = new Scope();
  try {
    const root = scope.dir('profile');
    const profDir = values.keep ?? path.join(root, 'prof');
    mkdirSync(profDir, { recursive: true });
    const profArgs = ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-interval', '200'];
    const profCp = values['control-plane'] && !values['no-profile'];
    const cp = await startControlPlane(scope, path.join(root, 'cp'), { nodeArgs: profCp ? profArgs : [] });
    const world = await createWorld(cp.api);
    const sc = await startSidecar(scope, path.join(root, 'sc'), `127.0.0.1:${cp.grpcPort}`, durability, [], {
      nodeArgs: [
        ...(values['node-args'] ? values['node-args'].split(' ') : []),
        ...(values['no-profile'] || profCp ? [] : profArgs),
      ],
    });
    await waitAllow(sc.tcp, world.token);
    console.log(`profiling: ${calls} checks at ${inFlight} in flight, audit ${durability}`);
    // Counts and times every syscall of every thread of the sidecar while the load runs.
    const strace = values.strace
      ? spawn('strace', ['-c', '-f', '-w', '-p', String(sc.proc.pid)], {
          stdio: ['ignore', 'ignore', 'pipe'],
        })
      : undefined;
    let straceOut = '';
    strace?.stderr.on('data', (d: Buffer) => (straceOut += d.toString()));
    if (strace) await sleep(500);
    const [r] = await runLoad(scope, {
      target: sc.tcp,
      tokens: [world.token],
      ...CHECK,
      phases: [{ name: 'p', concurrency: inFlight, warmup: 2000, count: calls, durationMs: 120_000 }],
      serverPids: [sc.proc.pid, cp.proc.pid],
    });
    if (strace) {
      strace.kill('SIGINT');
      await new Promise((r) => strace.once('exit', r));
      console.log(`strace -c -f -w of the sidecar over the load (${calls + 2000} checks):\n${straceOut}`);
    }
    await waitFor(
      'audit spool drained',
      async () => ((await metric(sc.url, 'act_audit_spool_depth')) === 0 ? true : undefined),
      { timeoutMs: 120_000, intervalMs: 50 },
    );
    await sc.proc.stop(30_000);
    if (profCp) await cp.proc.stop(30_000);
    if (values['no-profile']) {
      console.log(
        `load: ${r!.rps}/s, p50 ${r!.p50_us} µs, p99 ${r!.p99_us} µs, sidecar ${r!.server_cpu_us_per_call[0]} µs CPU/check, control plane ${r!.server_cpu_us_per_call[1]} µs`,
      );
      return;
    }
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`no profile written in ${profDir}`);
    const prof = JSON.parse(readFileSync(path.join(profDir, file), 'utf8')) as CpuProfile;
    const total = prof.endTime - prof.startTime;
    const busyTotal = [...selfTimes(prof, (n) => n.callFrame.functionName).entries()]
      .filter(([k]) => k !== '(idle)')
      .reduce((a, [, v]) => a + v, 0);
    // The profile spans the whole process life (start-up, sync, warm-up, drain), so per-check
    // figures divide by every check the sidecar answered, warm-up and polling included.
    const checks = calls + 2000;
    console.log(
      `load: ${r!.rps}/s, p50 ${r!.p50_us} µs, p99 ${r!.p99_us} µs, server ${r!.server_cpu_us_per_call[0]} µs CPU/check`,
    );
    console.log(
      `profile: ${(total / 1e6).toFixed(1)} s, busy ${(busyTotal / 1e6).toFixed(1)} s ≈ ${(busyTotal / checks).toFixed(1)} µs per check (start-up and sync included)`,
    );
    const show = (title: string, m: Map<string, number>, n: number) => {
      console.log(`\n${title}`);
      const rows = [...m.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]);
      for (const [k, v] of rows.slice(0, n))
        console.log(
          `  ${((100 * v) / busyTotal).toFixed(1).padStart(5)} %  ${(v / checks).toFixed(2).padStart(7)} µs/check  ${k}`,
        );
    };
    show(
      'self time by area',
      selfTimes(prof, (n) => area(n.callFrame.url, n.callFrame.functionName)),
      20,
    );
    show(
      'self time by function',
      selfTimes(
        prof,
        (n) =>
          `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`,
      ),
      Number(values.top),
    );
    if (values.json) {
      const perCheck = (m: Map<string, number>) =>
        Object.fromEntries([...m].filter(([k]) => k !== '(idle)').map(([k, v]) => [k, v / checks]));
      writeFileSync(
        values.json,
        JSON.stringify({
          load: r,
          areas: perCheck(selfTimes(prof, (n) => area(n.callFrame.url, n.callFrame.functionName))),
          functions: perCheck(
            selfTimes(
              prof,
              (n) => `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}`,
            ),
          ),
        }),
      );
    }
    if (values.keep) console.log(`\nprofile kept: ${path.join(profDir, file)}`);
  } finally {
    await scope.close();
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
