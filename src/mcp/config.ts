/**
 * The MCP gateway's config file (JSON or YAML): the upstream MCP servers and, per tool, how a
 * call maps to an ACT check. Read and validated once at start; the first problem is reported in
 * one line naming the field (`servers.billing.tools.create_transaction.on_approval: …`).
 * docs/mcp.md documents every field.
 */
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { StartupError } from '../common/errors';
import { duration } from '../common/options';
import { parseAction } from '../policy';
import { parsePointer, type Pointer } from './pointer';

/** What to do when a call needs a human's approval. */
export type OnApproval = 'hold' | 'return';

/** How one tool's calls map to ACT checks. */
export interface ToolRule {
  /** "verb:resource_type"; undefined: `call:<server>.<tool>` (sanitised). */
  action: string | undefined;
  /** Where the resource comes from in the arguments; undefined: no resource (""). */
  resource: { text: string; pointer: Pointer } | undefined;
  /** Arguments copied into `context.arguments`: all of them, none, or the listed pointers. */
  context: 'all' | 'none' | Pointer[];
  /** Arguments replaced by "[redacted]" in the check context (and so in the audit record). */
  redact: Pointer[];
  /** APPROVAL_REQUIRED: hold the call while a human decides, or answer at once. Default hold. */
  onApproval: OnApproval;
  /** How long a held call waits for a human (default 50s: under the usual 60 s client timeout). */
  approvalTimeoutMs: number;
  /** Never listed, never forwarded. */
  hidden: boolean;
}

export type UpstreamTransport =
  | { kind: 'http'; url: string; headers: Record<string, string> }
  | { kind: 'stdio'; command: string; args: string[]; env: Record<string, string>; cwd: string | undefined };

export interface UpstreamConfig {
  /** [a-z0-9_-], 1-32: the namespace of its tools ("billing" → "billing.create_transaction"). */
  name: string;
  /** undefined only in the stdio wrapper, whose command comes after `--`. */
  transport: UpstreamTransport | undefined;
  /** An upstream call with no answer (and no progress) for this long fails (default 30s). */
  timeoutMs: number;
  /** The longest one upstream call may run, progress or not (default 5m). */
  maxCallMs: number;
  /** Connecting (and initialising) an upstream gives up after this long (default 10s). */
  connectTimeoutMs: number;
  /** Tools not listed in `tools`. */
  defaults: ToolRule;
  tools: Map<string, ToolRule>;
  /** Action of resources/read (default "read:mcp_resource"); the resource is the URI. */
  resourcesAction: string;
  /** Action of prompts/get (default "get:mcp_prompt"); the resource is "<server>.<prompt>". */
  promptsAction: string;
}

export interface McpConfig {
  servers: UpstreamConfig[];
  limits: {
    /** Largest JSON-RPC request body accepted (default 1 MiB). */
    maxMessageBytes: number;
    /** Largest upstream result passed on to the agent (default 8 MiB). */
    maxResultBytes: number;
    /** Open MCP sessions at most (default 256); the idlest is closed to make room. */
    maxSessions: number;
    /** A session unused this long is closed (default 30m). */
    sessionIdleMs: number;
  };
  /** While a call is held for approval, a progress notification this often (default 5s). */
  progressIntervalMs: number;
  /** Origins allowed to call the gateway (browsers); requests with another Origin are refused. */
  allowedOrigins: string[];
}

export const CONFIG_SETTING = '--mcp-config / ACT_MCP_CONFIG';
const MAX_FILE_BYTES = 1024 * 1024;
const SERVER_NAME = /^[a-z0-9][a-z0-9_-]{0,31}$/;

/** A problem in the file, at `field` (dotted path). */
export class McpConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'McpConfigError';
  }
}

/**
 * Reads and validates the config file.
 * @throws StartupError naming the file and the field at fault
 */
