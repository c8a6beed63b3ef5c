/**
 * What the MCP gateway adds to a tools/call: the same call (the billing test server's `echo`,
 * Streamable HTTP) made directly to the upstream and through `act sidecar --mcp-config` at
 * audit durability os and disk. Through the gateway a call is one check on the sidecar's
 * Enforcer (decision record safe), the upstream call, and the outcome record (safe) before the
 * answer. The upstream server and the client each run in their own process (this file, in the
 * roles `upstream` and `load`); the client is the official SDK's Client, one session per target.
 * At 1 in flight the targets' calls alternate one by one, so on a shared machine each sees the
 * same load and the difference is the gateway's; at 16 in flight one target runs at a time.
 * Best of 2 rounds (1 quick).
 *
 * Run standalone with `npx tsx bench/mcp.bench.ts [--quick]` (after `npm run build`).
 */
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import YAML from 'yaml';
import { startBillingServer } from '../test/support/mcp-billing';
import {
  cpuUs,
  exitWithParent,
  expectOk,
  helperArgs,
  metric,
  pct,
  requireDist,
  round1,
  Scope,
  startControlPlane,
  waitFor,
  type Proc,
  type Rest,
} from './lib/procs';
import { ADMIN_KEY } from './lib/procs';

export const describe =
  'tools/call of a trivial upstream tool (echo, Streamable HTTP) made by the official SDK Client directly against the ' +
  'upstream, and through the sidecar MCP gateway at audit durability os and disk (check + decision record + upstream call + ' +
  'outcome record); upstream, client and sidecars in separate processes. 1 in flight: the three targets alternate call by ' +
  'call (same machine state for each); 16 in flight: one target at a time, calls/s and CPU per call. Best of 2 rounds (1 quick).';

export function unit(key: string): string {
  if (key.includes('rps')) return 'calls/s';
  if (key.includes('cpu')) return 'µs CPU/call';
  return 'µs';
}

const TARGETS = ['direct', 'os', 'disk'] as const;
type Target = (typeof TARGETS)[number];

interface Phase {
  name: string;
  concurrency: number;
  warmup: number;
  count: number;
}

interface LoadTarget {
  name: string;
  url: string;
  token?: string;
  tool: string;
}

/** Several targets: their calls alternate one by one (1 in flight), so each sees the same machine. */
interface LoadArgs {
  role: 'load';
  targets: LoadTarget[];
  phases: Phase[];
}

interface PhaseResult {
  phase: string;
  target: string;
  p50_us: number;
  p99_us: number;
  rps: number;
  errors: number;
  first_error?: string;
}

const C1 = (quick: boolean): Phase =>
  quick
    ? { name: 'c1', concurrency: 1, warmup: 200, count: 600 }
    : { name: 'c1', concurrency: 1, warmup: 500, count: 3000 };
const C16 = (quick: boolean): Phase =>
  quick
    ? { name: 'c16', concurrency: 16, warmup: 200, count: 1600 }
    : { name: 'c16', concurrency: 16, warmup: 500, count: 8000 };

