/**
 * The sidecar-injection webhook exercised the way kube-apiserver calls it: the helm-rendered
 * MutatingWebhookConfiguration decides (rules, namespaceSelector, objectSelector) whether to
 * call; a full AdmissionReview v1 goes over HTTPS to `<path>?timeout=Ns`, the server certificate
 * verified against the rendered caBundle for `<service>.<namespace>.svc`; the response checked
 * by the API server's rules; the JSONPatch applied; the patched Pod validated against the
 * Kubernetes schema. The server runs with the chart-generated certificate and with the
 * configuration the rendered Deployment gives the control plane.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { applyPatch, deepClone, type Operation } from 'fast-json-patch';
import { parseOptions } from '../../src/common/options';
import { CONTROL_PLANE_OPTIONS } from '../../src/control-plane/config';
import { startControlPlane, type ControlPlane } from '../../src/control-plane/server';
import { HealthStatus, ServingStatus } from '../../src/observability/grpc-standard';
import { createLogger } from '../../src/observability/logger';
import { probe } from '../../src/webhook/grpc-health-probe';
import {
  startWebhookServer,
  webhookConfigFromOptions,
  type WebhookServer,
  type WebhookServerConfig,
} from '../../src/webhook/server';
import { containerEnv, find, render, validateObject, valuesFile, type K8sObject } from '../k8s/chart';

const logger = createLogger({ level: 'silent' }, {});
const NS = 'act-system';

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}
interface WebhookDef {
  name: string;
  failurePolicy: string;
  timeoutSeconds: number;
  admissionReviewVersions: string[];
  clientConfig: {
    service: { name: string; namespace: string; path: string; port: number };
    caBundle: string;
  };
  rules: {
    operations: string[];
    apiGroups: string[];
    apiVersions: string[];
    resources: string[];
    scope: string;
  }[];
  namespaceSelector?: LabelSelector;
  objectSelector?: LabelSelector;
}

/** metav1.LabelSelector semantics. */
function selects(sel: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!sel) return true;
  for (const [k, v] of Object.entries(sel.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel.matchExpressions ?? []) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    const ok =
      e.operator === 'In'
        ? has && e.values!.includes(labels[e.key]!)
        : e.operator === 'NotIn'
          ? !has || !e.values!.includes(labels[e.key]!)
          : e.operator === 'Exists'
            ? has
            : e.operator === 'DoesNotExist'
              ? !has
              : assert.fail(`operator ${e.operator}`);
    if (!ok) return false;
  }
  return true;
}

interface Setup {
  hook: WebhookDef;
  ca: Buffer;
  cfg: WebhookServerConfig;
  dir: string;
}

/** Renders the chart and builds the webhook server's config from what the Deployment sets. */
function setupFromChart(values: string[] = []): Setup {
  const objs = render({ values, namespace: NS, release: 'act' });
  const mwc = find<K8sObject & { webhooks: WebhookDef[] }>(objs, 'MutatingWebhookConfiguration');
  const hook = mwc.webhooks[0]!;
  const tls = find<K8sObject & { data: Record<string, string> }>(objs, 'Secret', 'act-webhook-tls');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'act-webhook-'));
  writeFileSync(path.join(dir, 'tls.crt'), Buffer.from(tls.data['tls.crt']!, 'base64'));
  writeFileSync(path.join(dir, 'tls.key'), Buffer.from(tls.data['tls.key']!, 'base64'));
  const dep = find<any>(objs, 'Deployment');
  const env = containerEnv(dep.spec.template.spec.containers[0], () => 'x'.repeat(32));
  const opts = parseOptions(CONTROL_PLANE_OPTIONS, [], {
    ...env,
    ACT_WEBHOOK_ADDR: '127.0.0.1:0',
    ACT_WEBHOOK_TLS_CERT: path.join(dir, 'tls.crt'),
    ACT_WEBHOOK_TLS_KEY: path.join(dir, 'tls.key'),
  });
  return {
    hook,
    ca: Buffer.from(hook.clientConfig.caBundle, 'base64'),
    cfg: webhookConfigFromOptions(opts)!,
    dir,
  };
}

interface Call {
  called: boolean;
  status?: number;
  review?: any;
  patched?: any;
}

