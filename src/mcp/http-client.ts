/**
 * The client side of MCP Streamable HTTP, on node:http with a keep-alive agent: the gateway's
 * `Transport` to an upstream server, for the official SDK's `Client`. The SDK's own
 * StreamableHTTPClientTransport goes through fetch (undici) and web streams, which on the hot
 * path cost more than the check. This sends each message as one POST (Content-Length, one
 * write), reads a JSON or SSE answer incrementally up to a size bound, keeps the session id and
 * protocol version headers, opens the GET stream for the upstream's notifications after
 * initialisation (reopened with backoff), and ends the session with DELETE on close.
 *
 * A request the upstream cannot take (connection refused, HTTP error, an answer over the bound,
 * a stream that ends without the answer) is answered at once with a JSON-RPC error for that
 * request, so the caller gets a clean error instead of waiting for its timeout.
 */
import http from 'node:http';
import https from 'node:https';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, type JSONRPCMessage, type RequestId } from '@modelcontextprotocol/sdk/types.js';

const GET_RETRY_MIN_MS = 1000;
const GET_RETRY_MAX_MS = 30_000;

export interface HttpClientOptions {
  headers: Record<string, string>;
  /** Largest answer body read (JSON or one SSE stream). */
  maxBytes: number;
}

export class HttpClientTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  sessionId?: string;
  private protocolVersion: string | undefined;
  private readonly agent: http.Agent;
  private readonly requests = new Set<http.ClientRequest>();
  private getStream: http.ClientRequest | undefined;
  private getRetryMs = GET_RETRY_MIN_MS;
  private getTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly lib: typeof http | typeof https;
  /** The URL as request options, made once (a URL per request costs a conversion each time). */
  private readonly target: http.RequestOptions;

  constructor(
    url: URL,
    private readonly opts: HttpClientOptions,
  ) {
    this.lib = url.protocol === 'https:' ? https : http;
    this.agent = new this.lib.Agent({ keepAlive: true, maxSockets: 64 });
    this.target = {
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || (url.protocol === 'https:' ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      ...(url.username
        ? { auth: `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` }
        : {}),
      agent: this.agent,
    };
  }

  async start(): Promise<void> {}

  setProtocolVersion(version: string): void {
    this.protocolVersion = version;
  }

  private headers(extra: Record<string, string | number>): http.OutgoingHttpHeaders {
    const h: http.OutgoingHttpHeaders = { ...this.opts.headers, ...extra };
    if (this.sessionId) h['mcp-session-id'] = this.sessionId;
    if (this.protocolVersion) h['mcp-protocol-version'] = this.protocolVersion;
    return h;
  }

  /** Resolves once the upstream accepted the POST (its answer is read after that). */
  send(message: JSONRPCMessage): Promise<void> {
    if (this.closed) return Promise.reject(new Error('transport closed'));
    const body = JSON.stringify(message);
    const id: RequestId | undefined = 'method' in message && 'id' in message ? message.id : undefined;
    return new Promise<void>((resolve, reject) => {
      const req = this.lib.request({
        ...this.target,
        method: 'POST',
        headers: this.headers({
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': Buffer.byteLength(body),
        }),
      });
      this.requests.add(req);
      let settled = false;
      // After the answer began, a broken connection ends it: read() answers the request then.
      const fail = (err: Error) => {
        this.requests.delete(req);
        if (settled) return;
        settled = true;
        reject(err);
      };
      req.once('error', fail);
      req.once('response', (res) => {
        settled = true;
        resolve();
        const sid = res.headers['mcp-session-id'];
        if (typeof sid === 'string' && sid) this.sessionId = sid;
        const status = res.statusCode ?? 0;
        if (status === 202 || (status === 200 && id === undefined && !res.headers['content-type'])) {
          res.resume();
          this.requests.delete(req);
          if ('method' in message && message.method === 'notifications/initialized') this.openGet();
          return;
        }
        if (status === 404 && this.sessionId) {
          res.resume();
          this.requests.delete(req);
          if (id !== undefined)
            this.answerError(id, ErrorCode.ConnectionClosed, 'the upstream session expired');
          this.onerror?.(new Error('upstream session not found (404)'));
          void this.close();
          return;
        }
        this.read(res, id, () => this.requests.delete(req));
        if ('method' in message && message.method === 'notifications/initialized') this.openGet();
      });
      req.end(body);
    });
  }

  /** Reads an answer: JSON (one message or a batch) or SSE; an HTTP error answers the request. */
  private read(res: http.IncomingMessage, id: RequestId | undefined, done: () => void): void {
    const status = res.statusCode ?? 0;
    const type = String(res.headers['content-type'] ?? '').toLowerCase();
    let answered = false;
    const deliver = (m: unknown) => {
      if (m && typeof m === 'object' && 'id' in m && (m as { id: unknown }).id === id && !('method' in m))
        answered = true;
      this.onmessage?.(m as JSONRPCMessage);
    };
    let size = 0;
    const tooBig = () => {
      res.destroy();
      if (id !== undefined && !answered)
        this.answerError(
          id,
          ErrorCode.InternalError,
          `the upstream answer is larger than ${this.opts.maxBytes} bytes`,
        );
      answered = true;
    };
    if (type.startsWith('text/event-stream') && status === 200) {
      res.setEncoding('utf8');
      let buf = '';
      let data: string[] = [];
      res.on('data', (chunk: string) => {
        size += chunk.length;
        if (size > this.opts.maxBytes) return tooBig();
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (data.length > 0) {
              try {
                deliver(JSON.parse(data.join('\n')));
              } catch (err) {
                this.onerror?.(new Error(`bad SSE data from upstream: ${(err as Error).message}`));
              }
            }
            data = [];
          } else if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
      });
    } else {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > this.opts.maxBytes) return tooBig();
        chunks.push(chunk);
      });
      res.on('end', () => {
        if (size > this.opts.maxBytes) return;
        const text = Buffer.concat(chunks).toString('utf8');
        if (status >= 200 && status < 300 && type.startsWith('application/json')) {
          try {
            const v = JSON.parse(text) as unknown;
            for (const m of Array.isArray(v) ? v : [v]) deliver(m);
          } catch (err) {
            this.onerror?.(new Error(`bad JSON from upstream: ${(err as Error).message}`));
          }
        } else if (status >= 300) {
          // A JSON-RPC error with our id is delivered as is; anything else answers the request.
          try {
            const v = JSON.parse(text) as { id?: unknown; error?: unknown };
            if (v && v.error && v.id === id) deliver(v);
          } catch {
            // not JSON
          }
          if (id !== undefined && !answered)
            this.answerError(
              id,
              ErrorCode.ConnectionClosed,
              `the upstream answered HTTP ${status}: ${text.slice(0, 200)}`,
            );
          answered = true;
        }
      });
    }
    const finish = () => {
      done();
      if (id !== undefined && !answered && !this.closed)
        this.answerError(id, ErrorCode.ConnectionClosed, 'the upstream ended the answer without a result');
      answered = true;
    };
    res.once('end', finish);
    res.once('close', finish);
    res.once('error', () => undefined);
  }

  private answerError(id: RequestId, code: number, message: string): void {
    this.onmessage?.({ jsonrpc: '2.0', id, error: { code, message } });
  }

  /** The GET stream of the upstream's own notifications (405: it has none). */
  private openGet(): void {
    if (this.closed || this.getStream) return;
    const req = this.lib.request({
      ...this.target,
      method: 'GET',
      headers: this.headers({ accept: 'text/event-stream' }),
    });
    this.getStream = req;
    const again = () => {
      if (this.getStream !== req) return;
      this.getStream = undefined;
      if (this.closed) return;
      this.getTimer = setTimeout(() => this.openGet(), this.getRetryMs);
      this.getTimer.unref();
      this.getRetryMs = Math.min(GET_RETRY_MAX_MS, this.getRetryMs * 2);
    };
    req.once('error', again);
    req.once('response', (res) => {
      if (res.statusCode === 405 || res.statusCode === 404) {
        res.resume();
        this.getStream = undefined;
        return;
      }
      if (res.statusCode !== 200) {
        res.resume();
        return again();
      }
      this.getRetryMs = GET_RETRY_MIN_MS;
      this.read(res, undefined, again);
    });
    req.end();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.getTimer);
    this.getStream?.destroy();
    this.getStream = undefined;
    for (const r of this.requests) r.destroy();
    this.requests.clear();
    if (this.sessionId) {
      // Best effort, bounded: the upstream may already be gone.
      await new Promise<void>((resolve) => {
        const req = this.lib.request({
          ...this.target,
          method: 'DELETE',
          headers: this.headers({}),
          timeout: 1000,
        });
        req.once('response', (res) => {
          res.resume();
          resolve();
        });
        req.once('timeout', () => req.destroy());
        req.once('error', () => resolve());
        req.end();
      });
    }
    this.agent.destroy();
    this.onclose?.();
  }
}
