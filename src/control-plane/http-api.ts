/**
 * The REST/JSON edge under /api: an adapter over the route table (routes.ts) — authentication
 * and roles, the body, the typed input, the answer — plus the streams (audit export and follow,
 * the approval long-poll) and /healthz, /readyz, /metrics. Every error is
 * `{"error":{"code","message","field"}}` with the status from common/status-map.
 */
import type http from 'node:http';
import { stringify as csvStringify } from 'csv-stringify';
import Router, { type HTTPMethod } from 'find-my-way';
import { ActError } from '../common/errors';
import { header, optionalBody, readJson, send, sendError } from '../common/http';
import type { Logger } from '../observability/logger';
import type { DecisionMetrics } from '../observability/metrics';
import { waitAnswer, waitTimeout, type ApprovalWatch } from '../enforce/approval-wait';
import type { AuditFilter } from '../store/types';
import { authorize, type Auth } from './auth';
import { AUDIT_CSV_COLUMNS, approvalJson, auditCsvRow, auditJson } from './json-mapping';
import { ROUTES, accessOf, type RestRequest, type Services } from './routes';
import { parseAuditFilter, parseExportFormat, type ExportFormat } from './services/audit';
import { parseWait } from './validate';

export interface HttpApiDeps {
  services: Services;
  auth: Auth;
  /** What approval waits watch (the control plane's view). */
  watch: ApprovalWatch;
  logger: Logger;
  metrics: DecisionMetrics;
  isReady: () => boolean;
  /** Largest accepted request body (default 1 MiB). */
  maxBodyBytes: number;
}

type Params = Record<string, string | undefined>;
interface Ctx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  params: Params;
  query: URLSearchParams;
  route: string;
}

export function createHttpApi(
  deps: HttpApiDeps,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const { services, auth, logger, metrics } = deps;
  const router = Router({
    ignoreTrailingSlash: true,
    maxParamLength: 200,
    defaultRoute: (req, res) => {
      const path = (req.url ?? '').split('?')[0];
      sendError(res, new ActError('NOT_FOUND', `no route for ${req.method} ${path}`), logger);
    },
  });

  const on = (method: HTTPMethod, path: string, h: (c: Ctx) => Promise<void>) =>
    router.on(method, path, (req, res, params) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const ctx: Ctx = { req, res, params: params as Params, query: url.searchParams, route: path };
      void (async () => {
        try {
          await h(ctx);
        } catch (err) {
          sendError(res, err, logger);
        } finally {
          metrics.httpRequests.inc({ method: req.method ?? '', route: path, status: String(res.statusCode) });
        }
      })();
    });

  const readBody = async (c: Ctx, kind: 'json' | 'optional' | 'none' | undefined, method: string) => {
    if (kind === 'none' || (kind === undefined && (method === 'GET' || method === 'DELETE'))) return {};
    if (kind === 'optional') return optionalBody(c.req, deps.maxBodyBytes);
    return readJson(c.req, deps.maxBodyBytes);
  };

  const streams: Record<string, (c: Ctx) => Promise<void>> = {
    ExportAudit: async (c) => {
      await authorize(auth, header(c.req, 'authorization'), accessOf('ExportAudit'));
      const q = Object.fromEntries(c.query.entries());
      const format = parseExportFormat(q.format);
      await exportAudit(c.res, services, parseAuditFilter(q), format);
    },
    FollowAudit: async (c) => {
      await authorize(auth, header(c.req, 'authorization'), accessOf('FollowAudit'));
      followAudit(c.req, c.res, services, parseAuditFilter(Object.fromEntries(c.query.entries())));
    },
    WaitForApproval: async (c) => {
      // The agent's own token (as the bearer) may wait on its approval; otherwise an approver key.
      const bearer = /^Bearer\s+(act_\S+)$/i.exec(header(c.req, 'authorization') ?? '')?.[1];
      if (bearer === undefined)
        await authorize(auth, header(c.req, 'authorization'), accessOf('WaitForApproval'));
      const timeoutMs = waitTimeout(
        parseWait(c.query.get('timeout') ?? undefined, 'timeout', 900_000) || undefined,
      );
      const abort = new AbortController();
      c.res.once('close', () => abort.abort());
      const answer = await waitAnswer(deps.watch, {
        approvalId: c.params.id ?? '',
        token: bearer,
        timeoutMs,
        signal: abort.signal,
      });
      // The full approval for approvers; the state alone for the agent.
      const full =
        bearer === undefined ? await services.approvals.get(c.params.id).catch(() => undefined) : undefined;
      send(c.res, 200, { ...(full ? approvalJson(full) : {}), ...answer });
    },
  };

  for (const r of ROUTES) {
    if (!r.http) continue;
    const { method, path, status = 200, body } = r.http;
    if (r.stream) {
      const h = streams[r.rpc];
      if (!h) throw new Error(`no REST stream handler for ${r.rpc}`);
      on(method, path, h);
      continue;
    }
    on(method, path, async (c) => {
      const authorization = header(c.req, 'authorization');
      // Nobody learns anything about a request before they are authenticated; a decision may be
      // authorized by the very token it checks, so its body is read first.
      const early = r.access === 'check' ? undefined : await authorize(auth, authorization, r.access);
      const b = await readBody(c, body, method);
      const input = r.rest!({
        params: c.params,
        query: Object.fromEntries(c.query.entries()),
        body: b,
      } satisfies RestRequest);
      const who =
        r.access === 'check' ? await authorize(auth, authorization, r.access, r.token?.(input)) : early;
      const out = await r.run!(services, input, who);
      send(c.res, status, r.json!(out, input));
    });
  }

  on('GET', '/healthz', async (c) => send(c.res, 200, { status: 'ok' }));
  on('GET', '/readyz', async (c) =>
    deps.isReady() ? send(c.res, 200, { status: 'ready' }) : send(c.res, 503, { status: 'starting' }),
  );
  on('GET', '/metrics', async (c) => {
    const text = await metrics.registry.metrics();
    c.res.writeHead(200, { 'content-type': metrics.registry.contentType });
    c.res.end(text);
  });

  return (req, res) => {
    router.lookup(req, res);
  };
}

