/**
 * Closed-loop load generator for DecisionService.CheckPermission, run as its own process so
 * its CPU never counts against the server's:
 *
 *   node --import tsx bench/lib/loadgen.ts '<json LoadArgs>'
 *
 * One grpc-js DecisionServiceClient (one HTTP/2 connection) to `target` ("host:port" or
 * "unix:/path"). For each phase: `warmup` untimed calls, then up to `count` calls or
 * `durationMs`, whichever ends first, with `concurrency` calls in flight; each call's latency
 * by process.hrtime.bigint(). Every answer is validated (allowed, audit id present): a broken
 * server must not look like a fast one. The CPU time of `serverPids` (from /proc) is read
 * just before and after the timed part, and this process's own CPU time too, so a saturated
 * client is visible. Prints one JSON line per phase, then exits.
 */
import * as grpc from '@grpc/grpc-js';
import {
  DecisionServiceClient,
  type CheckPermissionRequest,
  type CheckPermissionResponse,
} from '../../src/gen/act/v1/decision';
import { cpuUs, exitWithParent, helperArgs, pct } from './procs';

export interface Phase {
  name: string;
  /** Calls in flight (closed loop); with `rate`, only the warm-up's. */
  concurrency: number;
  warmup: number;
  count: number;
  durationMs: number;
  /**
   * Open loop at this many calls/s: call i is sent at t0 + i/rate whether or not earlier ones
   * have answered (as independent agents would), so a stall shows as latency of every call it
   * delays instead of as fewer calls. Latency counts from the scheduled send time.
   */
  rate?: number;
}

export interface LoadArgs {
  target: string;
  /** Tokens used round-robin (one is the usual case). */
  tokens: string[];
  action: string;
  resource: string;
  context: Record<string, unknown>;
  phases: Phase[];
  /** Processes whose CPU time is attributed to the calls (the server). */
  serverPids: number[];
  /**
   * The server's /metrics URL: read right before and after the timed part for the server's
   * own event-loop delay over it (prom-client resets its histogram on every read).
   */
  metricsUrl?: string;
}

export interface PhaseResult {
  phase: string;
  concurrency: number;
  count: number;
  errors: number;
  not_allowed: number;
  first_error?: string;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  p999_us: number;
  max_us: number;
  mean_us: number;
  rps: number;
  elapsed_ms: number;
  /** Server CPU µs per call, per pid in serverPids (same order). */
  server_cpu_us_per_call: number[];
  client_cpu_us_per_call: number;
  /** The server's event-loop delay over the timed part (µs), when metricsUrl was given. */
  server_eld_p99_us?: number;
  server_eld_max_us?: number;
  /** Open loop: the latest a call was sent after its scheduled time (µs; the generator's own lag). */
  send_lag_max_us?: number;
}

/** prom-client's monitorEventLoopDelay resolution (its default eventLoopMonitoringPrecision). */
const ELD_RESOLUTION_US = 10_000;

