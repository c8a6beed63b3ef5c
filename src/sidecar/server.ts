/**
 * Sidecar lifecycle (the composition root): checks (before anything is written) → replica
 * (LMDB, checked for damage first) → audit spool(s) → sync client → the enforcement pipeline →
 * decision servers. Serves from the on-disk replica at once, also while the control plane is
 * down. `stop()` drains: NOT_SERVING, refuse new checks, finish in-flight ones, give back
 * unused budget, keep shipping audit until the spool is empty or the drain deadline passes.
 */
import {
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AuditSpool } from '../audit';
import { adoptOrphans, releaseAdopted, retireAdopted, SpoolOwner } from '../audit/adoption';
import { SpoolShipping } from '../audit/shipping';
import { systemClock, type Clock } from '../common/clock';
import { ActError, StartupError, invalid } from '../common/errors';
import { listenHttp, readJson, send, sendError } from '../common/http';
import type { Values } from '../common/options';
import { checkListen, readFileOrFail } from '../common/preflight';
import { undecodable, withGuardedRequest, withSharedResponseWriter } from '../common/proto-encode';
import { toGrpcError } from '../common/status-map';
import { VERSION } from '../common/version';
import { parseCheckBatch, parseCheckRequest } from '../decision/request';
import { checkJson, checkMessage } from '../decision/wire';
import { Enforcer, LeaseBudgets } from '../enforce';
import { waitAnswer, waitForApproval, waitTimeout } from '../enforce/approval-wait';
import {
  CheckPermissionResponse,
  CheckPermissionsResponse,
  DecisionServiceService,
  type DecisionServiceServer,
} from '../gen/act/v1/decision';
import { addReflection, HealthStatus, ServingStatus } from '../observability/grpc-standard';
import type { Logger } from '../observability/logger';
import { createMetrics, gaugeOf } from '../observability/metrics';
import { LmdbReplica } from '../replica';
import { checkReplicaHeader, walkReplicaInChild } from '../replica/integrity';
import { isReservedSource } from '../sync/hub';
import { SyncClient } from '../sync/client';
import type { SIDECAR_OPTIONS } from './config';
import { remoteApprovals, remoteLeases, spoolSink } from './ports';

export type SidecarConfig = Values<typeof SIDECAR_OPTIONS>;

export interface Sidecar {
  httpPort: number;
  grpcPorts: number[];
  sidecarId: string;
  replica: LmdbReplica;
  sync: SyncClient;
  stop(): Promise<void>;
}

const SERVICES = ['act.v1.DecisionService', 'grpc.health.v1.Health'];

/**
 * DecisionService with responses encoded into a reused writer (no per-check writer garbage) and
 * requests that do not decode answered INVALID_ARGUMENT (not grpc-js's INTERNAL).
 */
const DECISION_SERVICE: typeof DecisionServiceService = {
  ...DecisionServiceService,
  checkPermission: withGuardedRequest(
    withSharedResponseWriter(DecisionServiceService.checkPermission, CheckPermissionResponse),
  ),
  checkPermissions: withGuardedRequest(
    withSharedResponseWriter(DecisionServiceService.checkPermissions, CheckPermissionsResponse),
  ),
  waitForApproval: withGuardedRequest(DecisionServiceService.waitForApproval),
};

/** Largest gRPC request accepted (a token of 8 KiB, a context of 16 KiB, a batch of 100). */
const MAX_GRPC_REQUEST = 4 * 1024 * 1024;
/** Adopted-spool scan and owner refresh. */
const ADOPT_EVERY_MS = 30_000;

function isLoopback(addr: string): boolean {
  if (addr.startsWith('unix:')) return true;
  const host = addr.slice(0, addr.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function hostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)) };
}

