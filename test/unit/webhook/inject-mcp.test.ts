/**
 * Injection of the MCP gateway: a pod annotated act.dev/mcp-config (or every pod, with the
 * chart's sidecar.mcp.configMap) gets a sidecar that serves MCP with that ConfigMap key as its
 * config, mounted read-only, and app containers learn the gateway's URL. Bad annotations are
 * refused with the reason; the patched Pod passes the Kubernetes schema.
 */
import assert from 'node:assert/strict';
import { applyPatch, type Operation } from 'fast-json-patch';
import type { AdmissionRequest } from '../../../src/webhook/admission';
import {
  MCP_CONFIG_DIR,
  MCP_URL,
  MCP_VOLUME,
  parseConfigMapRef,
  review,
  type InjectionConfig,
} from '../../../src/webhook/inject';
import { validateObject } from '../../k8s/chart';

const base: InjectionConfig = {
  image: 'registry.example.com/act:0.1.0',
  controlPlane: 'act.act-system.svc:8701',
  sidecarKeySecret: { name: 'act-sidecar-key', key: 'api-key' },
  resources: { requests: { cpu: '50m' } },
  probe: 'exec',
};

function pod(
  annotations: Record<string, string> = {},
  env?: { name: string; value: string }[],
): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'agent-7d9f',
      annotations: { 'act.dev/inject': 'true', 'act.dev/agent-ids': 'agent_0123456789', ...annotations },
    },
    spec: { containers: [{ name: 'app', image: 'app', ...(env ? { env } : {}) }] },
  };
}

function request(object: Record<string, unknown>): AdmissionRequest {
  return {
    uid: 'u1',
    kind: { group: '', version: 'v1', kind: 'Pod' },
    resource: { group: '', version: 'v1', resource: 'pods' },
    operation: 'CREATE',
    userInfo: { username: 'test' },
    object,
  };
}

function inject(cfg: InjectionConfig, object: Record<string, unknown>) {
  const res = review(request(object), cfg);
  assert.equal(res.allowed, true, res.status?.message);
  const ops = JSON.parse(Buffer.from(res.patch!, 'base64').toString()) as Operation[];
  return { pod: applyPatch(structuredClone(object), ops).newDocument as any, res };
}

const sidecarOf = (p: any) => p.spec.containers.find((c: any) => c.name === 'act-sidecar');
const envOf = (c: any) => Object.fromEntries((c.env ?? []).map((e: any) => [e.name, e.value]));

describe('sidecar injection: the MCP gateway', () => {
  it('no annotation and no default: no gateway', () => {
    const { pod: p } = inject(base, pod());
    assert.equal(envOf(sidecarOf(p)).ACT_MCP_CONFIG, undefined);
    assert.equal(envOf(p.spec.containers[0]).ACT_MCP_URL, undefined);
    assert.ok(!p.spec.volumes.some((v: any) => v.name === MCP_VOLUME));
  });

  it('act.dev/mcp-config: name/key → the key mounted read-only and passed as ACT_MCP_CONFIG; apps get ACT_MCP_URL', () => {
    const { pod: p, res } = inject(base, pod({ 'act.dev/mcp-config': 'billing-mcp/gateway.yaml' }));
    const sc = sidecarOf(p);
    assert.equal(envOf(sc).ACT_MCP_CONFIG, `${MCP_CONFIG_DIR}/gateway.yaml`);
    assert.equal(envOf(sc).ACT_MCP_ADDR, '127.0.0.1:8712');
    assert.ok(
      sc.volumeMounts.some(
        (m: any) => m.name === MCP_VOLUME && m.mountPath === MCP_CONFIG_DIR && m.readOnly === true,
      ),
    );
    const v = p.spec.volumes.find((x: any) => x.name === MCP_VOLUME);
    assert.deepEqual(v, {
      name: MCP_VOLUME,
      configMap: { name: 'billing-mcp', items: [{ key: 'gateway.yaml', path: 'gateway.yaml' }] },
    });
    assert.equal(envOf(p.spec.containers[0]).ACT_MCP_URL, MCP_URL);
    assert.equal(envOf(p.spec.containers[0]).ACT_SIDECAR_GRPC_ADDR, '127.0.0.1:8711');
    assert.equal(res.auditAnnotations?.['mcp-config'], 'billing-mcp/gateway.yaml');
    validateObject(p);
  });

  it('the chart default applies to pods without the annotation; "none" opts a pod out', () => {
    const cfg = { ...base, mcpConfigMap: { name: 'agents-mcp', key: 'mcp.yaml' } };
    const { pod: p } = inject(cfg, pod());
    assert.equal(envOf(sidecarOf(p)).ACT_MCP_CONFIG, `${MCP_CONFIG_DIR}/mcp.yaml`);
    assert.equal(p.spec.volumes.find((x: any) => x.name === MCP_VOLUME).configMap.name, 'agents-mcp');
    const { pod: out } = inject(cfg, pod({ 'act.dev/mcp-config': 'none' }));
    assert.equal(envOf(sidecarOf(out)).ACT_MCP_CONFIG, undefined);
    assert.ok(!out.spec.volumes.some((v: any) => v.name === MCP_VOLUME));
  });

  it('an app that sets ACT_MCP_URL itself keeps its value', () => {
    const { pod: p } = inject(
      base,
      pod({ 'act.dev/mcp-config': 'm' }, [{ name: 'ACT_MCP_URL', value: 'http://elsewhere/mcp' }]),
    );
    const app = p.spec.containers[0];
    assert.equal(app.env.filter((e: any) => e.name === 'ACT_MCP_URL').length, 1);
    assert.equal(envOf(app).ACT_MCP_URL, 'http://elsewhere/mcp');
    assert.equal(envOf(app).ACT_SIDECAR_GRPC_ADDR, '127.0.0.1:8711');
  });

  it('refuses bad annotations and a clashing volume, with the reason', () => {
    for (const bad of ['Bad_Name', 'a/b/c', 'a/..', '../x', 'a/ke y', '']) {
      const res = review(request(pod({ 'act.dev/mcp-config': bad })), base);
      assert.equal(res.allowed, false, bad);
      assert.match(res.status?.message ?? '', /act\.dev\/mcp-config/, bad);
    }
    const p = pod({ 'act.dev/mcp-config': 'm' });
    (p.spec as any).volumes = [{ name: MCP_VOLUME, emptyDir: {} }];
    const res = review(request(p), base);
    assert.equal(res.allowed, false);
    assert.match(res.status?.message ?? '', /already has a volume named act-mcp-config/);
  });

  it('parses ConfigMap references', () => {
    assert.deepEqual(parseConfigMapRef('m', 'x'), { name: 'm', key: 'mcp.yaml' });
    assert.deepEqual(parseConfigMapRef('m.v1/g.json', 'x'), { name: 'm.v1', key: 'g.json' });
    assert.throws(() => parseConfigMapRef('M', 'flag'), /^Error: flag: expected/);
  });
});
