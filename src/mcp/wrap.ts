/**
 * `act mcp wrap --token-env ACT_TOKEN [--config file] [--name n] [--sidecar addr] -- <server command…>`
 *
 * For MCP servers a desktop agent launches over stdio: the agent launches this instead, which
 * speaks MCP on stdin/stdout to the agent, runs the real server as its child, and checks every
 * call against the local sidecar over gRPC (@act-platform/sdk) before the child sees it. The
 * sidecar writes the decision records. stdout carries only MCP; logs go to stderr.
 *
 * The child gets the wrapper's environment without the token's variable: the wrapped server
 * never holds the agent's ACT token.
 */
import { ACTClient, type Decision } from '@act-platform/sdk';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StartupError } from '../common/errors';
import { createLogger, type Logger } from '../observability/logger';
import type { CallChecker, Verdict } from './checker';
import { loadMcpConfig, parseMcpConfig, type McpConfig } from './config';
import { createFront } from './front';
import { Upstream } from './upstream';

export const WRAP_USAGE = `Usage: act mcp wrap --token-env NAME [options] -- <server command> [args…]

Runs a stdio MCP server as a child and checks every tool call, resource read and prompt get
against the local ACT sidecar (gRPC) before the server sees it. Speaks MCP on stdin/stdout.

Options:
  --token-env NAME     environment variable holding the agent's ACT token (required; not passed to the server)
  --config FILE        tool mapping (JSON or YAML; the gateway's format with one server and no url/command)
  --name NAME          the server's name in default actions, call:<name>.<tool> (default: the config's, else "local")
  --sidecar ADDR       the sidecar's gRPC address (default: ACT_SIDECAR_GRPC_ADDR, else 127.0.0.1:8711)
  --log-level LEVEL    stderr log level (default: ACT_LOG_LEVEL, else info)
  --help               this text
`;

interface WrapArgs {
  tokenEnv: string;
  config: string | undefined;
  name: string | undefined;
  sidecar: string | undefined;
  logLevel: string;
  command: string[];
}

/** Parses `wrap …` (the words after `act mcp`). */
export function parseWrapArgs(argv: string[], env: NodeJS.ProcessEnv): WrapArgs | 'help' {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') return 'help';
  if (sub !== 'wrap') throw new StartupError(`unknown command "mcp ${sub}" (expected: act mcp wrap)`);
  const dash = rest.indexOf('--');
  const opts = dash >= 0 ? rest.slice(0, dash) : rest;
  const command = dash >= 0 ? rest.slice(dash + 1) : [];
  const out: Partial<WrapArgs> = { logLevel: env.ACT_LOG_LEVEL ?? 'info' };
  const keys: Record<string, keyof WrapArgs> = {
    '--token-env': 'tokenEnv',
    '--config': 'config',
    '--name': 'name',
    '--sidecar': 'sidecar',
    '--log-level': 'logLevel',
  };
  for (let i = 0; i < opts.length; i++) {
    const a = opts[i]!;
    if (a === '--help' || a === '-h') return 'help';
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const key = keys[flag];
    if (!key) throw new StartupError(`unknown option ${flag}`, 'act mcp wrap --help');
    const v = eq > 0 ? a.slice(eq + 1) : opts[++i];
    if (v === undefined || v === '') throw new StartupError(`${flag} needs a value`, flag);
    (out as Record<string, unknown>)[key] = v;
  }
  if (!out.tokenEnv)
    throw new StartupError('--token-env is required: the variable that holds the ACT token', '--token-env');
  if (command.length === 0)
    throw new StartupError(
      'give the server command after --, e.g. -- npx -y @modelcontextprotocol/server-filesystem /data',
      '--',
    );
  if (out.name !== undefined && !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(out.name))
    throw new StartupError('--name is 1-32 of [a-z0-9_-]', '--name');
  return { ...(out as WrapArgs), command };
}

