/**
 * The seed's DevOps use case with an agent that waits for its approval instead of polling,
 * against real processes (a control plane and a sidecar): staging deploys are allowed,
 * production deploys need a human (`context.environment == "production"`). The agent waits on
 * DecisionService.WaitForApproval (gRPC) or the REST long-poll `GET /api/approvals/{id}/wait`,
 * at the sidecar and at the control plane, while an approver decides over REST; a wait whose
 * deadline passes answers PENDING, undecided; only the token that asked may wait.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { ApprovalStatus, Decision, ReasonCode } from '../../src/gen/act/v1/decision';
import type { DecisionServiceClient } from '../../src/gen/act/v1/decision';
import {
  ApprovalFixture,
  DEPLOY_POLICY,
  bearer,
  collectWait,
  createApiKey,
  settled,
} from '../support/approval-helpers';
import type { Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import { grpcCheck, restCheck, restClient, sleep, waitSynced } from '../support/sidecar-helpers';

describe('approvals: waiting for a production deploy (control plane + sidecar)', function () {
  this.timeout(120_000);
  const fx = new ApprovalFixture();
  let cp: ControlPlaneProcess;
  let sc: SidecarProcess;
  let api: Rest;
  let approverApi: Rest;
  let approver: { secret: string; name: string };
  let token: string;
  let otherToken: string;
  let atSidecar: DecisionServiceClient;
  let atControlPlane: DecisionServiceClient;

  const production = () => ({
    token,
    action: 'deploy:service',
    resource: 'checkout',
    context: { environment: 'production', version: 'v2.4.1' },
  });

  /** A central check at the control plane with the token as its own bearer. */
  const centralCheck = (body: Record<string, unknown>) =>
    restClient(cp.url)('POST', '/api/enforcement/check', body, {
      authorization: `Bearer ${String(body.token)}`,
    });

  /** A production deploy asked at the sidecar: its approval id. */
  async function askAtSidecar(): Promise<string> {
    const r = await restCheck(sc, production());
    assert.equal(r.body.decision, 'APPROVAL_REQUIRED', r.text);
    return r.body.approval_id as string;
  }

  before(async function () {
    cp = await fx.controlPlane(fx.dir('wait-cp'));
    api = restClient(cp.url, cp.adminKey);
    approver = await createApiKey(api, 'release-manager', 'approver');
    approverApi = restClient(cp.url, approver.secret);
    const ci = await fx.createAgent(api, { name: 'CI/CD Agent' });
    const policy = await fx.createPolicy(api, DEPLOY_POLICY);
    token = (await fx.issue(api, ci.agent_id, [policy.policy_id])).token;
    const other = await fx.createAgent(api, { name: 'Another Agent' });
    otherToken = (await fx.issue(api, other.agent_id, [policy.policy_id])).token;
    sc = await fx.sidecar(cp, fx.dir('wait-sc'), { sidecarId: 'deploy-sc' });
    await waitSynced(cp, sc);
    atSidecar = fx.decisionClient(`127.0.0.1:${sc.grpcPort}`);
    atControlPlane = fx.decisionClient(`127.0.0.1:${cp.grpcPort}`);
  });

  after(async function () {
    await fx.teardown();
  });

  it('staging is allowed; production answers APPROVAL_REQUIRED with an approval id at once', async function () {
    const staging = await grpcCheck(atSidecar, { ...production(), context: { environment: 'staging' } });
    assert.equal(staging.decision, Decision.ALLOW, staging.reason);
    const prod = await grpcCheck(atSidecar, production());
    assert.equal(prod.decision, Decision.APPROVAL_REQUIRED);
    assert.equal(prod.reason_code, ReasonCode.APPROVAL_REQUIRED_BY_POLICY);
    assert.match(prod.reason, /production deploys/);
    assert.match(prod.approval_id, /^approval_/);
  });

  it('gRPC WaitForApproval at the sidecar shows PENDING, then APPROVED (decided) once approved over REST; the check is then allowed once', async function () {
    const id = await askAtSidecar();
    const res = await collectWait(
      atSidecar,
      { approval_id: id, token, timeout_ms: 30_000 },
      {
        // Approve only once the agent is seen waiting.
        onUpdate: async (u, n) => {
          if (n !== 0) return;
          assert.equal(u.status, ApprovalStatus.PENDING);
          const r = await approverApi('POST', `/api/approvals/${id}/approve`, { comment: 'CAB-1234 ok' });
          assert.equal(r.status, 200, r.text);
        },
      },
    );
    assert.equal(res.error, undefined, res.error?.details);
    assert.deepEqual(
      res.updates.map((u) => [ApprovalStatus[u.status], u.decided]),
      [
        ['PENDING', false],
        ['APPROVED', true],
      ],
    );
    const done = res.updates[1]!;
    assert.equal(done.approval_id, id);
    assert.equal(done.resolved_by, 'release-manager');
    assert.equal(done.comment, 'CAB-1234 ok');
    assert.match(done.reason, /repeat exactly the same check/);
    assert.ok(Date.parse(done.expires_at) > Date.now());

    // APPROVED on this point's stream means this point can honour it: no polling needed.
    const allowed = await grpcCheck(atSidecar, { ...production(), approval_id: id });
    assert.equal(allowed.decision, Decision.ALLOW, allowed.reason);
    const again = await grpcCheck(atSidecar, { ...production(), approval_id: id });
    assert.equal(again.decision, Decision.APPROVAL_REQUIRED, again.reason);
    assert.match(again.reason, /already used/);

    // A wait on a used approval answers at once that it is decided.
    const used = await collectWait(atSidecar, { approval_id: id, token, timeout_ms: 30_000 });
    assert.equal(used.error, undefined);
    assert.deepEqual(
      used.updates.map((u) => [ApprovalStatus[u.status], u.decided]),
      [['USED', true]],
    );
  });

  it('the REST long-poll at the sidecar holds until the approval, then answers APPROVED', async function () {
    const id = await askAtSidecar();
    const poll = restClient(sc.url, token)('GET', `/api/approvals/${id}/wait?timeout=30s`);
    const isDone = settled(poll);
    await sleep(300);
    assert.equal(isDone(), false, 'the long-poll waits while the approval is pending');
    const r = await approverApi('POST', `/api/approvals/${id}/approve`, {});
    assert.equal(r.status, 200, r.text);
    const w = await poll;
    assert.equal(w.status, 200, w.text);
    assert.equal(w.body.approval_id, id);
    assert.equal(w.body.status, 'APPROVED');
    assert.equal(w.body.decided, true);
    assert.equal(w.body.resolved_by, 'release-manager');
    const allowed = await restCheck(sc, { ...production(), approval_id: id });
    assert.equal(allowed.body.decision, 'ALLOW', allowed.text);
  });

  it('at the control plane: a REST long-poll (agent token or approver key) and gRPC WaitForApproval see the approval; the central check is allowed once', async function () {
    const ask = await centralCheck(production());
    assert.equal(ask.body.decision, 'APPROVAL_REQUIRED', ask.text);
    const id = ask.body.approval_id as string;
    const byAgent = restClient(cp.url, token)('GET', `/api/approvals/${id}/wait?timeout=30s`);
    const byApprover = approverApi('GET', `/api/approvals/${id}/wait?timeout=30s`);
    const agentDone = settled(byAgent);
    const approverDone = settled(byApprover);
    const res = await collectWait(
      atControlPlane,
      { approval_id: id, token, timeout_ms: 30_000 },
      {
        onUpdate: async (_u, n) => {
          if (n !== 0) return;
          await sleep(200);
          assert.equal(agentDone() || approverDone(), false, 'the long-polls wait while pending');
          const r = await approverApi('POST', `/api/approvals/${id}/approve`, {});
          assert.equal(r.status, 200, r.text);
        },
      },
    );
    assert.equal(res.error, undefined, res.error?.details);
    assert.deepEqual(
      res.updates.map((u) => [ApprovalStatus[u.status], u.decided]),
      [
        ['PENDING', false],
        ['APPROVED', true],
      ],
    );
    const a = await byAgent;
    assert.equal(a.status, 200, a.text);
    assert.equal(a.body.status, 'APPROVED');
    assert.equal(a.body.decided, true);
    // The agent gets the state only; the approver the whole approval.
    assert.equal(a.body.context, undefined);
    const b = await byApprover;
    assert.equal(b.status, 200, b.text);
    assert.equal(b.body.status, 'APPROVED');
    assert.equal(b.body.decided, true);
    assert.equal(b.body.action, 'deploy:service');
    assert.deepEqual(b.body.context, production().context);

    const allowed = await centralCheck({ ...production(), approval_id: id });
    assert.equal(allowed.body.decision, 'ALLOW', allowed.text);
    // Used at the control plane: the sidecar refuses it too.
    const replay = await restCheck(sc, { ...production(), approval_id: id });
    assert.equal(replay.body.decision, 'APPROVAL_REQUIRED', replay.text);
    assert.match(replay.body.reason, /already used/);
  });

  it('a wait whose deadline passes answers PENDING with decided=false (REST at both points, gRPC at the sidecar)', async function () {
    const id = await askAtSidecar();
    const atSc = await restClient(sc.url, token)('GET', `/api/approvals/${id}/wait?timeout=1s`);
    assert.equal(atSc.status, 200, atSc.text);
    assert.equal(atSc.body.status, 'PENDING');
    assert.equal(atSc.body.decided, false);
    assert.match(atSc.body.reason, /wait ended/);
    const atCp = await restClient(cp.url, token)('GET', `/api/approvals/${id}/wait?timeout=500ms`);
    assert.equal(atCp.status, 200, atCp.text);
    assert.equal(atCp.body.status, 'PENDING');
    assert.equal(atCp.body.decided, false);
    const g = await collectWait(atSidecar, { approval_id: id, token, timeout_ms: 1000 });
    assert.equal(g.error, undefined, g.error?.details);
    assert.ok(g.updates.length >= 1);
    const last = g.updates[g.updates.length - 1]!;
    assert.equal(last.status, ApprovalStatus.PENDING);
    assert.equal(last.decided, false);
    assert.ok(g.updates.every((u) => !u.decided));
    // Nobody decided anything by waiting.
    const a = await approverApi('GET', `/api/approvals/${id}`);
    assert.equal(a.body.status, 'PENDING');
    // A bad bound is a clear error, not a wait.
    const bad = await restClient(sc.url, token)('GET', `/api/approvals/${id}/wait?timeout=forever`);
    assert.equal(bad.status, 400, bad.text);
    const tooLong = await restClient(cp.url, token)('GET', `/api/approvals/${id}/wait?timeout=16m`);
    assert.equal(tooLong.status, 400, tooLong.text);
  });

  it("another agent's token, a forged token, no credential or an auditor key may not wait on it", async function () {
    const id = await askAtSidecar();
    // Another agent's valid token: refused before any state is shown.
    const scOther = await restClient(sc.url, otherToken)('GET', `/api/approvals/${id}/wait?timeout=1s`);
    assert.equal(scOther.status, 403, scOther.text);
    assert.equal(scOther.body?.status, undefined, 'no approval state leaks');
    const cpOther = await restClient(cp.url, otherToken)('GET', `/api/approvals/${id}/wait?timeout=1s`);
    assert.equal(cpOther.status, 403, cpOther.text);
    for (const client of [atSidecar, atControlPlane]) {
      const g = await collectWait(client, { approval_id: id, token: otherToken, timeout_ms: 1000 });
      assert.equal(g.error?.code, grpc.status.PERMISSION_DENIED, g.error?.details);
      assert.equal(g.updates.length, 0, 'no update before the refusal');
    }
    // A token whose signature was tampered with.
    const forged = `${token.slice(0, -4)}${token.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
    const f1 = await restClient(sc.url, forged)('GET', `/api/approvals/${id}/wait?timeout=1s`);
    assert.equal(f1.status, 403, f1.text);
    const f2 = await collectWait(atControlPlane, { approval_id: id, token: forged, timeout_ms: 1000 });
    assert.equal(f2.error?.code, grpc.status.PERMISSION_DENIED, f2.error?.details);
    // No credential at all; an API key without the approver role.
    const none = await restClient(sc.url)('GET', `/api/approvals/${id}/wait?timeout=1s`);
    assert.equal(none.status, 401, none.text);
    const anon = await restClient(cp.url)('GET', `/api/approvals/${id}/wait?timeout=1s`);
    assert.equal(anon.status, 401, anon.text);
    const auditor = await createApiKey(api, 'deploy-auditor', 'auditor');
    const byAuditor = await restClient(cp.url, auditor.secret)('GET', `/api/approvals/${id}/wait?timeout=1s`);
    assert.equal(byAuditor.status, 403, byAuditor.text);
    const g = await collectWait(
      atControlPlane,
      { approval_id: id, token: '', timeout_ms: 1000 },
      { md: bearer(auditor.secret) },
    );
    assert.equal(g.error?.code, grpc.status.PERMISSION_DENIED, g.error?.details);
    // An id nobody asked for.
    const unknown = await restClient(sc.url, token)(
      'GET',
      '/api/approvals/approval_0000000000zzzz/wait?timeout=1s',
    );
    assert.equal(unknown.status, 404, unknown.text);
    // The owner still may.
    const mine = await restClient(sc.url, token)('GET', `/api/approvals/${id}/wait?timeout=200ms`);
    assert.equal(mine.status, 200, mine.text);
    assert.equal(mine.body.status, 'PENDING');
  });

  it('a denial ends the wait as DENIED (decided); the check is denied and the denial is final', async function () {
    const id = await askAtSidecar();
    const res = await collectWait(
      atSidecar,
      { approval_id: id, token, timeout_ms: 30_000 },
      {
        onUpdate: async (_u, n) => {
          if (n !== 0) return;
          const r = await approverApi('POST', `/api/approvals/${id}/deny`, { comment: 'change freeze' });
          assert.equal(r.status, 200, r.text);
        },
      },
    );
    assert.equal(res.error, undefined, res.error?.details);
    assert.deepEqual(
      res.updates.map((u) => [ApprovalStatus[u.status], u.decided]),
      [
        ['PENDING', false],
        ['DENIED', true],
      ],
    );
    assert.equal(res.updates[1]!.comment, 'change freeze');
    const denied = await grpcCheck(atSidecar, { ...production(), approval_id: id });
    assert.equal(denied.decision, Decision.DENY);
    assert.equal(denied.reason_code, ReasonCode.APPROVAL_DENIED);
    const late = await approverApi('POST', `/api/approvals/${id}/approve`, {});
    assert.equal(late.status, 409, late.text);
    assert.match(late.body.error?.message ?? late.text, /DENIED/);
    const still = await grpcCheck(atSidecar, { ...production(), approval_id: id });
    assert.equal(still.reason_code, ReasonCode.APPROVAL_DENIED);
  });
});
