/**
 * The chart's sidecar.mcp values reach the webhook: rendered into the control plane's
 * environment, parsed by the control plane's own options, and turned into the injection config;
 * the schema refuses names Kubernetes would refuse.
 */
import assert from 'node:assert/strict';
import { parseOptions } from '../../src/common/options';
import { CONTROL_PLANE_OPTIONS } from '../../src/control-plane/config';
import { webhookConfigFromOptions } from '../../src/webhook/server';
import { containerEnv, find, render, runHelm, CHART, valuesFile, type K8sObject } from './chart';

type Deployment = K8sObject & { spec: { template: { spec: Record<string, any> } } };

function injection(objs: K8sObject[]) {
  const pod = find<Deployment>(objs, 'Deployment').spec.template.spec;
  const env = containerEnv(pod.containers[0], (name) =>
    name === 'ACT_ADMIN_KEY' ? 'x'.repeat(32) : undefined,
  );
  const cfg = parseOptions(CONTROL_PLANE_OPTIONS, pod.containers[0].args.slice(1), env);
  return { env, injection: webhookConfigFromOptions(cfg)!.injection };
}

describe('Helm chart: sidecar.mcp', function () {
  this.timeout(120_000);

  it('default: no gateway config for unannotated pods', () => {
    const { env, injection: inj } = injection(render());
    assert.equal(env.ACT_SIDECAR_MCP_CONFIG_MAP, undefined);
    assert.equal(inj.mcpConfigMap, undefined);
  });

  it('sidecar.mcp.configMap/key become the webhook default', () => {
    const { env, injection: inj } = injection(render({ values: [valuesFile('mcp-values.yaml')] }));
    assert.equal(env.ACT_SIDECAR_MCP_CONFIG_MAP, 'agents-mcp/gateway.yaml');
    assert.deepEqual(inj.mcpConfigMap, { name: 'agents-mcp', key: 'gateway.yaml' });
  });

  it('the schema refuses a ConfigMap name or key Kubernetes would refuse', () => {
    for (const set of ['sidecar.mcp.configMap=Agents_MCP', 'sidecar.mcp.key=a/b', 'sidecar.mcp.other=x']) {
      const r = runHelm(['template', 'act', CHART, '--set', set]);
      assert.notEqual(r.status, 0, set);
      assert.match(r.stderr, /values don't meet the specifications of the schema|schema/i, set);
    }
  });
});
