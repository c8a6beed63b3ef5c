/**
 * Approval expiry against real processes: a control plane started with `--approval-ttl 2s`
 * (and a webhook receiver), a sidecar. A pending approval becomes EXPIRED — waiters at both
 * points see it, decided — and can no longer be approved (409, saying why); a grant nobody used
 * in time cannot be used (the check asks again and says it expired); the expiry is notified.
 */
import assert from 'node:assert/strict';
import { ApprovalStatus, Decision } from '../../src/gen/act/v1/decision';
import {
  ApprovalFixture,
  BILLING_POLICY,
  WebhookReceiver,
  collectWait,
  createApiKey,
  type WaitResult,
} from '../support/approval-helpers';
import type { Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import { grpcCheck, restCheck, restClient, sleep, waitFor, waitSynced } from '../support/sidecar-helpers';

const TTL_MS = 2_000;
const SECRET = 'expiry-webhook-secret-0123456789';

describe('approvals: expiry with --approval-ttl 2s (control plane + sidecar)', function () {
  this.timeout(120_000);
  const fx = new ApprovalFixture();
  const receiver = new WebhookReceiver(SECRET);
  let cp: ControlPlaneProcess;
  let sc: SidecarProcess;
  let api: Rest;
  let approverApi: Rest;
  let token: string;
  const big = () => ({ token, action: 'create:transaction', resource: 'acct_1', context: { amount: 9000 } });

  /** Asked in `before`: one left pending, one approved at once and never used. */
  let pendingId: string;
  let grantedId: string;
  let pendingExpiresAt: string;
  let waitAtSidecar: Promise<WaitResult>;
  let pollAtControlPlane: Promise<{ status: number; body: any; text: string }>;

  before(async function () {
    await receiver.start();
    cp = await fx.controlPlane(fx.dir('expiry-cp'), {}, [
      '--approval-ttl',
      '2s',
      '--approval-webhook-url',
      receiver.url,
      '--approval-webhook-secret',
      SECRET,
    ]);
    api = restClient(cp.url, cp.adminKey);
    approverApi = restClient(cp.url, (await createApiKey(api, 'night-shift', 'approver')).secret);
    const agent = await fx.createAgent(api, { name: 'Billing Agent' });
    const policy = await fx.createPolicy(api, BILLING_POLICY);
    token = (await fx.issue(api, agent.agent_id, [policy.policy_id])).token;
    sc = await fx.sidecar(cp, fx.dir('expiry-sc'), { sidecarId: 'expiry-sc' });
    await waitSynced(cp, sc);

    const p = await restCheck(sc, big());
    assert.equal(p.body.decision, 'APPROVAL_REQUIRED', p.text);
    pendingId = p.body.approval_id;
    const g = await restCheck(sc, { ...big(), resource: 'acct_2' });
    assert.equal(g.body.decision, 'APPROVAL_REQUIRED', g.text);
    grantedId = g.body.approval_id;
    const ok = await approverApi('POST', `/api/approvals/${grantedId}/approve`, {});
    assert.equal(ok.status, 200, ok.text);
    const a = await approverApi('GET', `/api/approvals/${pendingId}`);
    pendingExpiresAt = a.body.expires_at;
    assert.equal(Date.parse(a.body.expires_at) - Date.parse(a.body.created_at), TTL_MS);
    // Both waiters start now, well before the deadline, and outlast it.
    waitAtSidecar = collectWait(fx.decisionClient(`127.0.0.1:${sc.grpcPort}`), {
      approval_id: pendingId,
      token,
      timeout_ms: 30_000,
    });
    pollAtControlPlane = approverApi('GET', `/api/approvals/${pendingId}/wait?timeout=30s`);
  });

  after(async function () {
    await fx.teardown();
    await receiver.stop();
  });

  it('a pending approval becomes EXPIRED: the waiters at the sidecar (gRPC) and the control plane (REST) see it, decided', async function () {
    const g = await waitAtSidecar;
    assert.equal(g.error, undefined, g.error?.details);
    assert.deepEqual(
      g.updates.map((u) => [ApprovalStatus[u.status], u.decided]),
      [
        ['PENDING', false],
        ['EXPIRED', true],
      ],
    );
    assert.match(g.updates[1]!.reason, /expired/);
    const r = await pollAtControlPlane;
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.approval_id, pendingId);
    assert.equal(r.body.status, 'EXPIRED');
    assert.equal(r.body.decided, true);
    // Not before its deadline (the stream ended, so the deadline has passed by now).
    assert.ok(Date.now() >= Date.parse(pendingExpiresAt));
  });

  it('an expired approval cannot be approved (409 with the reason) and presenting it asks again', async function () {
    const late = await approverApi('POST', `/api/approvals/${pendingId}/approve`, { comment: 'sorry, late' });
    assert.equal(late.status, 409, late.text);
    assert.match(late.text, /expired|EXPIRED/);
    assert.match(late.text, new RegExp(pendingId));
    const denyLate = await approverApi('POST', `/api/approvals/${pendingId}/deny`, {});
    assert.equal(denyLate.status, 409, denyLate.text);
    const a = await approverApi('GET', `/api/approvals/${pendingId}`);
    assert.equal(a.body.status, 'EXPIRED', a.text);
    assert.equal(a.body.resolved_by, undefined, 'nobody resolved it');
    await waitSynced(cp, sc);
    const again = await grpcCheck(fx.decisionClient(`127.0.0.1:${sc.grpcPort}`), {
      ...big(),
      approval_id: pendingId,
    });
    assert.equal(again.decision, Decision.APPROVAL_REQUIRED, again.reason);
    assert.notEqual(again.approval_id, pendingId);
  });

  it('a grant not used before its deadline cannot be used: the check asks again and says it expired', async function () {
    const a = await approverApi('GET', `/api/approvals/${grantedId}`);
    const deadline = Date.parse(a.body.expires_at);
    await sleep(Math.max(0, deadline - Date.now() + 100));
    // Waiters right after the deadline (the control plane's sweep may not have run yet) are
    // not told to go ahead with it.
    for (const url of [sc.url, cp.url]) {
      const w = await restClient(url, token)('GET', `/api/approvals/${grantedId}/wait?timeout=5s`);
      assert.equal(w.status, 200, w.text);
      assert.equal(w.body.status, 'EXPIRED', `${url}: ${w.text}`);
      assert.equal(w.body.decided, true);
      assert.doesNotMatch(w.body.reason, /repeat exactly the same check/);
    }
    const req = { ...big(), resource: 'acct_2', approval_id: grantedId };
    const atSc = await restCheck(sc, req);
    assert.equal(atSc.body.allowed, false, atSc.text);
    assert.equal(atSc.body.decision, 'APPROVAL_REQUIRED', atSc.text);
    assert.match(
      atSc.body.reason,
      new RegExp(
        `approval ${grantedId} expired at ${a.body.expires_at.replace(/\.\d+Z$/, '')}.*so this is a new request`,
      ),
    );
    assert.notEqual(atSc.body.approval_id, grantedId);
    const atCp = await restClient(cp.url)('POST', '/api/enforcement/check', req, {
      authorization: `Bearer ${token}`,
    });
    assert.equal(atCp.body.decision, 'APPROVAL_REQUIRED', atCp.text);
    assert.match(atCp.body.reason, /expired at/);
    // The control plane moves it to EXPIRED (its sweep, or the refused use), and it stays unusable.
    await waitFor('the grant EXPIRED at the control plane', async () => {
      const r = await approverApi('GET', `/api/approvals/${grantedId}`);
      return r.body.status === 'EXPIRED' ? true : undefined;
    });
    const w = await restClient(sc.url, token)('GET', `/api/approvals/${grantedId}/wait?timeout=5s`);
    assert.equal(w.status, 200, w.text);
    assert.equal(w.body.decided, true);
    assert.equal(w.body.status, 'EXPIRED', 'a waiter is not told to use an expired grant');
  });

  it('each expiry is notified once, signed (approval.expired), and an expired request is never notified as approved', async function () {
    for (const id of [pendingId, grantedId]) {
      const d = await receiver.delivered('approval.expired', id);
      assert.ok(receiver.signatureValid(d), 'X-ACT-Signature verifies');
      assert.equal(d.body.event, 'approval.expired');
      assert.equal(d.body.approval.status, 'EXPIRED');
      assert.equal(receiver.of('approval.expired', id).length, 1, receiver.summary());
    }
    assert.equal(receiver.of('approval.approved', pendingId).length, 0);
  });
});