export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  requireDist();
  const scope = new Scope();
  const rounds = opts.quick ? 1 : 2;
  const raw: Record<Target, Record<string, PhaseResult>[]> = { direct: [], os: [], disk: [] };
  const cpu: Record<Target, { gateway: number; upstream: number }[]> = { direct: [], os: [], disk: [] };
  try {
    const root = scope.dir('mcp');
    const upstream = scope.helper('mcp-upstream', '../mcp.bench.ts', { role: 'upstream' });
    const url = String((await upstream.waitJson((r) => r.type === 'listening')).url);

    const cp = await startControlPlane(scope, path.join(root, 'cp'));
    const token = await world(cp.api);
    const configFile = path.join(root, 'mcp.yaml');
    writeFileSync(configFile, YAML.stringify({ servers: { billing: { url } } }));
    const gateways: Record<'os' | 'disk', { proc: Proc; url: string; mcpUrl: string }> = {
      os: await gateway(scope, root, cp.grpcPort, configFile, 'os'),
      disk: await gateway(scope, root, cp.grpcPort, configFile, 'disk'),
    };
    for (const g of Object.values(gateways))
      await waitFor('the sidecar to sync', async () =>
        ((await metric(g.url, 'act_replica_revision')) ?? 0) > 0 ? true : undefined,
      );

    const target = (t: Target): LoadTarget =>
      t === 'direct'
        ? { name: t, url, tool: 'echo' }
        : { name: t, url: gateways[t].mcpUrl, token, tool: 'billing.echo' };
    const drained = async (t: 'os' | 'disk') =>
      waitFor(
        'audit spool drained',
        async () => ((await metric(gateways[t].url, 'act_audit_spool_depth')) === 0 ? true : undefined),
        { timeoutMs: 120_000, intervalMs: 50 },
      );
    for (let round = 1; round <= rounds; round++) {
      // 1 in flight: the three targets' calls alternate, one by one.
      const c1 = await load(
        scope,
        { role: 'load', targets: TARGETS.map(target), phases: [C1(opts.quick)] },
        'load c1',
      );
      for (const r of c1) (raw[r.target as Target][round - 1] ??= {}).c1 = r;
      for (const t of ['os', 'disk'] as const) await drained(t);
      // 16 in flight: one target at a time, with the CPU each process spent per call.
      for (const t of TARGETS) {
        const gw = t === 'direct' ? undefined : gateways[t].proc.pid;
        const before = { upstream: cpuUs(upstream.pid), gateway: gw ? cpuUs(gw) : 0 };
        const phase = C16(opts.quick);
        const [r] = await load(
          scope,
          { role: 'load', targets: [target(t)], phases: [phase] },
          `load c16 ${t}`,
        );
        const calls = phase.warmup + phase.count;
        cpu[t].push({
          upstream: (cpuUs(upstream.pid) - before.upstream) / calls,
          gateway: gw ? (cpuUs(gw) - before.gateway) / calls : 0,
        });
        (raw[t][round - 1] ??= {}).c16 = r!;
        if (t !== 'direct') await drained(t);
      }
      for (const t of TARGETS) {
        const r = raw[t][round - 1]!;
        console.log(
          `  ${rounds > 1 ? `round ${round} ` : ''}${t.padEnd(6)} c1 p50 ${r.c1!.p50_us} µs p99 ${r.c1!.p99_us} µs | ` +
            `c16 p50 ${r.c16!.p50_us} µs p99 ${r.c16!.p99_us} µs, ${r.c16!.rps}/s | CPU/call at 16: upstream ` +
            `${round1(cpu[t].at(-1)!.upstream)} µs, gateway ${round1(cpu[t].at(-1)!.gateway)} µs`,
        );
      }
    }
    const out: Record<string, number> = {};
    const best = (t: Target, phase: string, key: 'p50_us' | 'p99_us' | 'rps') => {
      const vs = raw[t].map((r) => r[phase]![key]);
      return key === 'rps' ? Math.max(...vs) : Math.min(...vs);
    };
    for (const phase of ['c1', 'c16'])
      for (const key of ['p50_us', 'p99_us', 'rps'] as const) {
        if (phase === 'c1' && key === 'rps') continue;
        for (const t of TARGETS) out[`${phase}_${key}.${t}`] = best(t, phase, key);
      }
    for (const t of TARGETS) out[`upstream_cpu_us.${t}`] = round1(Math.min(...cpu[t].map((c) => c.upstream)));
    for (const lvl of ['os', 'disk'] as const)
      out[`gateway_cpu_us.${lvl}`] = round1(Math.min(...cpu[lvl].map((c) => c.gateway)));
    for (const lvl of ['os', 'disk'] as const)
      for (const phase of ['c1', 'c16'])
        for (const p of ['p50', 'p99'])
          out[`overhead.${phase}_${p}_us.${lvl}`] = round1(
            out[`${phase}_${p}_us.${lvl}`]! - out[`${phase}_${p}_us.direct`]!,
          );
    return out;
  } finally {
    await scope.close();
  }
}

/** PASS/FAIL of the target: gateway overhead at 1 in flight, p50 ≤ 1 ms over the direct call. */
export function notes(r: Record<string, number>): string[] {
  const lines: string[] = [];
  for (const lvl of ['disk', 'os']) {
    const o = r[`overhead.c1_p50_us.${lvl}`]!;
    lines.push(
      `gateway overhead (audit ${lvl}${lvl === 'disk' ? ', the default' : ''}) at 1 in flight: p50 +${o} µs ` +
        `(direct ${r['c1_p50_us.direct']} µs → ${r[`c1_p50_us.${lvl}`]} µs), p99 +${r[`overhead.c1_p99_us.${lvl}`]} µs; ` +
        `target p50 ≤ 1000 µs: ${o <= 1000 ? 'PASS' : 'FAIL'}`,
    );
  }
  return lines;
}

async function world(api: Rest): Promise<string> {
  const agent = await expectOk(api('POST', '/api/agents', { name: 'mcp bench agent' }), 201, 'create agent');
  const policy = await expectOk(
    api('POST', '/api/policies', { name: 'mcp bench', capabilities: ['call:billing.echo'] }),
    201,
    'create policy',
  );
  const t = await expectOk(
    api('POST', '/api/tokens', {
      agent_id: agent.agent_id,
      policy_ids: [policy.policy_id],
      expires_at: new Date(Date.now() + 86_400_000).toISOString().slice(0, 19) + 'Z',
    }),
    201,
    'issue token',
  );
  return t.token as string;
}

