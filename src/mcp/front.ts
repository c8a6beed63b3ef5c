/**
 * The agent-facing MCP server of one session (the gateway makes one per HTTP session, the
 * wrapper one on stdio), built on the official SDK's low-level `Server`. It lists what the
 * session's token could ever use, and turns every tools/call, resources/read and prompts/get
 * into one ACT check before anything reaches an upstream:
 *
 *   ALLOW             → forwarded; the result goes back; the outcome is recorded
 *   DENY              → a tool result with isError and a reason the model can act on
 *   APPROVAL_REQUIRED → held while a human decides (progress notifications), then checked again
 *                       with the approval id; or answered at once with the id and how to retry
 */
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type CallToolRequest,
  type CallToolResult,
  type GetPromptRequest,
  type GetPromptResult,
  type ReadResourceRequest,
  type ReadResourceResult,
  type ServerNotification,
  type ServerRequest,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { createHash } from 'node:crypto';
import { canonicalJson } from '../common/request-hash';
import { VERSION } from '../common/version';
import type { Logger } from '../observability/logger';
import { APPROVAL_META, DECISION_META, approvalNeeded, denied, undecided } from './answers';
import type { ApprovalState, CallChecker, CallOutcome, Verdict } from './checker';
import type { ToolRule } from './config';
import {
  defaultToolAction,
  promptCheck,
  resourceCheck,
  toolAction,
  toolCheck,
  type CheckParts,
} from './mapping';
import type { Upstream } from './upstream';

/** JSON-RPC error of a resource read or prompt get that ACT denied (they carry no isError). */
export const ACT_DENIED = -32010;
/** JSON-RPC error of a resource read or prompt get that needs a human's approval. */
export const ACT_APPROVAL_REQUIRED = -32011;
/** Approval ids a session remembers (per exact request), at most. */
const MEMORY = 256;

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export interface FrontOptions {
  upstreams: Upstream[];
  /** Tool and prompt names as "<server>.<name>" (the gateway); as they are (the wrapper). */
  namespaced: boolean;
  checker: CallChecker;
  progressIntervalMs: number;
  logger: Logger;
  /** Called once per answered call (metrics). */
  onCall?: (server: string, decision: string, outcome: string) => void;
  /** Wraps every call (tools/call, resources/read, prompts/get): in-flight accounting. */
  guard?: <T>(fn: () => Promise<T>) => Promise<T>;
}

export interface Front {
  server: Server;
  /** Sends list_changed for the lists whose visible content changed since the client last read them. */
  refresh(): void;
}

