/**
 * Spawns the real `act` processes (built into dist/ by `npm test`) on port 0
 * with temp data dirs, and reads their listening ports from the JSON log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

/**
 * The `act` binary the tests spawn: this tree's build, or `ACT_TEST_BIN` (e.g. the build of an
 * older commit, to show that a test fails there).
 */
export const ACT_BIN = process.env.ACT_TEST_BIN
  ? path.resolve(process.env.ACT_TEST_BIN)
  : path.resolve(__dirname, '../../dist/bin/act.js');

export interface Spawned {
  child: ChildProcess;
  /** Every stdout+stderr line so far. */
  output: string[];
  /** Resolves with the first JSON log line whose msg matches. */
  waitForLog(msg: string | RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

export function spawnAct(args: string[], env: Record<string, string> = {}): Spawned {
  const child = spawn(process.execPath, [ACT_BIN, ...args], {
    env: { ...process.env, ACT_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const waiters: { re: RegExp | string; resolve: (v: Record<string, unknown>) => void }[] = [];
  const onLine = (line: string) => {
    output.push(line);
    if (!line.startsWith('{')) return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    for (const w of [...waiters]) {
      const msg = String(rec.msg ?? '');
      if (typeof w.re === 'string' ? msg === w.re : w.re.test(msg)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(rec);
      }
    }
  };
  createInterface({ input: child.stdout! }).on('line', onLine);
  createInterface({ input: child.stderr! }).on('line', onLine);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output,
    waitForLog(msg, timeoutMs = 15_000) {
      // Already seen?
      for (const line of output) {
        if (!line.startsWith('{')) continue;
        try {
          const rec = JSON.parse(line) as Record<string, unknown>;
          const m = String(rec.msg ?? '');
          if (typeof msg === 'string' ? m === msg : msg.test(m)) return Promise.resolve(rec);
        } catch {
          // not JSON
        }
      }
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`timed out waiting for log ${String(msg)}; output:\n${output.join('\n')}`)),
          timeoutMs,
        );
        const w = {
          re: msg,
          resolve: (v: Record<string, unknown>) => {
            clearTimeout(t);
            resolve(v);
          },
        };
        waiters.push(w);
        void exited.then((code) => {
          if (waiters.includes(w)) {
            clearTimeout(t);
            reject(
              new Error(`process exited (${code}) before log ${String(msg)}; output:\n${output.join('\n')}`),
            );
          }
        });
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `act-${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const TEST_ADMIN_KEY = 'test-admin-key-0123456789abcdef';

export interface ControlPlaneProcess extends Spawned {
  httpPort: number;
  grpcPort: number;
  dataDir: string;
  adminKey: string;
  url: string;
}

/** Starts `act control-plane` on free ports with ACT_ADMIN_KEY set. */
export async function startControlPlane(
  dataDir: string,
  extraEnv: Record<string, string> = {},
  extraArgs: string[] = [],
): Promise<ControlPlaneProcess> {
  const p = spawnAct(
    [
      'control-plane',
      '--http-addr',
      '127.0.0.1:0',
      '--grpc-addr',
      '127.0.0.1:0',
      '--data-dir',
      dataDir,
      ...extraArgs,
    ],
    { ACT_ADMIN_KEY: TEST_ADMIN_KEY, ...extraEnv },
  );
  const rec = await p.waitForLog('control plane listening');
  const httpPort = Number(rec.http_port);
  return {
    ...p,
    httpPort,
    grpcPort: Number(rec.grpc_port),
    dataDir,
    adminKey: extraEnv.ACT_ADMIN_KEY ?? TEST_ADMIN_KEY,
    url: `http://127.0.0.1:${httpPort}`,
  };
}

/** A small JSON client for the REST API. */
export function restClient(url: string, key?: string) {
  return async function call(
    method: string,
    route: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: any; text: string; headers: Headers }> {
    const h: Record<string, string> = { ...headers };
    if (key !== undefined && h.authorization === undefined) h.authorization = `Bearer ${key}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === 'string' ? body : JSON.stringify(body);
      h['content-type'] ??= 'application/json';
    }
    const res = await fetch(url + route, { method, headers: h, body: payload });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text, headers: res.headers };
  };
}

export interface SidecarProcess extends Spawned {
  httpPort: number;
  grpcPort: number;
  dataDir: string;
  sidecarId: string;
  url: string;
}

/** Starts `act sidecar` against a control plane, on free ports, with the given settings. */
export async function startSidecar(
  cp: { grpcPort: number; adminKey: string },
  dataDir: string,
  opts: {
    sidecarId?: string;
    agentIds?: string;
    durability?: 'disk' | 'os';
    env?: Record<string, string>;
    args?: string[];
  } = {},
): Promise<SidecarProcess> {
  const sidecarId = opts.sidecarId ?? `sc-${path.basename(dataDir)}`;
  const p = spawnAct(
    [
      'sidecar',
      '--grpc-addr',
      '127.0.0.1:0',
      '--http-addr',
      '127.0.0.1:0',
      '--data-dir',
      dataDir,
      '--control-plane',
      `127.0.0.1:${cp.grpcPort}`,
      '--sidecar-id',
      sidecarId,
      '--agent-ids',
      opts.agentIds ?? '*',
      '--audit-durability',
      opts.durability ?? 'disk',
      ...(opts.args ?? []),
    ],
    { ACT_SIDECAR_KEY: cp.adminKey, ...(opts.env ?? {}) },
  );
  const rec = await p.waitForLog('sidecar listening');
  const httpPort = Number(rec.http_port);
  return {
    ...p,
    httpPort,
    grpcPort: (rec.grpc_ports as number[])[0]!,
    dataDir,
    sidecarId,
    url: `http://127.0.0.1:${httpPort}`,
  };
}
