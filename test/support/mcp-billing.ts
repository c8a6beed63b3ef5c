/**
 * A small billing MCP server made with the official SDK (low-level `Server`, Streamable HTTP,
 * stateful sessions) on 127.0.0.1:0, for the gateway tests and the bench. It records every call
 * it receives, so a test can prove what reached the upstream — and what never did.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  isInitializeRequest,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';

export interface BillingCall {
  tool: string;
  args: Record<string, unknown>;
}

export interface BillingServer {
  url: string;
  port: number;
  /** Every tools/call received, in order. */
  calls: BillingCall[];
  /** Calls of one tool. */
  callsOf(tool: string): BillingCall[];
  close(): Promise<void>;
}

const account = { account_id: { type: 'string', description: 'account, e.g. acct_1' } };

export const BILLING_TOOLS: Tool[] = [
  {
    name: 'get_balance',
    description: 'The balance of an account',
    inputSchema: { type: 'object', properties: account, required: ['account_id'] },
  },
  {
    name: 'create_transaction',
    description: 'Charge an account',
    inputSchema: {
      type: 'object',
      properties: {
        ...account,
        amount: { type: 'number' },
        currency: { type: 'string' },
        card_number: { type: 'string' },
      },
      required: ['account_id', 'amount'],
    },
  },
  {
    name: 'create_refund',
    description: 'Refund to an account',
    inputSchema: {
      type: 'object',
      properties: { ...account, amount: { type: 'number' } },
      required: ['account_id', 'amount'],
    },
  },
  {
    name: 'slow_op',
    description: 'Answers after `ms` milliseconds',
    inputSchema: { type: 'object', properties: { ms: { type: 'number' } } },
  },
  {
    name: 'big',
    description: 'Answers with `bytes` bytes of text',
    inputSchema: { type: 'object', properties: { bytes: { type: 'number' } } },
  },
  {
    name: 'echo',
    description: 'Returns its text',
    inputSchema: { type: 'object', properties: { text: { type: 'string' } } },
  },
];

function billingServer(calls: BillingCall[]): Server {
  const server = new Server({ name: 'test-billing', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: BILLING_TOOLS }));
  server.setRequestHandler(CallToolRequestSchema, async (req) => {
    const args = (req.params.arguments ?? {}) as Record<string, unknown>;
    calls.push({ tool: req.params.name, args });
    switch (req.params.name) {
      case 'get_balance':
        return { content: [{ type: 'text', text: `balance of ${String(args.account_id)}: 1000.00 USD` }] };
      case 'create_transaction':
      case 'create_refund':
        return {
          content: [
            {
              type: 'text',
              text: `${req.params.name} tx_${calls.length} ${String(args.amount)} on ${String(args.account_id)}`,
            },
          ],
        };
      case 'slow_op':
        await new Promise((r) => setTimeout(r, Number(args.ms ?? 0)));
        return { content: [{ type: 'text', text: 'done' }] };
      case 'big':
        return { content: [{ type: 'text', text: 'x'.repeat(Number(args.bytes ?? 0)) }] };
      case 'echo':
        return { content: [{ type: 'text', text: String(args.text ?? '') }] };
      default:
        throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${req.params.name}`);
    }
  });
  return server;
}

/** Starts the billing server on 127.0.0.1 (port 0 unless given). */
export async function startBillingServer(port = 0): Promise<BillingServer> {
  const calls: BillingCall[] = [];
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const httpServer = http.createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const raw = Buffer.concat(chunks).toString('utf8');
      const body = raw ? (JSON.parse(raw) as unknown) : undefined;
      const sid = req.headers['mcp-session-id'];
      let t = typeof sid === 'string' ? transports.get(sid) : undefined;
      if (!t) {
        if (req.method !== 'POST' || !isInitializeRequest(body)) {
          res
            .writeHead(400, { 'content-type': 'application/json' })
            .end(
              JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'no session' }, id: null }),
            );
          return;
        }
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => void transports.set(id, created),
        });
        created.onclose = () => {
          if (created.sessionId) transports.delete(created.sessionId);
        };
        await billingServer(calls).connect(created);
        t = created;
      }
      await t.handleRequest(req, res, body);
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((r) => httpServer.listen(port, '127.0.0.1', () => r()));
  const p = (httpServer.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${p}/mcp`,
    port: p,
    calls,
    callsOf: (tool) => calls.filter((c) => c.tool === tool),
    async close() {
      for (const t of transports.values()) await t.close().catch(() => undefined);
      await new Promise<void>((r) => {
        httpServer.close(() => r());
        httpServer.closeAllConnections();
      });
    },
  };
}