/** The wrapper's CLI entry: resolves with the exit code when the agent closes stdin (or on a signal). */
export async function runMcpWrap(argv: string[]): Promise<number> {
  let args: WrapArgs | 'help';
  let config: McpConfig;
  try {
    args = parseWrapArgs(argv, process.env);
    if (args === 'help') {
      process.stdout.write(WRAP_USAGE);
      return 0;
    }
    config = args.config
      ? loadMcpConfig(args.config, process.env, { wrapper: true, setting: '--config' })
      : parseMcpConfig({}, process.env, { wrapper: true });
  } catch (err) {
    if (!(err instanceof StartupError)) throw err;
    process.stderr.write(`act mcp wrap: ${err.message}${err.setting ? ` (${err.setting})` : ''}\n`);
    return 2;
  }
  const token = process.env[args.tokenEnv];
  if (!token) {
    process.stderr.write(`act mcp wrap: environment variable ${args.tokenEnv} (--token-env) is not set\n`);
    return 2;
  }
  const logger = createLogger(
    { level: args.logLevel, destination: process.stderr },
    { process: 'mcp-wrap', pid: process.pid },
  );
  const server = { ...config.servers[0]!, ...(args.name ? { name: args.name } : {}) };

  // The child's environment: ours, without the token (under any name).
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && k !== args.tokenEnv && v !== token) childEnv[k] = v;

  const act = new ACTClient({ token, ...(args.sidecar ? { address: args.sidecar } : {}), timeoutMs: 5000 });
  const upstream = new Upstream(server, {
    logger: logger.child({ server: server.name }),
    stderr: 'inherit',
    maxMessageBytes: config.limits.maxResultBytes,
    transport: {
      kind: 'stdio',
      command: args.command[0]!,
      args: args.command.slice(1),
      env: childEnv,
      cwd: undefined,
    },
  });
  const front = createFront({
    upstreams: [upstream],
    namespaced: false,
    checker: sdkChecker(act, logger),
    progressIntervalMs: config.progressIntervalMs,
    logger,
  });
  const transport = new StdioServerTransport();
  const done = new Promise<void>((resolve) => {
    front.server.onclose = () => resolve();
    process.stdin.once('end', () => resolve());
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await front.server.connect(transport);
  // The child starts now, so its first list is quick; a failure shows on first use.
  void upstream.connect().catch(() => undefined);
  logger.info(
    { server: server.name, command: args.command[0], sidecar: act.address },
    'mcp wrap serving on stdio',
  );
  await done;
  await front.server.close().catch(() => undefined);
  await upstream.close();
  act.close();
  return 0;
}

/** The checker over the sidecar's DecisionService. */
function sdkChecker(act: ACTClient, logger: Logger): CallChecker {
  return {
    async check(parts, approvalId) {
      const d = await act.check({
        action: parts.action,
        resource: parts.resource,
        context: parts.context,
        ...(approvalId ? { approvalId } : {}),
      });
      return verdictOf(d, approvalId);
    },
    async waitForApproval(approvalId, timeoutMs, signal) {
      try {
        const u = await act.waitForApproval(approvalId, { timeoutMs, signal });
        const status = u.status === 'UNRECOGNIZED' ? 'UNKNOWN' : u.status;
        return { status, reason: u.reason };
      } catch (err) {
        return { status: 'UNKNOWN', reason: (err as Error).message };
      }
    },
    // The decision API has no "what could this token ever do" call: every tool is listed and
    // each call is decided on its own (see docs/mcp.md).
    visible: () => ({ mayEverAllow: () => true }),
    async recordOutcome(parts, v, out) {
      // The sidecar has no append API for clients: the outcome goes to the log, next to the decision's id.
      logger.info(
        {
          decision_audit_id: v.auditId,
          action: parts.action,
          server: out.server,
          method: out.method,
          target: out.target,
          outcome: out.outcome,
          latency_ms: Math.round(out.latencyMs * 10) / 10,
          ...(out.error ? { error: out.error } : {}),
        },
        'MCP call outcome',
      );
    },
  };
}

function verdictOf(d: Decision, presented: string): Verdict {
  const x = d.details;
  return {
    decision: d.decision,
    reasonCode: d.reasonCode,
    reason: d.reason,
    auditId: d.auditId,
    approvalId: d.approvalId ?? (d.decision === 'ALLOW' ? presented : ''),
    details: {
      missing_capability: x.missingCapability,
      retry_after_ms: x.retryAfterMs,
      next_allowed_at: x.nextAllowedAt,
      remaining_daily_budget: x.remainingDailyBudget,
      remaining_rate: x.remainingRate,
      policy_id: x.policyId,
      rule: x.rule,
    },
  };
}