/** The server's event-loop delay p99 and max since the last read (prom-client gauges, seconds). */
async function eventLoopDelay(url: string): Promise<{ p99: number; max: number } | undefined> {
  try {
    const text = await (await fetch(url)).text();
    const get = (name: string) =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)`, 'm').exec(text)?.[1] ?? NaN);
    // The histogram records the time between its timer's runs, the 10 ms resolution included.
    const late = (name: string) => Math.max(0, get(name) * 1e6 - ELD_RESOLUTION_US);
    return { p99: late('nodejs_eventloop_lag_p99_seconds'), max: late('nodejs_eventloop_lag_max_seconds') };
  } catch {
    return undefined;
  }
}

function call(client: DecisionServiceClient, req: CheckPermissionRequest): Promise<CheckPermissionResponse> {
  return new Promise((resolve, reject) =>
    client.checkPermission(req, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

async function runPhase(client: DecisionServiceClient, a: LoadArgs, ph: Phase): Promise<PhaseResult> {
  const reqs: CheckPermissionRequest[] = a.tokens.map((token) => ({
    token,
    action: a.action,
    resource: a.resource,
    context: a.context,
    approval_id: '',
  }));
  let errors = 0;
  let notAllowed = 0;
  let firstError: string | undefined;
  const check = async (i: number): Promise<void> => {
    try {
      const res = await call(client, reqs[i % reqs.length]!);
      if (!res.allowed || !res.audit_id.startsWith('audit_')) {
        notAllowed++;
        firstError ??= `not allowed: ${JSON.stringify(res)}`;
      }
    } catch (err) {
      errors++;
      firstError ??= String((err as Error).message ?? err);
    }
  };

  // Warm-up, untimed, at the same concurrency.
  let w = 0;
  await Promise.all(
    Array.from({ length: Math.min(ph.concurrency, Math.max(1, ph.warmup)) }, async () => {
      while (w < ph.warmup) await check(w++);
    }),
  );
  errors = 0;
  notAllowed = 0;

  const lat = new Float64Array(ph.count);
  let issued = 0;
  let done = 0;
  let sendLagMax = 0;
  if (a.metricsUrl) await eventLoopDelay(a.metricsUrl); // resets the server's histogram
  const cpu0 = a.serverPids.map(cpuUs);
  const own0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const deadline = t0 + BigInt(ph.durationMs) * 1_000_000n;
  if (ph.rate !== undefined) {
    // Open loop: send what is due, then sleep until the next is; a call's latency counts from
    // when it was due.
    const intervalNs = 1e9 / ph.rate;
    const pending: Promise<void>[] = [];
    const one = async (i: number, dueNs: bigint): Promise<void> => {
      await check(i);
      lat[done++] = Number(process.hrtime.bigint() - dueNs) / 1000;
    };
    for (;;) {
      const now = process.hrtime.bigint();
      if (now > deadline) break;
      const due = Math.min(ph.count, Math.floor(Number(now - t0) / intervalNs) + 1);
      while (issued < due) {
        const dueNs = t0 + BigInt(Math.round(issued * intervalNs));
        sendLagMax = Math.max(sendLagMax, Number(now - dueNs) / 1000);
        pending.push(one(issued++, dueNs));
      }
      if (issued >= ph.count) break;
      const nextNs = Number(t0 - now) + issued * intervalNs;
      await new Promise((r) => setTimeout(r, Math.max(0, Math.floor(nextNs / 1e6))));
    }
    await Promise.all(pending);
  } else {
    const worker = async (): Promise<void> => {
      while (issued < ph.count) {
        const i = issued++;
        const s = process.hrtime.bigint();
        if (s > deadline) return;
        await check(i);
        lat[done++] = Number(process.hrtime.bigint() - s) / 1000;
      }
    };
    await Promise.all(Array.from({ length: ph.concurrency }, worker));
  }
  const elapsedNs = Number(process.hrtime.bigint() - t0);
  const cpu1 = a.serverPids.map(cpuUs);
  const own = process.cpuUsage(own0);
  const eld = a.metricsUrl ? await eventLoopDelay(a.metricsUrl) : undefined;

  const sorted = lat.subarray(0, done).sort();
  let sum = 0;
  for (const x of sorted) sum += x;
  const r1 = (x: number) => Math.round(x * 10) / 10;
  return {
    phase: ph.name,
    concurrency: ph.concurrency,
    count: done,
    errors,
    not_allowed: notAllowed,
    ...(firstError !== undefined ? { first_error: firstError.slice(0, 500) } : {}),
    p50_us: r1(pct(sorted, 0.5)),
    p90_us: r1(pct(sorted, 0.9)),
    p99_us: r1(pct(sorted, 0.99)),
    p999_us: r1(pct(sorted, 0.999)),
    max_us: r1(sorted[sorted.length - 1] ?? NaN),
    mean_us: r1(sum / done),
    rps: Math.round(done / (elapsedNs / 1e9)),
    elapsed_ms: Math.round(elapsedNs / 1e6),
    server_cpu_us_per_call: cpu1.map((c, i) => r1((c - cpu0[i]!) / done)),
    client_cpu_us_per_call: r1((own.user + own.system) / done),
    ...(eld ? { server_eld_p99_us: r1(eld.p99), server_eld_max_us: r1(eld.max) } : {}),
    ...(ph.rate !== undefined ? { send_lag_max_us: r1(sendLagMax) } : {}),
  };
}

async function main(): Promise<void> {
  const a = helperArgs<LoadArgs>();
  const client = new DecisionServiceClient(a.target, grpc.credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) =>
      client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
    );
    for (const ph of a.phases)
      console.log(JSON.stringify({ type: 'result', ...(await runPhase(client, a, ph)) }));
  } finally {
    client.close();
  }
}

if (require.main === module) {
  exitWithParent();
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.log(JSON.stringify({ type: 'fatal', error: String((err as Error).stack ?? err) }));
      process.exit(1);
    },
  );
}