let podSeq = 0;
function pod(
  opts: { annotations?: Record<string, string>; labels?: Record<string, string>; spec?: any } = {},
): any {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: `agent-${++podSeq}-`,
      namespace: 'apps',
      labels: { app: 'agent', ...(opts.labels ?? {}) },
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    spec: opts.spec ?? {
      containers: [{ name: 'app', image: 'registry.example.com/agent:1', ports: [{ containerPort: 8080 }] }],
    },
  };
}

const AGENT = 'agent_01hzx3k9m2';

/** What kube-apiserver does for one Pod CREATE (or other operation) in a namespace with labels. */
async function apiServer(
  s: Setup,
  port: number,
  obj: any,
  opts: {
    nsLabels?: Record<string, string>;
    namespace?: string;
    operation?: string;
    dryRun?: boolean;
    servername?: string;
    ca?: Buffer;
  } = {},
): Promise<Call> {
  const namespace = opts.namespace ?? 'apps';
  const nsLabels = {
    'kubernetes.io/metadata.name': namespace,
    ...(opts.nsLabels ?? { 'act.dev/injection': 'enabled' }),
  };
  const operation = opts.operation ?? 'CREATE';
  const rule = s.hook.rules.find(
    (r) =>
      r.operations.includes(operation) &&
      r.apiGroups.includes('') &&
      r.apiVersions.includes('v1') &&
      r.resources.includes('pods') &&
      ['Namespaced', '*'].includes(r.scope),
  );
  if (
    !rule ||
    !selects(s.hook.namespaceSelector, nsLabels) ||
    !selects(s.hook.objectSelector, obj.metadata.labels ?? {})
  )
    return { called: false };
  assert.ok(s.hook.admissionReviewVersions.includes('v1'));
  const uid = randomUUID();
  const request = {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: obj.metadata.name ?? '',
      namespace,
      operation,
      userInfo: {
        username: 'system:serviceaccount:kube-system:replicaset-controller',
        uid: randomUUID(),
        groups: ['system:serviceaccounts', 'system:authenticated'],
      },
      object: obj,
      oldObject: operation === 'UPDATE' ? obj : null,
      dryRun: opts.dryRun ?? false,
      options: {
        apiVersion: 'meta.k8s.io/v1',
        kind: operation === 'UPDATE' ? 'UpdateOptions' : 'CreateOptions',
      },
    },
  };
  const svc = s.hook.clientConfig.service;
  const { status, body } = await post(
    port,
    `${svc.path}?timeout=${s.hook.timeoutSeconds}s`,
    JSON.stringify(request),
    {
      ca: opts.ca ?? s.ca,
      servername: opts.servername ?? `${svc.name}.${svc.namespace}.svc`,
    },
  );
  // The API server's checks of a webhook response.
  assert.equal(status, 200, body);
  const review = JSON.parse(body);
  assert.equal(review.apiVersion, 'admission.k8s.io/v1');
  assert.equal(review.kind, 'AdmissionReview');
  const res = review.response;
  assert.equal(res.uid, uid, 'response.uid must match request.uid');
  assert.equal(typeof res.allowed, 'boolean');
  assert.equal(res.patch === undefined, res.patchType === undefined, 'patch and patchType go together');
  let patched: any;
  if (res.patch !== undefined) {
    assert.equal(res.patchType, 'JSONPatch');
    assert.equal(res.allowed, true);
    const ops = JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8')) as Operation[];
    assert.ok(Array.isArray(ops));
    patched = applyPatch(deepClone(obj), ops, true, false).newDocument;
    // The API server fills generated names in before validation; so does this emulation.
    validateObject({
      ...patched,
      metadata: { ...patched.metadata, name: `${patched.metadata.generateName}x1y2z` },
    });
  }
  return { called: true, status, review, patched };
}

