/**
 * One upstream MCP server, reached with the official SDK's `Client`: over Streamable HTTP, or
 * over stdio as a child process this process spawns. Connects on first use and again after the
 * connection drops (not more often than once a second); every request has a deadline, so an
 * upstream that is down or slow is a clean error, never a hung agent. Lists are cached and
 * refreshed when the upstream says they changed.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { UriTemplate } from '@modelcontextprotocol/sdk/shared/uriTemplate.js';
import {
  ErrorCode,
  McpError,
  PromptListChangedNotificationSchema,
  ResourceListChangedNotificationSchema,
  ToolListChangedNotificationSchema,
  type CallToolResult,
  type GetPromptResult,
  type Prompt,
  type ReadResourceResult,
  type Resource,
  type ResourceTemplate,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { createInterface } from 'node:readline';
import { VERSION } from '../common/version';
import type { Logger } from '../observability/logger';
import type { UpstreamConfig, UpstreamTransport } from './config';
import { HttpClientTransport } from './http-client';

/** Reconnect attempts are at least this far apart. */
const RETRY_MS = 1000;
/** Pages of a list read from one upstream, at most. */
const MAX_PAGES = 50;

export type ListKind = 'tools' | 'resources' | 'prompts';

export interface UpstreamOptions {
  logger: Logger;
  /** The wrapper passes the child's stderr through; the gateway logs it line by line. */
  stderr: 'log' | 'inherit';
  /** Overrides the stdio transport (the wrapper: the command after `--`). */
  transport?: UpstreamTransport;
  /** Environment of a stdio child besides the SDK's safe defaults (HOME, PATH, …). */
  baseEnv?: Record<string, string>;
  /** Largest message read from the upstream (limits.max_result_bytes). */
  maxMessageBytes: number;
}

/** Strips the SDK's "MCP error -32602: " prefix, so a passed-on error is not prefixed twice. */
function bare(err: McpError): string {
  return err.message.replace(/^MCP error -?\d+: /, '');
}

export class Upstream {
  readonly name: string;
  /** Called after a list changed upstream (and was read again). */
  onListChanged: ((kind: ListKind) => void) | undefined;
  private client: Client | undefined;
  private connecting: Promise<Client> | undefined;
  private lastFailure: { atMs: number; message: string } | undefined;
  private readonly lists: {
    tools?: Tool[];
    resources?: Resource[];
    templates?: { t: ResourceTemplate; m: UriTemplate | undefined }[];
    prompts?: Prompt[];
  } = {};
  private closed = false;
  private readonly transportCfg: UpstreamTransport;

  constructor(
    readonly cfg: UpstreamConfig,
    private readonly opts: UpstreamOptions,
  ) {
    this.name = cfg.name;
    const t = opts.transport ?? cfg.transport;
    if (t === undefined) throw new Error(`upstream ${cfg.name} has no transport`);
    this.transportCfg = t;
  }

  /** Whether the upstream is connected now. */
  get connected(): boolean {
    return this.client !== undefined;
  }

  /** The last tools/list read, without asking (undefined before the first). */
  get cachedTools(): Tool[] | undefined {
    return this.lists.tools;
  }

  /** What the upstream said it can do (undefined before connecting). */
  capabilities(): ReturnType<Client['getServerCapabilities']> {
    return this.client?.getServerCapabilities();
  }

