/**
 * Shared setup of the SDK suites (Python, C#): the Debian packages they need
 * (installed with apt-get when missing and running as root, else a loud failure),
 * a world of real processes with the agents, policies and tokens the SDK tests
 * use, `npm start` itself (scripts/start.js) on free ports for the description's
 * examples, and a runner for the SDKs' own test programs.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { SEED, type Rest } from './control-plane-helpers';
import { TEST_ADMIN_KEY, type ControlPlaneProcess, type SidecarProcess } from './processes';
import {
  SidecarFixture,
  anyHourSeedPolicy,
  freePort,
  restClient,
  waitFor,
  waitSynced,
} from './sidecar-helpers';

export const ROOT = path.resolve(__dirname, '../..');

/** Debian's python: python3-grpcio and python3-protobuf are visible only to it (not to a pyenv python on PATH). */
export const PYTHON = '/usr/bin/python3';

/**
 * What the Python SDK needs: the gRPC runtime, the compilers `npm run gen` makes its stubs with,
 * and setuptools + wheel to build its wheel from pyproject.toml (offline).
 */
export const PYTHON_PACKAGES = [
  'python3-grpcio',
  'python3-protobuf',
  'protobuf-compiler',
  'protobuf-compiler-grpc',
  'python3-setuptools',
  'python3-wheel',
];

/** Mono's C# compiler and runtime with the assemblies the C# SDK references (see TOOLING.md). */
export const MONO_PACKAGES = [
  'mono-mcs',
  'mono-runtime',
  'libmono-system-net-http4.0-cil',
  'libmono-system-runtime-serialization4.0-cil',
  'libmono-system-web-extensions4.0-cil',
  'libmono-microsoft-csharp4.0-cil',
  'libmono-system-xml-linq4.0-cil',
];

function missingPackages(pkgs: string[]): string[] {
  return pkgs.filter((p) => {
    const r = spawnSync('dpkg-query', ['-W', '-f=${db:Status-Abbrev}', p], { encoding: 'utf8' });
    return r.status !== 0 || !r.stdout.startsWith('ii');
  });
}

