/**
 * Helpers for the MCP tests: a sidecar started with an MCP gateway config (written as YAML to a
 * temp dir), the gateway's port from its log line, official-SDK clients over Streamable HTTP
 * with the agent's ACT token as the bearer, and the real upstream servers from npm.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import YAML from 'yaml';
import type { SidecarFixture } from './sidecar-helpers';
import type { SidecarProcess } from './processes';

const MODULES = path.resolve(__dirname, '../../node_modules/@modelcontextprotocol');
/** `node <this> stdio`: the reference "everything" server. */
export const EVERYTHING = path.join(MODULES, 'server-everything/dist/index.js');
/** `node <this> <dir>`: the reference filesystem server, confined to <dir>. */
export const FILESYSTEM = path.join(MODULES, 'server-filesystem/dist/index.js');

export interface GatewaySidecar extends SidecarProcess {
  mcpPort: number;
  mcpUrl: string;
  configFile: string;
}

/** Starts a sidecar serving the MCP gateway with `config` (an object written as YAML). */
export async function startGatewaySidecar(
  fx: SidecarFixture,
  cp: { grpcPort: number; adminKey: string },
  config: unknown,
  opts: { sidecarId?: string; env?: Record<string, string> } = {},
): Promise<GatewaySidecar> {
  const dir = fx.dir('mcp-sc');
  const configFile = path.join(dir, 'mcp.yaml');
  writeFileSync(configFile, YAML.stringify(config));
  const sc = await fx.sidecar(cp, path.join(dir, 'data'), {
    ...(opts.sidecarId ? { sidecarId: opts.sidecarId } : {}),
    args: ['--mcp-config', configFile, '--mcp-addr', '127.0.0.1:0'],
    ...(opts.env ? { env: opts.env } : {}),
  });
  const rec = await sc.waitForLog('mcp gateway listening');
  const mcpPort = Number(rec.mcp_port);
  return { ...sc, mcpPort, mcpUrl: `http://127.0.0.1:${mcpPort}/mcp`, configFile };
}

/** Official-SDK clients, closed together. */
export class McpClients {
  private readonly clients: Client[] = [];

  /** An initialised client of `url` presenting `token` as the bearer. */
  async connect(url: string, token: string, name = 'test-agent'): Promise<Client> {
    const client = new Client({ name, version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    });
    await client.connect(transport);
    this.clients.push(client);
    return client;
  }

  track(c: Client): Client {
    this.clients.push(c);
    return c;
  }

  async closeAll(): Promise<void> {
    for (const c of this.clients) await c.close().catch(() => undefined);
    this.clients.length = 0;
  }
}

/** The text of a tool result's first content block. */
export function textOf(r: unknown): string {
  const c = (r as CallToolResult).content?.[0];
  return c && c.type === 'text' ? c.text : '';
}

/** The decision the gateway put on a result it answered itself. */
export function decisionOf(r: unknown): Record<string, any> | undefined {
  return (r as CallToolResult)._meta?.['act.dev/decision'] as Record<string, any> | undefined;
}

/** A raw JSON-RPC POST to the gateway (for what the SDK client would never send). */
export async function rawPost(
  url: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; json: any; headers: Headers }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body,
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // an SSE answer: the JSON is on its data: line
    const line = text.split('\n').find((l) => l.startsWith('data: '));
    json = line ? JSON.parse(line.slice(6)) : undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}
