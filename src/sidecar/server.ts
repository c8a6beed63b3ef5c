/**
 * Sidecar lifecycle: replica (LMDB) → audit spool → sync client → decision
 * servers. Serves from the on-disk replica at once, also while the control plane
 * is down. `stop()` drains: NOT_SERVING, finish in-flight checks, flush the spool.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import type http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Gauge } from 'prom-client';
import { AuditSpool } from '../audit';
import { systemClock, type Clock } from '../common/clock';
import { ActError } from '../common/errors';
import { listenHttp, readJson, send, sendError } from '../common/http';
import type { Values } from '../common/options';
import { GRPC_STATUS } from '../common/status-map';
import { VERSION } from '../common/version';
import { parseCheckBatch, parseCheckRequest } from '../decision/request';
import { checkJson, checkMessage } from '../decision/wire';
import {
  CheckPermissionResponse,
  CheckPermissionsResponse,
  DecisionServiceService,
  type DecisionServiceServer,
} from '../gen/act/v1/decision';
import { withSharedResponseWriter } from '../common/proto-encode';
import { addReflection, HealthStatus, ServingStatus } from '../observability/grpc-standard';
import type { Logger } from '../observability/logger';
import { createMetrics } from '../observability/metrics';
import { LmdbReplica } from '../replica';
import { SyncClient } from '../sync/client';
import { Checker } from './checker';
import type { SIDECAR_OPTIONS } from './config';

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

/** DecisionService with responses encoded into a reused writer (no per-check writer garbage). */
const DECISION_SERVICE: typeof DecisionServiceService = {
  ...DecisionServiceService,
  checkPermission: withSharedResponseWriter(DecisionServiceService.checkPermission, CheckPermissionResponse),
  checkPermissions: withSharedResponseWriter(
    DecisionServiceService.checkPermissions,
    CheckPermissionsResponse,
  ),
};

