/**
 * The sidecar's MCP gateway: MCP Streamable HTTP on loopback (`--mcp-addr`, path /mcp) in front
 * of the upstream MCP servers of `--mcp-config`. The agent presents its ACT token as the bearer;
 * each MCP session is bound to the token that opened it. Every call is checked through the
 * sidecar's one `Enforcer` (same replica, budgets, approvals and audit as CheckPermission) before
 * it is forwarded, and its outcome is appended as a second record linked to the decision's.
 *
 * Tool lists follow the token's current policies: after every replica commit (policy change,
 * revocation, …) each session whose visible lists changed gets `notifications/*_list_changed`.
 */
import { randomUUID, createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { Counter, type Registry } from 'prom-client';
import { gaugeOf } from '../observability/metrics';
import type { Clock } from '../common/clock';
import { newSortableId } from '../common/ids';
import { parseCheckRequest } from '../decision/request';
import type { CheckOutcome } from '../decision/wire';
import type { Enforcer } from '../enforce';
import type { AuditRecord } from '../gen/act/v1/admin';
import { waitForApproval, type ApprovalWatch } from '../enforce/approval-wait';
import { ApprovalStatus } from '../gen/act/v1/decision';
import type { Logger } from '../observability/logger';
import type { ApprovalState, CallChecker, Verdict } from './checker';
import type { McpConfig } from './config';
import { createFront, type Front } from './front';
import { HttpServerTransport } from './http-server';
import { outcomeRecord } from './outcome';
import { Upstream } from './upstream';
import { visibility } from './visibility';

export const MCP_PATH = '/mcp';
/** In-flight calls get this long to finish when the sidecar stops. */
const STOP_GRACE_MS = 5000;
const SWEEP_MS = 30_000;
/** Outcome records queued this long are appended together. */
const OUTCOME_BATCH_MS = 20;
/** A session whose client never completed the handshake is closed after this long. */
const UNINITIALIZED_MS = 60_000;

export interface GatewayDeps {
  config: McpConfig;
  host: string;
  port: number;
  enforcer: Enforcer;
  /** Approval waits (the sidecar's replica with this point's own requests overlaid). */
  watch: ApprovalWatch;
  /** The replica: its commit hook refreshes tool lists. */
  replica: { onCommit: ((revision: number) => void) | undefined };
  /** The sidecar's in-flight accounting: refuses new checks while it drains. */
  tracked: <T>(fn: () => Promise<T>) => Promise<T>;
  logger: Logger;
  clock: Clock;
  registry?: Registry;
  /** Skip the Host header check (the sidecar was allowed a non-loopback address). */
  anyHost?: boolean;
}

export interface McpGateway {
  port: number;
  /** Stops taking sessions, ends held approvals, lets in-flight calls finish (≤ 5 s), closes upstreams. */
  stop(): Promise<void>;
}

interface Session {
  id: string;
  transport: HttpServerTransport;
  front: Front;
  digest: Buffer;
  tokenId: string;
  lastSeenMs: number;
  /** Open GET (notification) streams: a session listening for notifications is not idle. */
  streams: number;
  /** The client sent notifications/initialized (a session that never does is dropped soon). */
  initialized: boolean;
  abort: AbortController;
}

const digestOf = (token: string) => createHash('sha256').update(token, 'utf8').digest();

const STATUS: Record<number, ApprovalState['status']> = {
  [ApprovalStatus.PENDING]: 'PENDING',
  [ApprovalStatus.APPROVED]: 'APPROVED',
  [ApprovalStatus.DENIED]: 'DENIED',
  [ApprovalStatus.EXPIRED]: 'EXPIRED',
  [ApprovalStatus.USED]: 'USED',
};

export async function startMcpGateway(deps: GatewayDeps): Promise<McpGateway> {
  const { config, logger } = deps;
  const log = logger.child({ component: 'mcp-gateway' });
  const upstreams = config.servers.map(
    (s) =>
      new Upstream(s, {
        logger: log.child({ server: s.name }),
        stderr: 'log',
        maxMessageBytes: config.limits.maxResultBytes,
      }),
  );
  const sessions = new Map<string, Session>();
  let inFlight = 0;
  const outcomes = new Set<Promise<void>>();
  let idle: (() => void) | undefined;
  let stopping = false;

  const calls = deps.registry
    ? new Counter({
        name: 'act_mcp_calls_total',
        help: 'MCP calls through the gateway by upstream server, decision and upstream outcome (not_sent when not forwarded)',
        labelNames: ['server', 'decision', 'outcome'],
        registers: [deps.registry],
      })
    : undefined;
  if (deps.registry)
    gaugeOf(deps.registry, 'act_mcp_sessions', 'Open MCP sessions on the gateway', () => sessions.size);

  // Outcome records are appended in batches, OUTCOME_BATCH_MS apart: with disk durability each
  // append starts a group commit, and a decision arriving during an outcome's fdatasync would
  // wait for two. Batched, decisions rarely meet one. stop() flushes and waits for them.
  let queued: { record: AuditRecord; decisionId: string; done: () => void }[] = [];
  let outcomeTimer: NodeJS.Timeout | undefined;
  const flushOutcomes = () => {
    clearTimeout(outcomeTimer);
    outcomeTimer = undefined;
    const batch = queued;
    queued = [];
    for (const q of batch) {
      const p = deps.enforcer
        .appendRecord(q.record)
        .catch((err: unknown) =>
          log.warn(
            { decision_audit_id: q.decisionId, error: (err as Error).message },
            'MCP outcome record could not be made safe (the decision record is)',
          ),
        )
        .finally(() => {
          outcomes.delete(p);
          q.done();
        });
      outcomes.add(p);
    }
  };
  const queueOutcome = (record: AuditRecord, decisionId: string): Promise<void> =>
    new Promise<void>((done) => {
      queued.push({ record, decisionId, done });
      outcomeTimer ??= setTimeout(flushOutcomes, OUTCOME_BATCH_MS);
    });

  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    inFlight++;
    try {
      return await fn();
    } finally {
      if (--inFlight === 0) idle?.();
    }
  };

  // Lists follow policies and revocations: one refresh per burst of commits.
  let pending: NodeJS.Timeout | undefined;
  const refreshAll = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = undefined;
      for (const s of sessions.values()) s.front.refresh();
    }, 20);
    pending.unref();
  };
  const previous = deps.replica.onCommit;
  deps.replica.onCommit = (rev) => {
    previous?.(rev);
    refreshAll();
  };
  for (const u of upstreams) u.onListChanged = () => refreshAll();

  const checkerFor = (token: string, sessionAbort: AbortSignal): CallChecker => ({
    async check(parts, approvalId) {
      const input = parseCheckRequest({
        token,
        action: parts.action,
        resource: parts.resource,
        context: parts.context,
        approval_id: approvalId,
      });
      const o = await deps.tracked(() => deps.enforcer.check(input));
      return verdictOf(o);
    },
    async waitForApproval(approvalId, timeoutMs, signal) {
      let last;
      try {
        for await (const u of waitForApproval(deps.watch, {
          approvalId,
          token,
          timeoutMs,
          signal: AbortSignal.any([signal, sessionAbort]),
        }))
          last = u;
      } catch (err) {
        return { status: 'UNKNOWN', reason: (err as Error).message };
      }
      if (!last) return { status: 'UNKNOWN', reason: 'the wait ended without an answer' };
      return { status: STATUS[last.status] ?? 'UNKNOWN', reason: last.reason };
    },
    visible() {
      return visibility(deps.enforcer.approvalView, deps.enforcer.tokenVerifier, token, deps.clock());
    },
    recordOutcome(parts, v, out) {
      const decision = v.raw as CheckOutcome;
      const now = deps.clock();
      return queueOutcome(outcomeRecord(decision, parts, out, newSortableId('audit', now), now), v.auditId);
    },
  });

  const open = async (token: string): Promise<Session> => {
    if (deps.enforcer.approvalView.revision === 0)
      throw new HttpError(
        503,
        'the sidecar has no replica yet (waiting for its first sync); try again shortly',
      );
    const v = deps.enforcer.tokenVerifier.verify(token, deps.enforcer.approvalView.publicKey);
    if (!v.ok)
      throw new HttpError(
        401,
        `the bearer token does not verify (${v.reason}): present the agent's ACT token`,
      );
    if (sessions.size >= config.limits.maxSessions) {
      const idlest = [...sessions.values()].sort((a, b) => a.lastSeenMs - b.lastSeenMs)[0];
      if (idlest) await close(idlest, 'session limit reached (limits.max_sessions)');
    }
    const abort = new AbortController();
    const id = randomUUID();
    const transport = new HttpServerTransport(id);
    const session: Partial<Session> = {
      id,
      transport,
      digest: digestOf(token),
      tokenId: v.claims.token_id,
      lastSeenMs: Date.now(),
      streams: 0,
      initialized: false,
      abort,
    };
    const front = createFront({
      upstreams,
      namespaced: true,
      checker: checkerFor(token, abort.signal),
      progressIntervalMs: config.progressIntervalMs,
      logger: log,
      guard,
      onCall: (server, decision, outcome) => calls?.labels({ server, decision, outcome }).inc(),
    });
    front.server.oninitialized = () => (session.initialized = true);
    await front.server.connect(transport);
    // After connect: the SDK's Server wraps the transport's onclose with its own.
    const serverClose = transport.onclose;
    transport.onclose = () => {
      serverClose?.();
      if (sessions.get(id) === session) {
        sessions.delete(id);
        log.info({ session_id: id, token_id: session.tokenId }, 'MCP session closed');
      }
      abort.abort();
    };
    session.front = front;
    sessions.set(id, session as Session);
    log.info({ session_id: id, token_id: session.tokenId }, 'MCP session opened');
    return session as Session;
  };

  const close = async (s: Session, why: string): Promise<void> => {
    log.info({ session_id: s.id, token_id: s.tokenId, why }, 'closing MCP session');
    sessions.delete(s.id);
    s.abort.abort();
    await s.transport.close().catch(() => undefined);
  };

  const allowedHosts = new Set<string>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    void (async () => {
      try {
        const path = (req.url ?? '/').split('?', 1)[0]!;
        if (path !== MCP_PATH)
          throw new HttpError(404, `no route for ${path.slice(0, 100)}; MCP is served at ${MCP_PATH}`);
        if (stopping) throw new HttpError(503, 'the sidecar is shutting down');
        const origin = req.headers.origin;
        if (origin !== undefined && !config.allowedOrigins.includes(origin))
          throw new HttpError(403, `origin ${origin} is not allowed (allowed_origins)`);
        if (!deps.anyHost && !allowedHosts.has(String(req.headers.host ?? '').toLowerCase()))
          throw new HttpError(403, `host ${String(req.headers.host)} is not this gateway's loopback address`);
        const token = /^Bearer\s+(\S+)\s*$/i.exec(String(req.headers.authorization ?? ''))?.[1];
        if (token === undefined)
          throw new HttpError(401, "present the agent's ACT token: Authorization: Bearer act_…");
        const sid = req.headers['mcp-session-id'];
        if (typeof sid === 'string') {
          const s = sessions.get(sid);
          if (!s) throw new HttpError(404, 'Session not found', -32001);
          const d = digestOf(token);
          if (!timingSafeEqual(d, s.digest))
            throw new HttpError(403, 'this MCP session was opened with another token');
          s.lastSeenMs = Date.now();
          if (req.method === 'POST')
            s.transport.post(req, res, await readBody(req, config.limits.maxMessageBytes));
          else if (req.method === 'GET') {
            s.streams++;
            res.once('close', () => s.streams--);
            s.transport.get(req, res);
          } else if (req.method === 'DELETE') await s.transport.delete(res);
          else throw new HttpError(405, 'Method not allowed', -32000);
          return;
        }
        if (req.method !== 'POST')
          throw new HttpError(400, 'Bad Request: Mcp-Session-Id header is required', -32000);
        const body = await readBody(req, config.limits.maxMessageBytes);
        if (!isInitializeRequest(body))
          throw new HttpError(400, 'Bad Request: no session: the first request is initialize', -32600);
        const s = await open(token);
        s.transport.post(req, res, body);
      } catch (err) {
        if (err instanceof HttpError) return err.send(res);
        log.error({ err }, 'MCP request failed');
        new HttpError(500, 'internal error', -32603).send(res);
      }
    })();
  };

  const server = http.createServer({ maxHeaderSize: 16 * 1024 }, handler);
  server.headersTimeout = 30_000;
  server.requestTimeout = 0; // notification streams and held calls run long
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(deps.port, deps.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  for (const h of ['127.0.0.1', 'localhost', '[::1]', deps.host])
    allowedHosts.add(`${h}:${port}`.toLowerCase());

  const sweep = setInterval(() => {
    const now = Date.now();
    for (const s of [...sessions.values()]) {
      if (!s.initialized && s.lastSeenMs < now - UNINITIALIZED_MS) void close(s, 'never initialized');
      else if (s.streams === 0 && s.lastSeenMs < now - config.limits.sessionIdleMs)
        void close(s, 'idle (limits.session_idle)');
    }
  }, SWEEP_MS);
  sweep.unref();
  // Connect in the background: the first list or call waits for it, a down upstream does not stop the sidecar.
  for (const u of upstreams) void u.connect().catch(() => undefined);
  log.info(
    { mcp_port: port, path: MCP_PATH, servers: config.servers.map((s) => s.name) },
    'mcp gateway listening',
  );

  let stopped: Promise<void> | undefined;
  return {
    port,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        clearInterval(sweep);
        if (pending) clearTimeout(pending);
        deps.replica.onCommit = previous;
        server.close();
        for (const s of sessions.values()) s.abort.abort(); // held approvals answer now
        if (inFlight > 0)
          await Promise.race([
            new Promise<void>((r) => (idle = r)),
            new Promise<void>((r) => setTimeout(r, STOP_GRACE_MS).unref()),
          ]);
        await Promise.all([...sessions.values()].map((s) => close(s, 'sidecar stopping')));
        flushOutcomes();
        await Promise.all([...outcomes]); // before the sidecar closes its spool
        server.closeAllConnections();
        await Promise.all(upstreams.map((u) => u.close()));
        log.info('mcp gateway stopped');
      })()),
  };
}

