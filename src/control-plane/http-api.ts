/**
 * The REST/JSON API under /api (the seed's routes and the operator routes around
 * them), plus /healthz, /readyz and /metrics. Routing by find-my-way; every error
 * is `{"error":{"code","message","field"}}` with the status from status-map.
 */
import type http from 'node:http';
import { stringify as csvStringify } from 'csv-stringify';
import Router, { type HTTPMethod } from 'find-my-way';
import { ActError, invalid } from '../common/errors';
import { header, optionalBody, readJson, send, sendError } from '../common/http';
import { Decision, ReasonCode } from '../gen/act/v1/decision';
import { Role } from '../gen/act/v1/admin';
import { parseCheckBatch, parseCheckRequest } from '../decision/request';
import type { AuditFilter, Store } from '../store/types';
import { authenticateCheck, requireRole, type Principal } from './auth';
import type { GrpcApiDeps } from './grpc-api';
import { checkJson } from '../decision/wire';
import {
  AUDIT_CSV_COLUMNS,
  agentJson,
  approvalJson,
  auditCsvRow,
  auditJson,
  policyJson,
} from './json-mapping';
import type { RoleName } from './records';
import { LIMITS, decodeCursor, pageSize, parseTime, requireString } from './validate';

export interface HttpApiDeps extends GrpcApiDeps {
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
type Handler = (ctx: Ctx) => Promise<void>;

export function createHttpApi(
  deps: HttpApiDeps,
): (req: http.IncomingMessage, res: http.ServerResponse) => void {
  const { admin, auth, central, store, logger, metrics } = deps;
  const router = Router({
    ignoreTrailingSlash: true,
    maxParamLength: 200,
    defaultRoute: (req, res) => {
      const path = (req.url ?? '').split('?')[0];
      sendError(res, new ActError('NOT_FOUND', `no route for ${req.method} ${path}`), logger);
    },
  });

  const route = (method: HTTPMethod, path: string, h: Handler) => {
    router.on(method, path, (req, res, params) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      void run(h, { req, res, params: params as Params, query: url.searchParams, route: path });
    });
  };

  const run = async (h: Handler, ctx: Ctx) => {
    try {
      await h(ctx);
    } catch (err) {
      sendError(ctx.res, err, logger);
    } finally {
      metrics.httpRequests.inc({
        method: ctx.req.method ?? '',
        route: ctx.route,
        status: String(ctx.res.statusCode),
      });
    }
  };

  /** Authenticates, checks the role, then runs the handler. */
  const secured =
    (roles: RoleName[], h: (ctx: Ctx, who: Principal) => Promise<void>): Handler =>
    async (ctx) => {
      const who = await auth.authenticate(header(ctx.req, 'authorization'));
      if (roles.length > 0) requireRole(who, ...roles);
      await h(ctx, who);
    };

  const body = (ctx: Ctx) => readJson(ctx.req, deps.maxBodyBytes);
  const q = (ctx: Ctx) => Object.fromEntries(ctx.query.entries());

  // ---- agents ----
  route(
    'POST',
    '/api/agents',
    secured(['admin'], async (c) => send(c.res, 201, agentJson(await admin.createAgent(await body(c))))),
  );
  route(
    'GET',
    '/api/agents',
    secured(['admin'], async (c) => {
      const r = await admin.listAgents(q(c));
      send(c.res, 200, { agents: r.agents.map(agentJson), next_cursor: r.next_cursor });
    }),
  );
  route(
    'GET',
    '/api/agents/:id',
    secured(['admin'], async (c) => send(c.res, 200, agentJson(await admin.getAgent(c.params.id)))),
  );
  route(
    'PATCH',
    '/api/agents/:id',
    secured(['admin'], async (c) =>
      send(c.res, 200, agentJson(await admin.updateAgent(c.params.id, await body(c)))),
    ),
  );
  route(
    'POST',
    '/api/agents/:id/disable',
    secured(['admin'], async (c) =>
      send(c.res, 200, agentJson(await admin.setAgentStatus(c.params.id, false))),
    ),
  );
  route(
    'POST',
    '/api/agents/:id/enable',
    secured(['admin'], async (c) =>
      send(c.res, 200, agentJson(await admin.setAgentStatus(c.params.id, true))),
    ),
  );
  route(
    'DELETE',
    '/api/agents/:id',
    secured(['admin'], async (c) => send(c.res, 200, await admin.deleteAgent(c.params.id))),
  );