export async function startSidecar(
  cfg: SidecarConfig,
  logger: Logger,
  clock: Clock = systemClock,
): Promise<Sidecar> {
  // ---- everything that can fail without writing anything ----
  const apiKey = cfg.sidecarKey ?? process.env.ACT_ADMIN_KEY;
  if (!apiKey)
    throw new StartupError(
      'no API key to sync with: create one with `act api-keys create --name sidecar --role SIDECAR`',
      '--sidecar-key / ACT_SIDECAR_KEY',
    );
  if (cfg.allowNonLoopback !== 'true') {
    for (const a of [...cfg.grpcAddr, ...cfg.httpAddr]) {
      if (!isLoopback(a))
        throw new StartupError(
          `${a} is not a loopback address; the decision API has no authentication (set ACT_SIDECAR_ALLOW_NON_LOOPBACK=true to override)`,
          '--grpc-addr / ACT_SIDECAR_GRPC_ADDR',
        );
    }
  }
  if (cfg.httpAddr.length !== 1 || cfg.httpAddr[0]!.startsWith('unix:'))
    throw new StartupError('--http-addr takes one host:port', '--http-addr / ACT_SIDECAR_HTTP_ADDR');
  const sidecarId = cfg.sidecarId ?? os.hostname();
  // The key's id (actk_<id>_<secret>); a sidecar id, and so an adopted spool, belongs to one key.
  const apiKeyId = /^actk_(ak_[0-9a-z]{26})_/.exec(apiKey)?.[1] ?? 'ak_bootstrap0000000000000000';
  if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(sidecarId) || isReservedSource(sidecarId))
    throw new StartupError(
      `sidecar id ${JSON.stringify(sidecarId)} must be 1-128 characters of A-Z a-z 0-9 _ . : - and not a reserved id (control-plane…)`,
      '--sidecar-id / ACT_SIDECAR_ID',
    );
  const ca = cfg.tlsCa ? readFileOrFail(cfg.tlsCa, '--tls-ca / ACT_TLS_CA') : undefined;
  for (const a of cfg.grpcAddr)
    if (!a.startsWith('unix:'))
      await checkListen(hostPort(a).host, hostPort(a).port, '--grpc-addr / ACT_SIDECAR_GRPC_ADDR');
  await checkListen(
    hostPort(cfg.httpAddr[0]!).host,
    hostPort(cfg.httpAddr[0]!).port,
    '--http-addr / ACT_SIDECAR_HTTP_ADDR',
  );
  // The MCP gateway (src/mcp), loaded only when configured; its config is validated here.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mcp = cfg.mcpConfig ? (require('../mcp') as typeof import('../mcp')) : undefined;
  const mcpConfig = mcp?.loadMcpConfig(cfg.mcpConfig!, process.env);
  if (mcpConfig) {
    if (cfg.allowNonLoopback !== 'true' && !isLoopback(`${cfg.mcpAddr.host}:${cfg.mcpAddr.port}`))
      throw new StartupError(
        `${cfg.mcpAddr.host} is not a loopback address (set ACT_SIDECAR_ALLOW_NON_LOOPBACK=true to override)`,
        '--mcp-addr / ACT_MCP_ADDR',
      );
    await checkListen(cfg.mcpAddr.host, cfg.mcpAddr.port, '--mcp-addr / ACT_MCP_ADDR');
  }

  // What start has opened so far, closed again (in reverse) when a later step fails.
  const undo: (() => unknown)[] = [];
  try {
    // ---- state ----
    mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
    const replicaDir = path.join(cfg.dataDir, 'replica');
    const replica = openReplica(replicaDir, logger);
    undo.push(async () => {
      await replica.close();
      markClean(replicaDir);
    });
    const spoolDir = cfg.auditSpoolDir ?? path.join(cfg.dataDir, 'audit-spool');
    const spool = await AuditSpool.open({
      dir: spoolDir,
      durability: cfg.auditDurability,
      maxBytes: cfg.auditSpoolMaxBytes,
      onFull: cfg.auditSpoolFull,
      source: sidecarId,
      logger: logger.child({ component: 'audit-spool' }),
    });
    const shipping = new SpoolShipping(spool);
    const owner = new SpoolOwner(spoolDir, {
      sidecar_id: sidecarId,
      api_key_id: apiKeyId,
      agent_ids: cfg.agentIds,
      pid: process.pid,
      host: os.hostname(),
    });
    owner.start();
    undo.push(() => spool.close());
    const adoptLogger = logger.child({ component: 'audit-adoption' });
    /** Spools whose sidecar id the control plane refused to this key: not adopted again. */
    const refusedSpools = new Set<string>();
    const adopt = async (): Promise<number> => {
      if (!cfg.auditSpoolAdopt) return 0;
      for (const done of shipping.takeFinished()) {
        await retireAdopted(done);
        adoptLogger.info(
          { dir: done.dir, sidecar_id: done.source },
          'adopted audit spool shipped completely; removed',
        );
      }
      const found = await adoptOrphans({
        root: cfg.auditSpoolAdopt,
        own: spoolDir,
        agents: cfg.agentIds,
        apiKeyId,
        skip: refusedSpools,
        logger: adoptLogger,
      });
      for (const a of found) shipping.add(a);
      return found.length;
    };
    await adopt();

    const metrics = createMetrics('sidecar');
    const credentials = ca ? grpc.credentials.createSsl(ca) : grpc.credentials.createInsecure();
    const sync = new SyncClient(
      {
        targets: cfg.controlPlane,
        credentials,
        ...(cfg.tlsServerName
          ? { channelOptions: { 'grpc.ssl_target_name_override': cfg.tlsServerName } }
          : {}),
        apiKey,
        sidecarId,
        agentIds: cfg.agentIds,
        version: VERSION,
        backoffBaseMs: 200,
        backoffMaxMs: 10_000,
        auditBatchSize: 500,
        maxInFlightBatches: 4,
      },
      replica,
      shipping,
      logger.child({ component: 'sync' }),
      clock,
    );
    const isStale = (nowMs: number) => {
      const last = Math.max(sync.lastContactMs, replica.lastContactMs);
      return last === 0 || nowMs - last > cfg.staleAfter;
    };
    const budgets = new LeaseBudgets(remoteLeases(sync, sidecarId));
    const decisionCounters = new Map<string, { inc(): void }>();
    const latency = metrics.checkLatency.labels({ source: 'sidecar' });
    const enforcer = new Enforcer({
      view: replica,
      budgets,
      approvals: remoteApprovals(sync),
      audit: spoolSink(spool),
      clock,
      source: sidecarId,
      freshness: {
        hasState: () => replica.revision > 0,
        isStale: (now) => cfg.stalePolicy === 'fail-closed' && isStale(now),
      },
      onDecision: (r, us) => {
        // Label children are looked up once per (decision, reason), not hashed on every check.
        const key = `${r.decision}|${r.reasonCode}`;
        let counter = decisionCounters.get(key);
        if (counter === undefined) {
          counter = metrics.decisions.labels({
            decision: r.decision,
            reason_code: r.reasonCode,
            source: 'sidecar',
          });
          decisionCounters.set(key, counter);
        }
        counter.inc();
        latency.observe(us / 1e6);
        sync.kick();
      },
    });
    // Approval waits watch the replica (sync keeps it current) with this point's own requests overlaid.
    const waiters = new Set<() => void>();
    replica.onApprovals = () => {
      for (const w of [...waiters]) w();
    };
    const watch = {
      view: enforcer.approvalView,
      subscribe: (fn: () => void) => {
        waiters.add(fn);
        return () => waiters.delete(fn);
      },
      verifier: enforcer.tokenVerifier,
      clock,
    };

    const g = (name: string, help: string, fn: () => number) => gaugeOf(metrics.registry, name, help, fn);
    g('act_replica_revision', 'Revision the replica serves', () => replica.revision);
    g('act_replica_lag_revisions', 'Control-plane revision minus the replica revision (last heartbeat)', () =>
      Math.max(0, sync.upstreamRevision - replica.revision),
    );
    g('act_replica_stale', '1 when the replica is past its staleness bound', () =>
      isStale(clock()) ? 1 : 0,
    );
    g('act_sync_connected', '1 while the Sync stream is live', () => (sync.state === 'live' ? 1 : 0));
    g(
      'act_audit_spool_depth',
      'Audit records not yet acknowledged by the control plane (all spools)',
      () => shipping.depth,
    );
    g('act_audit_spool_bytes', 'Bytes of unacknowledged audit records', () => spool.unackedBytes);
    g(
      'act_audit_dropped_total',
      'Audit records dropped because the spool was full (drop-oldest)',
      () => spool.droppedTotal,
    );
    g(
      'act_audit_shipped_total',
      'Audit records acknowledged by the control plane',
      () => sync.shippedRecords,
    );
    g(
      'act_audit_rejected_batches_total',
      'Audit batches the control plane refused (kept, retried with backoff)',
      () => sync.rejectedBatches,
    );
    g('act_audit_shipping_blocked', '1 while audit shipping is paused after a refusal', () =>
      sync.rejection ? 1 : 0,
    );
    g(
      'act_audit_adopted_spools',
      'Spools of stopped sidecars being shipped by this one',
      () => shipping.adoptedSpools.length,
    );
    g(
      'act_budget_lease_failures_total',
      'Budget leases that could not be had from the control plane',
      () => budgets.stats().leaseFailures,
    );

    // ---- servers ----
    const health = new HealthStatus(SERVICES);
    // channelz bookkeeping costs per call and nothing here reads it.
    const grpcServer = new grpc.Server({
      'grpc.enable_channelz': 0,
      'grpc.max_receive_message_length': MAX_GRPC_REQUEST,
    });
    let inFlight = 0;
    let draining = false;
    let drained: (() => void) | undefined;
    const tracked = async <T>(fn: () => Promise<T>): Promise<T> => {
      if (draining) throw new ActError('UNAVAILABLE', 'sidecar is shutting down');
      inFlight++;
      try {
        return await fn();
      } finally {
        if (--inFlight === 0 && drained) drained();
      }
    };
    const decoded = (req: unknown) => {
      const bad = undecodable(req);
      if (bad !== undefined) throw invalid('request', `the request could not be decoded: ${bad}`);
      return req as Record<string, unknown>;
    };
    const impl: DecisionServiceServer = {
      checkPermission: (call, cb) => {
        tracked(async () => {
          const input = parseCheckRequest(decoded(call.request));
          return checkMessage(input.action, await enforcer.check(input));
        }).then(
          (res) => cb(null, res),
          (err: unknown) => cb(toGrpcError(err, logger)),
        );
      },
      checkPermissions: (call, cb) => {
        tracked(async () => {
          const r = decoded(call.request);
          const inputs = parseCheckBatch(r.token, r.items);
          const results = await Promise.all(
            inputs.map((i) => enforcer.check(i).then((o) => checkMessage(i.action, o))),
          );
          return { results };
        }).then(
          (res) => cb(null, res),
          (err: unknown) => cb(toGrpcError(err, logger)),
        );
      },
      waitForApproval: (call) => {
        void (async () => {
          try {
            const r = decoded(call.request) as unknown as typeof call.request;
            if (!r.token)
              throw invalid('token', 'token is required: the ACT token whose check asked for the approval');
            const abort = new AbortController();
            call.once('cancelled', () => abort.abort());
            for await (const u of waitForApproval(watch, {
              approvalId: r.approval_id,
              token: r.token,
              timeoutMs: waitTimeout(r.timeout_ms),
              signal: abort.signal,
            })) {
              if (call.cancelled) return;
              call.write(u);
            }
            call.end();
          } catch (err) {
            call.emit('error', toGrpcError(err, logger));
          }
        })();
      },
    };
    undo.push(() => grpcServer.forceShutdown());
    grpcServer.addService(DECISION_SERVICE, impl);
    health.addTo(grpcServer);
    addReflection(grpcServer, SERVICES);
    const grpcPorts: number[] = [];
    for (const addr of cfg.grpcAddr) {
      if (addr.startsWith('unix:')) rmSync(addr.slice(5), { force: true }); // a stale socket from a crash
      grpcPorts.push(
        await new Promise<number>((resolve, reject) =>
          grpcServer.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err, port) =>
            err
              ? reject(
                  new StartupError(
                    `cannot listen on ${addr} (${err.message})`,
                    '--grpc-addr / ACT_SIDECAR_GRPC_ADDR',
                  ),
                )
              : resolve(port),
          ),
        ),
      );
    }

    const ready = () => replica.revision > 0 && !draining;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const route = `${req.method} ${url.pathname}`;
      void (async () => {
        try {
          if (route === 'POST /api/enforcement/check') {
            const body = await readJson(req, 64 * 1024);
            const input = parseCheckRequest(body);
            send(res, 200, checkJson(input.action, await tracked(() => enforcer.check(input))));
          } else if (route === 'POST /api/enforcement/check-batch') {
            const body = await readJson(req, 1024 * 1024);
            const inputs = parseCheckBatch(body.token, body.items);
            const results = await tracked(() =>
              Promise.all(inputs.map((i) => enforcer.check(i).then((o) => checkJson(i.action, o)))),
            );
            send(res, 200, { results });
          } else if (req.method === 'GET' && /^\/api\/approvals\/[^/]+\/wait$/.test(url.pathname)) {
            send(res, 200, await longPoll(url, req, res));
          } else if (route === 'GET /healthz') {
            send(res, 200, { status: 'ok' });
          } else if (route === 'GET /readyz') {
            send(res, ready() ? 200 : 503, {
              status: ready() ? 'ready' : draining ? 'draining' : 'no replica yet',
              revision: replica.revision,
              sync: sync.state,
              control_plane: sync.target,
              audit: sync.rejection
                ? {
                    shipping: 'blocked',
                    reason: sync.rejection.reason,
                    since: new Date(sync.rejection.atMs).toISOString(),
                  }
                : { shipping: 'ok', depth: shipping.depth },
            });
          } else if (route === 'GET /metrics') {
            const text = await metrics.registry.metrics();
            res.writeHead(200, { 'content-type': metrics.registry.contentType });
            res.end(text);
          } else {
            throw new ActError('NOT_FOUND', `no route for ${route}`);
          }
        } catch (err) {
          sendError(res, err, logger);
        }
      })();
    };
    /** GET /api/approvals/{id}/wait?timeout=30s with the agent's ACT token as the bearer. */
    const longPoll = async (url: URL, req: http.IncomingMessage, res: http.ServerResponse) => {
      const token = /^Bearer\s+(act_\S+)$/i.exec(String(req.headers.authorization ?? ''))?.[1];
      if (token === undefined)
        throw new ActError(
          'UNAUTHENTICATED',
          'present the ACT token that asked for the approval: Authorization: Bearer act_…',
        );
      const id = decodeURIComponent(url.pathname.split('/')[3] ?? '');
      const raw = url.searchParams.get('timeout');
      const m = raw === null ? undefined : /^(\d{1,6})(ms|s|m)?$/.exec(raw);
      if (raw !== null && !m) throw invalid('timeout', 'timeout must be a duration such as 30s or 500ms');
      const ms = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : undefined;
      const abort = new AbortController();
      res.once('close', () => abort.abort());
      return waitAnswer(watch, { approvalId: id, token, timeoutMs: waitTimeout(ms), signal: abort.signal });
    };
    const { server: httpServer, port: httpPort } = await listenHttp(handler, hostPort(cfg.httpAddr[0]!));
    undo.push(() => httpServer.close());
    const mcpGateway = mcpConfig
      ? await mcp!.startMcpGateway({
          config: mcpConfig,
          host: cfg.mcpAddr.host,
          port: cfg.mcpAddr.port,
          enforcer,
          watch,
          replica,
          tracked,
          logger,
          clock,
          registry: metrics.registry,
          anyHost: cfg.allowNonLoopback === 'true',
        })
      : undefined;
    if (mcpGateway) undo.push(() => mcpGateway.stop());

    sync.start();
    const setHealth = () => health.set(ready() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    setHealth();
    sync.onApplied = () => setHealth();
    // An adopted spool's id belongs to another key (a key that still exists): give those up so
    // this sidecar syncs, and another sidecar with that key may ship them.
    sync.onEarlierIdsRefused = async () => {
      const given = shipping.detachAdopted();
      for (const a of given) {
        refusedSpools.add(path.resolve(a.dir));
        await releaseAdopted(a);
        adoptLogger.error(
          { dir: a.dir, sidecar_id: a.source },
          "the control plane refused this adopted spool's sidecar id for this key; released it unshipped",
        );
      }
      return given.length > 0;
    };
    const maintenance = setInterval(() => {
      budgets.prune();
      void replica
        .pruneRevocations(clock())
        .catch((err: unknown) => logger.warn({ err }, 'pruning revocations failed'));
    }, 60_000);
    maintenance.unref();
    const adoption = cfg.auditSpoolAdopt
      ? setInterval(() => {
          void adopt()
            .then((n) => n > 0 && sync.restartStream()) // the next Hello names the adopted chains
            .catch((err: unknown) => adoptLogger.warn({ err }, 'spool adoption failed'));
        }, ADOPT_EVERY_MS)
      : undefined;
    adoption?.unref();
    logger.info(
      {
        http_port: httpPort,
        grpc_ports: grpcPorts,
        grpc_addrs: cfg.grpcAddr,
        sidecar_id: sidecarId,
        revision: replica.revision,
        audit_durability: cfg.auditDurability,
        agent_ids: cfg.agentIds,
        control_plane: cfg.controlPlane,
      },
      'sidecar listening',
    );

    let stopping: Promise<void> | undefined;
    return {
      httpPort,
      grpcPorts,
      sidecarId,
      replica,
      sync,
      stop: () =>
        (stopping ??= (async () => {
          draining = true;
          health.set(ServingStatus.NOT_SERVING);
          await mcpGateway?.stop();
          clearInterval(maintenance);
          if (adoption) clearInterval(adoption);
          // Finish in-flight checks (their records reach the spool) before anything closes.
          if (inFlight > 0) await new Promise<void>((r) => (drained = r));
          const returned = await Promise.race([
            budgets.release().catch(() => 0),
            new Promise<number>((r) => setTimeout(() => r(0), 2000).unref()),
          ]);
          // Keep shipping: a deleted pod has no next time.
          const deadline = clock() + cfg.drainTimeout;
          const empty = await sync.drained(deadline);
          const left = shipping.depth;
          if (empty) logger.info({ budget_units_returned: returned }, 'audit spool drained');
          else
            logger.warn(
              { unshipped: left, spool_dir: spoolDir, drain_timeout_ms: cfg.drainTimeout },
              cfg.auditSpoolAdopt
                ? 'audit records not shipped before the drain deadline; they stay on the node volume for the next sidecar'
                : 'audit records not shipped before the drain deadline; they are lost if this data dir is not reused',
            );
          health.close();
          await Promise.all([
            new Promise<void>((r) => {
              httpServer.close(() => r());
              httpServer.closeIdleConnections();
            }),
            new Promise<void>((r) => grpcServer.tryShutdown(() => r())),
          ]);
          await sync.stop();
          owner.stop(left);
          for (const a of shipping.adoptedSpools) await a.spool.close();
          await spool.close();
          await replica.close();
          markClean(replicaDir);
          logger.info({ spool_depth: left }, 'sidecar stopped');
        })()),
    };
  } catch (err) {
    for (const u of undo.reverse())
      await Promise.resolve()
        .then(u)
        .catch(() => undefined);
    throw err;
  }
}

