/**
 * The server side of MCP Streamable HTTP, on node:http, for one session: a `Transport` of the
 * official SDK's `Server`. The SDK's own StreamableHTTPServerTransport converts every request to
 * web streams and answers every call as an SSE stream; on the gateway's hot path that cost more
 * than the check itself. Here a POST is answered with one `application/json` body (headers and
 * body in one write) unless something has to be streamed before the answer — a progress
 * notification while a call is held, say — and only then does the answer become
 * `text/event-stream`, as the transport spec allows either.
 *
 * Also: the standalone GET stream for server notifications (list_changed), DELETE to end the
 * session, the protocol-version header check, batches of at most 100 messages.
 */
import type http from 'node:http';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  SUPPORTED_PROTOCOL_VERSIONS,
  type JSONRPCMessage,
  type MessageExtraInfo,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';

const MAX_BATCH = 100;
const KEEPALIVE_MS = 25_000;

type Id = RequestId;

/** One POST that carried requests: answered when all of them are. */
interface Exchange {
  res: http.ServerResponse;
  pending: Set<Id>;
  responses: JSONRPCMessage[];
  batch: boolean;
  sse: boolean;
}

/** A JSON-RPC error object answered at the HTTP level (id null). */
export function rpcError(
  res: http.ServerResponse,
  status: number,
  code: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/**
 * The JSON-RPC 2.0 envelope (a request, notification or response). The SDK's Protocol checks
 * each request's params against its method's schema, so the envelope is all that is checked here.
 */
function isMessage(m: unknown): boolean {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return false;
  const o = m as Record<string, unknown>;
  if (o.jsonrpc !== '2.0') return false;
  const id = o.id;
  const idOk = typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id));
  if (typeof o.method === 'string') {
    if (o.params !== undefined && (typeof o.params !== 'object' || o.params === null)) return false;
    return id === undefined || idOk;
  }
  return (
    idOk &&
    ('result' in o ? !('error' in o) && typeof o.result === 'object' && o.result !== null : 'error' in o)
  );
}

function isRequest(m: JSONRPCMessage): m is JSONRPCMessage & { id: Id; method: string } {
  return 'method' in m && 'id' in m && m.id !== undefined;
}

function isResponse(m: JSONRPCMessage): m is JSONRPCMessage & { id: Id } {
  return !('method' in m) && 'id' in m;
}

export class HttpServerTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: <T extends JSONRPCMessage>(message: T, extra?: MessageExtraInfo) => void;
  private readonly byRequest = new Map<Id, Exchange>();
  private standalone: http.ServerResponse | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(readonly sessionId: string) {}

  async start(): Promise<void> {}

  /** A POST whose body is already parsed JSON. */
  post(req: http.IncomingMessage, res: http.ServerResponse, body: unknown): void {
    if (this.closed) return rpcError(res, 404, -32001, 'Session not found');
    const version = req.headers['mcp-protocol-version'];
    if (typeof version === 'string' && !SUPPORTED_PROTOCOL_VERSIONS.includes(version))
      return rpcError(res, 400, -32000, `Bad Request: Unsupported protocol version: ${version}`);
    const raw = Array.isArray(body) ? body : [body];
    if (raw.length === 0 || raw.length > MAX_BATCH)
      return rpcError(res, 400, -32600, `Invalid Request: a batch holds 1-${MAX_BATCH} messages`);
    for (const m of raw)
      if (!isMessage(m)) return rpcError(res, 400, -32600, 'Invalid Request: not a JSON-RPC 2.0 message');
    const messages = raw as JSONRPCMessage[];
    const extra: MessageExtraInfo = { requestInfo: { headers: req.headers } };
    const requests = messages.filter(isRequest);
    if (requests.length === 0) {
      res.writeHead(202, { 'mcp-session-id': this.sessionId }).end();
      for (const m of messages) this.onmessage?.(m, extra);
      return;
    }
    const ex: Exchange = {
      res,
      pending: new Set(requests.map((r) => r.id)),
      responses: [],
      batch: Array.isArray(body),
      sse: false,
    };
    for (const id of ex.pending) this.byRequest.set(id, ex);
    res.once('close', () => {
      for (const id of ex.pending) if (this.byRequest.get(id) === ex) this.byRequest.delete(id);
    });
    for (const m of messages) this.onmessage?.(m, extra);
  }

  /** The standalone SSE stream for notifications not tied to a request. */
  get(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.closed) return rpcError(res, 404, -32001, 'Session not found');
    if (!String(req.headers.accept ?? '').includes('text/event-stream'))
      return rpcError(res, 406, -32000, 'Not Acceptable: Client must accept text/event-stream');
    if (this.standalone && !this.standalone.writableEnded)
      return rpcError(res, 409, -32000, 'Conflict: Only one SSE stream is allowed per session');
    this.startSse(res);
    this.standalone = res;
    res.once('close', () => {
      if (this.standalone === res) this.standalone = undefined;
    });
    if (!this.keepalive) {
      this.keepalive = setInterval(() => {
        if (this.standalone && !this.standalone.writableEnded) this.standalone.write(': keepalive\n\n');
      }, KEEPALIVE_MS);
      this.keepalive.unref();
    }
  }

  /** DELETE: the client ends the session. */
  async delete(res: http.ServerResponse): Promise<void> {
    res.writeHead(200, { 'mcp-session-id': this.sessionId }).end();
    await this.close();
  }

  private startSse(res: http.ServerResponse): void {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'mcp-session-id': this.sessionId,
    });
  }

  private static event(m: JSONRPCMessage): string {
    return `event: message\ndata: ${JSON.stringify(m)}\n\n`;
  }

  async send(message: JSONRPCMessage, options?: { relatedRequestId?: Id | undefined }): Promise<void> {
    if (isResponse(message)) {
      const ex = this.byRequest.get(message.id);
      if (!ex) return; // the client went away
      this.byRequest.delete(message.id);
      ex.pending.delete(message.id);
      if (ex.sse) ex.res.write(HttpServerTransport.event(message));
      else ex.responses.push(message);
      if (ex.pending.size > 0) return;
      if (ex.sse) {
        ex.res.end();
        return;
      }
      const body = JSON.stringify(ex.batch ? ex.responses : ex.responses[0]);
      ex.res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'mcp-session-id': this.sessionId,
      });
      ex.res.end(body);
      return;
    }
    const related = options?.relatedRequestId;
    const ex = related !== undefined ? this.byRequest.get(related) : undefined;
    if (ex && !ex.res.writableEnded) {
      if (!ex.sse) {
        // Something to stream before the answer: this exchange becomes an SSE stream.
        ex.sse = true;
        this.startSse(ex.res);
        for (const r of ex.responses) ex.res.write(HttpServerTransport.event(r));
        ex.responses = [];
      }
      ex.res.write(HttpServerTransport.event(message));
      return;
    }
    const s = this.standalone;
    if (s && !s.writableEnded) s.write(HttpServerTransport.event(message));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    for (const ex of new Set(this.byRequest.values())) if (!ex.res.writableEnded) ex.res.destroy();
    this.byRequest.clear();
    this.standalone?.end();
    this.standalone = undefined;
    this.onclose?.();
  }
}