  /** A connected client, or McpError(ConnectionClosed) within the connect timeout. */
  async connect(): Promise<Client> {
    if (this.closed) throw new McpError(ErrorCode.ConnectionClosed, `upstream ${this.name} is shut down`);
    if (this.client) return this.client;
    if (this.connecting) return this.connecting;
    const f = this.lastFailure;
    if (f && Date.now() - f.atMs < RETRY_MS) throw this.unavailable(f.message);
    this.connecting = this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private unavailable(why: string): McpError {
    return new McpError(
      ErrorCode.ConnectionClosed,
      `upstream MCP server ${this.name} is unavailable: ${why}`,
    );
  }

  private transport(): Transport {
    const t = this.transportCfg;
    if (t.kind === 'http')
      return new HttpClientTransport(new URL(t.url), {
        headers: t.headers,
        maxBytes: this.opts.maxMessageBytes,
      });
    const stdio = new StdioClientTransport({
      command: t.command,
      args: t.args,
      env: { ...(this.opts.baseEnv ?? {}), ...t.env },
      ...(t.cwd ? { cwd: t.cwd } : {}),
      stderr: this.opts.stderr === 'inherit' ? 'inherit' : 'pipe',
      maxBufferSize: this.opts.maxMessageBytes,
    });
    return stdio;
  }

  private async open(): Promise<Client> {
    const log = this.opts.logger;
    const transport = this.transport();
    const client = new Client({ name: 'act-mcp-gateway', version: VERSION }, { capabilities: {} });
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => this.changed('tools'));
    client.setNotificationHandler(ResourceListChangedNotificationSchema, () => this.changed('resources'));
    client.setNotificationHandler(PromptListChangedNotificationSchema, () => this.changed('prompts'));
    client.onclose = () => {
      if (this.client !== client) return;
      this.client = undefined;
      if (!this.closed)
        log.warn({ server: this.name }, 'upstream MCP connection closed; reconnecting on next use');
    };
    client.onerror = (err) =>
      log.debug({ server: this.name, err: { message: err.message } }, 'upstream MCP transport error');
    let timer: NodeJS.Timeout | undefined;
    try {
      const connecting = client.connect(transport, { timeout: this.cfg.connectTimeoutMs });
      if (transport instanceof StdioClientTransport && this.opts.stderr === 'log') {
        const stderr = transport.stderr;
        if (stderr)
          createInterface({ input: stderr as unknown as NodeJS.ReadableStream }).on('line', (line) =>
            log.info({ server: this.name, stderr: line.slice(0, 500) }, 'upstream MCP server stderr'),
          );
      }
      // The SDK's timeout covers initialize; this also covers a spawn or TCP connect that never ends.
      await Promise.race([
        connecting,
        new Promise<never>((_r, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${this.cfg.connectTimeoutMs} ms`)),
            this.cfg.connectTimeoutMs,
          );
        }),
      ]);
    } catch (err) {
      const message = err instanceof McpError ? bare(err) : (err as Error).message;
      this.lastFailure = { atMs: Date.now(), message };
      await client.close().catch(() => undefined);
      log.warn({ server: this.name, error: message }, 'upstream MCP server unavailable');
      throw this.unavailable(message);
    } finally {
      clearTimeout(timer);
    }
    if (this.closed) {
      await client.close().catch(() => undefined);
      throw this.unavailable('shut down');
    }
    this.lastFailure = undefined;
    this.client = client;
    delete this.lists.tools;
    delete this.lists.resources;
    delete this.lists.templates;
    delete this.lists.prompts;
    log.info(
      {
        server: this.name,
        upstream: client.getServerVersion()?.name ?? '',
        transport: this.transportCfg.kind,
      },
      'upstream MCP server connected',
    );
    return client;
  }

  private changed(kind: ListKind): void {
    if (kind === 'resources') {
      delete this.lists.resources;
      delete this.lists.templates;
    } else delete this.lists[kind];
    const refresh = kind === 'tools' ? this.tools() : kind === 'prompts' ? this.prompts() : this.resources();
    // Deliberately not awaited: a notification handler must not block the transport.
    void refresh.then(
      () => this.onListChanged?.(kind),
      () => this.onListChanged?.(kind),
    );
  }

  private options(signal?: AbortSignal) {
    return { timeout: this.cfg.timeoutMs, ...(signal ? { signal } : {}) };
  }

  /** Every page of a list, within the upstream's timeout per page. */
  private async all<T>(
    read: (c: Client, cursor: string | undefined) => Promise<{ items: T[]; nextCursor?: string | undefined }>,
  ): Promise<T[]> {
    const c = await this.connect();
    const out: T[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const r = await read(c, cursor).catch((err: unknown) => {
        throw this.failure(err);
      });
      out.push(...r.items);
      if (!r.nextCursor) break;
      cursor = r.nextCursor;
    }
    return out;
  }

  /** tools/list (cached). */
  async tools(): Promise<Tool[]> {
    if (this.lists.tools) return this.lists.tools;
    if (!(await this.connect()).getServerCapabilities()?.tools) return (this.lists.tools = []);
    const tools = await this.all(async (c, cursor) => {
      const r = await c.listTools(cursor ? { cursor } : undefined, this.options());
      return { items: r.tools, nextCursor: r.nextCursor };
    });
    if (this.client) this.lists.tools = tools;
    return tools;
  }

  /** The tool named `name`, reading the list again once when it is not (yet) in the cache. */
  async tool(name: string): Promise<Tool | undefined> {
    const hit = (await this.tools()).find((t) => t.name === name);
    if (hit) return hit;
    delete this.lists.tools;
    return (await this.tools()).find((t) => t.name === name);
  }

  async resources(): Promise<Resource[]> {
    if (this.lists.resources) return this.lists.resources;
    if (!(await this.connect()).getServerCapabilities()?.resources) return (this.lists.resources = []);
    const items = await this.all(async (c, cursor) => {
      const r = await c.listResources(cursor ? { cursor } : undefined, this.options());
      return { items: r.resources, nextCursor: r.nextCursor };
    });
    if (this.client) this.lists.resources = items;
    return items;
  }

  async resourceTemplates(): Promise<ResourceTemplate[]> {
    if (this.lists.templates) return this.lists.templates.map((x) => x.t);
    if (!(await this.connect()).getServerCapabilities()?.resources) {
      this.lists.templates = [];
      return [];
    }
    const items = await this.all(async (c, cursor) => {
      const r = await c.listResourceTemplates(cursor ? { cursor } : undefined, this.options());
      return { items: r.resourceTemplates, nextCursor: r.nextCursor };
    });
    const parsed = items.map((t) => {
      try {
        return { t, m: new UriTemplate(t.uriTemplate) };
      } catch {
        return { t, m: undefined };
      }
    });
    if (this.client) this.lists.templates = parsed;
    return items;
  }

  /** Whether this upstream listed `uri`, or a template of it. */
  async hasResource(uri: string): Promise<boolean> {
    if ((await this.resources()).some((r) => r.uri === uri)) return true;
    await this.resourceTemplates();
    return (this.lists.templates ?? []).some((x) => x.m?.match(uri) != null);
  }

  async prompts(): Promise<Prompt[]> {
    if (this.lists.prompts) return this.lists.prompts;
    if (!(await this.connect()).getServerCapabilities()?.prompts) return (this.lists.prompts = []);
    const items = await this.all(async (c, cursor) => {
      const r = await c.listPrompts(cursor ? { cursor } : undefined, this.options());
      return { items: r.prompts, nextCursor: r.nextCursor };
    });
    if (this.client) this.lists.prompts = items;
    return items;
  }

  /**
   * tools/call. Progress from the upstream resets the idle timeout (up to max_call_time) and is
   * passed to `onprogress`; `signal` cancels the upstream request.
   * @throws McpError: RequestTimeout, ConnectionClosed, or the upstream's own error
   */
  async callTool(
    name: string,
    args: Record<string, unknown>,
    opts: {
      signal: AbortSignal;
      onprogress?: (p: { progress: number; total?: number; message?: string }) => void;
    },
  ): Promise<CallToolResult> {
    const c = await this.connect();
    try {
      return (await c.callTool({ name, arguments: args }, undefined, {
        ...this.options(opts.signal),
        resetTimeoutOnProgress: true,
        maxTotalTimeout: this.cfg.maxCallMs,
        ...(opts.onprogress ? { onprogress: opts.onprogress } : {}),
      })) as CallToolResult;
    } catch (err) {
      throw this.failure(err);
    }
  }

  async readResource(uri: string, signal: AbortSignal): Promise<ReadResourceResult> {
    const c = await this.connect();
    return c.readResource({ uri }, this.options(signal)).catch((err: unknown) => {
      throw this.failure(err);
    });
  }

  async getPrompt(name: string, args: Record<string, string>, signal: AbortSignal): Promise<GetPromptResult> {
    const c = await this.connect();
    return c.getPrompt({ name, arguments: args }, this.options(signal)).catch((err: unknown) => {
      throw this.failure(err);
    });
  }

  /** An upstream failure as the agent sees it: the upstream's own error, or a timeout/unavailable. */
  private failure(err: unknown): McpError {
    if (err instanceof McpError) {
      if (err.code === ErrorCode.RequestTimeout)
        return new McpError(
          ErrorCode.RequestTimeout,
          `upstream MCP server ${this.name} did not answer in time (${bare(err)})`,
        );
      if (err.code === ErrorCode.ConnectionClosed) return this.unavailable(bare(err));
      return new McpError(err.code, `${this.name}: ${bare(err)}`, err.data);
    }
    return this.unavailable((err as Error).message ?? String(err));
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client ?? (await this.connecting?.catch(() => undefined));
    this.client = undefined;
    await c?.close().catch(() => undefined);
  }
}
