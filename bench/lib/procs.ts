/**
 * Process plumbing for the end-to-end benches: spawns the built `act` binary (control plane,
 * sidecar) and the bench's own TypeScript helpers (load generator, echo server, Sync
 * simulator) as separate processes, reads their JSON lines, samples their CPU time and RSS
 * from /proc, and stops every one of them at the end (a `Scope` owns processes and temp dirs).
 *
 * The `act` binary comes from `ACT_BENCH_DIST` (a directory holding bin/act.js), default the
 * repo's dist/ (`npm run build`). The bench never builds: building deletes dist/, which other
 * processes (tests) may be running from.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = path.resolve(__dirname, '../..');

export const DIST = path.resolve(process.env.ACT_BENCH_DIST ?? path.join(ROOT, 'dist'));
export const ACT_BIN = path.join(DIST, 'bin/act.js');
export const ADMIN_KEY = 'bench-admin-key-0123456789abcdef';

/** Throws a clear message when the built binary is missing. */
export function requireDist(): void {
  if (!existsSync(ACT_BIN) || !existsSync(path.join(DIST, 'gen/act.binpb'))) {
    throw new Error(
      `${ACT_BIN} not found: run \`npm run build\` first, or point ACT_BENCH_DIST at a build ` +
        '(e.g. `npx tsc -p tsconfig.build.json --outDir /tmp/act-bench-dist && cp src/gen/act.binpb /tmp/act-bench-dist/gen/`)',
    );
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Milliseconds on the machine's monotonic clock (CLOCK_MONOTONIC, what process.hrtime reads),
 * comparable across processes on one machine. Not the wall clock: performance.timeOrigin is the
 * wall time at process start, so when NTP steps the clock between two processes' starts their
 * times differ by the step (a run here measured a constant +0.6 s, then +6.1 s, that way).
 */
export const machineMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Every stdout+stderr line so far (the last 2000). */
  output: string[];
  /** Resolves with the first JSON line (past or future) that `match` accepts. */
  waitJson(
    match: (rec: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** Calls `fn` for every JSON line from now on. */
  onJson(fn: (rec: Record<string, unknown>) => void): void;
  exited: Promise<number | null>;
  alive(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
  kill(): Promise<void>;
}

function wrap(name: string, child: ChildProcess): Proc {
  const output: string[] = [];
  const jsonLines: Record<string, unknown>[] = [];
  const listeners: ((rec: Record<string, unknown>) => void)[] = [];
  const onLine = (line: string) => {
    output.push(line);
    if (output.length > 2000) output.shift();
    if (!line.startsWith('{')) return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    jsonLines.push(rec);
    if (jsonLines.length > 2000) jsonLines.shift();
    for (const l of [...listeners]) l(rec);
  };
  createInterface({ input: child.stdout! }).on('line', onLine);
  createInterface({ input: child.stderr! }).on('line', onLine);
  // 'close', not 'exit': by then every line of its output has been read.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const alive = () => child.exitCode === null && child.signalCode === null;
  const p: Proc = {
    name,
    child,
    pid: child.pid!,
    output,
    exited,
    alive,
    onJson: (fn) => void listeners.push(fn),
    waitJson(match, timeoutMs = 30_000) {
      const seen = jsonLines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const done = (err: Error | undefined, rec?: Record<string, unknown>) => {
          clearTimeout(timer);
          const i = listeners.indexOf(listener);
          if (i >= 0) listeners.splice(i, 1);
          if (err) reject(err);
          else resolve(rec!);
        };
        const listener = (rec: Record<string, unknown>) => {
          if (match(rec)) done(undefined, rec);
        };
        const timer = setTimeout(
          () => done(new Error(`${name}: timed out; last output:\n${output.slice(-30).join('\n')}`)),
          timeoutMs,
        );
        listeners.push(listener);
        void exited.then((code) => {
          if (listeners.includes(listener))
            done(new Error(`${name} exited (${code}); last output:\n${output.slice(-30).join('\n')}`));
        });
      });
    },
    async stop(graceMs = 10_000) {
      if (!alive()) return void (await exited);
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), graceMs)));
      if ((await Promise.race([exited, late])) === 'late') await p.kill();
      clearTimeout(timer);
    },
    async kill() {
      if (alive()) child.kill('SIGKILL');
      await exited;
    },
  };
  return p;
}

const liveScopes = new Set<Scope>();
let handlersInstalled = false;

