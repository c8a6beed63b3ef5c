#!/usr/bin/env node
/**
 * The `act` binary: `act control-plane`, `act sidecar`, and CLI commands.
 * Composition roots only: parse config, build the logger, start, handle signals.
 */
import { ConfigError, parseOptions, renderHelp, type Specs } from '../common/options';
import { CONTROL_PLANE_OPTIONS } from '../control-plane/config';
import type { ControlPlaneConfig } from '../control-plane/server';
import { SIDECAR_OPTIONS } from '../sidecar/config';
import type { SidecarConfig } from '../sidecar/server';
import { createLogger, type Logger } from '../observability/logger';
import { VERSION } from '../common/version';
import { CLI_HELP, runCli } from '../cli/cli';

const USAGE = `act — Agent Capability Tokens

Usage:
  act control-plane [options]   run the control plane (REST + gRPC, embedded LMDB store)
  act sidecar [options]         run a sidecar: local decisions from a synced LMDB replica, durable audit spool
  act help | --help             this text
  act version                   print the version

Operator commands (talk to the control plane's REST API; --url/ACT_URL, --key/ACT_KEY):
${CLI_HELP}

Run "act <command> --help" for a command's options.
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'control-plane':
      return runControlPlane(rest);
    case 'sidecar':
      return runSidecar(rest);
    case 'keys':
    case 'tokens':
    case 'api-keys':
    case 'audit':
      return runCli(cmd, rest);
    case 'version':
    case '--version':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      process.stderr.write(`act: unknown command ${JSON.stringify(cmd)}\n\n${USAGE}`);
      return 2;
  }
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
  const logger = createLogger({ level: String(cfg.logLevel) }, { process: p.component, pid: process.pid });
  const proc = await p.start(cfg, logger).catch((err: Error) => {
    logger.fatal({ err }, `${p.component} failed to start`);
    return undefined;
  });
  if (!proc) return 1;
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
