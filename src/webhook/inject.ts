/**
 * Sidecar injection: from an AdmissionRequest for a Pod to the AdmissionResponse with the
 * JSONPatch that adds the ACT sidecar. Pure (no I/O), so the tests can drive it directly and
 * through the HTTPS server.
 *
 * A pod is injected when it is annotated `act.dev/inject: "true"`; `"false"` (or anything
 * else) leaves it alone. Injected pods carry `act.dev/status: injected` and a container named
 * `act-sidecar`: either makes a repeated review (reinvocation, re-applied manifests) a no-op.
 */
import { SIDECAR_OPTIONS } from '../sidecar/config';
import { pointerEscape, type AdmissionRequest, type AdmissionResponse, type JsonPatchOp } from './admission';
import { MCP_CONFIG_KEY, parseConfigMapRef, type ConfigMapRef, type SecretRef } from './config';

export { MCP_CONFIG_KEY, parseConfigMapRef, type ConfigMapRef };

export const ANNOTATION_INJECT = 'act.dev/inject';
export const ANNOTATION_AGENT_IDS = 'act.dev/agent-ids';
export const ANNOTATION_STATUS = 'act.dev/status';
export const SIDECAR_CONTAINER = 'act-sidecar';
export const SIDECAR_VOLUME = 'act-sidecar-data';
export const SIDECAR_DATA_DIR = '/var/lib/act';
/** The node volume of audit spools (with --sidecar-spool-volume): one subdirectory per pod. */
export const SPOOL_VOLUME = 'act-audit-spools';
export const SPOOL_ROOT = '/var/lib/act-spools';
export const SIDECAR_GRPC_PORT = 8711;
export const SIDECAR_HTTP_PORT = 8710;
/** What app containers get, so the SDK finds the sidecar. */
export const DECISION_ADDR_ENV = 'ACT_SIDECAR_GRPC_ADDR';
export const DECISION_ADDR = `127.0.0.1:${SIDECAR_GRPC_PORT}`;
/** `act.dev/mcp-config: <ConfigMap>[/<key>]`: the sidecar serves the MCP gateway with that config ("none": not even the default). */
export const ANNOTATION_MCP_CONFIG = 'act.dev/mcp-config';
export const MCP_VOLUME = 'act-mcp-config';
export const MCP_CONFIG_DIR = '/etc/act/mcp';
export const SIDECAR_MCP_PORT = 8712;
/** What app containers get when the gateway is on, so agents find it. */
export const MCP_URL_ENV = 'ACT_MCP_URL';
export const MCP_URL = `http://127.0.0.1:${SIDECAR_MCP_PORT}/mcp`;
/** The image's non-root user (see the Dockerfile). */
export const SIDECAR_UID = 10001;
/** The exec probe: a gRPC health check over loopback, run inside the sidecar container. */
export const PROBE_SCRIPT = '/app/dist/webhook/grpc-health-probe.js';

export interface InjectionConfig {
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** host:port of the control plane's gRPC service as the pod reaches it. */
  controlPlane: string;
  sidecarKeySecret: SecretRef;
  resources: Record<string, Record<string, string>>;
  probe: 'exec' | 'grpc';
  logLevel?: string;
  /** Drain timeout of injected sidecars (ms); the pod's grace period is made at least this + 10 s. */
  drainTimeoutMs?: number;
  /** A volume source for spools that outlive the pod (absent: the spool is on the emptyDir). */
  spoolVolume?: Record<string, unknown> | undefined;
  /** The MCP gateway config of pods without an act.dev/mcp-config annotation (absent: none). */
  mcpConfigMap?: ConfigMapRef | undefined;
}

/** The pod's MCP gateway config: its annotation, else the default; an error text for a bad annotation. */
function mcpConfigOf(
  annotations: Record<string, string>,
  cfg: InjectionConfig,
): ConfigMapRef | undefined | string {
  const raw = annotations[ANNOTATION_MCP_CONFIG];
  if (raw === undefined) return cfg.mcpConfigMap;
  if (typeof raw !== 'string') return `annotation ${ANNOTATION_MCP_CONFIG} must be a string`;
  if (raw.trim() === 'none') return undefined;
  try {
    return parseConfigMapRef(raw, `annotation ${ANNOTATION_MCP_CONFIG}`);
  } catch (err) {
    return (err as Error).message;
  }
}

interface Container {
  name?: string;
  env?: { name?: string }[];
  [k: string]: unknown;
}

interface PodLike {
  metadata?: { name?: string; generateName?: string; annotations?: Record<string, string> };
  spec?: { containers?: Container[]; volumes?: { name?: string }[]; terminationGracePeriodSeconds?: number };
}

const allow = (uid: string, extra: Partial<AdmissionResponse> = {}): AdmissionResponse => ({
  uid,
  allowed: true,
  ...extra,
});

