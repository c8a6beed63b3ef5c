/**
 * Options of the sidecar-injection webhook. They are part of the control plane's options
 * (`act control-plane --help`): the control plane serves /mutate over HTTPS when
 * --webhook-addr is set.
 */
import {
  duration,
  oneOf,
  parseHostPort,
  str,
  type HostPort,
  type Specs,
  type Values,
} from '../common/options';

/** The ConfigMap key of the MCP gateway config unless one is named. */
export const MCP_CONFIG_KEY = 'mcp.yaml';

/** A key of a ConfigMap in the pod's namespace. */
export interface ConfigMapRef {
  name: string;
  key: string;
}

/** "name" or "name/key" (key default mcp.yaml), checked as Kubernetes names. */
export function parseConfigMapRef(raw: string, name: string): ConfigMapRef {
  const [map, key = MCP_CONFIG_KEY, ...rest] = raw.trim().split('/');
  if (
    rest.length > 0 ||
    !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(map ?? '') ||
    !/^[-._a-zA-Z0-9]{1,253}$/.test(key) ||
    key === '.' ||
    key === '..'
  )
    throw new Error(
      `${name}: expected <ConfigMap name> or <ConfigMap name>/<key>, got ${JSON.stringify(raw)}`,
    );
  return { name: map!, key };
}

export interface SecretRef {
  name: string;
  key: string;
}

/** "name" or "name/key" (key defaults to api-key), checked as Kubernetes names. */
export function parseSecretRef(raw: string, name: string): SecretRef {
  const [secret, key = 'api-key', ...rest] = raw.trim().split('/');
  if (
    rest.length > 0 ||
    !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(secret ?? '') ||
    !/^[-._a-zA-Z0-9]{1,253}$/.test(key)
  )
    throw new Error(`${name}: expected <secret name> or <secret name>/<key>, got ${JSON.stringify(raw)}`);
  return { name: secret!, key };
}

/** Container resources as JSON: {"requests":{"cpu":"50m"},"limits":{"memory":"256Mi"}}. */
export function parseResources(raw: string, name: string): Record<string, Record<string, string>> {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new Error(`${name}: not valid JSON`);
  }
  const ok =
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.entries(v).every(
      ([k, r]) =>
        (k === 'requests' || k === 'limits') &&
        typeof r === 'object' &&
        r !== null &&
        !Array.isArray(r) &&
        Object.values(r).every((q) => typeof q === 'string' && /^[0-9.]+[a-zA-Z]*$/.test(q)),
    );
  if (!ok) throw new Error(`${name}: expected {"requests":{...},"limits":{...}} with quantity strings`);
  return v as Record<string, Record<string, string>>;
}

/**
 * A Kubernetes volume source for the injected sidecars' audit spools that outlives the pod, as
 * JSON, e.g. {"hostPath":{"path":"/var/lib/act-spools","type":"Directory"}}; empty: emptyDir.
 */
export function parseVolumeSource(raw: string, name: string): Record<string, unknown> | undefined {
  if (raw.trim() === '') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new Error(`${name}: not valid JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.keys(v).length !== 1)
    throw new Error(
      `${name}: expected one volume source such as {"hostPath":{"path":"/var/lib/act-spools"}}`,
    );
  if ('name' in v) throw new Error(`${name}: give the volume source only, without "name"`);
  return v as Record<string, unknown>;
}

const optionalHostPort = (raw: string, name: string): HostPort | undefined =>
  raw.trim() === '' ? undefined : parseHostPort(raw, name);

export const WEBHOOK_OPTIONS = {
  webhookAddr: {
    flag: '--webhook-addr',
    env: 'ACT_WEBHOOK_ADDR',
    default: undefined,
    parse: optionalHostPort,
    help: 'serve the sidecar-injection admission webhook (HTTPS POST /mutate) on host:port; empty: disabled',
  },
  webhookTlsCert: {
    flag: '--webhook-tls-cert',
    env: 'ACT_WEBHOOK_TLS_CERT',
    default: undefined,
    parse: str,
    help: 'PEM certificate file of the webhook (its names must include <service>.<namespace>.svc)',
  },
  webhookTlsKey: {
    flag: '--webhook-tls-key',
    env: 'ACT_WEBHOOK_TLS_KEY',
    default: undefined,
    parse: str,
    help: 'PEM private key file for --webhook-tls-cert',
  },
  sidecarImage: {
    flag: '--sidecar-image',
    env: 'ACT_SIDECAR_IMAGE',
    default: undefined,
    parse: str,
    help: 'image of the injected sidecar (required with --webhook-addr)',
  },
  sidecarControlPlane: {
    flag: '--sidecar-control-plane',
    env: 'ACT_SIDECAR_CONTROL_PLANE',
    default: undefined,
    parse: str,
    help: "the control plane's gRPC address as injected sidecars reach it, e.g. act.act.svc:8701 (required with --webhook-addr)",
  },
  sidecarKeySecret: {
    flag: '--sidecar-key-secret',
    env: 'ACT_SIDECAR_KEY_SECRET',
    default: 'act-sidecar-key/api-key',
    parse: parseSecretRef,
    help: "Secret (in the pod's namespace) holding the SIDECAR-role API key of injected sidecars: name[/key]",
  },
  sidecarResources: {
    flag: '--sidecar-resources',
    env: 'ACT_SIDECAR_RESOURCES',
    default: '{"requests":{"cpu":"50m","memory":"96Mi"},"limits":{"memory":"256Mi"}}',
    parse: parseResources,
    help: 'resources of the injected sidecar (JSON)',
  },
  sidecarProbe: {
    flag: '--sidecar-probe',
    env: 'ACT_SIDECAR_PROBE',
    default: 'exec',
    parse: oneOf(['exec', 'grpc'] as const),
    help: 'exec: the sidecar stays on loopback, probes run a gRPC health check inside it; grpc: kubelet gRPC probes, the sidecar listens on the pod IP',
  },
  sidecarDrainTimeout: {
    flag: '--sidecar-drain-timeout',
    env: 'ACT_SIDECAR_DRAIN_TIMEOUT',
    default: '20s',
    parse: duration,
    help: 'injected sidecars keep shipping audit this long after SIGTERM; pods get a termination grace period of at least this plus 10s',
  },
  sidecarSpoolVolume: {
    flag: '--sidecar-spool-volume',
    env: 'ACT_SIDECAR_SPOOL_VOLUME',
    default: undefined,
    parse: parseVolumeSource,
    help: "volume source (JSON) for injected sidecars' audit spools that outlives the pod, e.g. a per-node hostPath; the next sidecar on the node for the same agents ships what a deleted pod left. Empty: emptyDir",
  },
  sidecarMcpConfigMap: {
    flag: '--sidecar-mcp-config-map',
    env: 'ACT_SIDECAR_MCP_CONFIG_MAP',
    default: undefined,
    parse: (raw: string, name: string) => (raw.trim() === '' ? undefined : parseConfigMapRef(raw, name)),
    help: "ConfigMap (in the pod's namespace) with the MCP gateway config of injected sidecars, name[/key] (key default mcp.yaml), for pods without an act.dev/mcp-config annotation; empty: only annotated pods get the gateway",
  },
} satisfies Specs;

export type WebhookOptions = Values<typeof WEBHOOK_OPTIONS>;