  // ---- policies ----
  route(
    'POST',
    '/api/policies',
    secured(['admin'], async (c) => send(c.res, 201, policyJson(await admin.createPolicy(await body(c))))),
  );
  route(
    'GET',
    '/api/policies',
    secured(['admin'], async (c) => {
      const r = await admin.listPolicies(q(c));
      send(c.res, 200, { policies: r.policies.map(policyJson), next_cursor: r.next_cursor });
    }),
  );
  route(
    'GET',
    '/api/policies/:id',
    secured(['admin'], async (c) => send(c.res, 200, policyJson(await admin.getPolicy(c.params.id)))),
  );
  route(
    'PUT',
    '/api/policies/:id',
    secured(['admin'], async (c) =>
      send(c.res, 200, policyJson(await admin.updatePolicy(c.params.id, await body(c)))),
    ),
  );
  route(
    'DELETE',
    '/api/policies/:id',
    secured(['admin'], async (c) => send(c.res, 200, await admin.deletePolicy(c.params.id))),
  );

  // ---- tokens ----
  route(
    'POST',
    '/api/tokens',
    secured(['admin'], async (c) => send(c.res, 201, await admin.issueToken(await body(c)))),
  );
  route(
    'GET',
    '/api/tokens',
    secured(['admin'], async (c) => send(c.res, 200, await admin.listTokens(q(c)))),
  );
  route(
    'GET',
    '/api/tokens/:id',
    secured(['admin'], async (c) => send(c.res, 200, await admin.getToken(c.params.id))),
  );
  route(
    'POST',
    '/api/tokens/:id/revoke',
    secured(['admin'], async (c) =>
      send(c.res, 200, await admin.revokeToken(c.params.id, await optionalBody(c.req, deps.maxBodyBytes))),
    ),
  );
  route(
    'POST',
    '/api/tokens/:id/attenuate',
    secured(['admin'], async (c) => send(c.res, 201, await admin.attenuateToken(c.params.id, await body(c)))),
  );

  // ---- approvals ----
  route(
    'GET',
    '/api/approvals',
    secured(['approver'], async (c) => {
      const r = await admin.listApprovals(q(c));
      send(c.res, 200, { approvals: r.approvals.map(approvalJson), next_cursor: r.next_cursor });
    }),
  );
  route(
    'GET',
    '/api/approvals/:id',
    secured(['approver'], async (c) => send(c.res, 200, approvalJson(await admin.getApproval(c.params.id)))),
  );
  for (const verb of ['approve', 'deny'] as const) {
    route(
      'POST',
      `/api/approvals/:id/${verb}`,
      secured(['approver'], async (c, who) => {
        const a = await admin.resolveApproval(
          c.params.id,
          verb === 'approve',
          await optionalBody(c.req, deps.maxBodyBytes),
          who.name,
        );
        send(c.res, 200, approvalJson(a));
      }),
    );
  }

