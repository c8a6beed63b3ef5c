/**
 * Injection of the drain settings and of a spool volume that outlives the pod: a deleted pod's
 * sidecar must get the time to ship its audit spool, and with a node volume its leftovers are
 * found by the next sidecar on the node.
 */
import assert from 'node:assert/strict';
import { applyPatch, type Operation } from 'fast-json-patch';
import type { AdmissionRequest } from '../../../src/webhook/admission';
import { review, SPOOL_ROOT, SPOOL_VOLUME, type InjectionConfig } from '../../../src/webhook/inject';

const base: InjectionConfig = {
  image: 'registry.example.com/act:0.1.0',
  controlPlane: 'act.act-system.svc:8701',
  sidecarKeySecret: { name: 'act-sidecar-key', key: 'api-key' },
  resources: { requests: { cpu: '50m' } },
  probe: 'exec',
};

function pod(grace?: number): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'agent-7d9f',
      annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': 'agent_0123456789' },
    },
    spec: {
      containers: [{ name: 'app', image: 'app' }],
      ...(grace !== undefined ? { terminationGracePeriodSeconds: grace } : {}),
    },
  };
}

function inject(cfg: InjectionConfig, object: Record<string, unknown>) {
  const req: AdmissionRequest = {
    uid: 'u1',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    operation: 'CREATE',
    userInfo: { username: 'test' },
    object,
  };
  const res = review(req, cfg);
  assert.equal(res.allowed, true);
  const ops = JSON.parse(Buffer.from(res.patch!, 'base64').toString()) as Operation[];
  return applyPatch(structuredClone(object), ops).newDocument as any;
}

const sidecarOf = (p: any) => p.spec.containers.find((c: any) => c.name === 'act-sidecar');
const envOf = (c: any) => Object.fromEntries(c.env.map((e: any) => [e.name, e.value]));

describe('sidecar injection: drain and spool volume', () => {
  it('default: the spool stays on the emptyDir, drain 20s fits the default 30 s grace period', () => {
    const p = inject(base, pod());
    assert.equal(p.spec.terminationGracePeriodSeconds, undefined);
    assert.equal(envOf(sidecarOf(p)).ACT_DRAIN_TIMEOUT, '20s');
    assert.equal(envOf(sidecarOf(p)).ACT_AUDIT_SPOOL_DIR, undefined);
    assert.ok(!p.spec.volumes.some((v: any) => v.name === SPOOL_VOLUME));
  });

  it('a longer drain raises the grace period to drain + 10 s, never lowers a longer one', () => {
    assert.equal(inject({ ...base, drainTimeoutMs: 60_000 }, pod()).spec.terminationGracePeriodSeconds, 70);
    assert.equal(inject({ ...base, drainTimeoutMs: 60_000 }, pod(40)).spec.terminationGracePeriodSeconds, 70);
    assert.equal(
      inject({ ...base, drainTimeoutMs: 60_000 }, pod(300)).spec.terminationGracePeriodSeconds,
      300,
    );
  });

  it('a spool volume: mounted, one subdirectory per pod, and the node volume adopted', () => {
    const spoolVolume = { hostPath: { path: '/var/lib/act-spools', type: 'Directory' } };
    const p = inject({ ...base, spoolVolume }, pod());
    const v = p.spec.volumes.find((x: any) => x.name === SPOOL_VOLUME);
    assert.deepEqual(v, { name: SPOOL_VOLUME, ...spoolVolume });
    const c = sidecarOf(p);
    assert.ok(c.volumeMounts.some((m: any) => m.name === SPOOL_VOLUME && m.mountPath === SPOOL_ROOT));
    const env = envOf(c);
    // Kubernetes expands $(ACT_SIDECAR_ID) (the pod name, defined earlier in the list).
    assert.equal(env.ACT_AUDIT_SPOOL_DIR, `${SPOOL_ROOT}/$(ACT_SIDECAR_ID)`);
    assert.equal(env.ACT_AUDIT_SPOOL_ADOPT, SPOOL_ROOT);
    const names = c.env.map((e: any) => e.name);
    assert.ok(names.indexOf('ACT_SIDECAR_ID') < names.indexOf('ACT_AUDIT_SPOOL_DIR'));
  });

  it('refuses a pod that already has a volume of that name', () => {
    const p = pod();
    (p.spec as any).volumes = [{ name: SPOOL_VOLUME, emptyDir: {} }];
    const res = review(
      {
        uid: 'u2',
        kind: { group: '', version: 'v1', kind: 'Pod' },
        resource: { group: '', version: 'v1', resource: 'pods' },
        operation: 'CREATE',
        userInfo: { username: 'test' },
        object: p,
      },
      { ...base, spoolVolume: { hostPath: { path: '/x' } } },
    );
    assert.equal(res.allowed, false);
    assert.match(res.status?.message ?? '', /already has a volume named act-audit-spools/);
  });
});
