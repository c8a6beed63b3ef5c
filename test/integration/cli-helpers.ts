/**
 * Runs the built `act` CLI (dist/bin/act.js) as a user would: a separate
 * process, its own HOME (so no real config file is read), no ACT_* variables
 * unless a test gives them.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ACT_BIN } from '../support/processes';

export interface ActResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The environment without ACT_* settings, with a fresh HOME. */
export function cleanEnv(
  home = mkdtempSync(path.join(os.tmpdir(), 'act-cli-home-')),
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('ACT_') && k !== 'XDG_CONFIG_HOME') env[k] = v;
  env.HOME = home;
  return env;
}

/** Runs `act args…` to its end. */
export function runAct(
  args: string[],
  env: Record<string, string>,
  o: { input?: string; cwd?: string; timeoutMs?: number } = {},
): Promise<ActResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ACT_BIN, ...args], {
      env,
      cwd: o.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('error', reject);
    // A process that should have failed but started is killed, not leaked (code null).
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(o.input ?? '');
  });
}

/** Parses stdout as JSON, with the output in the failure message. */
export function json(r: ActResult): any {
  try {
    return JSON.parse(r.stdout);
  } catch {
    throw new Error(`stdout is not JSON (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr}`);
  }
}