const UNCLEAN = 'unclean';
/** Written at a clean stop: the replica file's size and change time then. */
const CLEAN = 'clean.json';

/**
 * Opens the replica after checking it for damage (integrity.ts): a damaged file is moved aside
 * and a fresh replica is made, which fails checks closed until the next snapshot. A marker file
 * says the replica is open; found at start, it means the last run did not stop cleanly. A clean
 * stop records the file's size and change time; a file changed since (by anything but this
 * sidecar) is read through in a child process before it is opened, like after a crash.
 */
function openReplica(dir: string, logger: Logger): LmdbReplica {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'replica.mdb');
  let problem = checkReplicaHeader(file)?.problem;
  if (
    problem === undefined &&
    existsSync(file) &&
    (existsSync(path.join(dir, UNCLEAN)) || changedSinceStop(dir, file))
  )
    problem = walkReplicaInChild(file)?.problem;
  if (problem !== undefined) moveAside(dir, file, problem, logger);
  rmSync(path.join(dir, CLEAN), { force: true });
  writeFileSync(path.join(dir, UNCLEAN), `${process.pid}\n`);
  try {
    return LmdbReplica.open({ dataDir: dir });
  } catch (err) {
    moveAside(dir, file, `it could not be opened: ${(err as Error).message}`, logger);
    return LmdbReplica.open({ dataDir: dir });
  }
}

function moveAside(dir: string, file: string, problem: string, logger: Logger): void {
  const to = `${file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  renameSync(file, to);
  rmSync(`${file}-lock`, { force: true });
  logger.error(
    { replica: file, problem, moved_to: to, dir },
    'replica damaged: moved aside; rebuilding it from a snapshot (checks fail closed until it arrives)',
  );
}

function markClean(dir: string): void {
  try {
    const st = statSync(path.join(dir, 'replica.mdb'));
    writeFileSync(path.join(dir, CLEAN), JSON.stringify({ size: st.size, ctime_ms: st.ctimeMs }));
    unlinkSync(path.join(dir, UNCLEAN));
  } catch {
    // already gone, or no replica file yet
  }
}

/** Whether the replica file changed since the last clean stop (no record: cannot tell, so no). */
function changedSinceStop(dir: string, file: string): boolean {
  try {
    const was = JSON.parse(readFileSync(path.join(dir, CLEAN), 'utf8')) as { size: number; ctime_ms: number };
    const st = statSync(file);
    return st.size !== was.size || st.ctimeMs !== was.ctime_ms;
  } catch {
    return false;
  }
}
