#!/usr/bin/env node
/**
 * The `act` binary: `act control-plane`, `act sidecar`, and CLI commands.
 * Composition roots only: parse config, build the logger, start, handle signals.
 */
import { ConfigError, parseOptions, renderHelp } from '../common/options';
import { CONTROL_PLANE_OPTIONS } from '../control-plane/config';
import { startControlPlane } from '../control-plane/server';
import { createLogger } from '../observability/logger';
import { VERSION } from '../common/version';
import { CLI_HELP, runCli } from '../cli/cli';

const USAGE = `act — Agent Capability Tokens

Usage:
  act control-plane [options]   run the control plane (REST + gRPC, embedded LMDB store)
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
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(
      renderHelp(
        'act control-plane [options]',
        'Runs the ACT control plane: the source of truth for agents, policies, tokens, approvals and audit.',
        CONTROL_PLANE_OPTIONS,
      ),
    );
    return 0;
  }
  let cfg;
  try {
    cfg = parseOptions(CONTROL_PLANE_OPTIONS, args, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`act control-plane: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger({ level: cfg.logLevel }, { component: 'control-plane', pid: process.pid });
  const cp = await startControlPlane(cfg, logger).catch((err: Error) => {
    logger.fatal({ err }, 'control plane failed to start');
    return undefined;
  });
  if (!cp) return 1;
  return new Promise<number>((resolve) => {
    const onSignal = (sig: string) => {
      logger.info({ signal: sig }, 'shutting down');
      cp.stop().then(
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