function isLoopback(addr: string): boolean {
  if (addr.startsWith('unix:')) return true;
  const host = addr.slice(0, addr.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export async function startSidecar(
  cfg: SidecarConfig,
  logger: Logger,
  clock: Clock = systemClock,
): Promise<Sidecar> {
  const apiKey = cfg.sidecarKey ?? process.env.ACT_ADMIN_KEY;
  if (!apiKey)
    throw new Error(
      'set ACT_SIDECAR_KEY to an API key with the sidecar role (act api-keys create --role SIDECAR)',
    );
  if (cfg.allowNonLoopback !== 'true') {
    for (const a of [...cfg.grpcAddr, ...cfg.httpAddr]) {
      if (!isLoopback(a))
        throw new Error(
          `${a} is not a loopback address; the decision API has no authentication (set ACT_SIDECAR_ALLOW_NON_LOOPBACK=true to override)`,
        );
    }
  }
  if (cfg.httpAddr.length !== 1 || cfg.httpAddr[0]!.startsWith('unix:'))
    throw new Error('--http-addr takes one host:port');
  const sidecarId = cfg.sidecarId ?? os.hostname();
  if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(sidecarId))
    throw new Error('--sidecar-id must be 1-128 characters of A-Z a-z 0-9 _ . : -');

  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const replica = LmdbReplica.open({ dataDir: path.join(cfg.dataDir, 'replica') });
  const spool = await AuditSpool.open({
    dir: path.join(cfg.dataDir, 'audit-spool'),
    durability: cfg.auditDurability,
    maxBytes: cfg.auditSpoolMaxBytes,
    onFull: cfg.auditSpoolFull,
    source: sidecarId,
    logger: logger.child({ component: 'audit-spool' }),
  });

  const metrics = createMetrics('sidecar');
  const credentials = cfg.tlsCa
    ? grpc.credentials.createSsl(readFileSync(cfg.tlsCa))
    : grpc.credentials.createInsecure();
  const sync = new SyncClient(
    {
      target: cfg.controlPlane,
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
    spool,
    logger.child({ component: 'sync' }),
    clock,
  );
  const decisionCounters = new Map<string, { inc(): void }>();
  const latency = metrics.checkLatency.labels({ source: 'sidecar' });
  const checker = new Checker(
    replica,
    spool,
    clock,
    { staleAfterMs: cfg.staleAfter, stalePolicy: cfg.stalePolicy, approvalTtlMs: 24 * 3_600_000 },
    () => sync.lastContactMs,
    (r, us) => {
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
    },
    () => sync.kick(),
  );
  const g = (name: string, help: string, fn: () => number) =>
    new Gauge({
      name,
      help,
      registers: [metrics.registry],
      collect() {
        this.set(fn());
      },
    });
  g('act_replica_revision', 'Revision the replica serves', () => replica.revision);
  g('act_replica_lag_revisions', 'Control-plane revision minus the replica revision (last heartbeat)', () =>
    Math.max(0, sync.upstreamRevision - replica.revision),
  );
  g('act_replica_stale', '1 when the replica is past its staleness bound', () =>
    checker.isStale(clock()) ? 1 : 0,
  );
  g('act_sync_connected', '1 while the Sync stream is live', () => (sync.state === 'live' ? 1 : 0));
  g('act_audit_spool_depth', 'Audit records not yet acknowledged by the control plane', () => spool.depth);
  g('act_audit_spool_bytes', 'Bytes of unacknowledged audit records', () => spool.unackedBytes);
  g(
    'act_audit_dropped_total',
    'Audit records dropped because the spool was full (drop-oldest)',
    () => spool.droppedTotal,
  );
  g('act_audit_shipped_total', 'Audit records acknowledged by the control plane', () => sync.shippedRecords);

  // ---- servers ----
  const health = new HealthStatus(SERVICES);
  // channelz bookkeeping costs per call and nothing here reads it.
  const grpcServer = new grpc.Server({ 'grpc.enable_channelz': 0 });
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
  const rpcError = (err: unknown): Partial<grpc.StatusObject> => {
    if (err instanceof ActError)
      return {
        code: GRPC_STATUS[err.code],
        details: err.field ? `${err.message} (field: ${err.field})` : err.message,
      };
    logger.error({ err }, 'check failed');
    return { code: grpc.status.INTERNAL, details: 'internal error' };
  };
  const impl: DecisionServiceServer = {
    checkPermission: (call, cb) => {
      tracked(async () => {
        const input = parseCheckRequest(call.request as unknown as Record<string, unknown>);
        return checkMessage(input.action, await checker.check(input));
      }).then(
        (res) => cb(null, res),
        (err: unknown) => cb(rpcError(err)),
      );
    },
    checkPermissions: (call, cb) => {
      tracked(async () => {
        const inputs = parseCheckBatch(call.request.token, call.request.items);
        const results = await Promise.all(
          inputs.map((i) => checker.check(i).then((o) => checkMessage(i.action, o))),
        );
        return { results };
      }).then(
        (res) => cb(null, res),
        (err: unknown) => cb(rpcError(err)),
      );
    },
    waitForApproval: (call) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not yet' }),
  };
  grpcServer.addService(DECISION_SERVICE, impl);
  health.addTo(grpcServer);
  addReflection(grpcServer, SERVICES);
  const grpcPorts: number[] = [];
  for (const addr of cfg.grpcAddr) {
    if (addr.startsWith('unix:')) rmSync(addr.slice(5), { force: true }); // a stale socket from a crash
    grpcPorts.push(
      await new Promise<number>((resolve, reject) =>
        grpcServer.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err, port) =>
          err ? reject(err) : resolve(port),
        ),
      ),
    );
  }

  const ready = () => replica.revision > 0 && !draining;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = (req.url ?? '/').split('?')[0];
    const route = `${req.method} ${url}`;
    void (async () => {
      try {
        if (route === 'POST /api/enforcement/check') {
          const body = await readJson(req, 64 * 1024);
          const input = parseCheckRequest(body);
          send(res, 200, checkJson(input.action, await tracked(() => checker.check(input))));
        } else if (route === 'POST /api/enforcement/check-batch') {
          const body = await readJson(req, 1024 * 1024);
          const inputs = parseCheckBatch(body.token, body.items);
          const results = await tracked(() =>
            Promise.all(inputs.map((i) => checker.check(i).then((o) => checkJson(i.action, o)))),
          );
          send(res, 200, { results });
        } else if (route === 'GET /healthz') {
          send(res, 200, { status: 'ok' });
        } else if (route === 'GET /readyz') {
          send(res, ready() ? 200 : 503, {
            status: ready() ? 'ready' : 'no replica yet',
            revision: replica.revision,
            sync: sync.state,
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
  const [hp] = cfg.httpAddr;
  const hostPort = hp!.slice(0, hp!.lastIndexOf(':'));
  const { server: httpServer, port: httpPort } = await listenHttp(handler, {
    host: hostPort.replace(/^\[|\]$/g, ''),
    port: Number(hp!.slice(hp!.lastIndexOf(':') + 1)),
  });

  sync.start();
  const setHealth = () => health.set(ready() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  setHealth();
  sync.onApplied = () => setHealth();
  const maintenance = setInterval(() => {
    const now = clock();
    replica.pruneCounters(now);
    checker.prune(now);
    void replica
      .pruneRevocations(now)
      .catch((err: unknown) => logger.warn({ err }, 'pruning revocations failed'));
  }, 60_000);
  maintenance.unref();
  logger.info(
    {
      http_port: httpPort,
      grpc_ports: grpcPorts,
      grpc_addrs: cfg.grpcAddr,
      sidecar_id: sidecarId,
      revision: replica.revision,
      audit_durability: cfg.auditDurability,
      agent_ids: cfg.agentIds,
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
        health.close();
        clearInterval(maintenance);
        // Let in-flight checks finish and reach the spool before closing it.
        if (inFlight > 0) await new Promise<void>((r) => (drained = r));
        await Promise.all([
          new Promise<void>((r) => {
            httpServer.close(() => r());
            httpServer.closeIdleConnections();
          }),
          new Promise<void>((r) => grpcServer.tryShutdown(() => r())),
        ]);
        // A last chance to ship what is spooled; whatever is left stays on disk for next time.
        await sync.stop();
        await spool.close();
        await replica.close();
        logger.info({ spool_depth: spool.depth }, 'sidecar stopped');
      })()),
  };
}