  // ---- audit ----
  route(
    'GET',
    '/api/audit',
    secured(['auditor'], async (c) => {
      const query = q(c);
      const filter = parseAuditFilter(query);
      const limit = pageSize(query.limit, 100, 1000);
      const page = await store.audit.query(filter, query.cursor ?? '', limit);
      send(c.res, 200, { records: page.records.map(auditJson), next_cursor: page.nextCursor });
    }),
  );
  route(
    'GET',
    '/api/audit/export',
    secured(['auditor'], async (c) => {
      const query = q(c);
      const format = query.format ?? 'ndjson';
      if (!['csv', 'json', 'ndjson'].includes(format))
        throw invalid('format', 'format must be csv, json or ndjson');
      const filter = parseAuditFilter(query);
      await exportAudit(c.res, store, filter, format as 'csv' | 'json' | 'ndjson');
    }),
  );
  route(
    'GET',
    '/api/audit/follow',
    secured(['auditor'], async (c) => {
      const filter = parseAuditFilter(q(c));
      followAudit(c.req, c.res, store, filter);
    }),
  );

  // ---- keys ----
  route(
    'GET',
    '/api/keys',
    secured(['admin'], async (c) => send(c.res, 200, await admin.listSigningKeys())),
  );
  route(
    'POST',
    '/api/keys/rotate',
    secured(['admin'], async (c) => send(c.res, 201, await admin.rotateSigningKey())),
  );

  // ---- API keys ----
  route(
    'POST',
    '/api/api-keys',
    secured(['admin'], async (c) => {
      const b = await body(c);
      const name = requireString(b.name, 'name', { min: 1, max: LIMITS.name });
      const role = parseRole(b.role);
      if (b.agent_ids !== undefined && !Array.isArray(b.agent_ids))
        throw invalid('agent_ids', 'agent_ids must be an array of agent ids');
      const { record, secret } = await auth.createKey(
        name,
        role,
        (b.agent_ids as string[] | undefined) ?? [],
      );
      send(c.res, 201, { api_key: publicApiKey(record), secret });
    }),
  );
  route(
    'GET',
    '/api/api-keys',
    secured(['admin'], async (c) => {
      const rows = await store.read((r) =>
        r.scan<import('./records').ApiKeyRecord>('apikeys', { limit: 10_000 }),
      );
      send(c.res, 200, { api_keys: rows.map((r) => publicApiKey(r.value)) });
    }),
  );
  route(
    'DELETE',
    '/api/api-keys/:id',
    secured(['admin'], async (c, who) => {
      const id = c.params.id ?? '';
      if (id === who.api_key_id)
        throw new ActError('FAILED_PRECONDITION', 'an API key cannot revoke itself', { field: 'api_key_id' });
      const { result } = await store.write(async (w) => {
        if (!(await w.get('apikeys', id)))
          throw new ActError('NOT_FOUND', `API key ${JSON.stringify(id)} not found`, { field: 'api_key_id' });
        w.del('apikeys', id);
        return id;
      });
      send(c.res, 200, { id: result, deleted: true });
    }),
  );

  // ---- central enforcement ----
  const checkAuth = (c: Ctx, bodyToken: unknown) =>
    authenticateCheck(auth, header(c.req, 'authorization'), bodyToken);
  route('POST', '/api/enforcement/check', async (c) => {
    const b = await body(c);
    await checkAuth(c, b.token);
    const input = parseCheckRequest(b);
    send(c.res, 200, checkJson(input.action, await central.check(input)));
  });
  route('POST', '/api/enforcement/check-batch', async (c) => {
    const b = await body(c);
    await checkAuth(c, b.token);
    const inputs = parseCheckBatch(b.token, b.items);
    const results = [];
    for (const input of inputs) results.push(checkJson(input.action, await central.check(input)));
    send(c.res, 200, { results });
  });

  // ---- operations ----
  route('GET', '/healthz', async (c) => send(c.res, 200, { status: 'ok' }));
  route('GET', '/readyz', async (c) =>
    deps.isReady() ? send(c.res, 200, { status: 'ready' }) : send(c.res, 503, { status: 'starting' }),
  );
  route('GET', '/metrics', async (c) => {
    const text = await metrics.registry.metrics();
    c.res.writeHead(200, { 'content-type': metrics.registry.contentType });
    c.res.end(text);
  });

