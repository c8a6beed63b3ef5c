/**
 * A sidecar scoped to one agent (--agent-ids A) against a real control plane
 * holding agents A and B: after sync its replica file (opened directly) holds
 * A's agent, policies and revocations and nothing of B's — neither what existed
 * when it connected nor what changed later — B's token is AGENT_UNKNOWN there,
 * and a new token for A naming a new policy brings that policy in.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { LmdbReplica } from '../../src/replica';
import type { Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import { SidecarFixture, restCheck, restClient, waitFor, waitSynced } from '../support/sidecar-helpers';

describe('sidecar: a replica scoped to its agents (real control plane + sidecar)', function () {
  const fx = new SidecarFixture();
  let cp: ControlPlaneProcess;
  let api: Rest;
  let sc: SidecarProcess;
  let scDir: string;

  const A = {} as { agentId: string; policyId: string; token: string; revokedTokenId: string };
  const B = {} as {
    agentId: string;
    policyId: string;
    approvalPolicyId: string;
    token: string;
    revokedTokenIds: string[];
    approvalIds: string[];
  };
  /** Created after the sidecar connected. */
  let a2PolicyId: string;
  let a2Token: string;

  /** A check at the control plane for B that leaves a PENDING approval. */
  async function approvalForB(resource: string): Promise<string> {
    const tok = await fx.issue(api, B.agentId, [B.approvalPolicyId]);
    const r = await api('POST', '/api/enforcement/check', {
      token: tok.token,
      action: 'create:transaction',
      resource,
      context: { amount: 5000 },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.decision, 'APPROVAL_REQUIRED', r.text);
    return r.body.approval_id as string;
  }

  before(async function () {
    cp = await fx.controlPlane(fx.dir('scs-cp'));
    api = restClient(cp.url, cp.adminKey);

    const a = await fx.agentWithToken(api, 'scoped-agent-a', ['read:customer_profile']);
    const aRevoked = await fx.issue(api, a.agentId, [a.policyId]);
    await fx.revoke(api, aRevoked.token_id);
    Object.assign(A, { ...a, revokedTokenId: aRevoked.token_id });

    const b = await fx.agentWithToken(api, 'other-agent-b', ['read:customer_profile', 'read:salary']);
    const bRevoked = await fx.issue(api, b.agentId, [b.policyId]);
    await fx.revoke(api, bRevoked.token_id);
    const approvalPolicy = await fx.createPolicy(api, {
      name: 'b transactions',
      capabilities: ['create:transaction'],
      approval_rules: ['context.amount > 1000'],
    });
    Object.assign(B, {
      ...b,
      approvalPolicyId: approvalPolicy.policy_id,
      revokedTokenIds: [bRevoked.token_id],
      approvalIds: [],
    });
    B.approvalIds.push(await approvalForB('before-connect'));

    scDir = fx.dir('scs-sc');
    sc = await fx.sidecar(cp, scDir, { sidecarId: 'sc-scoped', agentIds: A.agentId });
    await sc.waitForLog('sync live');
  });

  after(async function () {
    await fx.teardown();
  });

  it("decides A's checks; B's token is AGENT_UNKNOWN here", async function () {
    const ok = await restCheck(sc, { token: A.token, action: 'read:customer_profile' });
    assert.equal(ok.body.allowed, true, ok.text);
    const revoked = await fx.issue(api, A.agentId, [A.policyId]);
    await fx.revoke(api, revoked.token_id);
    const r = await waitFor('A revocation at the scoped sidecar', async () => {
      const c = await restCheck(sc, { token: revoked.token, action: 'read:customer_profile' });
      return c.body.reason_code === 'TOKEN_REVOKED' ? c : undefined;
    });
    assert.equal(r.body.allowed, false);

    const b = await restCheck(sc, { token: B.token, action: 'read:customer_profile' });
    assert.equal(b.status, 200, b.text);
    assert.equal(b.body.allowed, false);
    assert.equal(b.body.reason_code, 'AGENT_UNKNOWN', b.text);
  });

  it('changes of B after the sidecar connected do not reach it; a new token for A with a NEW policy does', async function () {
    // B changes: a new policy, a revocation, an approval, an update of B's policy and of B itself.
    const bNewPolicy = await fx.createPolicy(api, { name: 'b later policy', capabilities: ['read:payroll'] });
    const bLater = await fx.issue(api, B.agentId, [bNewPolicy.policy_id]);
    await fx.revoke(api, bLater.token_id);
    B.revokedTokenIds.push(bLater.token_id);
    B.approvalIds.push(await approvalForB('after-connect'));
    const up = await api('PUT', `/api/policies/${B.policyId}`, {
      name: 'other-agent-b policy',
      capabilities: ['read:customer_profile'],
    });
    assert.equal(up.status, 200, up.text);
    assert.equal((await api('PATCH', `/api/agents/${B.agentId}`, { description: 'changed' })).status, 200);

    // Then A gets a token naming a policy the sidecar has never seen.
    const p = await fx.createPolicy(api, { name: 'a later policy', capabilities: ['create:support_ticket'] });
    a2PolicyId = p.policy_id;
    const before = await restCheck(sc, { token: A.token, action: 'create:support_ticket' });
    assert.equal(before.body.reason_code, 'CAPABILITY_NOT_GRANTED');
    const tok = await fx.issue(api, A.agentId, [a2PolicyId]);
    a2Token = tok.token;
    const ok = await waitFor('the new policy at the scoped sidecar', async () => {
      const c = await restCheck(sc, { token: a2Token, action: 'create:support_ticket' });
      return c.body.allowed === true ? c : undefined;
    });
    assert.equal(ok.body.reason_code, 'GRANTED');
    await waitSynced(cp, sc);
    const b = await restCheck(sc, { token: B.token, action: 'read:customer_profile' });
    assert.equal(b.body.reason_code, 'AGENT_UNKNOWN');
  });

  it("the replica file holds A's agent, policies and revocations and nothing of B", async function () {
    assert.equal(await sc.stop(), 0);
    const replica = LmdbReplica.open({ dataDir: path.join(scDir, 'replica') });
    try {
      const d = replica.dump();
      assert.deepEqual(d.agentIds, [A.agentId]);
      assert.deepEqual(new Set(d.policyIds), new Set([A.policyId, a2PolicyId]));
      assert.ok(d.revokedTokenIds.includes(A.revokedTokenId), JSON.stringify(d.revokedTokenIds));
      for (const id of B.revokedTokenIds) assert.equal(d.revokedTokenIds.includes(id), false, id);
      for (const id of [B.policyId, B.approvalPolicyId]) assert.equal(d.policyIds.includes(id), false, id);
      for (const id of B.approvalIds) assert.equal(d.approvalIds.includes(id), false, id);
      assert.deepEqual(d.approvalIds, []);
      assert.ok(d.keyIds.length >= 1, 'public keys are for everyone');
      assert.equal(replica.agent(B.agentId), undefined);
      assert.ok(replica.agent(A.agentId));
      assert.ok(replica.revision > 0);
    } finally {
      await replica.close();
    }
  });

  it('no line of sidecar or control-plane output contains a token', function () {
    fx.assertNoSecretsInLogs(cp.adminKey);
  });
});
