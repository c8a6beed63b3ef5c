/**
 * Outbound approval notifications against real processes: a control plane started with
 * `--approval-webhook-url` (a local HTTP receiver) and `--approval-webhook-secret`, and a
 * sidecar. The receiver gets `approval.requested`, `approval.approved` and `approval.denied`,
 * each signed (X-ACT-Signature = HMAC-SHA256 of "<X-ACT-Timestamp>.<body>", checked here); a
 * receiver that refuses gets the same delivery (same X-ACT-Delivery) again until it takes it; a
 * receiver that is down or never answers blocks no check and loses no notification.
 */
import assert from 'node:assert/strict';
import {
  ApprovalFixture,
  BILLING_POLICY,
  WebhookReceiver,
  createApiKey,
  expectedRequestHash,
  type Delivery,
} from '../support/approval-helpers';
import type { Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import { restCheck, restClient, waitSynced } from '../support/sidecar-helpers';

const SECRET = 'notify-secret-0123456789abcdef';

describe('approvals: signed webhook notifications (control plane + sidecar)', function () {
  this.timeout(120_000);
  const fx = new ApprovalFixture();
  const receiver = new WebhookReceiver(SECRET);
  let cp: ControlPlaneProcess;
  let sc: SidecarProcess;
  let api: Rest;
  let approverApi: Rest;
  let token: string;
  let agentId: string;
  let n = 0;

  /** A $5,000 transfer asked at the sidecar (a fresh resource each time): the check's answer. */
  async function ask(): Promise<{ id: string; body: any }> {
    n++;
    const r = await restCheck(sc, {
      token,
      action: 'create:transaction',
      resource: `acct_${n}`,
      context: { amount: 5000, invoice: `INV-${n}` },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.decision, 'APPROVAL_REQUIRED', r.text);
    return { id: r.body.approval_id as string, body: r.body };
  }

  function assertSigned(d: Delivery, event: string): void {
    assert.equal(d.headers['content-type'], 'application/json');
    assert.equal(d.headers['x-act-event'], event);
    assert.match(String(d.headers['x-act-delivery']), /^\S{8,}$/);
    const ts = Number(d.headers['x-act-timestamp']);
    assert.ok(Math.abs(ts - Date.now() / 1000) < 300, `X-ACT-Timestamp ${ts} is the current time`);
    assert.ok(
      receiver.signatureValid(d),
      `X-ACT-Signature verifies: ${String(d.headers['x-act-signature'])}`,
    );
    // Our check is not vacuous: another key or another body does not verify.
    assert.equal(receiver.signatureValid(d, 'another-secret'), false);
    assert.equal(receiver.signatureValid({ ...d, raw: `${d.raw} ` }), false);
    assert.equal(d.body.event, event);
    assert.ok(!Number.isNaN(Date.parse(d.body.sent_at)));
    assert.equal(d.raw.includes(token), false, 'the token is never sent');
  }

  before(async function () {
    await receiver.start();
    cp = await fx.controlPlane(fx.dir('notify-cp'), {}, [
      '--approval-webhook-url',
      receiver.url,
      '--approval-webhook-secret',
      SECRET,
    ]);
    api = restClient(cp.url, cp.adminKey);
    approverApi = restClient(cp.url, (await createApiKey(api, 'payments-lead', 'approver')).secret);
    const agent = await fx.createAgent(api, { name: 'Billing Agent' });
    agentId = agent.agent_id;
    const policy = await fx.createPolicy(api, BILLING_POLICY);
    const tok = await fx.issue(api, agentId, [policy.policy_id]);
    token = tok.token;
    sc = await fx.sidecar(cp, fx.dir('notify-sc'), { sidecarId: 'notify-sc' });
    await waitSynced(cp, sc);
  });

  after(async function () {
    await receiver.stop();
    await fx.teardown();
  });

  it('approval.requested carries who, what, why and the request hash, signed', async function () {
    const { id } = await ask();
    const d = await receiver.delivered('approval.requested', id);
    assertSigned(d, 'approval.requested');
    const a = d.body.approval;
    assert.equal(a.status, 'PENDING');
    assert.equal(a.agent_id, agentId);
    assert.equal(a.agent_name, 'Billing Agent');
    assert.equal(a.action, 'create:transaction');
    assert.equal(a.resource, `acct_${n}`);
    assert.deepEqual(a.context, { amount: 5000, invoice: `INV-${n}` });
    assert.equal(a.rule, 'transactions over $1000');
    assert.equal(
      a.request_hash,
      expectedRequestHash('create:transaction', `acct_${n}`, { amount: 5000, invoice: `INV-${n}` }),
    );
    assert.equal(receiver.of('approval.requested', id).length, 1, 'delivered once');
  });

  it('approval.approved and approval.denied follow the decisions, signed, with who decided', async function () {
    const yes = await ask();
    const no = await ask();
    assert.equal(
      (await approverApi('POST', `/api/approvals/${yes.id}/approve`, { comment: 'ok' })).status,
      200,
    );
    assert.equal(
      (await approverApi('POST', `/api/approvals/${no.id}/deny`, { comment: 'duplicate' })).status,
      200,
    );
    const a = await receiver.delivered('approval.approved', yes.id);
    assertSigned(a, 'approval.approved');
    assert.equal(a.body.approval.status, 'APPROVED');
    assert.equal(a.body.approval.resolved_by, 'payments-lead');
    assert.equal(a.body.approval.comment, 'ok');
    const d = await receiver.delivered('approval.denied', no.id);
    assertSigned(d, 'approval.denied');
    assert.equal(d.body.approval.status, 'DENIED');
    assert.equal(d.body.approval.comment, 'duplicate');
    assert.equal(
      receiver.of('approval.denied', yes.id).length + receiver.of('approval.approved', no.id).length,
      0,
    );
    // One delivery id per event.
    const ids = new Set(
      [...receiver.of('approval.requested', yes.id), a].map((x) => String(x.headers['x-act-delivery'])),
    );
    assert.equal(ids.size, 2);
  });

  it('a receiver that answers 500 twice gets the same delivery again (same X-ACT-Delivery, signed each time) until it takes it', async function () {
    receiver.failFirst = 2;
    try {
      const { id } = await ask();
      const ok = await receiver.delivered('approval.requested', id);
      const tries = receiver.of('approval.requested', id);
      assert.deepEqual(
        tries.map((t) => t.answered),
        [500, 500, 200],
        receiver.summary(),
      );
      assert.equal(
        new Set(tries.map((t) => t.headers['x-act-delivery'])).size,
        1,
        'one delivery id across retries',
      );
      for (const t of tries) assertSigned(t, 'approval.requested');
      assert.equal(
        tries.map((t) => t.raw).every((raw) => raw === ok.raw),
        true,
        'the same body each time',
      );
      // The decision's notification is retried the same way; the delivered one is not sent again.
      assert.equal((await approverApi('POST', `/api/approvals/${id}/approve`, {})).status, 200);
      await receiver.delivered('approval.approved', id);
      assert.deepEqual(
        receiver.of('approval.approved', id).map((t) => t.answered),
        [500, 500, 200],
      );
      assert.equal(receiver.of('approval.requested', id).length, 3, receiver.summary());
    } finally {
      receiver.failFirst = 0;
    }
  });

  it('a receiver that is down blocks no check or approval, and gets every notification once it is back', async function () {
    const port = receiver.port;
    await receiver.stop();
    const { id } = await ask();
    const central = await restClient(cp.url)(
      'POST',
      '/api/enforcement/check',
      { token, action: 'create:transaction', resource: 'acct_central', context: { amount: 7000 } },
      { authorization: `Bearer ${token}` },
    );
    assert.equal(central.body.decision, 'APPROVAL_REQUIRED', central.text);
    const small = await restCheck(sc, { token, action: 'create:transaction', context: { amount: 10 } });
    assert.equal(small.body.decision, 'ALLOW', small.text);
    assert.equal((await approverApi('POST', `/api/approvals/${id}/approve`, {})).status, 200);
    // Tried meanwhile, and failed (the control plane says so), not waited for.
    await cp.waitForLog('approval notification could not be sent');
    await receiver.start(port);
    await receiver.delivered('approval.requested', id);
    await receiver.delivered('approval.requested', central.body.approval_id);
    await receiver.delivered('approval.approved', id);
  });

  it('a receiver that never answers blocks no check: checks and approvals answer while its request hangs', async function () {
    receiver.hang = true;
    try {
      const first = await ask();
      const hung = await receiver.until('a hung approval.requested', () =>
        receiver.of('approval.requested', first.id).find((d) => d.answered === undefined && !d.closed),
      );
      // While the control plane's notification hangs: another approval, an allowed check, a decision.
      const second = await ask();
      const small = await restCheck(sc, { token, action: 'create:transaction', context: { amount: 10 } });
      assert.equal(small.body.decision, 'ALLOW', small.text);
      const approved = await approverApi('POST', `/api/approvals/${first.id}/approve`, {});
      assert.equal(approved.status, 200, approved.text);
      assert.equal(hung.closed, false, 'all of that answered while the notification was still hanging');
      receiver.hang = false;
      // The sender gives up on the hung request, and delivers everything (the first one again,
      // under the same delivery id).
      const done = await receiver.delivered('approval.requested', first.id);
      assert.equal(done.headers['x-act-delivery'], hung.headers['x-act-delivery']);
      await receiver.delivered('approval.requested', second.id);
      await receiver.delivered('approval.approved', first.id);
    } finally {
      receiver.hang = false;
    }
  });

  it('no log line of either process holds the webhook secret, a token or the admin key', function () {
    for (const p of fx.procs) for (const line of p.output) assert.equal(line.includes(SECRET), false, line);
    fx.assertNoSecretsInLogs(cp.adminKey);
  });
});
