/** The sidecar's options: flags, environment variables and defaults (shown by --help). */
import {
  duration,
  oneOf,
  parseHostPort,
  positiveInt,
  str,
  type Specs,
  LOG_LEVEL_OPTION,
} from '../common/options';

/** A list of listen addresses: "127.0.0.1:8711", "unix:/run/act.sock", or both comma-separated. */
export function parseListenList(raw: string, name: string): string[] {
  const parts = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0) throw new Error(`${name}: expected host:port and/or unix:/path`);
  for (const p of parts) {
    if (p.startsWith('unix:')) {
      if (p.length < 6) throw new Error(`${name}: unix socket path missing in ${JSON.stringify(p)}`);
    } else if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(p)) {
      throw new Error(`${name}: expected host:port or unix:/path, got ${JSON.stringify(p)}`);
    }
  }
  return parts;
}

function agentList(raw: string, name: string): string[] {
  const ids = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (ids.length === 0) return ['*'];
  for (const id of ids)
    if (id !== '*' && !/^agent_[0-9a-z]{6,64}$/.test(id))
      throw new Error(`${name}: ${JSON.stringify(id)} is not an agent id`);
  return ids;
}

/** Control-plane addresses: host:port, comma-separated. */
function parseTargets(raw: string, name: string): string[] {
  const parts = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (parts.length === 0) throw new Error(`${name}: expected host:port`);
  for (const p of parts)
    if (!/^((dns|ipv4|ipv6):(\/\/\/)?)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(p))
      throw new Error(`${name}: expected host:port, got ${JSON.stringify(p)}`);
  return parts;
}

export const SIDECAR_OPTIONS = {
  grpcAddr: {
    flag: '--grpc-addr',
    env: 'ACT_SIDECAR_GRPC_ADDR',
    default: '127.0.0.1:8711',
    parse: parseListenList,
    help: 'decision API (gRPC): loopback host:port and/or unix:/path, comma-separated',
  },
  httpAddr: {
    flag: '--http-addr',
    env: 'ACT_SIDECAR_HTTP_ADDR',
    default: '127.0.0.1:8710',
    parse: parseListenList,
    help: 'loopback REST POST /api/enforcement/check, /metrics, /healthz, /readyz (one host:port)',
  },
  controlPlane: {
    flag: '--control-plane',
    env: 'ACT_CONTROL_PLANE',
    default: '127.0.0.1:8701',
    parse: parseTargets,
    help: "the control plane's gRPC address(es): host:port, comma-separated for several replicas (a DNS name with several A records also works)",
  },
  sidecarKey: {
    flag: '--sidecar-key',
    env: 'ACT_SIDECAR_KEY',
    default: undefined,
    parse: str,
    secret: true,
    help: 'API key with the sidecar role for Sync (falls back to ACT_ADMIN_KEY)',
  },
  agentIds: {
    flag: '--agent-ids',
    env: 'ACT_AGENT_IDS',
    default: '*',
    parse: agentList,
    help: 'agents this sidecar serves, comma-separated, or * for all',
  },
  sidecarId: {
    flag: '--sidecar-id',
    env: 'ACT_SIDECAR_ID',
    default: undefined,
    parse: str,
    help: 'stable id for audit records (default: hostname, e.g. the pod name)',
  },
  dataDir: {
    flag: '--data-dir',
    env: 'ACT_DATA_DIR',
    default: './data/sidecar',
    parse: str,
    help: 'replica (LMDB) and audit spool directory',
  },
  auditDurability: {
    flag: '--audit-durability',
    env: 'ACT_AUDIT_DURABILITY',
    default: 'disk',
    parse: oneOf(['disk', 'os'] as const),
    help: "disk: answer after an fsync'd group commit; os: after the write reached the OS (fsynced every few ms)",
  },
  auditSpoolMaxBytes: {
    flag: '--audit-spool-max-bytes',
    env: 'ACT_AUDIT_SPOOL_MAX_BYTES',
    default: String(512 * 1024 * 1024),
    parse: positiveInt,
    help: 'unshipped audit records kept on disk',
  },
  auditSpoolFull: {
    flag: '--audit-spool-full',
    env: 'ACT_AUDIT_SPOOL_FULL',
    default: 'fail',
    parse: oneOf(['fail', 'drop-oldest'] as const),
    help: 'when the spool is full: fail (checks fail closed with UNAVAILABLE) or drop-oldest (counted and logged)',
  },
  auditSpoolDir: {
    flag: '--audit-spool-dir',
    env: 'ACT_AUDIT_SPOOL_DIR',
    default: undefined,
    parse: str,
    help: 'audit spool directory (default <data-dir>/audit-spool); on a per-node volume it outlives the pod',
  },
  auditSpoolAdopt: {
    flag: '--audit-spool-adopt',
    env: 'ACT_AUDIT_SPOOL_ADOPT',
    default: undefined,
    parse: str,
    help: "directory of other sidecars' spools (a per-node volume): spools left by stopped sidecars for the same agents are shipped by this one",
  },
  drainTimeout: {
    flag: '--drain-timeout',
    env: 'ACT_DRAIN_TIMEOUT',
    default: '20s',
    parse: duration,
    help: 'on SIGTERM: stop taking checks and keep shipping audit records for up to this long (size the pod grace period to it)',
  },
  staleAfter: {
    flag: '--stale-after',
    env: 'ACT_STALE_AFTER',
    default: '30s',
    parse: duration,
    help: 'without word from the control plane for this long the replica is stale',
  },
  stalePolicy: {
    flag: '--stale-policy',
    env: 'ACT_STALE_POLICY',
    default: 'fail-closed',
    parse: oneOf(['fail-closed', 'serve-stale'] as const),
    help: 'fail-closed: checks return REPLICA_STALE; serve-stale: keep deciding from the last known state',
  },
  tlsCa: {
    flag: '--tls-ca',
    env: 'ACT_TLS_CA',
    default: undefined,
    parse: str,
    help: 'PEM CA file: connect to the control plane over TLS',
  },
  tlsServerName: {
    flag: '--tls-server-name',
    env: 'ACT_TLS_SERVER_NAME',
    default: undefined,
    parse: str,
    help: 'expected control-plane certificate name (default: the host of --control-plane)',
  },
  allowNonLoopback: {
    flag: '--allow-non-loopback',
    env: 'ACT_SIDECAR_ALLOW_NON_LOOPBACK',
    default: 'false',
    parse: oneOf(['true', 'false'] as const),
    help: 'allow the decision API on a non-loopback address (it has no authentication of its own)',
  },
  mcpConfig: {
    flag: '--mcp-config',
    env: 'ACT_MCP_CONFIG',
    default: undefined,
    parse: str,
    help: 'MCP gateway config file (JSON or YAML, see docs/mcp.md): serve MCP on --mcp-addr in front of its upstream MCP servers, every call checked and audited; unset: no gateway',
  },
  mcpAddr: {
    flag: '--mcp-addr',
    env: 'ACT_MCP_ADDR',
    default: '127.0.0.1:8712',
    parse: parseHostPort,
    help: 'MCP gateway (Streamable HTTP, path /mcp, the ACT token as bearer): loopback host:port; used with --mcp-config',
  },
  logLevel: LOG_LEVEL_OPTION,
} satisfies Specs;