export function createFront(o: FrontOptions): Front {
  const server = new Server(
    { name: 'act-mcp-gateway', version: VERSION },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { listChanged: true },
        prompts: { listChanged: true },
      },
      instructions:
        'Every tool call is checked by ACT (Agent Capability Tokens). A call that is not allowed comes back ' +
        'as an error result saying why and what would change it; a call that needs a human approval says how to retry.',
    },
  );
  const byName = new Map(o.upstreams.map((u) => [u.name, u]));
  const guard = o.guard ?? (<T>(fn: () => Promise<T>) => fn());
  const memory = new Map<string, string>();
  // Progress notifications already sent per held request: relayed upstream progress continues
  // after them (a progress value must increase).
  const sentProgress = new Map<Extra['requestId'], number>();
  // What the client was last shown, per list: a fingerprint (undefined until it asked).
  const shown: { tools?: string; resources?: string; prompts?: string } = {};

  const ns = (u: Upstream, name: string) => (o.namespaced ? `${u.name}.${name}` : name);
  const route = (name: string): { u: Upstream; name: string } | undefined => {
    if (!o.namespaced) return o.upstreams[0] ? { u: o.upstreams[0], name } : undefined;
    const dot = name.indexOf('.');
    const u = dot > 0 ? byName.get(name.slice(0, dot)) : undefined;
    return u ? { u, name: name.slice(dot + 1) } : undefined;
  };

  /** The rule of a tool, or undefined when it is hidden or its default action is ambiguous. */
  const ruleOf = (u: Upstream, tool: string, known: Tool[] | undefined): ToolRule | undefined => {
    const rule = u.cfg.tools.get(tool) ?? u.cfg.defaults;
    if (rule.hidden) return undefined;
    if (rule.action === undefined && known && ambiguous(u, known).has(tool)) return undefined;
    return rule;
  };

  const visibleTools = (lists: (Tool[] | undefined)[]): Tool[] => {
    const vis = o.checker.visible();
    const out: Tool[] = [];
    o.upstreams.forEach((u, i) => {
      const list = lists[i];
      if (!list) return;
      for (const t of list) {
        const rule = ruleOf(u, t.name, list);
        if (!rule) continue;
        // Task-augmented calls are not relayed: a tool that needs them is not offered.
        if (t.execution?.taskSupport === 'required') continue;
        const action = toolAction(u.name, t.name, rule);
        if (!vis.mayEverAllow(action)) continue;
        const { execution: _tasks, ...tool } = t;
        out.push({ ...tool, name: ns(u, t.name), _meta: { ...(t._meta ?? {}), 'act.dev/action': action } });
      }
    });
    return out;
  };
  const fingerprint = (x: unknown) => createHash('sha256').update(canonicalJson(x)).digest('hex');
  const listsVisible = (kind: 'resources' | 'prompts') => {
    const vis = o.checker.visible();
    return o.upstreams.map((u) =>
      vis.mayEverAllow(kind === 'resources' ? u.cfg.resourcesAction : u.cfg.promptsAction),
    );
  };

  const settle = async <T>(u: Upstream, what: string, p: () => Promise<T>, fallback: T): Promise<T> => {
    try {
      return await p();
    } catch (err) {
      o.logger.warn(
        { server: u.name, error: (err as Error).message },
        `upstream ${what} unavailable; listing without it`,
      );
      return fallback;
    }
  };

  server.setRequestHandler(methodOnly(ListToolsRequestSchema), async () => {
    const lists = await Promise.all(
      o.upstreams.map((u) => settle(u, 'tools/list', () => u.tools(), u.cachedTools)),
    );
    const tools = visibleTools(lists);
    shown.tools = fingerprint(tools.map((t) => t.name));
    return { tools };
  });

  server.setRequestHandler(methodOnly(ListResourcesRequestSchema), async () => {
    const vis = listsVisible('resources');
    shown.resources = fingerprint(vis);
    const lists = await Promise.all(
      o.upstreams.map((u, i) => (vis[i] ? settle(u, 'resources/list', () => u.resources(), []) : [])),
    );
    return { resources: lists.flat() };
  });

  server.setRequestHandler(methodOnly(ListResourceTemplatesRequestSchema), async () => {
    const vis = listsVisible('resources');
    const lists = await Promise.all(
      o.upstreams.map((u, i) =>
        vis[i] ? settle(u, 'resources/templates/list', () => u.resourceTemplates(), []) : [],
      ),
    );
    return { resourceTemplates: lists.flat() };
  });

  server.setRequestHandler(methodOnly(ListPromptsRequestSchema), async () => {
    const vis = listsVisible('prompts');
    shown.prompts = fingerprint(vis);
    const lists = await Promise.all(
      o.upstreams.map((u, i) =>
        vis[i]
          ? settle(u, 'prompts/list', () => u.prompts(), []).then((ps) =>
              ps.map((p) => ({ ...p, name: ns(u, p.name) })),
            )
          : [],
      ),
    );
    return { prompts: lists.flat() };
  });

  // The SDK validates tools/call params itself (InvalidParams) once the method alone is matched.
  server.setRequestHandler(methodOnly(CallToolRequestSchema), (req, extra) =>
    guard(() => callTool(req.params, extra)),
  );
  server.setRequestHandler(methodOnly(ReadResourceRequestSchema), (req, extra) =>
    guard(() => readResource(valid(ReadResourceRequestSchema, req).params, extra)),
  );
  server.setRequestHandler(methodOnly(GetPromptRequestSchema), (req, extra) =>
    guard(() => getPrompt(valid(GetPromptRequestSchema, req).params, extra)),
  );

  async function callTool(params: CallToolRequest['params'], extra: Extra): Promise<CallToolResult> {
    const { name, arguments: args = {}, _meta, task } = params;
    if (task !== undefined)
      throw new McpError(
        ErrorCode.InvalidParams,
        'task-augmented tool calls are not supported through the ACT gateway',
      );
    const r = route(name);
    if (!r) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
    let known: Tool[] | undefined;
    try {
      if (!(await r.u.tool(r.name))) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
      known = r.u.cachedTools;
    } catch (err) {
      // Unreachable upstream: still check (and audit) the attempt; forwarding then fails cleanly.
      if (err instanceof McpError && err.code === ErrorCode.InvalidParams) throw err;
      known = r.u.cachedTools;
    }
    const rule = ruleOf(r.u, r.name, known);
    if (!rule) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
    const parts = toolCheck(r.u.name, r.name, rule, args);
    const what = `the call to ${name}`;

    const v = await decide(parts, what, approvalOf(_meta), rule, extra);
    const base = sentProgress.get(extra.requestId) ?? 0;
    sentProgress.delete(extra.requestId);
    if ('content' in v) {
      o.onCall?.(r.u.name, decisionOf(v), 'not_sent');
      return v;
    }
    return forward(r.u, parts, v, { method: 'tools/call', target: r.name }, extra, async (signal) => {
      const relay = progressRelay(extra, base);
      return r.u.callTool(r.name, args, { signal, ...(relay ? { onprogress: relay } : {}) });
    });
  }

  async function readResource(
    params: ReadResourceRequest['params'],
    extra: Extra,
  ): Promise<ReadResourceResult> {
    const uri = params.uri;
    const u = await owner(uri);
    const parts = resourceCheck(u.name, uri, u.cfg.resourcesAction);
    const v = await decide(parts, `reading ${uri}`, approvalOf(params._meta), undefined, extra);
    if ('content' in v) throw asError(v);
    return forward(u, parts, v, { method: 'resources/read', target: uri }, extra, (signal) =>
      u.readResource(uri, signal),
    );
  }

  async function getPrompt(params: GetPromptRequest['params'], extra: Extra): Promise<GetPromptResult> {
    const r = route(params.name);
    if (!r || !(await r.u.prompts()).some((p) => p.name === r.name))
      throw new McpError(ErrorCode.InvalidParams, `Unknown prompt: ${params.name}`);
    const args = params.arguments ?? {};
    const parts = promptCheck(r.u.name, r.name, r.u.cfg.promptsAction, args);
    const v = await decide(parts, `the prompt ${params.name}`, approvalOf(params._meta), undefined, extra);
    if ('content' in v) throw asError(v);
    return forward(r.u, parts, v, { method: 'prompts/get', target: r.name }, extra, (signal) =>
      r.u.getPrompt(r.name, args, signal),
    );
  }

  /** The upstream a URI belongs to: the one that listed it (or a template of it), else the only one with resources. */
  async function owner(uri: string): Promise<Upstream> {
    const withResources: Upstream[] = [];
    for (const u of o.upstreams) {
      try {
        if (await u.hasResource(uri)) return u;
        if (u.capabilities()?.resources) withResources.push(u);
      } catch {
        // unreachable: not this one (or not now)
      }
    }
    if (withResources.length === 1) return withResources[0]!;
    throw new McpError(-32002, `Resource not found: ${uri}`);
  }

  /**
   * The check, with approvals: a verdict to forward on (ALLOW), or the error result to answer with.
   * `rule` undefined: approvals are answered at once (resources, prompts).
   */
  async function decide(
    parts: CheckParts,
    what: string,
    explicit: string | undefined,
    rule: ToolRule | undefined,
    extra: Extra,
  ): Promise<Verdict | ReturnType<typeof denied>> {
    // The request's binding key, made only when approvals are in play.
    let k: string | undefined;
    const key = () => (k ??= bindingKey(parts));
    let v: Verdict;
    try {
      v = await o.checker.check(parts, explicit ?? (memory.size > 0 ? memory.get(key()) : undefined) ?? '');
      if (v.decision === 'APPROVAL_REQUIRED' && v.approvalId) {
        remember(key(), v.approvalId);
        if (rule?.onApproval !== 'hold') return approvalNeeded(capital(what), v);
        const state = await hold(v, rule.approvalTimeoutMs, extra);
        if (state.status !== 'APPROVED' && state.status !== 'DENIED')
          return approvalNeeded(capital(what), v, state);
        v = await o.checker.check(parts, v.approvalId);
        if (v.decision === 'APPROVAL_REQUIRED') {
          if (v.approvalId) remember(key(), v.approvalId);
          return approvalNeeded(capital(what), v);
        }
      }
    } catch (err) {
      o.logger.warn(
        { error: (err as Error).message, action: parts.action },
        'MCP call not checked; not forwarded',
      );
      return undecided(what, (err as Error).message);
    }
    if (v.decision === 'ALLOW') {
      if (v.approvalId) memory.delete(key());
      return v;
    }
    if (memory.size > 0) memory.delete(key());
    if (v.decision === 'APPROVAL_REQUIRED') return approvalNeeded(capital(what), v);
    return denied(what, parts.action, parts.resource, v);
  }

  function remember(key: string, id: string): void {
    memory.delete(key);
    memory.set(key, id);
    if (memory.size > MEMORY) memory.delete(memory.keys().next().value!);
  }

  /** Waits for a human, with a progress notification every interval when the client asked for progress. */
  async function hold(v: Verdict, timeoutMs: number, extra: Extra): Promise<ApprovalState> {
    const token = extra._meta?.progressToken;
    let n = sentProgress.get(extra.requestId) ?? 0;
    const started = Date.now();
    const send = () => {
      if (token === undefined) return;
      const waited = Math.round((Date.now() - started) / 1000);
      sentProgress.set(extra.requestId, ++n);
      // Deliberately not awaited: a lost progress message must not end the wait.
      void extra
        .sendNotification({
          method: 'notifications/progress',
          params: {
            progressToken: token,
            progress: n,
            message: `waiting for a human to approve ${v.approvalId} (${v.details.rule ?? v.reason}); ${waited} s so far`,
          },
        })
        .catch(() => undefined);
    };
    send();
    const timer = setInterval(send, o.progressIntervalMs);
    try {
      return await o.checker.waitForApproval(v.approvalId, timeoutMs, extra.signal);
    } finally {
      clearInterval(timer);
    }
  }

  /** Calls the upstream after an ALLOW; records the outcome; bounds the result. */
  async function forward<T extends object>(
    u: Upstream,
    parts: CheckParts,
    v: Verdict,
    call: { method: string; target: string },
    extra: Extra,
    send: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const t0 = performance.now();
    let outcome: CallOutcome['outcome'] = 'ok';
    let error: unknown;
    let result: T | undefined;
    try {
      // The upstream transport bounds what it reads (limits.max_result_bytes).
      result = await send(extra.signal);
      if ((result as { isError?: boolean }).isError === true) outcome = 'tool_error';
    } catch (err) {
      error = err;
      outcome = extra.signal.aborted
        ? 'cancelled'
        : err instanceof McpError && err.code === ErrorCode.RequestTimeout
          ? 'timeout'
          : /larger than \d+ bytes/.test((err as Error).message)
            ? 'result_too_large'
            : 'upstream_error';
    }
    const latencyMs = performance.now() - t0;
    // Not awaited: the answer waits for the decision record only (safe before the upstream was
    // called); the outcome record follows it into the spool, and its failures are logged.
    void o.checker.recordOutcome(parts, v, {
      outcome,
      latencyMs,
      method: call.method,
      target: call.target,
      server: u.name,
      ...(error ? { error: (error as Error).message.slice(0, 300) } : {}),
    });
    o.onCall?.(u.name, v.decision, outcome);
    if (error !== undefined)
      throw error instanceof McpError ? error : new McpError(ErrorCode.InternalError, String(error));
    return result!;
  }

  function refresh(): void {
    if (shown.tools !== undefined) {
      const now = fingerprint(visibleTools(o.upstreams.map((u) => u.cachedTools)).map((t) => t.name));
      if (now !== shown.tools) {
        shown.tools = now;
        void server.sendToolListChanged().catch(() => undefined);
      }
    }
    for (const kind of ['resources', 'prompts'] as const) {
      const before = shown[kind];
      if (before === undefined) continue;
      const now = fingerprint(listsVisible(kind));
      if (now === before) continue;
      shown[kind] = now;
      void (kind === 'resources' ? server.sendResourceListChanged() : server.sendPromptListChanged()).catch(
        () => undefined,
      );
    }
  }

  return { server, refresh };
}