const deny = (uid: string, message: string): AdmissionResponse => ({
  uid,
  allowed: false,
  status: {
    status: 'Failure',
    code: 400,
    reason: 'BadRequest',
    message: `act sidecar injection: ${message}`,
  },
});

function isPodCreate(req: AdmissionRequest): boolean {
  return (
    req.operation === 'CREATE' &&
    req.kind.group === '' &&
    req.kind.kind === 'Pod' &&
    req.resource.resource === 'pods' &&
    !req.subResource
  );
}

/** Decides one review. Never throws for request content: bad pods get a denial with a reason. */
export function review(req: AdmissionRequest, cfg: InjectionConfig): AdmissionResponse {
  if (!isPodCreate(req)) return allow(req.uid);
  const pod = req.object as PodLike | undefined;
  if (typeof pod !== 'object' || pod === null || Array.isArray(pod))
    return deny(req.uid, 'request.object is not a Pod');
  const annotations = pod.metadata?.annotations ?? {};
  if (typeof annotations !== 'object' || annotations === null)
    return deny(req.uid, 'metadata.annotations is not an object');
  if (annotations[ANNOTATION_INJECT] !== 'true') return allow(req.uid);
  const containers = pod.spec?.containers;
  if (!Array.isArray(containers) || containers.some((c) => typeof c !== 'object' || c === null))
    return deny(req.uid, 'spec.containers is not a list of containers');
  if (annotations[ANNOTATION_STATUS] === 'injected' || containers.some((c) => c.name === SIDECAR_CONTAINER))
    return allow(req.uid);

  const rawIds = annotations[ANNOTATION_AGENT_IDS];
  if (typeof rawIds !== 'string' || rawIds.trim() === '')
    return deny(
      req.uid,
      `annotation ${ANNOTATION_AGENT_IDS} is required with ${ANNOTATION_INJECT}: "true" (comma-separated agent ids, or *)`,
    );
  let agentIds: string[];
  try {
    agentIds = SIDECAR_OPTIONS.agentIds.parse(rawIds, `annotation ${ANNOTATION_AGENT_IDS}`);
  } catch (err) {
    return deny(req.uid, (err as Error).message);
  }
  const volumes = pod.spec?.volumes;
  if (volumes !== undefined && !Array.isArray(volumes)) return deny(req.uid, 'spec.volumes is not a list');
  const mcp = mcpConfigOf(annotations, cfg);
  if (typeof mcp === 'string') return deny(req.uid, mcp);
  for (const name of [SIDECAR_VOLUME, SPOOL_VOLUME, ...(mcp ? [MCP_VOLUME] : [])])
    if (volumes?.some((v) => v?.name === name))
      return deny(req.uid, `the pod already has a volume named ${name}`);

  const patch: JsonPatchOp[] = [];
  // App containers learn where to ask (unless they set it themselves).
  const appEnv = [
    { name: DECISION_ADDR_ENV, value: DECISION_ADDR },
    ...(mcp ? [{ name: MCP_URL_ENV, value: MCP_URL }] : []),
  ];
  containers.forEach((c, i) => {
    if (c.env !== undefined && !Array.isArray(c.env)) return;
    const values = appEnv.filter((v) => !c.env?.some((e) => e?.name === v.name));
    if (values.length === 0) return;
    if (c.env === undefined) patch.push({ op: 'add', path: `/spec/containers/${i}/env`, value: values });
    else for (const value of values) patch.push({ op: 'add', path: `/spec/containers/${i}/env/-`, value });
  });
  patch.push({ op: 'add', path: '/spec/containers/-', value: sidecarContainer(cfg, agentIds, mcp) });
  const added: Record<string, unknown>[] = [{ name: SIDECAR_VOLUME, emptyDir: {} }];
  if (cfg.spoolVolume) added.push({ name: SPOOL_VOLUME, ...cfg.spoolVolume });
  if (mcp)
    added.push({ name: MCP_VOLUME, configMap: { name: mcp.name, items: [{ key: mcp.key, path: mcp.key }] } });
  if (volumes === undefined) patch.push({ op: 'add', path: '/spec/volumes', value: added });
  else for (const v of added) patch.push({ op: 'add', path: '/spec/volumes/-', value: v });
  // The sidecar keeps shipping audit after SIGTERM: the pod must give it the time.
  const grace = Math.ceil((cfg.drainTimeoutMs ?? 20_000) / 1000) + 10;
  const current = pod.spec?.terminationGracePeriodSeconds;
  if (current === undefined ? grace > 30 : typeof current === 'number' && current < grace)
    patch.push({ op: 'add', path: '/spec/terminationGracePeriodSeconds', value: grace });
  if (pod.metadata?.annotations === undefined)
    patch.push({ op: 'add', path: '/metadata/annotations', value: { [ANNOTATION_STATUS]: 'injected' } });
  else
    patch.push({
      op: 'add',
      path: `/metadata/annotations/${pointerEscape(ANNOTATION_STATUS)}`,
      value: 'injected',
    });

  return allow(req.uid, {
    patchType: 'JSONPatch',
    patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
    auditAnnotations: {
      'sidecar-injected': 'true',
      'agent-ids': agentIds.join(','),
      ...(mcp ? { 'mcp-config': `${mcp.name}/${mcp.key}` } : {}),
    },
  });
}

