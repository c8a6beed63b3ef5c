/** The control plane's options: flags, environment variables and defaults (shown by --help). */
import { duration, LOG_LEVEL_OPTION, parseHostPort, positiveInt, str, type Specs } from '../common/options';
import { WEBHOOK_OPTIONS } from '../webhook/config';

export const CONTROL_PLANE_OPTIONS = {
  httpAddr: {
    flag: '--http-addr',
    env: 'ACT_HTTP_ADDR',
    default: '127.0.0.1:8700',
    parse: parseHostPort,
    help: 'REST/JSON API, /metrics, /healthz, /readyz (host:port; port 0 picks a free port)',
  },
  grpcAddr: {
    flag: '--grpc-addr',
    env: 'ACT_GRPC_ADDR',
    default: '127.0.0.1:8701',
    parse: parseHostPort,
    help: 'gRPC admin, decision and sync services, with health and reflection',
  },
  dataDir: {
    flag: '--data-dir',
    env: 'ACT_DATA_DIR',
    default: './data',
    parse: str,
    help: 'directory of the embedded LMDB store and the signing-key file',
  },
  adminKey: {
    flag: '--admin-key',
    env: 'ACT_ADMIN_KEY',
    default: undefined,
    parse: str,
    secret: true,
    help: 'bootstrap admin API key (16-256 chars); else one is created on first start and printed once',
  },
  databaseUrl: {
    flag: '--database-url',
    env: 'ACT_DATABASE_URL',
    default: undefined,
    parse: str,
    secret: true,
    help: 'PostgreSQL instead of LMDB (not available in this version: the process refuses to start)',
  },
  tlsCert: {
    flag: '--tls-cert',
    env: 'ACT_TLS_CERT',
    default: undefined,
    parse: str,
    help: 'PEM certificate file: serve HTTPS and gRPC over TLS (needs --tls-key)',
  },
  tlsKey: {
    flag: '--tls-key',
    env: 'ACT_TLS_KEY',
    default: undefined,
    parse: str,
    help: 'PEM private key file for --tls-cert',
  },
  maxBodyBytes: {
    flag: '--max-body-bytes',
    env: 'ACT_MAX_BODY_BYTES',
    default: '1048576',
    parse: positiveInt,
    help: 'largest accepted REST request body; larger gets 413',
  },
  maxTokenLifetime: {
    flag: '--max-token-lifetime',
    env: 'ACT_MAX_TOKEN_LIFETIME',
    default: '365d',
    parse: duration,
    help: 'longest token lifetime accepted by POST /api/tokens',
  },
  approvalTtl: {
    flag: '--approval-ttl',
    env: 'ACT_APPROVAL_TTL',
    default: '24h',
    parse: duration,
    help: 'how long an approval request stays open',
  },
  heartbeatInterval: {
    flag: '--heartbeat-interval',
    env: 'ACT_HEARTBEAT_INTERVAL',
    default: '1s',
    parse: duration,
    help: 'how often Sync streams carry a heartbeat (sidecars judge staleness by it)',
  },
  logLevel: LOG_LEVEL_OPTION,
  // The sidecar-injection admission webhook (Kubernetes), off unless --webhook-addr is set.
  ...WEBHOOK_OPTIONS,
} satisfies Specs;