/**
 * A request schema that matches the method alone. The SDK parses a request with its handler's
 * schema before the handler runs and answers a failure as InternalError (-32603); with this the
 * handler validates (`valid`) and a malformed request gets InvalidParams (-32602), as JSON-RPC says.
 */
function methodOnly<S>(schema: S): S {
  return (schema as unknown as { pick(k: { method: true }): { loose(): S } }).pick({ method: true }).loose();
}

function valid<T>(
  schema: {
    safeParse(v: unknown): { success: true; data: T } | { success: false; error: { message: string } };
  },
  req: unknown,
): T {
  const r = schema.safeParse(req);
  if (!r.success) throw new McpError(ErrorCode.InvalidParams, `Invalid params: ${r.error.message}`);
  return r.data;
}

/** The tools of one upstream whose default actions collide (hidden until mapped explicitly). */
const ambiguities = new WeakMap<Tool[], Set<string>>();
function ambiguous(u: Upstream, tools: Tool[]): Set<string> {
  let s = ambiguities.get(tools);
  if (s) return s;
  const by = new Map<string, string[]>();
  for (const t of tools) {
    if ((u.cfg.tools.get(t.name) ?? u.cfg.defaults).action !== undefined) continue;
    const a = defaultToolAction(u.name, t.name);
    by.set(a, [...(by.get(a) ?? []), t.name]);
  }
  s = new Set([...by.values()].filter((names) => names.length > 1).flat());
  ambiguities.set(tools, s);
  return s;
}

