/**
 * Control-plane lifecycle (the composition root): check config and listen addresses (before
 * anything is written) → store → signing keys → auth → view → services → servers.
 * `stop()` drains: health NOT_SERVING, stop accepting, finish in-flight calls, close the store.
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { systemClock, type Clock } from '../common/clock';
import { StartupError } from '../common/errors';
import { listenHttp } from '../common/http';
import type { Values } from '../common/options';
import { checkListen, readFileOrFail } from '../common/preflight';
import type { Logger } from '../observability/logger';
import { createMetrics, gaugeOf } from '../observability/metrics';
import { addReflection, HealthStatus, ServingStatus } from '../observability/grpc-standard';
import { openStore } from '../store';
import type { Store } from '../store/types';
import { DEFAULT_HUB_CONFIG, SyncHub } from '../sync/hub';
import { startWebhookServer, webhookConfigFromOptions } from '../webhook/server';
import { ApprovalService } from './approvals';
import { Auth } from './auth';
import { BudgetLedger } from './budget-ledger';
import { CONTROL_PLANE_SOURCE, startCentral } from './central';
import type { CONTROL_PLANE_OPTIONS } from './config';
import { addGrpcApi } from './grpc-api';
import { createHttpApi } from './http-api';
import { loadKek } from './key-encryption';
import { MemoryView } from './memory-view';
import { ApprovalNotifier } from './notifier';
import type { Services } from './routes';
import { AgentService } from './services/agents';
import { ApiKeyService } from './services/api-keys';
import { AuditService } from './services/audit';
import { KeyService } from './services/keys';
import { PolicyService } from './services/policies';
import { SidecarRegistry } from './services/sidecars';
import { TokenService } from './services/tokens';
import { SigningKeys } from './signing-keys';

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

/** Background work of every replica (any replica may do it; each step is a store transaction). */
const HOUSEKEEPING_MS = 5_000;

