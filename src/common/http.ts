/** Small HTTP helpers shared by the control plane's and the sidecar's REST edges. */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { ActError } from './errors';
import { HTTP_STATUS, type ErrorLogger } from './status-map';

export type { ErrorLogger };

export function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function readRaw(req: http.IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) throw new ActError('PAYLOAD_TOO_LARGE', `request body larger than ${max} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) throw new ActError('PAYLOAD_TOO_LARGE', `request body larger than ${max} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Reads a JSON object body: 415 for another content type, 400 for invalid JSON, 413 when too large. */
export async function readJson(req: http.IncomingMessage, max: number): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new ActError('UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
  }
  const raw = await readRaw(req, max);
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw new ActError('INVALID_ARGUMENT', `request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ActError('INVALID_ARGUMENT', 'request body must be a JSON object');
  return v as Record<string, unknown>;
}

export async function optionalBody(req: http.IncomingMessage, max: number): Promise<Record<string, unknown>> {
  const len = Number(req.headers['content-length'] ?? 0);
  if (len === 0 && !req.headers['transfer-encoding']) return {};
  return readJson(req, max);
}

export function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export function sendError(res: http.ServerResponse, err: unknown, logger: ErrorLogger): void {
  let e: ActError;
  if (err instanceof ActError) e = err;
  else {
    logger.error({ err }, 'request failed');
    e = new ActError('INTERNAL', 'internal error');
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body: Record<string, unknown> = { code: e.code, message: e.message };
  if (e.field !== undefined) body.field = e.field;
  if (e.code === 'UNAUTHENTICATED') res.setHeader('www-authenticate', 'Bearer');
  send(res, HTTP_STATUS[e.code], { error: body });
}

export interface HttpServerConfig {
  host: string;
  port: number;
  tls?: { cert: Buffer; key: Buffer } | undefined;
}

export async function listenHttp(
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  cfg: HttpServerConfig,
): Promise<{ server: http.Server; port: number }> {
  const server = cfg.tls
    ? https.createServer({ cert: cfg.tls.cert, key: cfg.tls.key }, handler)
    : http.createServer(handler);
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // follow/export streams may run long
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
