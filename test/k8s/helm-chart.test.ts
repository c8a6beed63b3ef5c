/**
 * charts/act with the real helm 3.17.2: lint --strict, template with every values file in
 * charts/act/ci, each rendered manifest validated against the Kubernetes schemas, the schema's
 * refusals, and the rendered control-plane configuration parsed by the control plane's own
 * option parser (chart and process cannot disagree on a name or a format).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { parse } from 'yaml';
import { parseOptions } from '../../src/common/options';
import { CONTROL_PLANE_OPTIONS } from '../../src/control-plane/config';
import { parseKekText } from '../../src/control-plane/key-encryption';
import { importPrivateKey } from '../../src/token';
import { webhookConfigFromOptions } from '../../src/webhook/server';
import {
  CHART,
  containerEnv,
  find,
  helm,
  helmFetchMs,
  render,
  runHelm,
  validateObject,
  valuesFile,
  type K8sObject,
} from './chart';

const VALUES = readdirSync(`${CHART}/ci`)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

type Deployment = K8sObject & { spec: { template: { spec: Record<string, any> } } };

describe('Helm chart charts/act', function () {
  this.timeout(120_000);

  before(() => {
    helm();
    if (helmFetchMs > 1000) console.log(`      (helm fetched/verified in ${helmFetchMs} ms)`);
  });

  it('has several CI values files', () => {
    assert.ok(VALUES.length >= 4, VALUES.join(', '));
  });

  it('passes helm lint --strict with the defaults and every CI values file', () => {
    for (const args of [[], ...VALUES.map((v) => ['-f', valuesFile(v)])]) {
      const r = runHelm(['lint', '--strict', CHART, ...args]);
      assert.equal(r.status, 0, `helm lint --strict ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  for (const v of VALUES) {
    it(`renders ${v}: every manifest valid against the Kubernetes schemas`, () => {
      const objs = render({ values: [valuesFile(v)] });
      assert.ok(objs.length >= 4);
      for (const o of objs) {
        try {
          validateObject(o);
        } catch (err) {
          assert.fail(`${v}: ${o.kind} ${o.metadata.name}: ${(err as Error).message}`);
        }
        if (o.kind !== 'MutatingWebhookConfiguration')
          assert.equal(o.metadata.namespace, 'act-system', `${o.kind} namespace`);
      }
      const dep = find<Deployment>(objs, 'Deployment');
      const pod = dep.spec.template.spec;
      assert.equal(pod.securityContext.runAsNonRoot, true);
      for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
        assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
        assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
        assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
      }
      // The control plane's own configuration, parsed as the process would parse it.
      const env = containerEnv(pod.containers[0], (name) =>
        name === 'ACT_ADMIN_KEY'
          ? 'x'.repeat(32)
          : name === 'ACT_DATABASE_URL'
            ? 'postgres://h/db'
            : undefined,
      );
      const cfg = parseOptions(CONTROL_PLANE_OPTIONS, pod.containers[0].args.slice(1), env);
      assert.equal(cfg.dataDir, '/data');
      assert.deepEqual(cfg.grpcAddr, { host: '0.0.0.0', port: 8701 });
      const hasWebhook = objs.some((o) => o.kind === 'MutatingWebhookConfiguration');
      assert.equal(cfg.webhookAddr !== undefined, hasWebhook);
      if (hasWebhook) {
        const wc = webhookConfigFromOptions(cfg)!;
        assert.equal(wc.injection.controlPlane, 'act.act-system.svc:8701');
        // The Service routes the webhook port to the container port the process listens on.
        const svc = find<K8sObject & { spec: { ports: any[] } }>(objs, 'Service');
        const port = svc.spec.ports.find((p) => p.name === 'webhook');
        assert.equal(port.port, 443);
        const cport = pod.containers[0].ports.find((p: any) => p.name === port.targetPort);
        assert.equal(cport.containerPort, wc.port);
      }
    });
  }

  it('generates a webhook CA and a serving certificate for <service>.<namespace>.svc', () => {
    const objs = render({ namespace: 'tools', release: 'prod' });
    const mwc = find<any>(objs, 'MutatingWebhookConfiguration');
    const hook = mwc.webhooks[0];
    assert.deepEqual(hook.clientConfig.service, {
      name: 'prod-act',
      namespace: 'tools',
      path: '/mutate',
      port: 443,
    });
    const tls = find<any>(objs, 'Secret', 'prod-act-webhook-tls');
    const ca = new X509Certificate(Buffer.from(hook.clientConfig.caBundle, 'base64'));
    assert.equal(Buffer.from(tls.data['ca.crt'], 'base64').toString(), ca.toString());
    const cert = new X509Certificate(Buffer.from(tls.data['tls.crt'], 'base64'));
    assert.ok(cert.verify(ca.publicKey), 'serving cert signed by the caBundle CA');
    assert.ok(cert.checkHost('prod-act.tools.svc'), cert.subjectAltName);
    assert.ok(ca.ca);
    assert.deepEqual(hook.admissionReviewVersions, ['v1']);
    assert.equal(hook.sideEffects, 'None');
    assert.deepEqual(hook.namespaceSelector.matchExpressions.at(-1), {
      key: 'kubernetes.io/metadata.name',
      operator: 'NotIn',
      values: ['tools', 'kube-system'],
    });
  });

  it('uses cert-manager (Certificate + caBundle injection) when enabled, and no chart CA', () => {
    const objs = render({ values: [valuesFile('cert-manager-values.yaml')] });
    const mwc = find<any>(objs, 'MutatingWebhookConfiguration');
    assert.equal(mwc.metadata.annotations['cert-manager.io/inject-ca-from'], 'act-system/act-webhook');
    assert.equal(mwc.webhooks[0].clientConfig.caBundle, undefined);
    const cert = find<any>(objs, 'Certificate', 'act-webhook');
    assert.equal(cert.spec.secretName, 'act-webhook-tls');
    assert.ok(cert.spec.dnsNames.includes('act.act-system.svc'));
    assert.deepEqual(cert.spec.issuerRef, { name: 'cluster-ca', kind: 'ClusterIssuer' });
    assert.ok(!objs.some((o) => o.kind === 'Secret' && o.metadata.name === 'act-webhook-tls'));
    assert.ok(!objs.some((o) => o.kind === 'Issuer'));
    const selfSigned = render({ set: ['webhook.certManager.enabled=true'] });
    assert.equal(find<any>(selfSigned, 'Certificate').spec.issuerRef.name, 'act-selfsigned');
    validateObject(find(selfSigned, 'Issuer'));
  });

  it('generates an admin key and an Ed25519 signing key the control plane can load', () => {
    const objs = render();
    const admin = Buffer.from(find<any>(objs, 'Secret', 'act-admin').data['admin-key'], 'base64').toString();
    assert.ok(admin.length >= 16 && admin.length <= 256);
    const file = JSON.parse(
      Buffer.from(
        find<any>(objs, 'Secret', 'act-signing-key').data['signing-keys.json'],
        'base64',
      ).toString(),
    ) as { key_id: string; private_key_pem: string; created_at_ms: number }[];
    assert.equal(file.length, 1);
    assert.match(file[0]!.key_id, /^key_[0-9a-hjkmnp-tv-z]{26}$/);
    assert.equal(importPrivateKey(file[0]!.private_key_pem).asymmetricKeyType, 'ed25519');
    assert.ok(Math.abs(file[0]!.created_at_ms - Date.now()) < 3_600_000);
  });

  it('references existing Secrets instead of generating them', () => {
    const objs = render({ values: [valuesFile('grpc-probe-fail-values.yaml')] });
    assert.ok(!objs.some((o) => o.kind === 'Secret' && /admin|signing/.test(o.metadata.name)));
    const pod = find<Deployment>(objs, 'Deployment').spec.template.spec;
    const adminEnv = pod.containers[0].env.find((e: any) => e.name === 'ACT_ADMIN_KEY');
    assert.deepEqual(adminEnv.valueFrom.secretKeyRef, { name: 'my-admin', key: 'token' });
    assert.equal(pod.volumes.find((v: any) => v.name === 'signing-key').secret.secretName, 'my-signing-keys');
    assert.deepEqual(
      pod.volumes.find((v: any) => v.name === 'data'),
      { name: 'data', emptyDir: {} },
    );
    const mwc = find<any>(objs, 'MutatingWebhookConfiguration');
    assert.equal(mwc.webhooks[0].failurePolicy, 'Fail');
    assert.deepEqual(mwc.webhooks[0].objectSelector.matchLabels, { 'act.dev/workload': 'agent' });
  });

  it('renders PostgreSQL settings into a Secret: no data volume, no signing-key seed, a rolling update, and creates no Role without rules', () => {
    const objs = render({ values: [valuesFile('no-webhook-postgres-values.yaml')] });
    const db = find<any>(objs, 'Secret', 'act-database');
    assert.equal(
      Buffer.from(db.data['database-url'], 'base64').toString(),
      'postgres://act:secret@postgres.db.svc:5432/act',
    );
    assert.ok(!objs.some((o) => o.kind === 'Role'));
    assert.ok(!objs.some((o) => o.kind === 'PersistentVolumeClaim'), 'PostgreSQL needs no data volume');
    assert.ok(!objs.some((o) => o.kind === 'Secret' && /signing/.test(o.metadata.name)));
    const dep = find<Deployment>(objs, 'Deployment');
    assert.equal((dep.spec as any).strategy.type, 'RollingUpdate');
    assert.equal(dep.spec.template.spec.initContainers, undefined);
    assert.ok(!objs.some((o) => o.kind === 'MutatingWebhookConfiguration'));
    assert.ok(!objs.some((o) => o.kind === 'PodDisruptionBudget'), 'one replica: no PDB');
  });

  it('runs several replicas on PostgreSQL with a PodDisruptionBudget, each with its replica id and the key-encryption key', () => {
    const objs = render({ values: [valuesFile('postgres-replicas-values.yaml')] });
    const dep = find<Deployment>(objs, 'Deployment');
    assert.equal((dep.spec as any).replicas, 3);
    const pdb = find<any>(objs, 'PodDisruptionBudget');
    assert.equal(pdb.spec.minAvailable, 1);
    assert.deepEqual(pdb.spec.selector.matchLabels, (dep.spec as any).selector.matchLabels);
    const env = dep.spec.template.spec.containers[0].env;
    assert.deepEqual(env.find((e: any) => e.name === 'ACT_KEY_ENCRYPTION_KEY').valueFrom.secretKeyRef, {
      name: 'act-kek',
      key: 'kek',
    });
    assert.deepEqual(env.find((e: any) => e.name === 'ACT_DATABASE_URL').valueFrom.secretKeyRef, {
      name: 'act-database',
      key: 'url',
    });
    assert.equal(
      env.find((e: any) => e.name === 'ACT_REPLICA_ID').valueFrom.fieldRef.fieldPath,
      'metadata.name',
    );
    // The chart made no KEK of its own: the given Secret is used.
    assert.ok(!objs.some((o) => o.kind === 'Secret' && o.metadata.name === 'act-kek'));
  });

  it('generates a 32-byte key-encryption key Secret the control plane accepts, kept on uninstall', () => {
    const objs = render();
    const kek = find<any>(objs, 'Secret', 'act-kek');
    assert.equal(kek.metadata.annotations['helm.sh/resource-policy'], 'keep');
    const text = Buffer.from(kek.data['key-encryption-key'], 'base64').toString();
    assert.equal(parseKekText(text, 'test').length, 32);
  });

  it('refuses values the schema does not allow', () => {
    for (const [set, re] of [
      ['webhook.failurePolicy=Sometimes', /failurePolicy/],
      // Several replicas need the shared store.
      ['controlPlane.replicas=2', /database/],
      ['sidecar.probe=http', /probe/],
      ['webhook.timeoutSeconds=60', /timeoutSeconds/],
      ['controlPlane.logLevel=loud', /logLevel/],
      ['unknownKey=1', /unknownKey/],
      ['controlPlane.maxTokenLifetime=forever', /maxTokenLifetime/],
    ] as const) {
      const r = runHelm(['template', 'act', CHART, '--set', set]);
      assert.notEqual(r.status, 0, set);
      assert.match(r.stderr, re, set);
    }
  });

  it('renders NOTES.txt with the next steps', () => {
    // `helm install --dry-run` needs a cluster; render the NOTES template as a manifest instead.
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'act-notes-'));
    try {
      cpSync(CHART, tmp, { recursive: true });
      const tpl = readFileSync(path.join(CHART, 'templates/NOTES.txt'), 'utf8');
      writeFileSync(
        path.join(tmp, 'templates/zz-notes.yaml'),
        `{{- define "zz.notes" }}${tpl}{{- end }}\nnotes: {{ include "zz.notes" . | toJson }}\n`,
      );
      const r = runHelm([
        'template',
        'act',
        tmp,
        '--namespace',
        'act-system',
        '--show-only',
        'templates/zz-notes.yaml',
      ]);
      assert.equal(r.status, 0, r.stderr);
      const notes = String((parse(r.stdout) as { notes: string }).notes);
      assert.match(notes, /kubectl -n act-system get secret act-admin/);
      assert.match(notes, /kubectl label namespace apps act\.dev\/injection=enabled/);
      assert.match(notes, /create secret generic act-sidecar-key --from-literal=api-key=/);
      assert.match(notes, /act\.dev\/inject":"true","act\.dev\/agent-ids"/);
      assert.doesNotMatch(notes, /<no value>/);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