/** On Ctrl-C, SIGTERM or an exit without close(): SIGKILL every child still running, remove the dirs. */
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const killAll = () => {
    for (const s of liveScopes) s.killNow();
  };
  process.once('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
}

/** Owns the processes and temp dirs of one bench; `close()` stops and removes all of them. */
export class Scope {
  private readonly procs: Proc[] = [];
  private readonly dirs: string[] = [];

  constructor() {
    installExitHandlers();
    liveScopes.add(this);
  }

  /** Synchronous last resort (process exit): SIGKILL the children, remove the temp dirs. */
  killNow(): void {
    for (const p of this.procs) if (p.alive()) p.child.kill('SIGKILL');
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
  }

  dir(prefix: string): string {
    const d = mkdtempSync(path.join(os.tmpdir(), `act-bench-${prefix}-`));
    this.dirs.push(d);
    return d;
  }

  /** Spawns `node [...nodeArgs] <dist>/bin/act.js ...args` (nodeArgs e.g. --cpu-prof). */
  act(
    name: string,
    args: string[],
    env: Record<string, string> = {},
    nodeArgs: string[] = [],
    /** Another build's bin/act.js (an A/B baseline); default ACT_BIN. */
    bin = ACT_BIN,
    /** Run on this CPU only (taskset), when the machine has it. */
    cpu?: number,
  ): Proc {
    // NODE_PATH: a build outside the repo (ACT_BENCH_DIST) still finds the repo's node_modules.
    const nodePath = [process.env.NODE_PATH, path.join(ROOT, 'node_modules')].filter(Boolean).join(':');
    // ACT_BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"): node flags for every act process.
    const extra = (process.env.ACT_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const [cmd, argv] = pinned(cpu, [...extra, ...nodeArgs, bin, ...args]);
    const child = spawn(cmd, argv, {
      env: { ...process.env, NODE_PATH: nodePath, ACT_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return this.track(wrap(name, child));
  }

  /** Spawns one of the bench's TypeScript helpers (`bench/lib/<file>`) with JSON arguments. */
  helper(name: string, file: string, args: unknown, nodeArgs: string[] = [], cpu?: number): Proc {
    let arg = JSON.stringify(args);
    if (arg.length > 64 * 1024) {
      // Too long for one argv string (MAX_ARG_STRLEN is 128 KiB): pass a file instead.
      const file = path.join(this.dir('args'), 'args.json');
      writeFileSync(file, arg);
      arg = `@${file}`;
    }
    const [cmd, argv] = pinned(cpu, [...nodeArgs, '--import', 'tsx', path.join(__dirname, file), arg]);
    const child = spawn(
      cmd,
      argv,
      // stdin is a pipe the helper watches: when this process dies, the helper exits too.
      { cwd: ROOT, env: { ...process.env }, stdio: ['pipe', 'pipe', 'pipe'] },
    );
    return this.track(wrap(name, child));
  }

  track(p: Proc): Proc {
    this.procs.push(p);
    return p;
  }

  async close(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop().catch(() => undefined)));
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
    liveScopes.delete(this);
  }
}

/** Whether processes can be pinned: taskset exists and there are at least two CPUs. */
export const CAN_PIN =
  os.cpus().length >= 2 && ['/usr/bin/taskset', '/bin/taskset'].some((f) => existsSync(f));

/** `node argv` as spawned, under `taskset -c <cpu>` when pinning is asked for and possible. */
function pinned(cpu: number | undefined, argv: string[]): [string, string[]] {
  if (cpu === undefined || !CAN_PIN) return [process.execPath, argv];
  // taskset execs node in place: the child's pid is node's.
  return ['taskset', ['-c', String(cpu), process.execPath, ...argv]];
}

/** A control plane on 127.0.0.1 (HTTP on port 0; gRPC on `grpcPort`, default 0). */
export async function startControlPlane(
  scope: Scope,
  dataDir: string,
  opts: {
    grpcPort?: number;
    heartbeat?: string;
    env?: Record<string, string>;
    name?: string;
    bin?: string;
    nodeArgs?: string[];
  } = {},
): Promise<{ proc: Proc; url: string; grpcPort: number; api: Rest }> {
  const proc = scope.act(
    opts.name ?? 'control-plane',
    [
      'control-plane',
      '--http-addr',
      '127.0.0.1:0',
      '--grpc-addr',
      `127.0.0.1:${opts.grpcPort ?? 0}`,
      '--data-dir',
      dataDir,
      ...(opts.heartbeat ? ['--heartbeat-interval', opts.heartbeat] : []),
    ],
    { ACT_ADMIN_KEY: ADMIN_KEY, ...opts.env },
    opts.nodeArgs,
    opts.bin,
  );
  const rec = await proc.waitJson((r) => r.msg === 'control plane listening');
  const url = `http://127.0.0.1:${Number(rec.http_port)}`;
  return { proc, url, grpcPort: Number(rec.grpc_port), api: rest(url, ADMIN_KEY) };
}

export interface SidecarProc {
  proc: Proc;
  url: string;
  tcp: string;
  unix: string;
}

/** A sidecar with gRPC on 127.0.0.1:0 and a unix socket in its data dir, REST on 127.0.0.1:0. */
export async function startSidecar(
  scope: Scope,
  dataDir: string,
  controlPlane: string,
  durability: 'os' | 'disk',
  extra: string[] = [],
  opts: { nodeArgs?: string[]; bin?: string; env?: Record<string, string>; cpu?: number; name?: string } = {},
): Promise<SidecarProc> {
  const sock = path.join(dataDir, 'grpc.sock');
  const proc = scope.act(
    opts.name ?? `sidecar-${durability}`,
    [
      'sidecar',
      '--grpc-addr',
      `127.0.0.1:0,unix:${sock}`,
      '--http-addr',
      '127.0.0.1:0',
      '--data-dir',
      dataDir,
      '--control-plane',
      controlPlane,
      '--sidecar-id',
      `bench-${durability}-${path.basename(dataDir)}`,
      '--audit-durability',
      durability,
      ...extra,
    ],
    { ACT_SIDECAR_KEY: ADMIN_KEY, ...opts.env },
    opts.nodeArgs,
    opts.bin,
    opts.cpu,
  );
  const rec = await proc.waitJson((r) => r.msg === 'sidecar listening');
  return {
    proc,
    url: `http://127.0.0.1:${Number(rec.http_port)}`,
    tcp: `127.0.0.1:${(rec.grpc_ports as number[])[0]}`,
    unix: `unix:${sock}`,
  };
}

export type Rest = (method: string, route: string, body?: unknown) => Promise<{ status: number; body: any }>;

export function rest(url: string, key?: string): Rest {
  return async (method, route, body) => {
    const headers: Record<string, string> = {};
    if (key) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(url + route, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed };
  };
}

export async function expectOk(
  p: Promise<{ status: number; body: any }>,
  status: number,
  what: string,
): Promise<any> {
  const r = await p;
  if (r.status !== status) throw new Error(`${what}: HTTP ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** The first sample of a Prometheus metric on `url`/metrics. */
export async function metric(url: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const [key, value] = line.split(' ');
    if (key === name || key?.startsWith(`${name}{`)) return Number(value);
  }
  return undefined;
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  { timeoutMs = 30_000, intervalMs = 20 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    await sleep(intervalMs);
  }
}

export const CLK_TCK = 100; // `getconf CLK_TCK` on Linux (USER_HZ is fixed at 100 for /proc)

/** A process's user+system CPU time in µs, from /proc/<pid>/stat (10 ms resolution). */
export function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ", field 3 (state) is index 0: utime is field 14, stime field 15.
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLK_TCK;
}

/** A process's resident set size in MB, from /proc/<pid>/status. */
export function rssMb(pid: number, field: 'VmRSS' | 'RssAnon' = 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** A TCP port that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Nearest-rank percentile of an ascending array. */
export function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

export const round1 = (x: number): number => Math.round(x * 10) / 10;

/** A helper's JSON arguments: argv[2], or the file named by "@path". */
export function helperArgs<T>(): T {
  const raw = process.argv[2] ?? '{}';
  return JSON.parse(raw.startsWith('@') ? readFileSync(raw.slice(1), 'utf8') : raw) as T;
}

/** Exits this helper process when its parent goes away (its stdin pipe closes). */
export function exitWithParent(cleanup: () => void = () => undefined): void {
  process.stdin.on('end', () => {
    cleanup();
    process.exit(0);
  });
  process.stdin.on('error', () => undefined);
  process.stdin.resume();
  process.on('SIGTERM', () => {
    cleanup();
    process.exit(0);
  });
}