/**
 * The sidecar container: loopback decision API, replica on an emptyDir, key from a Secret; with
 * `mcp`, the MCP gateway on 127.0.0.1:8712 with that ConfigMap key as its config (read-only).
 */
export function sidecarContainer(
  cfg: InjectionConfig,
  agentIds: string[],
  mcp?: ConfigMapRef,
): Record<string, unknown> {
  const grpcAddr = cfg.probe === 'grpc' ? `0.0.0.0:${SIDECAR_GRPC_PORT}` : DECISION_ADDR;
  const env: Record<string, unknown>[] = [
    { name: 'ACT_CONTROL_PLANE', value: cfg.controlPlane },
    {
      name: 'ACT_SIDECAR_KEY',
      valueFrom: { secretKeyRef: { name: cfg.sidecarKeySecret.name, key: cfg.sidecarKeySecret.key } },
    },
    { name: 'ACT_AGENT_IDS', value: agentIds.join(',') },
    { name: 'ACT_SIDECAR_ID', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
    { name: 'ACT_DATA_DIR', value: SIDECAR_DATA_DIR },
    { name: 'ACT_SIDECAR_GRPC_ADDR', value: grpcAddr },
    { name: 'ACT_SIDECAR_HTTP_ADDR', value: `127.0.0.1:${SIDECAR_HTTP_PORT}` },
    { name: 'ACT_LOG_LEVEL', value: cfg.logLevel ?? 'info' },
    { name: 'ACT_DRAIN_TIMEOUT', value: `${Math.ceil((cfg.drainTimeoutMs ?? 20_000) / 1000)}s` },
  ];
  if (cfg.spoolVolume) {
    // Each pod's spool in its own subdirectory; leftovers of stopped pods are adopted.
    env.push(
      { name: 'ACT_AUDIT_SPOOL_DIR', value: `${SPOOL_ROOT}/$(ACT_SIDECAR_ID)` },
      { name: 'ACT_AUDIT_SPOOL_ADOPT', value: SPOOL_ROOT },
    );
  }
  if (cfg.probe === 'grpc') env.push({ name: 'ACT_SIDECAR_ALLOW_NON_LOOPBACK', value: 'true' });
  if (mcp)
    env.push(
      { name: 'ACT_MCP_CONFIG', value: `${MCP_CONFIG_DIR}/${mcp.key}` },
      { name: 'ACT_MCP_ADDR', value: `127.0.0.1:${SIDECAR_MCP_PORT}` },
    );

  const probe = (live: boolean) =>
    cfg.probe === 'grpc'
      ? live
        ? { tcpSocket: { port: SIDECAR_GRPC_PORT } }
        : { grpc: { port: SIDECAR_GRPC_PORT } }
      : {
          exec: {
            command: ['node', PROBE_SCRIPT, DECISION_ADDR, ...(live ? ['--live'] : [])],
          },
        };
  return {
    name: SIDECAR_CONTAINER,
    image: cfg.image,
    imagePullPolicy: cfg.imagePullPolicy ?? 'IfNotPresent',
    args: ['sidecar'],
    env,
    ...(cfg.probe === 'grpc'
      ? { ports: [{ name: 'act-grpc', containerPort: SIDECAR_GRPC_PORT, protocol: 'TCP' }] }
      : {}),
    resources: cfg.resources,
    volumeMounts: [
      { name: SIDECAR_VOLUME, mountPath: SIDECAR_DATA_DIR },
      ...(cfg.spoolVolume ? [{ name: SPOOL_VOLUME, mountPath: SPOOL_ROOT }] : []),
      ...(mcp ? [{ name: MCP_VOLUME, mountPath: MCP_CONFIG_DIR, readOnly: true }] : []),
    ],
    // Ready once the replica has synced (grpc.health.v1 SERVING); it then keeps serving from disk.
    readinessProbe: {
      ...probe(false),
      initialDelaySeconds: 1,
      periodSeconds: 5,
      timeoutSeconds: 3,
      failureThreshold: 3,
    },
    // Alive while the process answers at all (also NOT_SERVING): a control-plane outage must not restart sidecars.
    livenessProbe: {
      ...probe(true),
      initialDelaySeconds: 10,
      periodSeconds: 20,
      timeoutSeconds: 5,
      failureThreshold: 3,
    },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: SIDECAR_UID,
      runAsGroup: SIDECAR_UID,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    // SIGTERM drains in-flight checks and flushes the audit spool.
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
}