async function gateway(
  scope: Scope,
  root: string,
  grpcPort: number,
  configFile: string,
  durability: 'os' | 'disk',
): Promise<{ proc: Proc; url: string; mcpUrl: string }> {
  const dataDir = path.join(root, `sc-${durability}`);
  const proc = scope.act(
    `sidecar-${durability}`,
    [
      'sidecar',
      '--grpc-addr',
      '127.0.0.1:0',
      '--http-addr',
      '127.0.0.1:0',
      '--data-dir',
      dataDir,
      '--control-plane',
      `127.0.0.1:${grpcPort}`,
      '--sidecar-id',
      `bench-mcp-${durability}`,
      '--audit-durability',
      durability,
      '--mcp-config',
      configFile,
      '--mcp-addr',
      '127.0.0.1:0',
    ],
    { ACT_SIDECAR_KEY: ADMIN_KEY },
    process.env.ACT_BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.ACT_BENCH_CPU_PROF] : [],
  );
  const mcp = await proc.waitJson((r) => r.msg === 'mcp gateway listening');
  const sc = await proc.waitJson((r) => r.msg === 'sidecar listening');
  return {
    proc,
    url: `http://127.0.0.1:${Number(sc.http_port)}`,
    mcpUrl: `http://127.0.0.1:${Number(mcp.mcp_port)}/mcp`,
  };
}

async function load(scope: Scope, args: LoadArgs, name: string): Promise<PhaseResult[]> {
  const p = scope.helper(name, '../mcp.bench.ts', args);
  const results: PhaseResult[] = [];
  p.onJson((rec) => {
    if (rec.type === 'result') results.push(rec as unknown as PhaseResult);
  });
  const code = await p.exited;
  if (code !== 0 || results.length !== args.phases.length * args.targets.length)
    throw new Error(`${name} failed (exit ${code}): ${p.output.slice(-20).join('\n')}`);
  for (const r of results)
    if (r.errors > 0)
      throw new Error(`${name} ${r.phase} ${r.target}: ${r.errors} errors: ${r.first_error ?? ''}`);
  return results;
}

// ---- helper roles (this file run as a separate process) ----

async function upstreamRole(): Promise<void> {
  const s = await startBillingServer();
  exitWithParent(() => void s.close());
  console.log(JSON.stringify({ type: 'listening', url: s.url }));
}

async function loadRole(a: LoadArgs): Promise<void> {
  const clients = await Promise.all(
    a.targets.map(async (t) => {
      const client = new Client({ name: 'mcp-bench', version: '1' });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(t.url), {
          requestInit: { headers: t.token ? { authorization: `Bearer ${t.token}` } : {} },
        }),
      );
      return { t, client, lat: [] as number[], errors: 0, firstError: undefined as string | undefined };
    }),
  );
  type C = (typeof clients)[number];
  const call = async (c: C, out: boolean): Promise<void> => {
    const t0 = performance.now();
    try {
      const r = await c.client.callTool({ name: c.t.tool, arguments: { text: 'ping' } });
      if (r.isError) throw new Error(JSON.stringify(r.content));
    } catch (err) {
      c.errors++;
      c.firstError ??= (err as Error).message;
    }
    if (out) c.lat.push((performance.now() - t0) * 1000);
  };
  for (const ph of a.phases) {
    const run = async (n: number, out: boolean) => {
      if (clients.length > 1) {
        // Alternate the targets call by call, 1 in flight.
        for (let i = 0; i < n; i++) for (const c of clients) await call(c, out);
        return;
      }
      const c = clients[0]!;
      let next = 0;
      await Promise.all(
        Array.from({ length: ph.concurrency }, async () => {
          while (next++ < n) await call(c, out);
        }),
      );
    };
    await run(ph.warmup, false);
    for (const c of clients) {
      c.errors = 0;
      c.lat = [];
    }
    const t0 = performance.now();
    await run(ph.count, true);
    const secs = (performance.now() - t0) / 1000;
    for (const c of clients) {
      c.lat.sort((x, y) => x - y);
      console.log(
        JSON.stringify({
          type: 'result',
          phase: ph.name,
          target: c.t.name,
          p50_us: round1(pct(c.lat, 0.5)),
          p99_us: round1(pct(c.lat, 0.99)),
          rps: Math.round(c.lat.length / secs),
          errors: c.errors,
          ...(c.firstError ? { first_error: c.firstError } : {}),
        }),
      );
    }
  }
  for (const c of clients) await c.client.close();
  process.exit(0);
}

if (require.main === module) {
  const first = process.argv[2] ?? '';
  if (first.startsWith('{') || first.startsWith('@')) {
    const a = helperArgs<{ role: string }>();
    const role = a.role === 'upstream' ? upstreamRole() : loadRole(a as LoadArgs);
    role.catch((e: unknown) => {
      console.error(e);
      process.exit(1);
    });
  } else {
    run({ quick: process.argv.includes('--quick') })
      .then((r) => {
        for (const [k, v] of Object.entries(r)) console.log(`${k.padEnd(28)} ${v} ${unit(k)}`);
        for (const n of notes(r)) console.log(n);
      })
      .catch((e: unknown) => {
        console.error(e);
        process.exitCode = 1;
      });
  }
}