export function loadMcpConfig(
  file: string,
  env: NodeJS.ProcessEnv,
  opts: { wrapper?: boolean; setting?: string } = {},
): McpConfig {
  const setting = opts.setting ?? CONFIG_SETTING;
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_FILE_BYTES)
      throw new StartupError(`MCP config ${file} is ${size} bytes; at most ${MAX_FILE_BYTES}`, setting);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof StartupError) throw err;
    throw new StartupError(`cannot read MCP config ${file}: ${(err as Error).message}`, setting);
  }
  let doc: unknown;
  try {
    doc = /\.json$/i.test(file)
      ? JSON.parse(text)
      : YAML.parse(text, { uniqueKeys: true, maxAliasCount: 100, prettyErrors: false });
  } catch (err) {
    const first = (err as Error).message.split('\n')[0];
    throw new StartupError(
      `MCP config ${file} is not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${first}`,
      setting,
    );
  }
  try {
    return parseMcpConfig(doc, env, { wrapper: opts.wrapper ?? false, baseDir: path.dirname(file) });
  } catch (err) {
    if (err instanceof McpConfigError) throw new StartupError(`MCP config ${file}: ${err.message}`, setting);
    throw err;
  }
}

/**
 * Validates a parsed config document.
 * @param opts.wrapper the stdio wrapper's form: exactly one server, without url/command
 * @throws McpConfigError at the first problem
 */
export function parseMcpConfig(
  doc: unknown,
  env: NodeJS.ProcessEnv,
  opts: { wrapper: boolean; baseDir?: string },
): McpConfig {
  const top = object(doc ?? {}, '(top level)', ['servers', 'limits', 'approvals', 'allowed_origins']);
  const serversRaw = object(top.servers ?? (opts.wrapper ? { local: {} } : undefined), 'servers', undefined);
  const names = Object.keys(serversRaw);
  if (names.length === 0) throw new McpConfigError('servers', 'name at least one upstream MCP server');
  if (opts.wrapper && names.length !== 1)
    throw new McpConfigError('servers', 'the stdio wrapper wraps one server: name exactly one');
  const servers = names.map((name) => server(name, serversRaw[name], env, opts));

  const limitsRaw = object(top.limits ?? {}, 'limits', [
    'max_message_bytes',
    'max_result_bytes',
    'max_sessions',
    'session_idle',
  ]);
  const approvals = object(top.approvals ?? {}, 'approvals', ['progress_interval']);
  const origins = top.allowed_origins ?? [];
  if (
    !Array.isArray(origins) ||
    origins.some((o) => typeof o !== 'string' || !/^https?:\/\/[^/\s]+$/.test(o))
  )
    throw new McpConfigError(
      'allowed_origins',
      'expected a list of origins such as "https://app.example.com"',
    );
  return {
    servers,
    limits: {
      maxMessageBytes: int(
        limitsRaw.max_message_bytes,
        'limits.max_message_bytes',
        1024 * 1024,
        1024,
        64 << 20,
      ),
      maxResultBytes: int(limitsRaw.max_result_bytes, 'limits.max_result_bytes', 8 << 20, 1024, 256 << 20),
      maxSessions: int(limitsRaw.max_sessions, 'limits.max_sessions', 256, 1, 100_000),
      sessionIdleMs: dur(limitsRaw.session_idle, 'limits.session_idle', 30 * 60_000),
    },
    progressIntervalMs: dur(approvals.progress_interval, 'approvals.progress_interval', 5000),
    allowedOrigins: origins as string[],
  };
}

const SERVER_KEYS = [
  'url',
  'headers',
  'command',
  'args',
  'env',
  'cwd',
  'timeout',
  'max_call_time',
  'connect_timeout',
  'tools',
  'defaults',
  'resources',
  'prompts',
];