async function exportAudit(
  res: http.ServerResponse,
  services: Services,
  filter: AuditFilter,
  format: ExportFormat,
) {
  const type =
    format === 'csv'
      ? 'text/csv; charset=utf-8'
      : format === 'json'
        ? 'application/json'
        : 'application/x-ndjson';
  res.writeHead(200, {
    'content-type': type,
    'content-disposition': `attachment; filename="act-audit.${format}"`,
  });
  const write = (s: string) =>
    res.write(s) ? Promise.resolve() : new Promise<void>((r) => res.once('drain', r));
  let closed = false;
  res.once('close', () => (closed = true));
  if (format === 'csv') {
    const csv = csvStringify({
      header: true,
      columns: [...AUDIT_CSV_COLUMNS],
      cast: { boolean: (v) => (v ? 'true' : 'false') },
    });
    csv.pipe(res);
    for await (const rec of services.audit.records(filter)) {
      if (closed) break;
      if (!csv.write(auditCsvRow(rec))) await new Promise<void>((r) => csv.once('drain', r));
    }
    csv.end();
    return;
  }
  let first = true;
  if (format === 'json') await write('[');
  let buf = '';
  for await (const rec of services.audit.records(filter)) {
    if (closed) break;
    const line = JSON.stringify(auditJson(rec));
    buf += format === 'json' ? (first ? '' : ',') + line : line + '\n';
    first = false;
    if (buf.length > 64 * 1024) {
      await write(buf);
      buf = '';
    }
  }
  if (format === 'json') buf += ']\n';
  res.end(buf);
}

function followAudit(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  services: Services,
  filter: AuditFilter,
) {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
  res.write('');
  const off = services.audit.follow(filter, (records) => {
    let out = '';
    for (const r of records) out += JSON.stringify(auditJson(r)) + '\n';
    // A slow follower is cut off rather than buffering without bound.
    if (!res.write(out) && res.writableLength > 8 * 1024 * 1024) res.destroy();
  });
  const heartbeat = setInterval(() => res.write('\n'), 15_000);
  const stop = () => {
    off();
    clearInterval(heartbeat);
  };
  req.once('close', stop);
  res.once('close', stop);
}