function aptGet(args: string[]): { ok: boolean; output: string } {
  const r = spawnSync('apt-get', args, {
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    timeout: 600_000,
  });
  return {
    ok: r.status === 0,
    output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`,
  };
}

/**
 * Makes sure the Debian packages are installed: as root, `apt-get install` what is missing
 * (after an `apt-get update` if the first try fails); otherwise throw, naming the command.
 * Never skips: a suite that cannot have its tools fails.
 */
export function ensureDebianPackages(pkgs: string[]): void {
  const missing = missingPackages(pkgs);
  if (missing.length === 0) return;
  // Another apt-get (a helper, unattended-upgrades) may hold the dpkg lock: wait for it rather than fail.
  const install = ['-o', 'DPkg::Lock::Timeout=300', 'install', '-y', '--no-install-recommends', ...missing];
  if (process.getuid?.() !== 0) {
    throw new Error(
      `missing Debian packages ${missing.join(' ')}; install them: sudo apt-get ${install.join(' ')}`,
    );
  }
  let r = aptGet(install);
  if (!r.ok) {
    aptGet(['-o', 'DPkg::Lock::Timeout=300', 'update']);
    r = aptGet(install);
  }
  const still = missingPackages(pkgs);
  if (!r.ok || still.length > 0) {
    throw new Error(
      `apt-get ${install.join(' ')} failed (still missing: ${still.join(' ')}):\n${r.output.slice(-4000)}`,
    );
  }
}

/** Runs a program to its end; resolves with its exit code and output (never rejects on a non-zero exit). */
export function runProgram(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      {
        cwd: opts.cwd ?? ROOT,
        env: { ...process.env, ...(opts.env ?? {}) },
        timeout: opts.timeoutMs ?? 240_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: unknown }).code ?? null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
      },
    );
  });
}

/** Asserts a unittest run passed every test, ran at least `min`, and skipped none. */
export function assertUnittestPassed(
  r: { code: number | null; stdout: string; stderr: string },
  min: number,
): number {
  const out = `${r.stdout}\n${r.stderr}`;
  assert.equal(r.code, 0, out);
  const ran = /^Ran (\d+) tests? in /m.exec(out);
  assert.ok(ran, `no "Ran N tests" line:\n${out}`);
  const n = Number(ran[1]);
  assert.ok(n >= min, `ran ${n} tests, expected at least ${min}:\n${out}`);
  assert.match(out, /^OK$/m, out);
  assert.doesNotMatch(out, /skipped|expected failure/i, `a test was skipped:\n${out}`);
  return n;
}

export interface SdkWorld {
  cp: ControlPlaneProcess;
  sc: SidecarProcess;
  api: Rest;
  /** The sidecar's unix socket (`unix:` + this is a gRPC address). */
  sockPath: string;
  /** An address nothing listens on (a port that was free a moment ago). */
  closedAddr: string;
  /** The seed's capabilities, no constraints. */
  support: { agentId: string; policyId: string; token: string; tokenId: string };
  /** Only create:support_ticket: read:customer_profile is denied. */
  ticketsOnly: { agentId: string; policyId: string; token: string; tokenId: string };
  /** create:transaction with an approval rule (context.amount > 1000). */
  approvals: { agentId: string; policyId: string; token: string; tokenId: string };
  /** A token the SDK tests revoke. */
  revocable: { agentId: string; policyId: string; token: string; tokenId: string };
  /** Environment for an SDK test program (addresses, tokens, the control plane for approvals). */
  env: Record<string, string>;
}

/** A control plane and a sidecar (TCP and unix socket) with the agents, policies and tokens the SDK tests use. */
export async function startSdkWorld(fx: SidecarFixture, name: string): Promise<SdkWorld> {
  const cp = await fx.controlPlane(fx.dir(`${name}-cp`));
  const api = restClient(cp.url, cp.adminKey);
  const sockPath = path.join(fx.dir(`${name}-sock`), 'decision.sock');
  const sc = await fx.sidecar(cp, fx.dir(`${name}-sc`), {
    sidecarId: `sc-${name}`,
    args: ['--grpc-addr', `127.0.0.1:0,unix:${sockPath}`],
  });
  await sc.waitForLog('sync live');
  const support = await fx.agentWithToken(api, `${name}-support`, [...SEED.policy.capabilities]);
  const ticketsOnly = await fx.agentWithToken(api, `${name}-tickets-only`, ['create:support_ticket']);
  const approvalsAgent = await fx.createAgent(api, { name: `${name}-billing` });
  const approvalsPolicy = await fx.createPolicy(api, {
    name: `${name} transactions`,
    capabilities: ['create:transaction'],
    approval_rules: ['context.amount > 1000'],
  });
  const approvalsTok = await fx.issue(api, approvalsAgent.agent_id, [approvalsPolicy.policy_id]);
  const approvals = {
    agentId: approvalsAgent.agent_id as string,
    policyId: approvalsPolicy.policy_id as string,
    token: approvalsTok.token as string,
    tokenId: approvalsTok.token_id as string,
  };
  const revocable = await fx.agentWithToken(api, `${name}-revocable`, ['read:customer_profile']);
  await waitSynced(cp, sc);
  const closedAddr = `127.0.0.1:${await freePort()}`;
  return {
    cp,
    sc,
    api,
    sockPath,
    closedAddr,
    support,
    ticketsOnly,
    approvals,
    revocable,
    env: {
      ACT_SIDECAR_GRPC_ADDR: `127.0.0.1:${sc.grpcPort}`,
      ACT_SIDECAR_HTTP_ADDR: `127.0.0.1:${sc.httpPort}`,
      ACT_TOKEN: support.token,
      ACT_TEST_UNIX_ADDR: `unix:${sockPath}`,
      ACT_TEST_CLOSED_ADDR: closedAddr,
      ACT_TEST_TICKETS_ONLY_TOKEN: ticketsOnly.token,
      ACT_TEST_APPROVAL_TOKEN: approvals.token,
      ACT_TEST_REVOCABLE_TOKEN: revocable.token,
      ACT_TEST_REVOCABLE_TOKEN_ID: revocable.tokenId,
      ACT_TEST_CONTROL_PLANE_URL: cp.url,
      ACT_TEST_ADMIN_KEY: cp.adminKey,
    },
  };
}

export interface Demo {
  child: ChildProcess;
  output: string[];
  api: Rest;
  controlPlaneUrl: string;
  sidecarUrl: string;
  sidecarGrpc: string;
  sidecarHttp: string;
  stop(): Promise<void>;
}

/**
 * `npm start` as a user runs it (scripts/start.js: control plane, then a sidecar with a
 * SIDECAR-role key it creates), on free ports and a temp data dir, after `npm run build`.
 * Resolves once its banner says everything is up.
 */
export async function startDemo(fx: SidecarFixture, name: string): Promise<Demo> {
  const [http, grpcPort, scHttp, scGrpc] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const sidecarHttp = `127.0.0.1:${scHttp}`;
  const sidecarGrpc = `127.0.0.1:${scGrpc}`;
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts/start.js')], {
    cwd: ROOT,
    env: {
      ...process.env,
      ACT_DATA_DIR: fx.dir(`${name}-demo`),
      ACT_ADMIN_KEY: TEST_ADMIN_KEY,
      ACT_HTTP_ADDR: `127.0.0.1:${http}`,
      ACT_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
      ACT_CONTROL_PLANE: `127.0.0.1:${grpcPort}`,
      ACT_SIDECAR_HTTP_ADDR: sidecarHttp,
      ACT_SIDECAR_GRPC_ADDR: sidecarGrpc,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => output.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => output.push(l));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const demo: Demo = {
    child,
    output,
    api: restClient(`http://127.0.0.1:${http}`, TEST_ADMIN_KEY),
    controlPlaneUrl: `http://127.0.0.1:${http}`,
    sidecarUrl: `http://${sidecarHttp}`,
    sidecarGrpc,
    sidecarHttp,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  // teardown stops it like the fixture's own processes (SIGTERM: start.js stops its children).
  fx.procs.push({
    child,
    output,
    waitForLog: () => Promise.reject(new Error('not a JSON-logging process')),
    stop: async () => {
      await demo.stop();
      return child.exitCode;
    },
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  });
  await waitFor(
    'the npm start banner',
    async () => {
      if (child.exitCode !== null) throw new Error(`scripts/start.js exited:\n${output.join('\n')}`);
      return output.some((l) => l.includes('ACT is running')) ? true : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 100 },
  );
  return demo;
}

/** The seed's agent, its policy (every hour: the tests run around the clock) and a token, created at the demo. */
export async function seedAgentAtDemo(
  fx: SidecarFixture,
  demo: Demo,
  capabilities: readonly string[] = SEED.policy.capabilities,
  name = 'Customer Support Agent',
): Promise<{ agentId: string; token: string }> {
  const agent = await fx.createAgent(demo.api, { ...SEED.agent, name });
  const policy = await fx.createPolicy(demo.api, {
    ...anyHourSeedPolicy(`${name} policy`),
    capabilities: [...capabilities],
  });
  const tok = await fx.issue(demo.api, agent.agent_id, [policy.policy_id], {
    metadata: SEED.token.metadata,
  });
  await waitSynced({ url: demo.controlPlaneUrl }, { url: demo.sidecarUrl });
  return { agentId: agent.agent_id, token: tok.token };
}