export async function startControlPlane(
  cfg: ControlPlaneConfig,
  logger: Logger,
  clock: Clock = systemClock,
): Promise<ControlPlane> {
  // ---- everything that can fail without writing anything ----
  if ((cfg.tlsCert === undefined) !== (cfg.tlsKey === undefined))
    throw new StartupError('--tls-cert and --tls-key must be given together', '--tls-cert / ACT_TLS_CERT');
  const tls =
    cfg.tlsCert && cfg.tlsKey
      ? {
          cert: readFileOrFail(cfg.tlsCert, '--tls-cert / ACT_TLS_CERT'),
          key: readFileOrFail(cfg.tlsKey, '--tls-key / ACT_TLS_KEY'),
        }
      : undefined;
  const webhookCfg = webhookConfigFromOptions(cfg);
  if (cfg.adminKey !== undefined && (cfg.adminKey.length < 16 || cfg.adminKey.length > 256))
    throw new StartupError('the admin key must be 16-256 characters', '--admin-key / ACT_ADMIN_KEY');
  let kekFromConfig;
  try {
    kekFromConfig = loadKek({ text: cfg.keyEncryptionKey, file: cfg.keyEncryptionKeyFile });
  } catch (err) {
    throw new StartupError((err as Error).message, '--key-encryption-key / ACT_KEY_ENCRYPTION_KEY', {
      cause: err,
    });
  }
  const postgres = cfg.databaseUrl !== undefined && cfg.databaseUrl !== '';
  if (postgres && kekFromConfig === undefined)
    throw new StartupError(
      'with PostgreSQL the signing keys are sealed under a key-encryption key shared by every replica: give one (32 random bytes, base64 or hex: openssl rand -base64 32)',
      '--key-encryption-key / ACT_KEY_ENCRYPTION_KEY (or --key-encryption-key-file)',
    );
  await checkListen(cfg.httpAddr.host, cfg.httpAddr.port, '--http-addr / ACT_HTTP_ADDR');
  await checkListen(cfg.grpcAddr.host, cfg.grpcAddr.port, '--grpc-addr / ACT_GRPC_ADDR');
  if (webhookCfg) await checkListen(webhookCfg.host, webhookCfg.port, '--webhook-addr / ACT_WEBHOOK_ADDR');

  // ---- state ----
  let store: Store;
  try {
    store = await openStore({
      dataDir: cfg.dataDir,
      databaseUrl: cfg.databaseUrl,
      postgres: {
        onError: (err: Error) => logger.warn({ err }, 'store'),
        listen: cfg.databaseListen !== 'false',
      },
    });
  } catch (err) {
    if (!postgres) throw err;
    // The URL itself is a secret: name the setting, not its value.
    throw new StartupError(
      `cannot open the PostgreSQL store: ${(err as Error).message}`,
      '--database-url / ACT_DATABASE_URL',
      { cause: err },
    );
  }
  const kek = kekFromConfig ?? loadKek({ createIn: cfg.dataDir })!;
  const single = store.kind === 'lmdb';
  const replicaId = cfg.replicaId ?? `${os.hostname()}-${randomBytes(3).toString('hex')}`;
  // One process on the embedded store keeps the historic chain source; replicas each their own.
  const source = single ? CONTROL_PLANE_SOURCE : `control-plane:${replicaId}`;
  const metrics = createMetrics('control-plane');
  const keys = new SigningKeys(store, kek, clock, single ? cfg.dataDir : undefined);
  await keys.start();
  const auth = new Auth(store, clock);
  const printed = await auth.bootstrap(cfg.adminKey);
  if (printed !== undefined) {
    // Printed once, on the terminal only; never logged.
    process.stderr.write(
      `\n  ACT admin API key (shown once; store it now):\n\n    ${printed}\n\n  Use it as: Authorization: Bearer <key>\n\n`,
    );
  }
  const view = new MemoryView(store);
  await view.start();
  const approvals = new ApprovalService(store, clock, { ttlMs: cfg.approvalTtl });
  const ledger = new BudgetLedger(store.ops, view, clock);
  const tokens = new TokenService(store, keys, clock, {
    maxTokenLifetimeMs: cfg.maxTokenLifetime,
    defaultTokenLifetimeMs: 86_400_000,
  });
  const sidecars = new SidecarRegistry(store, clock, replicaId);
  const central = await startCentral({
    store,
    view,
    approvals,
    ledger,
    clock,
    source,
    onDecision: (r, us) => {
      metrics.decisions.inc({ decision: r.decision, reason_code: r.reasonCode, source: 'control-plane' });
      metrics.checkLatency.observe({ source: 'control-plane' }, us / 1e6);
    },
  });
  const services: Services = {
    agents: new AgentService(store, tokens, clock),
    policies: new PolicyService(store, clock),
    tokens,
    approvals,
    keys: new KeyService(store, keys),
    apiKeys: new ApiKeyService(store, clock),
    audit: new AuditService(store),
    sidecars,
    central: central.enforcer,
  };
  const notifier = cfg.approvalWebhookUrl
    ? new ApprovalNotifier(
        store.ops,
        { url: cfg.approvalWebhookUrl, secret: cfg.approvalWebhookSecret, replicaId },
        logger.child({ component: 'approval-notifier' }),
        clock,
      )
    : undefined;
  if (notifier) {
    approvals.onEvent((e, a) => notifier.enqueue(e, a));
    notifier.start();
  }
  // Approval waits watch the view: it follows every replica's commits.
  const waiters = new Set<() => void>();
  view.onApprovals = () => {
    for (const w of [...waiters]) w();
  };
  const watch = {
    view: central.enforcer.approvalView,
    subscribe: (fn: () => void) => {
      waiters.add(fn);
      return () => waiters.delete(fn);
    },
    verifier: central.enforcer.tokenVerifier,
    clock,
  };
  const publish = (rev: number) => {
    metrics.revision.set(rev);
    sidecars.revision = rev;
  };
  store.onCommit((e) => publish(e.revision));
  publish(await store.revision());

  const health = new HealthStatus(GRPC_SERVICES);
  const grpcServer = new grpc.Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    'grpc.enable_channelz': 0,
  });
  addGrpcApi(grpcServer, { services, auth, watch, logger, metrics });
  health.addTo(grpcServer);
  const hub = new SyncHub(
    {
      store,
      authenticate: (h) => auth.authenticate(h),
      registry: sidecars,
      approvals: {
        request: (i) => approvals.request(i),
        consume: (i) => approvals.consume(i),
      },
      budgets: { lease: (r) => ledger.lease(r), release: (rs) => ledger.release(rs) },
      logger: logger.child({ component: 'sync-hub' }),
      clock,
    },
    { ...DEFAULT_HUB_CONFIG, heartbeatMs: cfg.heartbeatInterval },
  );
  hub.addTo(grpcServer);
  const gauge = (name: string, help: string, fn: () => number) => gaugeOf(metrics.registry, name, help, fn);
  gauge(
    'act_sync_connected_sidecars',
    'Sidecars with an open Sync stream to this replica',
    () => hub.connected,
  );
  gauge(
    'act_sync_sidecars_behind',
    "Sidecars on this replica whose applied revision is behind the store's",
    () => sidecars.gauges().behind,
  );
  gauge(
    'act_sync_sidecar_max_lag_revisions',
    'The largest revision lag of a sidecar on this replica',
    () => sidecars.gauges().maxLag,
  );
  gauge(
    'act_audit_batches_rejected_total',
    'Audit batches refused at ingest',
    () => hub.metrics.auditBatchesRejected,
  );
  gauge(
    'act_audit_chain_gaps_total',
    'Audit records accepted after a seq gap',
    () => hub.metrics.auditChainGaps,
  );
  addReflection(grpcServer, GRPC_SERVICES);
  const creds = tls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false)
    : grpc.ServerCredentials.createInsecure();
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync(
      `${cfg.grpcAddr.host.includes(':') ? `[${cfg.grpcAddr.host}]` : cfg.grpcAddr.host}:${cfg.grpcAddr.port}`,
      creds,
      (err, port) =>
        err
          ? reject(
              new StartupError(
                `cannot listen on ${cfg.grpcAddr.host}:${cfg.grpcAddr.port} (${err.message})`,
                '--grpc-addr / ACT_GRPC_ADDR',
              ),
            )
          : resolve(port),
    ),
  );

  let ready = false;
  const handler = createHttpApi({
    services,
    auth,
    watch,
    logger,
    metrics,
    isReady: () => ready,
    maxBodyBytes: cfg.maxBodyBytes,
  });
  const { server: httpServer, port: httpPort } = await listenHttp(handler, { ...cfg.httpAddr, tls });
  const webhook =
    webhookCfg && (await startWebhookServer(webhookCfg, logger.child({ component: 'webhook' })));

  const housekeeping = setInterval(() => {
    const step = (what: string, p: Promise<unknown>) =>
      p.catch((err: unknown) => logger.warn({ err, what }, 'housekeeping step failed'));
    void step('approvals', approvals.expireDue());
    void step('budgets', ledger.prune());
    void step('sidecars', sidecars.prune());
    if (cfg.auditRetention !== undefined)
      void step('audit retention', store.audit.prune(clock() - cfg.auditRetention));
  }, HOUSEKEEPING_MS);
  housekeeping.unref();

  ready = true;
  health.set(ServingStatus.SERVING);
  logger.info(
    {
      http_port: httpPort,
      grpc_port: grpcPort,
      data_dir: cfg.dataDir,
      store: store.kind,
      replica_id: replicaId,
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
        clearInterval(housekeeping);
        hub.stop();
        await Promise.all([closeHttp(httpServer), shutdownGrpc(grpcServer), webhook?.stop()]);
        await notifier?.stop();
        await central.stop();
        await sidecars.stop();
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