function verdictOf(o: CheckOutcome): Verdict {
  const r = o.result;
  return {
    decision: r.decision,
    reasonCode: r.reasonCode,
    reason: r.reason,
    auditId: o.auditId,
    approvalId: o.approvalId,
    details: r.details,
    raw: o,
  };
}

/** An HTTP-level refusal, answered as a JSON-RPC error object (id null), as the SDK's transport does. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly rpcCode = -32000,
  ) {
    super(message);
  }

  send(res: http.ServerResponse): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = JSON.stringify({
      jsonrpc: '2.0',
      error: { code: this.rpcCode, message: this.message },
      id: null,
    });
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    if (this.status === 401) headers['www-authenticate'] = 'Bearer realm="act-mcp"';
    res.writeHead(this.status, headers);
    res.end(body);
  }
}

/** A POST body as parsed JSON: 415 for another media type, 413 past the bound, 400 (-32700) for bad JSON. */
async function readBody(req: http.IncomingMessage, max: number): Promise<unknown> {
  const type = String(req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
  if (type !== 'application/json')
    throw new HttpError(415, 'Unsupported Media Type: Content-Type must be application/json');
  if (Number(req.headers['content-length'] ?? 0) > max)
    throw new HttpError(413, `Payload Too Large: at most ${max} bytes (limits.max_message_bytes)`, -32600);
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(
          new HttpError(413, `Payload Too Large: at most ${max} bytes (limits.max_message_bytes)`, -32600),
        );
      } else chunks.push(chunk);
    });
    req.once('end', () => resolve());
    req.once('error', reject);
  });
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `Parse error: ${(err as Error).message}`, -32700);
  }
}