function approvalOf(meta: Record<string, unknown> | undefined): string | undefined {
  const v = meta?.[APPROVAL_META];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function bindingKey(p: CheckParts): string {
  return createHash('sha256').update(canonicalJson(p)).digest('hex');
}

function capital(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function decisionOf(r: { _meta?: Record<string, unknown> }): string {
  const d = r._meta?.[DECISION_META] as { decision?: string } | undefined;
  return d?.decision ?? 'DENY';
}

/** A deny or approval answer as a JSON-RPC error (resources and prompts have no isError). */
function asError(r: ReturnType<typeof denied>): McpError {
  const d = r._meta?.[DECISION_META] as { decision?: string } | undefined;
  return new McpError(
    d?.decision === 'APPROVAL_REQUIRED' ? ACT_APPROVAL_REQUIRED : ACT_DENIED,
    r.content[0]!.text,
    r._meta,
  );
}

/** Passes the upstream's progress to the agent, under the agent's own progress token. */
function progressRelay(extra: Extra, base: number) {
  const token = extra._meta?.progressToken;
  if (token === undefined) return undefined;
  return (p: { progress: number; total?: number; message?: string }) => {
    // Deliberately not awaited: progress is advisory.
    void extra
      .sendNotification({
        method: 'notifications/progress',
        params: {
          progressToken: token,
          progress: base + p.progress,
          ...(p.total !== undefined ? { total: base + p.total } : {}),
          ...(p.message !== undefined ? { message: p.message } : {}),
        },
      })
      .catch(() => undefined);
  };
}