  return (req, res) => {
    router.lookup(req, res);
  };
}

function publicApiKey(r: import('./records').ApiKeyRecord) {
  return {
    api_key_id: r.api_key_id,
    name: r.name,
    role: r.role.toUpperCase(),
    created_at: new Date(r.created_at_ms).toISOString(),
    agent_ids: r.agent_ids ?? [],
  };
}

function parseRole(v: unknown): RoleName {
  const s =
    typeof v === 'string' ? v.toLowerCase() : typeof v === 'number' ? (Role[v] ?? '').toLowerCase() : '';
  if (s === 'admin' || s === 'approver' || s === 'auditor' || s === 'sidecar') return s;
  throw invalid('role', 'role must be one of ADMIN, APPROVER, AUDITOR, SIDECAR');
}

export function parseAuditFilter(q: Record<string, unknown>): AuditFilter {
  const f: AuditFilter = {};
  const str = (k: string) => {
    const v = q[k];
    if (v === undefined || v === '') return undefined;
    return requireString(v, k, { max: 256 });
  };
  const agent = str('agent_id');
  if (agent) f.agent_id = agent;
  const token = str('token_id');
  if (token) f.token_id = token;
  const action = str('action');
  if (action) f.action = action;
  const decision = str('decision');
  if (decision) {
    const n = Decision[decision.toUpperCase() as keyof typeof Decision];
    if (typeof n !== 'number' || n <= 0)
      throw invalid('decision', 'decision must be ALLOW, DENY or APPROVAL_REQUIRED');
    f.decision = n;
  }
  const reason = str('reason_code') ?? str('reason');
  if (reason) {
    const n = ReasonCode[reason.toUpperCase() as keyof typeof ReasonCode];
    if (typeof n !== 'number' || n <= 0)
      throw invalid('reason_code', `reason_code ${JSON.stringify(reason)} is not a reason code`);
    f.reason_code = n;
  }
  const since = str('since');
  if (since) f.sinceMs = parseTime(since, 'since');
  const until = str('until');
  if (until) f.untilMs = parseTime(until, 'until');
  if (f.sinceMs !== undefined && f.untilMs !== undefined && f.sinceMs >= f.untilMs)
    throw invalid('until', 'until must be after since');
  decodeCursor(q.cursor);
  return f;
}

async function exportAudit(
  res: http.ServerResponse,
  store: Store,
  filter: AuditFilter,
  format: 'csv' | 'json' | 'ndjson',
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
    for await (const rec of store.audit.export(filter)) {
      if (closed) break;
      if (!csv.write(auditCsvRow(rec))) await new Promise<void>((r) => csv.once('drain', r));
    }
    csv.end();
    return;
  }
  let first = true;
  if (format === 'json') await write('[');
  let buf = '';
  for await (const rec of store.audit.export(filter)) {
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

function followAudit(req: http.IncomingMessage, res: http.ServerResponse, store: Store, filter: AuditFilter) {
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-cache' });
  res.write('');
  const matches = (r: import('../gen/act/v1/admin').AuditRecord) =>
    (!filter.agent_id || r.agent_id === filter.agent_id) &&
    (!filter.token_id || r.token_id === filter.token_id) &&
    (!filter.action || r.action === filter.action) &&
    (filter.decision === undefined || r.decision === filter.decision) &&
    (filter.reason_code === undefined || r.reason_code === filter.reason_code);
  const off = store.audit.onAppend((records) => {
    let out = '';
    for (const r of records) if (matches(r)) out += JSON.stringify(auditJson(r)) + '\n';
    // A slow follower is cut off rather than buffering without bound.
    if (out && !res.write(out) && res.writableLength > 8 * 1024 * 1024) res.destroy();
  });
  const heartbeat = setInterval(() => res.write('\n'), 15_000);
  const stop = () => {
    off();
    clearInterval(heartbeat);
  };
  req.once('close', stop);
  res.once('close', stop);
}