function server(
  name: string,
  raw: unknown,
  env: NodeJS.ProcessEnv,
  opts: { wrapper: boolean; baseDir?: string },
): UpstreamConfig {
  const at = `servers.${name}`;
  if (!SERVER_NAME.test(name))
    throw new McpConfigError(at, 'a server name is 1-32 of [a-z0-9_-], starting with a letter or digit');
  const s = object(raw ?? {}, at, SERVER_KEYS);
  let transport: UpstreamTransport | undefined;
  if (opts.wrapper) {
    if (s.url !== undefined || s.command !== undefined)
      throw new McpConfigError(
        `${at}.${s.url !== undefined ? 'url' : 'command'}`,
        'the wrapped server is the command after --, not in the file',
      );
  } else if (s.url !== undefined && s.command !== undefined) {
    throw new McpConfigError(at, 'give either url (Streamable HTTP) or command (stdio), not both');
  } else if (s.url !== undefined) {
    if (typeof s.url !== 'string') throw new McpConfigError(`${at}.url`, 'expected a URL string');
    let u: URL;
    try {
      u = new URL(s.url);
    } catch {
      throw new McpConfigError(`${at}.url`, `${JSON.stringify(s.url)} is not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new McpConfigError(`${at}.url`, 'expected an http:// or https:// URL (Streamable HTTP)');
    for (const k of ['args', 'env', 'cwd'])
      if (s[k] !== undefined) throw new McpConfigError(`${at}.${k}`, 'only for a command (stdio) server');
    transport = { kind: 'http', url: u.toString(), headers: strings(s.headers, `${at}.headers`, env) };
  } else if (s.command !== undefined) {
    if (typeof s.command !== 'string' || s.command === '')
      throw new McpConfigError(`${at}.command`, 'expected the program to run');
    if (s.headers !== undefined) throw new McpConfigError(`${at}.headers`, 'only for a url (HTTP) server');
    const args = s.args ?? [];
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string' && typeof a !== 'number'))
      throw new McpConfigError(`${at}.args`, 'expected a list of strings');
    if (s.cwd !== undefined && typeof s.cwd !== 'string')
      throw new McpConfigError(`${at}.cwd`, 'expected a directory');
    transport = {
      kind: 'stdio',
      command: s.command,
      args: args.map(String),
      env: strings(s.env, `${at}.env`, env),
      cwd: typeof s.cwd === 'string' ? path.resolve(opts.baseDir ?? '.', s.cwd) : undefined,
    };
  } else {
    throw new McpConfigError(at, 'give url (a Streamable HTTP server) or command (a stdio server to spawn)');
  }

  const defaults = toolRule(s.defaults ?? {}, `${at}.defaults`, true, undefined);
  const toolsRaw = object(s.tools ?? {}, `${at}.tools`, undefined);
  const tools = new Map<string, ToolRule>();
  for (const [tool, v] of Object.entries(toolsRaw)) {
    if (tool.length === 0 || tool.length > 128)
      throw new McpConfigError(`${at}.tools`, 'tool names are 1-128 characters');
    tools.set(tool, toolRule(v ?? {}, `${at}.tools.${tool}`, false, defaults));
  }
  const resources = object(s.resources ?? {}, `${at}.resources`, ['action']);
  const prompts = object(s.prompts ?? {}, `${at}.prompts`, ['action']);
  return {
    name,
    transport,
    timeoutMs: dur(s.timeout, `${at}.timeout`, 30_000),
    maxCallMs: dur(s.max_call_time, `${at}.max_call_time`, 5 * 60_000),
    connectTimeoutMs: dur(s.connect_timeout, `${at}.connect_timeout`, 10_000),
    defaults,
    tools,
    resourcesAction: action(resources.action, `${at}.resources.action`) ?? 'read:mcp_resource',
    promptsAction: action(prompts.action, `${at}.prompts.action`) ?? 'get:mcp_prompt',
  };
}

const RULE_KEYS = ['action', 'resource', 'context', 'redact', 'on_approval', 'approval_timeout', 'hidden'];
const DEFAULT_KEYS = ['context', 'redact', 'on_approval', 'approval_timeout', 'hidden'];

function toolRule(raw: unknown, at: string, isDefaults: boolean, base: ToolRule | undefined): ToolRule {
  const r = object(raw, at, isDefaults ? DEFAULT_KEYS : RULE_KEYS);
  let resource: ToolRule['resource'];
  if (r.resource !== undefined) {
    if (typeof r.resource !== 'string' || r.resource === '')
      throw new McpConfigError(
        `${at}.resource`,
        'expected a JSON pointer into the arguments, e.g. /account_id',
      );
    resource = { text: r.resource, pointer: pointer(r.resource, `${at}.resource`) };
  }
  let context: ToolRule['context'] = base?.context ?? 'all';
  if (r.context !== undefined) {
    if (r.context === 'all' || r.context === 'none') context = r.context;
    else if (Array.isArray(r.context)) context = r.context.map((p, i) => pointer(p, `${at}.context[${i}]`));
    else throw new McpConfigError(`${at}.context`, 'expected "all", "none" or a list of JSON pointers');
  }
  let redact = base?.redact ?? [];
  if (r.redact !== undefined) {
    if (!Array.isArray(r.redact))
      throw new McpConfigError(`${at}.redact`, 'expected a list of JSON pointers');
    redact = r.redact.map((p, i) => pointer(p, `${at}.redact[${i}]`));
  }
  let onApproval: OnApproval = base?.onApproval ?? 'hold';
  if (r.on_approval !== undefined) {
    if (r.on_approval !== 'hold' && r.on_approval !== 'return')
      throw new McpConfigError(
        `${at}.on_approval`,
        `expected "hold" or "return", got ${JSON.stringify(r.on_approval)}`,
      );
    onApproval = r.on_approval;
  }
  const approvalTimeoutMs = dur(
    r.approval_timeout,
    `${at}.approval_timeout`,
    base?.approvalTimeoutMs ?? 50_000,
  );
  if (approvalTimeoutMs > 900_000)
    throw new McpConfigError(`${at}.approval_timeout`, 'at most 15m (the longest approval wait)');
  let hidden = base?.hidden ?? false;
  if (r.hidden !== undefined) {
    if (typeof r.hidden !== 'boolean') throw new McpConfigError(`${at}.hidden`, 'expected true or false');
    hidden = r.hidden;
  }
  return {
    action: isDefaults ? undefined : action(r.action, `${at}.action`),
    resource,
    context,
    redact,
    onApproval,
    approvalTimeoutMs,
    hidden,
  };
}

// ---- small readers ----

function object(v: unknown, at: string, allowed: string[] | undefined): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new McpConfigError(at, 'expected a mapping');
  const o = v as Record<string, unknown>;
  if (allowed !== undefined)
    for (const k of Object.keys(o))
      if (!allowed.includes(k))
        throw new McpConfigError(
          at === '(top level)' ? k : `${at}.${k}`,
          `unknown field (expected one of ${allowed.join(', ')})`,
        );
  return o;
}

function action(v: unknown, at: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || parseAction(v) === undefined)
    throw new McpConfigError(
      at,
      `${JSON.stringify(v)} is not an action: "verb:resource_type", each 1-64 of [a-z0-9_.-]`,
    );
  return v;
}

function pointer(v: unknown, at: string): Pointer {
  if (typeof v !== 'string') throw new McpConfigError(at, 'expected a JSON pointer such as /amount');
  try {
    const p = parsePointer(v);
    if (p.length === 0)
      throw new Error('the empty pointer names the whole arguments object; name one argument');
    return p;
  } catch (err) {
    throw new McpConfigError(at, (err as Error).message);
  }
}

function dur(v: unknown, at: string, def: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'string') throw new McpConfigError(at, 'expected a duration such as 30s');
  try {
    const ms = duration(v, at);
    if (ms <= 0) throw new Error('must be more than 0');
    return ms;
  } catch (err) {
    throw new McpConfigError(at, (err as Error).message.replace(`${at}: `, ''));
  }
}

function int(v: unknown, at: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw new McpConfigError(at, `expected an integer ${min}-${max}`);
  return v;
}

/** A string map; `${NAME}` takes the environment variable NAME (so secrets stay out of the file). */
function strings(v: unknown, at: string, env: NodeJS.ProcessEnv): Record<string, string> {
  if (v === undefined) return {};
  const o = object(v, at, undefined);
  const out: Record<string, string> = {};
  for (const [k, raw] of Object.entries(o)) {
    if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean')
      throw new McpConfigError(`${at}.${k}`, 'expected a string');
    out[k] = String(raw).replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const value = env[name];
      if (value === undefined)
        throw new McpConfigError(`${at}.${k}`, `environment variable ${name} is not set`);
      return value;
    });
  }
  return out;
}
