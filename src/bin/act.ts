#!/usr/bin/env node
/**
 * The `act` binary: `act control-plane`, `act sidecar`, and the operator CLI
 * (`act <noun> <verb>`, src/cli). Composition roots only: parse config, build the
 * logger, start, handle signals; a start-up failure is one human line on stderr.
 */
import { format } from 'node:util';
import { ConfigError, parseOptions, renderHelp, type Specs } from '../common/options';
import { CONTROL_PLANE_OPTIONS } from '../control-plane/config';
import type { ControlPlaneConfig } from '../control-plane/server';
import { SIDECAR_OPTIONS } from '../sidecar/config';
import type { SidecarConfig } from '../sidecar/server';
import { createLogger, type Logger } from '../observability/logger';
import { describeStartupError, isGrpcBindNoise, preflight } from '../cli/startup-errors';
import type { ProcessCommand } from '../cli/program';

const PROCESSES: ProcessCommand[] = [
  {
    name: 'control-plane',
    summary: 'run the control plane (REST + gRPC, embedded LMDB store); --help lists its settings',
  },
  {
    name: 'sidecar',
    summary:
      'run a sidecar: local decisions from a synced replica, durable audit spool; --help lists its settings',
  },
  {
    name: 'mcp',
    summary: 'mcp wrap -- <server command>: check every call of a stdio MCP server (act mcp --help)',
  },
];

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === 'control-plane' || cmd === 'sidecar') {
    const code = await (cmd === 'control-plane' ? runControlPlane(rest) : runSidecar(rest));
    // A process that failed to start may hold timers and sockets of what it opened
    // before the failure (the sidecar's sync client): nothing is left to drain.
    if (code !== 0) process.exit(code);
    return code;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  if (cmd === 'mcp') return (require('../mcp/wrap') as typeof import('../mcp/wrap')).runMcpWrap(rest);
  // Loaded on demand: the processes never load the CLI's modules (commander, tables, yaml).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cli = require('../cli/program') as typeof import('../cli/program');
  return cli.runCli(argv, process.env, PROCESSES);
}

async function runControlPlane(args: string[]): Promise<number> {
  return runProcess(args, {
    usage: 'act control-plane [options]',
    summary:
      'Runs the ACT control plane: the source of truth for agents, policies, tokens, approvals and audit.',
    specs: CONTROL_PLANE_OPTIONS,
    component: 'control-plane',
    // Loaded on demand: a sidecar never loads the control plane's modules, nor the reverse.
    start: (cfg, logger) => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const m = require('../control-plane/server') as typeof import('../control-plane/server');
      return m.startControlPlane(cfg as ControlPlaneConfig, logger);
    },
  });
}

async function runSidecar(args: string[]): Promise<number> {
  return runProcess(args, {
    usage: 'act sidecar [options]',
    summary:
      'Runs an ACT sidecar: answers CheckPermission on loopback from a local replica kept in sync with the control plane, and spools audit records durably before it answers.',
    specs: SIDECAR_OPTIONS,
    component: 'sidecar',
    start: (cfg, logger) => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const m = require('../sidecar/server') as typeof import('../sidecar/server');
      return m.startSidecar(cfg as SidecarConfig, logger);
    },
  });
}

interface ProcessSpec {
  usage: string;
  summary: string;
  specs: Specs;
  component: string;
  start(cfg: Record<string, unknown>, logger: Logger): Promise<{ stop(): Promise<void> }>;
}

/**
 * grpc-js writes its errors to stderr as raw "E …" lines; they go to the JSON log
 * instead, except its note about a failed bind, which the start-up line reports.
 */
function routeGrpcLogs(logger: Logger): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const grpc = require('@grpc/grpc-js') as typeof import('@grpc/grpc-js');
  const log = logger.child({ component: 'grpc-js' });
  const to =
    (level: 'error' | 'info' | 'debug') =>
    (message?: unknown, ...rest: unknown[]) => {
      if (isGrpcBindNoise(message)) return;
      log[level](format(message, ...rest));
    };
  grpc.setLogger({ error: to('error'), info: to('info'), debug: to('debug') });
}

/** Shared shell of the long-running processes: --help, config errors, logger, signals. */
async function runProcess(args: string[], p: ProcessSpec): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(renderHelp(p.usage, p.summary, p.specs));
    return 0;
  }
  let cfg: Record<string, unknown>;
  try {
    cfg = parseOptions(p.specs, args, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`act ${p.component}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const early = preflight(p.component, p.specs, cfg, process.env);
  if (early) {
    process.stderr.write(`${early.message}\n`);
    return early.exitCode;
  }
  const logger = createLogger({ level: String(cfg.logLevel) }, { process: p.component, pid: process.pid });
  routeGrpcLogs(logger);
  const proc = await p.start(cfg, logger).catch((err: Error) => {
    const known = describeStartupError(p.component, p.specs, cfg, err);
    if (known) {
      process.stderr.write(`${known.message}\n`);
      return known.exitCode;
    }
    // A plain Error is a sentence meant for the user; anything else may be a bug: keep its stack in the log.
    if (err instanceof Error && err.constructor === Error && !(err as NodeJS.ErrnoException).code)
      logger.debug({ err }, `${p.component} failed to start`);
    else logger.fatal({ err }, `${p.component} failed to start`);
    process.stderr.write(`act ${p.component}: cannot start: ${err.message}\n`);
    return 1;
  });
  if (typeof proc === 'number') return proc;
  return new Promise<number>((resolve) => {
    const onSignal = (sig: string) => {
      logger.info({ signal: sig }, 'shutting down');
      proc.stop().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`act: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
