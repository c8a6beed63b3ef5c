/**
 * Revocation and policy-change receipts against real processes: a control plane and scoped
 * sidecars — one serving agent A (in scope of A's changes), one serving agent B (out of scope),
 * one that served A and was stopped (disconnected), and one serving A that is connected but
 * frozen with SIGSTOP (cannot apply). `POST /api/tokens/{id}/revoke?wait=…`, gRPC RevokeToken
 * wait_ms and `PUT /api/policies/{id}?wait=…` answer who applied the change; `GET /api/sidecars`
 * (and gRPC ListSidecars) list applied revision, lag and connection; the sync gauges show the
 * frozen sidecar behind. Each receipt is checked against the sidecars' actual answers.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import {
  AdminServiceClient,
  type ListSidecarsResponse,
  type RevokeTokenResponse,
} from '../../src/gen/act/v1/admin';
import { Decision, ReasonCode } from '../../src/gen/act/v1/decision';
import { ApprovalFixture, bearer, unary } from '../support/approval-helpers';
import type { Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import { grpcCheck, metric, restCheck, restClient, waitFor, waitSynced } from '../support/sidecar-helpers';

const CAPS = ['read:customer_profile', 'create:support_ticket'];

describe('receipts: revocations and policy changes wait for the sidecars in scope', function () {
  this.timeout(120_000);
  const fx = new ApprovalFixture();
  let cp: ControlPlaneProcess;
  let api: Rest;
  let admin: AdminServiceClient;
  let scA: SidecarProcess;
  let scB: SidecarProcess;
  let agentA: string;
  let agentB: string;
  let policyA: string;
  let policyB: string;
  /** Tokens of agent A, used up one per revocation. */
  const tokensA: { token: string; token_id: string }[] = [];
  let tokenB: string;
  let goneRevision = 0;

  const sidecars = async (includeDisconnected = false): Promise<{ list: any[]; revision: number }> => {
    const r = await api('GET', `/api/sidecars${includeDisconnected ? '?include_disconnected=true' : ''}`);
    assert.equal(r.status, 200, r.text);
    return { list: r.body.sidecars as any[], revision: r.body.revision as number };
  };
  const byId = (list: any[], id: string) => list.find((s) => s.sidecar_id === id);

  before(async function () {
    cp = await fx.controlPlane(fx.dir('rcpt-cp'));
    api = restClient(cp.url, cp.adminKey);
    admin = fx.track(new AdminServiceClient(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure()));
    agentA = (await fx.createAgent(api, { name: 'Agent A' })).agent_id;
    agentB = (await fx.createAgent(api, { name: 'Agent B' })).agent_id;
    policyA = (await fx.createPolicy(api, { name: 'A policy', capabilities: CAPS })).policy_id;
    policyB = (await fx.createPolicy(api, { name: 'B policy', capabilities: CAPS })).policy_id;
    for (let i = 0; i < 5; i++) tokensA.push(await fx.issue(api, agentA, [policyA]));
    tokenB = (await fx.issue(api, agentB, [policyB])).token;

    // A sidecar that served agent A, then stopped: known, not connected.
    const gone = await fx.sidecar(cp, fx.dir('rcpt-gone'), { sidecarId: 'rcpt-gone', agentIds: agentA });
    goneRevision = await waitSynced(cp, gone);
    await gone.stop();
    scA = await fx.sidecar(cp, fx.dir('rcpt-a'), { sidecarId: 'rcpt-a', agentIds: agentA });
    scB = await fx.sidecar(cp, fx.dir('rcpt-b'), { sidecarId: 'rcpt-b', agentIds: agentB });
    await waitSynced(cp, scA);
    await waitSynced(cp, scB);
    await waitFor('rcpt-gone listed as disconnected', async () => {
      const s = byId((await sidecars(true)).list, 'rcpt-gone');
      return s && s.connected === false ? s : undefined;
    });
  });

  after(async function () {
    await fx.teardown();
  });

  it('revoke?wait=5s answers 1 of 1: the connected sidecar in scope applied it (and denies the token), the others are not counted', async function () {
    const t = tokensA.shift()!;
    const r = await api('POST', `/api/tokens/${t.token_id}/revoke?wait=5s`, { reason: 'leaked in a log' });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.body.revoked_token_ids, [t.token_id]);
    const p = r.body.propagation;
    assert.ok(p, r.text);
    assert.equal(p.revision, r.body.revision);
    assert.equal(p.applied, 1, r.text);
    assert.equal(p.total, 1, 'rcpt-b serves another agent and rcpt-gone is disconnected: neither counts');
    assert.deepEqual(p.pending_sidecar_ids ?? [], []);
    assert.equal(p.complete, true);
    assert.ok(Number.isInteger(p.waited_ms) && p.waited_ms >= 0 && p.waited_ms <= 5000, String(p.waited_ms));
    // The receipt is true: the sidecar in scope already denies the token, with no wait here.
    const c = await restCheck(scA, { token: t.token, action: 'read:customer_profile' });
    assert.equal(c.body.reason_code, 'TOKEN_REVOKED', c.text);
    // Without wait there is no receipt.
    const plain = await api('POST', `/api/tokens/${tokensA.shift()!.token_id}/revoke`, {});
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.body.propagation, undefined);
    // A bad wait is a clear error and revokes nothing.
    const t2 = tokensA[0]!;
    const bad = await api('POST', `/api/tokens/${t2.token_id}/revoke?wait=forever`, {});
    assert.equal(bad.status, 400, bad.text);
    const still = await restCheck(scA, { token: t2.token, action: 'read:customer_profile' });
    assert.equal(still.body.decision, 'ALLOW', still.text);
  });

  it('gRPC RevokeToken with wait_ms answers the same receipt', async function () {
    const t = tokensA.shift()!;
    const r = await unary<RevokeTokenResponse>(
      admin,
      'revokeToken',
      { token_id: t.token_id, reason: 'rotated', wait_ms: 5000 },
      bearer(cp.adminKey),
    );
    assert.deepEqual(r.revoked_token_ids, [t.token_id]);
    assert.ok(r.propagation);
    assert.equal(r.propagation.revision, r.revision);
    assert.equal(r.propagation.applied, 1);
    assert.equal(r.propagation.total, 1);
    assert.deepEqual(r.propagation.pending_sidecar_ids, []);
    assert.equal(r.propagation.complete, true);
    const c = await grpcCheck(fx.decisionClient(`127.0.0.1:${scA.grpcPort}`), {
      token: t.token,
      action: 'read:customer_profile',
    });
    assert.equal(c.reason_code, ReasonCode.TOKEN_REVOKED);
  });

  it('GET /api/sidecars (and gRPC ListSidecars) list scope, applied revision, lag and connection', async function () {
    await waitSynced(cp, scA);
    await waitSynced(cp, scB);
    const { list, revision } = await waitFor('both live sidecars at the current revision', async () => {
      const s = await sidecars();
      const a = byId(s.list, 'rcpt-a');
      const b = byId(s.list, 'rcpt-b');
      return a?.applied_revision === s.revision && b?.applied_revision === s.revision ? s : undefined;
    });
    assert.equal(byId(list, 'rcpt-gone'), undefined, 'a disconnected sidecar is not listed by default');
    const a = byId(list, 'rcpt-a');
    assert.deepEqual(a.agent_ids, [agentA]);
    assert.equal(a.connected, true);
    assert.equal(a.lag_revisions ?? 0, 0);
    assert.ok(Date.now() - Date.parse(a.last_contact) < 60_000, a.last_contact);
    assert.equal(a.api_key_id !== undefined, true);
    assert.deepEqual(byId(list, 'rcpt-b').agent_ids, [agentB]);

    const all = await sidecars(true);
    const gone = byId(all.list, 'rcpt-gone');
    assert.ok(gone, JSON.stringify(all.list));
    assert.equal(gone.connected, false);
    assert.equal(gone.applied_revision, goneRevision);
    assert.equal(gone.lag_revisions, all.revision - goneRevision);
    assert.ok(gone.lag_revisions > 0);

    const g = await unary<ListSidecarsResponse>(
      admin,
      'listSidecars',
      { include_disconnected: true },
      bearer(cp.adminKey),
    );
    assert.ok(g.revision >= revision);
    const ga = g.sidecars.find((s) => s.sidecar_id === 'rcpt-a');
    assert.ok(ga);
    assert.equal(ga.connected, true);
    assert.deepEqual(ga.agent_ids, [agentA]);
    assert.equal(g.sidecars.find((s) => s.sidecar_id === 'rcpt-gone')?.connected, false);
    // Only admins see the fleet.
    const auditor = await api('POST', '/api/api-keys', { name: 'rcpt-auditor', role: 'auditor' });
    const denied = await restClient(cp.url, auditor.body.secret)('GET', '/api/sidecars');
    assert.equal(denied.status, 403, denied.text);
  });

  it('PUT /api/policies/{id}?wait=5s answers which sidecars holding the policy applied it; they enforce the new version', async function () {
    const t = tokensA[0]!;
    const before = await restCheck(scA, { token: t.token, action: 'create:support_ticket' });
    assert.equal(before.body.decision, 'ALLOW', before.text);
    const r = await api('PUT', `/api/policies/${policyA}?wait=5s`, {
      name: 'A policy',
      capabilities: ['read:customer_profile'],
    });
    assert.equal(r.status, 200, r.text);
    const p = r.body.propagation;
    assert.ok(p, r.text);
    assert.equal(p.applied, 1, r.text);
    assert.equal(p.total, 1, 'rcpt-b holds only B policy; rcpt-gone is disconnected');
    assert.equal(p.complete, true);
    const after = await restCheck(scA, { token: t.token, action: 'create:support_ticket' });
    assert.equal(after.body.reason_code, 'CAPABILITY_NOT_GRANTED', after.text);
    // B's policy did not change and B's sidecar still allows.
    const b = await restCheck(scB, { token: tokenB, action: 'create:support_ticket' });
    assert.equal(b.body.decision, 'ALLOW', b.text);
  });

  it('a connected sidecar that cannot apply (SIGSTOP) is named in pending_sidecar_ids; listings and gauges show it behind until it resumes', async function () {
    const stuck = await fx.sidecar(cp, fx.dir('rcpt-stuck'), { sidecarId: 'rcpt-stuck', agentIds: agentA });
    await waitSynced(cp, stuck);
    await waitFor('every sidecar caught up', async () =>
      (await metric(cp.url, 'act_sync_sidecars_behind')) === 0 ? true : undefined,
    );
    const t = tokensA.shift()!;
    const live = tokensA[0]!;
    // Stopped, it keeps its connection (the kernel holds the socket) but applies nothing.
    // Everything below must happen within the control plane's 10 s liveness window.
    stuck.child.kill('SIGSTOP');
    try {
      const r = await api('POST', `/api/tokens/${t.token_id}/revoke?wait=2s`, {});
      assert.equal(r.status, 200, r.text);
      const p = r.body.propagation;
      assert.equal(p.revision, r.body.revision);
      assert.equal(p.total, 2, r.text);
      assert.equal(p.applied, 1, r.text);
      assert.deepEqual(p.pending_sidecar_ids, ['rcpt-stuck']);
      assert.equal(p.complete, false);
      assert.ok(p.waited_ms >= 2000, `waited the whole bound: ${p.waited_ms}`);
      const c = await restCheck(scA, { token: t.token, action: 'read:customer_profile' });
      assert.equal(c.body.reason_code, 'TOKEN_REVOKED', 'the sidecar that applied it enforces it');

      const { list, revision } = await sidecars();
      const s = byId(list, 'rcpt-stuck');
      assert.ok(s, JSON.stringify(list));
      assert.equal(s.connected, true);
      assert.ok(s.applied_revision < r.body.revision, JSON.stringify(s));
      assert.equal(s.lag_revisions, revision - s.applied_revision);
      assert.ok(s.lag_revisions >= 1);
      await waitFor('the gauges show exactly the frozen sidecar behind', async () =>
        (await metric(cp.url, 'act_sync_sidecars_behind')) === 1 ? true : undefined,
      );
      assert.ok((await metric(cp.url, 'act_sync_sidecar_max_lag_revisions'))! >= 1);

      // A policy change waits the same way and names the same sidecar.
      const u = await api('PUT', `/api/policies/${policyA}?wait=2s`, {
        name: 'A policy',
        capabilities: ['read:customer_profile', 'read:order_history'],
      });
      assert.equal(u.status, 200, u.text);
      assert.equal(u.body.propagation.total, 2, u.text);
      assert.equal(u.body.propagation.applied, 1, u.text);
      assert.deepEqual(u.body.propagation.pending_sidecar_ids, ['rcpt-stuck']);
      assert.equal(u.body.propagation.complete, false);
      const ok = await restCheck(scA, { token: live.token, action: 'read:order_history' });
      assert.equal(ok.body.decision, 'ALLOW', ok.text);
      assert.ok((await metric(cp.url, 'act_sync_sidecar_max_lag_revisions'))! >= 2);
    } finally {
      stuck.child.kill('SIGCONT');
    }
    // Resumed, it catches up: the receipt for the latest revision completes, the gauges clear.
    const rev = (await sidecars()).revision;
    const done = await api('GET', `/api/sidecars/propagation?revision=${rev}&agent_id=${agentA}&wait=10s`);
    assert.equal(done.status, 200, done.text);
    assert.equal(done.body.complete, true, done.text);
    assert.equal(done.body.applied, 2);
    assert.equal(done.body.total, 2);
    const c = await restCheck(stuck, { token: t.token, action: 'read:customer_profile' });
    assert.equal(c.body.reason_code, 'TOKEN_REVOKED', c.text);
    await waitFor('no sidecar behind', async () =>
      (await metric(cp.url, 'act_sync_sidecars_behind')) === 0 ? true : undefined,
    );
    assert.equal(await metric(cp.url, 'act_sync_sidecar_max_lag_revisions'), 0);
    const g = await grpcCheck(fx.decisionClient(`127.0.0.1:${stuck.grpcPort}`), {
      token: live.token,
      action: 'read:order_history',
    });
    assert.equal(g.decision, Decision.ALLOW, g.reason);
  });

  it('a sidecar that lost its stream without stopping (SIGKILL) is reported in disconnected_sidecar_ids and keeps the receipt incomplete; a stopped one is not', async function () {
    const lost = await fx.sidecar(cp, fx.dir('rcpt-lost'), { sidecarId: 'rcpt-lost', agentIds: agentA });
    await waitSynced(cp, lost);
    // Killed: the control plane sees the connection drop, not the sidecar ending its stream —
    // as after a partition, when the sidecar may still be deciding from its replica.
    await lost.kill();
    await waitFor('the control plane noticed', async () => {
      const s = byId((await sidecars(true)).list, 'rcpt-lost');
      return s && !s.connected ? true : undefined;
    });
    const t = tokensA.shift()!;
    const r = await api('POST', `/api/tokens/${t.token_id}/revoke?wait=1s`, {});
    assert.equal(r.status, 200, r.text);
    const p = r.body.propagation;
    assert.deepEqual(p.disconnected_sidecar_ids, ['rcpt-lost'], r.text);
    assert.equal(p.complete, false, 'a cut-off sidecar in scope may still allow the token');
    assert.ok(!p.pending_sidecar_ids.includes('rcpt-lost'), 'not counted among the connected');
    // The sidecar stopped cleanly before the tests (SIGTERM ends its stream) is not reported.
    assert.ok(!p.disconnected_sidecar_ids.includes('rcpt-gone'), r.text);
  });
});