function post(
  port: number,
  pathAndQuery: string,
  body: string | Buffer,
  opts: { ca: Buffer; servername: string; contentType?: string; method?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        path: pathAndQuery,
        method: opts.method ?? 'POST',
        ca: opts.ca,
        servername: opts.servername,
        headers: { 'content-type': opts.contentType ?? 'application/json', accept: 'application/json' },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const sidecarOf = (p: any) => p.spec.containers.find((c: any) => c.name === 'act-sidecar');
const envOf = (c: any) => Object.fromEntries(c.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));

describe('sidecar injection webhook (as kube-apiserver calls it)', function () {
  this.timeout(60_000);
  let s: Setup;
  let server: WebhookServer;

  before(async () => {
    s = setupFromChart();
    server = await startWebhookServer(s.cfg, logger);
  });
  after(async () => {
    await server?.stop();
    if (s) rmSync(s.dir, { recursive: true, force: true });
  });

  it('injects the sidecar into a pod annotated act.dev/inject: "true"', async () => {
    const call = await apiServer(
      s,
      server.port,
      pod({ annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': AGENT } }),
    );
    assert.ok(call.called);
    const p = call.patched;
    assert.equal(p.metadata.annotations['act.dev/status'], 'injected');
    const sc = sidecarOf(p);
    assert.equal(sc.image, 'act:0.1.0');
    assert.deepEqual(sc.args, ['sidecar']);
    const env = envOf(sc);
    assert.equal(env.ACT_CONTROL_PLANE, 'act.act-system.svc:8701');
    assert.deepEqual(env.ACT_SIDECAR_KEY, { secretKeyRef: { name: 'act-sidecar-key', key: 'api-key' } });
    assert.equal(env.ACT_AGENT_IDS, AGENT);
    assert.deepEqual(env.ACT_SIDECAR_ID, { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } });
    assert.equal(env.ACT_DATA_DIR, '/var/lib/act');
    assert.equal(env.ACT_SIDECAR_GRPC_ADDR, '127.0.0.1:8711');
    assert.equal(env.ACT_SIDECAR_ALLOW_NON_LOOPBACK, undefined);
    assert.deepEqual(sc.volumeMounts, [{ name: 'act-sidecar-data', mountPath: '/var/lib/act' }]);
    assert.deepEqual(p.spec.volumes, [{ name: 'act-sidecar-data', emptyDir: {} }]);
    assert.deepEqual(sc.resources, { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } });
    assert.deepEqual(sc.readinessProbe.exec.command, [
      'node',
      '/app/dist/webhook/grpc-health-probe.js',
      '127.0.0.1:8711',
    ]);
    assert.deepEqual(sc.livenessProbe.exec.command, [
      'node',
      '/app/dist/webhook/grpc-health-probe.js',
      '127.0.0.1:8711',
      '--live',
    ]);
    assert.equal(sc.ports, undefined, 'nothing listens on the pod IP');
    assert.equal(sc.securityContext.runAsNonRoot, true);
    assert.equal(sc.securityContext.readOnlyRootFilesystem, true);
    assert.equal(sc.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(sc.securityContext.capabilities, { drop: ['ALL'] });
    // The app container learns the decision address.
    assert.deepEqual(p.spec.containers[0].env, [{ name: 'ACT_SIDECAR_GRPC_ADDR', value: '127.0.0.1:8711' }]);
    assert.equal(call.review.response.auditAnnotations['agent-ids'], AGENT);
  });

  it('is idempotent: an injected pod gets no second sidecar', async () => {
    const first = await apiServer(
      s,
      server.port,
      pod({ annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': AGENT } }),
    );
    const again = await apiServer(s, server.port, first.patched);
    assert.ok(again.called);
    assert.equal(again.review.response.allowed, true);
    assert.equal(again.review.response.patch, undefined);
    // Even without the status annotation, an existing act-sidecar container is recognised.
    const stripped = deepClone(first.patched);
    delete stripped.metadata.annotations['act.dev/status'];
    assert.equal((await apiServer(s, server.port, stripped)).review.response.patch, undefined);
  });

  it('appends to existing env, volumes and annotations and keeps every app container valid', async () => {
    const obj = pod({
      annotations: {
        'act.dev/inject': 'true',
        'act.dev/agent-ids': `${AGENT}, agent_02abcdef99`,
        'team/owner': 'x',
      },
      spec: {
        initContainers: [{ name: 'migrate', image: 'busybox' }],
        containers: [
          { name: 'app', image: 'a', env: [{ name: 'MODE', value: 'prod' }] },
          {
            name: 'worker',
            image: 'w',
            env: [{ name: 'ACT_SIDECAR_GRPC_ADDR', value: 'unix:/run/act.sock' }],
          },
        ],
        volumes: [{ name: 'cache', emptyDir: {} }],
      },
    });
    const p = (await apiServer(s, server.port, obj)).patched;
    assert.deepEqual(p.spec.containers[0].env, [
      { name: 'MODE', value: 'prod' },
      { name: 'ACT_SIDECAR_GRPC_ADDR', value: '127.0.0.1:8711' },
    ]);
    assert.deepEqual(
      p.spec.containers[1].env,
      [{ name: 'ACT_SIDECAR_GRPC_ADDR', value: 'unix:/run/act.sock' }],
      'own setting kept',
    );
    assert.equal(p.spec.initContainers[0].env, undefined);
    assert.deepEqual(
      p.spec.volumes.map((v: any) => v.name),
      ['cache', 'act-sidecar-data'],
    );
    assert.equal(p.metadata.annotations['team/owner'], 'x');
    assert.equal(envOf(sidecarOf(p)).ACT_AGENT_IDS, `${AGENT},agent_02abcdef99`);
    assert.equal(p.spec.containers.length, 3);
  });

  it('leaves pods alone without act.dev/inject: "true", and on dry runs injects the same way', async () => {
    for (const annotations of [
      undefined as Record<string, string> | undefined,
      { 'act.dev/inject': 'false', 'act.dev/agent-ids': AGENT },
      { 'act.dev/inject': 'yes' },
    ]) {
      const call = await apiServer(s, server.port, pod(annotations ? { annotations } : {}));
      assert.ok(call.called);
      assert.equal(call.review.response.allowed, true);
      assert.equal(call.review.response.patch, undefined, JSON.stringify(annotations));
    }
    const dry = await apiServer(
      s,
      server.port,
      pod({ annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': '*' } }),
      { dryRun: true },
    );
    assert.ok(sidecarOf(dry.patched));
  });

  it('respects the rendered selectors: the API server does not call for excluded namespaces and pods', async () => {
    const annotated = { annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': AGENT } };
    assert.equal(
      (await apiServer(s, server.port, pod(annotated), { nsLabels: {} })).called,
      false,
      'unlabelled namespace',
    );
    assert.equal(
      (await apiServer(s, server.port, pod(annotated), { namespace: NS })).called,
      false,
      'release namespace',
    );
    assert.equal(
      (await apiServer(s, server.port, pod(annotated), { namespace: 'kube-system' })).called,
      false,
    );
    assert.equal(
      (await apiServer(s, server.port, pod({ ...annotated, labels: { 'act.dev/inject': 'false' } }))).called,
      false,
      'act.dev/inject=false label',
    );
    assert.equal(
      (await apiServer(s, server.port, pod(annotated), { operation: 'UPDATE' })).called,
      false,
      'rules: CREATE only',
    );
  });

  it('answers a non-CREATE review that reaches it with allowed and no patch', async () => {
    const custom: Setup = {
      ...s,
      hook: { ...s.hook, rules: [{ ...s.hook.rules[0]!, operations: ['CREATE', 'UPDATE'] }] },
    };
    const call = await apiServer(
      custom,
      server.port,
      pod({ annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': AGENT } }),
      {
        operation: 'UPDATE',
      },
    );
    assert.ok(call.called);
    assert.equal(call.review.response.allowed, true);
    assert.equal(call.review.response.patch, undefined);
  });

  it('denies, with the reason, pods whose agent ids are missing or invalid', async () => {
    for (const [ids, re] of [
      [undefined, /act\.dev\/agent-ids is required/],
      ['', /act\.dev\/agent-ids is required/],
      ['bob', /"bob" is not an agent id/],
    ] as const) {
      const annotations: Record<string, string> = { 'act.dev/inject': 'true' };
      if (ids !== undefined) annotations['act.dev/agent-ids'] = ids;
      const res = (await apiServer(s, server.port, pod({ annotations }))).review.response;
      assert.equal(res.allowed, false);
      assert.equal(res.status.code, 400);
      assert.match(res.status.message, re);
    }
  });

  it('verifies as the API server does: the certificate is for <service>.<namespace>.svc under the caBundle', async () => {
    const obj = pod();
    await assert.rejects(
      apiServer(s, server.port, obj, { servername: 'act.other-namespace.svc' }),
      /altnames|Hostname\/IP does not match/,
    );
    const other = setupFromChart();
    try {
      await assert.rejects(
        apiServer(s, server.port, obj, { ca: other.ca }),
        /self[- ]signed|unable to verify|certificate/i,
      );
    } finally {
      rmSync(other.dir, { recursive: true, force: true });
    }
  });

  it('answers malformed AdmissionReviews with clean errors and keeps serving', async () => {
    const opts = { ca: s.ca, servername: 'act.act-system.svc' };
    const cases: [
      string | Buffer,
      number,
      RegExp,
      Partial<{ contentType: string; method: string; path: string }>?,
    ][] = [
      ['{not json', 400, /not valid JSON/],
      ['[]', 400, /not a JSON object/],
      [
        '{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1"}}',
        400,
        /admissionReviewVersions/,
      ],
      ['{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', 400, /request is missing/],
      ['{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}', 400, /uid/],
      ['{}', 415, /Content-Type/, { contentType: 'text/plain' }],
      ['', 405, /POST/, { method: 'GET' }],
      ['{}', 404, /no route/, { path: '/validate' }],
      [Buffer.alloc(9 * 1024 * 1024, 0x20), 413, /larger than/],
    ];
    for (const [body, status, re, o] of cases) {
      const r = await post(server.port, o?.path ?? '/mutate?timeout=5s', body, { ...opts, ...o });
      assert.equal(r.status, status, `${String(body).slice(0, 60)} → ${r.body}`);
      const review = JSON.parse(r.body);
      assert.equal(review.kind, 'AdmissionReview');
      assert.equal(review.response.allowed, false);
      assert.match(review.response.status.message, re);
    }
    // With a readable uid the API server gets a proper denial it can show the user.
    const bad = {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: { uid: 'u-1', kind: 'Pod', resource: {}, operation: 'CREATE' },
    };
    const r = await post(server.port, '/mutate', JSON.stringify(bad), opts);
    assert.equal(r.status, 200);
    const res = JSON.parse(r.body).response;
    assert.deepEqual([res.uid, res.allowed, res.status.code], ['u-1', false, 400]);
    const odd = {
      ...bad,
      request: {
        ...bad.request,
        kind: { group: '', version: 'v1', kind: 'Pod' },
        resource: { group: '', version: 'v1', resource: 'pods' },
        userInfo: {},
        object: { metadata: { annotations: { 'act.dev/inject': 'true' } }, spec: { containers: 'nope' } },
      },
    };
    const r2 = JSON.parse((await post(server.port, '/mutate', JSON.stringify(odd), opts)).body).response;
    assert.equal(r2.allowed, false);
    assert.match(r2.status.message, /spec\.containers/);
    // Still serving.
    assert.ok(
      (
        await apiServer(
          s,
          server.port,
          pod({ annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': AGENT } }),
        )
      ).patched,
    );
  });
});

describe('sidecar injection with sidecar.probe=grpc and failurePolicy Fail', function () {
  this.timeout(60_000);
  let s: Setup;
  let server: WebhookServer;
  before(async () => {
    s = setupFromChart([valuesFile('grpc-probe-fail-values.yaml')]);
    server = await startWebhookServer(s.cfg, logger);
  });
  after(async () => {
    await server?.stop();
    if (s) rmSync(s.dir, { recursive: true, force: true });
  });

  it('uses kubelet gRPC/TCP probes, listens on the pod IP, and takes image, Secret and resources from values', async () => {
    assert.equal(s.hook.failurePolicy, 'Fail');
    const obj = pod({
      annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': '*' },
      labels: { 'act.dev/workload': 'agent' },
    });
    const call = await apiServer(s, server.port, obj, { nsLabels: { team: 'agents' } });
    const sc = sidecarOf(call.patched);
    assert.equal(sc.image, 'registry.example.com/act-sidecar:0.1.0-slim');
    assert.deepEqual(sc.readinessProbe.grpc, { port: 8711 });
    assert.deepEqual(sc.livenessProbe.tcpSocket, { port: 8711 });
    assert.deepEqual(sc.ports, [{ name: 'act-grpc', containerPort: 8711, protocol: 'TCP' }]);
    const env = envOf(sc);
    assert.equal(env.ACT_SIDECAR_GRPC_ADDR, '0.0.0.0:8711');
    assert.equal(env.ACT_SIDECAR_ALLOW_NON_LOOPBACK, 'true');
    assert.equal(env.ACT_LOG_LEVEL, 'debug');
    assert.deepEqual(env.ACT_SIDECAR_KEY, { secretKeyRef: { name: 'act-sidecar', key: 'key' } });
    assert.deepEqual(sc.resources.limits, { cpu: '1', memory: '512Mi' });
    // The app still talks to the sidecar over loopback.
    assert.equal(call.patched.spec.containers[0].env[0].value, '127.0.0.1:8711');
    assert.equal(
      (
        await apiServer(
          s,
          server.port,
          pod({ annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': '*' } }),
          { nsLabels: { team: 'agents' } },
        )
      ).called,
      false,
      'objectSelector',
    );
    assert.equal(
      (await apiServer(s, server.port, obj, { nsLabels: { team: 'web' } })).called,
      false,
      'namespaceSelector',
    );
  });
});

describe('the control plane serves the webhook when ACT_WEBHOOK_ADDR is set', function () {
  this.timeout(60_000);
  let s: Setup;
  let cp: ControlPlane | undefined;
  let dataDir: string;
  before(() => {
    s = setupFromChart();
    dataDir = mkdtempSync(path.join(os.tmpdir(), 'act-cp-webhook-'));
  });
  after(async () => {
    await cp?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(s.dir, { recursive: true, force: true });
  });

  it('starts it with the control plane, answers AdmissionReviews, and stops it on stop()', async () => {
    const cfg = parseOptions(CONTROL_PLANE_OPTIONS, [], {
      ACT_HTTP_ADDR: '127.0.0.1:0',
      ACT_GRPC_ADDR: '127.0.0.1:0',
      ACT_DATA_DIR: dataDir,
      ACT_ADMIN_KEY: 'k'.repeat(32),
      ACT_WEBHOOK_ADDR: '127.0.0.1:0',
      ACT_WEBHOOK_TLS_CERT: s.cfg.tlsCertFile,
      ACT_WEBHOOK_TLS_KEY: s.cfg.tlsKeyFile,
      ACT_SIDECAR_IMAGE: 'act:test',
      ACT_SIDECAR_CONTROL_PLANE: 'act.act-system.svc:8701',
    });
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    cp = await startControlPlane(cfg, log);
    const rec = lines.map((l) => JSON.parse(l)).find((r) => r.msg === 'injection webhook listening');
    assert.ok(rec, lines.join('\n'));
    const port = rec.webhook_port as number;
    const call = await apiServer(
      s,
      port,
      pod({ annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': AGENT } }),
    );
    assert.equal(sidecarOf(call.patched).image, 'act:test');
    await cp.stop();
    cp = undefined;
    await assert.rejects(apiServer(s, port, pod()), /ECONNREFUSED/);
  });

  it('refuses to start with --webhook-addr but without the sidecar settings', async () => {
    const cfg = parseOptions(CONTROL_PLANE_OPTIONS, [], {
      ACT_DATA_DIR: dataDir,
      ACT_WEBHOOK_ADDR: '127.0.0.1:0',
    });
    await assert.rejects(
      startControlPlane(cfg, logger),
      /--webhook-addr needs --webhook-tls-cert, --webhook-tls-key, --sidecar-image, --sidecar-control-plane/,
    );
  });
});

describe('the injected sidecar probe (grpc.health.v1 over loopback)', function () {
  this.timeout(30_000);
  let server: grpc.Server;
  let health: HealthStatus;
  let target: string;
  before(async () => {
    server = new grpc.Server();
    health = new HealthStatus(['act.v1.DecisionService']);
    health.addTo(server);
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
        e ? rej(e) : res(p),
      ),
    );
    target = `127.0.0.1:${port}`;
  });
  after(() => {
    health.close();
    server.forceShutdown();
  });

  it('readiness needs SERVING; liveness only an answer; a dead port fails both', async () => {
    assert.deepEqual(await probe(target, false), { ok: false, detail: 'status NOT_SERVING' });
    assert.deepEqual(await probe(target, true), { ok: true, detail: 'status NOT_SERVING' });
    health.set(ServingStatus.SERVING);
    assert.deepEqual(await probe(target, false), { ok: true, detail: 'status SERVING' });
    const dead = await probe('127.0.0.1:1', true, 1000);
    assert.equal(dead.ok, false);
  });
});
