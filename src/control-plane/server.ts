/**
 * Control-plane lifecycle: store → keys → auth → view → services → servers.
 * `stop()` drains: health NOT_SERVING, stop accepting, finish in-flight calls, close the store.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { Gauge } from 'prom-client';
import { systemClock, type Clock } from '../common/clock';
import type { Values } from '../common/options';
import type { Logger } from '../observability/logger';
import { createMetrics } from '../observability/metrics';
import { addReflection, HealthStatus, ServingStatus } from '../observability/grpc-standard';
import { openLmdbStore } from '../store';
import type { Store } from '../store/types';
import { AdminService, DEFAULT_ADMIN_CONFIG } from './admin-service';
import { Auth } from './auth';
import { CentralEnforcer } from './central';
import type { CONTROL_PLANE_OPTIONS } from './config';
import { addAdminService, addDecisionService } from './grpc-api';
import { createHttpApi } from './http-api';
import { listenHttp } from '../common/http';
import { MemoryView } from './memory-view';
import { SigningKeys } from './signing-keys';
import { DEFAULT_HUB_CONFIG, SyncHub } from '../sync/hub';
import { startWebhookServer, webhookConfigFromOptions } from '../webhook/server';

export type ControlPlaneConfig = Values<typeof CONTROL_PLANE_OPTIONS>;

export interface ControlPlane {
  httpPort: number;
  grpcPort: number;
  store: Store;
  hub: SyncHub;
  stop(): Promise<void>;
}

export const GRPC_SERVICES = [
  'act.v1.AdminService',
  'act.v1.DecisionService',
  'act.v1.SyncService',
  'grpc.health.v1.Health',
];

export async function startControlPlane(
  cfg: ControlPlaneConfig,
  logger: Logger,
  clock: Clock = systemClock,
): Promise<ControlPlane> {
  if (cfg.databaseUrl) {
    throw new Error(
      'ACT_DATABASE_URL is set, but this version has only the embedded LMDB store; unset it to use LMDB under ACT_DATA_DIR',
    );
  }
  if ((cfg.tlsCert === undefined) !== (cfg.tlsKey === undefined))
    throw new Error('--tls-cert and --tls-key must be given together');
  const tls =
    cfg.tlsCert && cfg.tlsKey
      ? { cert: readFileSync(cfg.tlsCert), key: readFileSync(cfg.tlsKey) }
      : undefined;
  const webhookCfg = webhookConfigFromOptions(cfg); // validated before anything is opened

  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const store = await openLmdbStore({ dataDir: cfg.dataDir });
  const metrics = createMetrics('control-plane');
  const keys = new SigningKeys(cfg.dataDir, store, clock);
  await keys.start();
  const auth = new Auth(store, clock);
  const printed = await auth.bootstrap(cfg.adminKey);
  if (printed !== undefined) {
    // Printed once, on the terminal only; never logged.
    process.stderr.write(
      `\n  ACT admin API key (shown once; store it now):\n\n    ${printed}\n\n  Use it as: Authorization: Bearer <key>\n\n`,
    );
  }
  const admin = new AdminService(store, keys, clock, {
    ...DEFAULT_ADMIN_CONFIG,
    maxTokenLifetimeMs: cfg.maxTokenLifetime,
    approvalTtlMs: cfg.approvalTtl,
  });
  const view = new MemoryView(store);
  await view.start();
  const central = new CentralEnforcer(store, view, admin, clock, (r, us) => {
    metrics.decisions.inc({ decision: r.decision, reason_code: r.reasonCode, source: 'control-plane' });
    metrics.checkLatency.observe({ source: 'control-plane' }, us / 1e6);
  });
  await central.start();
  store.onCommit((e) => metrics.revision.set(e.revision));
  metrics.revision.set(await store.revision());

  const health = new HealthStatus(GRPC_SERVICES);
  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    'grpc.enable_channelz': 0,
  });
  const deps = { admin, auth, central, store, logger, metrics };
  addAdminService(grpcServer, deps);
  addDecisionService(grpcServer, deps);
  health.addTo(grpcServer);
  const hub = new SyncHub(
    {
      store,
      authenticate: (h) => auth.authenticate(h),
      onSidecarDecisions: (records) => admin.applySidecarDecisions(records),
      logger: logger.child({ component: 'sync-hub' }),
      clock,
    },
    { ...DEFAULT_HUB_CONFIG, heartbeatMs: cfg.heartbeatInterval },
  );
  hub.addTo(grpcServer);
  new Gauge({
    name: 'act_sync_connected_sidecars',
    help: 'Sidecars with an open Sync stream',
    registers: [metrics.registry],
    collect() {
      this.set(hub.connected);
    },
  });
  addReflection(grpcServer, GRPC_SERVICES);
  const creds = tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false)
    : grpc.ServerCredentials.createInsecure();
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(
      `${cfg.grpcAddr.host.includes(':') ? `[${cfg.grpcAddr.host}]` : cfg.grpcAddr.host}:${cfg.grpcAddr.port}`,
      creds,
      (err, port) => (err ? reject(err) : resolve(port)),
    ),
  );

  let ready = false;
  const handler = createHttpApi({ ...deps, isReady: () => ready, maxBodyBytes: cfg.maxBodyBytes });
  const { server: httpServer, port: httpPort } = await listenHttp(handler, { ...cfg.httpAddr, tls });
  const webhook =
    webhookCfg && (await startWebhookServer(webhookCfg, logger.child({ component: 'webhook' })));
  ready = true;
  health.set(ServingStatus.SERVING);
  logger.info(
    {
      http_port: httpPort,
      grpc_port: grpcPort,
      data_dir: cfg.dataDir,
      tls: Boolean(tls),
      revision: await store.revision(),
      store_id: store.storeId,
    },
    'control plane listening',
  );

  let stopping: Promise<void> | undefined;
  return {
    httpPort,
    grpcPort,
    store,
    hub,
    stop: () =>
      (stopping ??= (async () => {
        ready = false;
        health.set(ServingStatus.NOT_SERVING);
        health.close();
        hub.stop();
        await Promise.all([closeHttp(httpServer), shutdownGrpc(grpcServer), webhook?.stop()]);
        central.stop();
        view.stop();
        await store.close();
        logger.info('control plane stopped');
      })()),
  };
}

function closeHttp(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Long-lived follow/export streams would hold close() open forever.
    setTimeout(() => server.closeAllConnections(), 5000).unref();
    server.closeIdleConnections();
  });
}

function shutdownGrpc(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 5000);
    force.unref();
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
