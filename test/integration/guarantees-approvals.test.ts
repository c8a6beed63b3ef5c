/**
 * Approvals under attack (issue items 1-3), with a real control plane and two real sidecars:
 * a grant binds the exact request the approver was shown (token, action, resource, context);
 * it is used once across the whole fleet, however many enforcement points race for it; and an
 * enforcement point that cannot reach the control plane never answers ALLOW for a grant.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import type { Rest } from '../support/control-plane-helpers';
import {
  approvalStatus,
  centralCheck,
  freeze,
  requestAndApprove,
  tally,
  type CheckAt,
  type CheckResult,
} from '../support/guarantees';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import {
  SidecarFixture,
  freePort,
  restCheck,
  restClient,
  waitFor,
  waitSynced,
} from '../support/sidecar-helpers';

describe('guarantees: approvals bind the request, are used once, and fail closed (items 1-3)', function () {
  this.timeout(60_000);
  const fx = new SidecarFixture();
  let cpDir: string;
  let cpPort: number;
  let cp: ControlPlaneProcess;
  let api: Rest;
  let sc1: SidecarProcess;
  let sc2: SidecarProcess;
  let token: string;
  let otherToken: string;
  let n = 0;

  const at =
    (sc: { url: string }): CheckAt =>
    (body) =>
      restCheck(sc, body);
  const central: CheckAt = (body) => centralCheck(api)(body);
  /** A check that hits the rule `context.amount > 1000`, on a resource of its own. */
  const bigTransfer = (amount = 1500) => ({
    token,
    action: 'create:transaction',
    resource: `acct_${++n}`,
    context: { amount },
  });

  async function startCp(): Promise<void> {
    cp = await fx.controlPlane(cpDir, {}, ['--grpc-addr', `127.0.0.1:${cpPort}`]);
    api = restClient(cp.url, cp.adminKey);
  }

  async function synced(): Promise<void> {
    await waitSynced(cp, sc1);
    await waitSynced(cp, sc2);
  }

  before(async function () {
    cpDir = fx.dir('gap-cp');
    cpPort = await freePort();
    await startCp();
    const agent = await fx.createAgent(api, { name: 'billing agent' });
    const policy = await fx.createPolicy(api, {
      name: 'transfers need a human over 1000',
      capabilities: ['create:transaction'],
      approval_rules: ['context.amount > 1000'],
    });
    token = (await fx.issue(api, agent.agent_id, [policy.policy_id])).token;
    otherToken = (await fx.issue(api, agent.agent_id, [policy.policy_id])).token;
    sc1 = await fx.sidecar(cp, fx.dir('gap-sc1'), { sidecarId: 'gap-sc1' });
    sc2 = await fx.sidecar(cp, fx.dir('gap-sc2'), { sidecarId: 'gap-sc2' });
    await sc1.waitForLog('sync live');
    await sc2.waitForLog('sync live');
    await synced();
  });

  after(async function () {
    await fx.teardown();
  });

  // ---- item 1 ------------------------------------------------------------------------------

  for (const where of ['sidecar', 'control plane'] as const) {
    it(`item 1 (${where}): a grant for {"amount":1500} does not allow {"amount":999999}, nor any other request than the one shown`, async function () {
      const check = where === 'sidecar' ? at(sc1) : central;
      const shownBody = bigTransfer(1500);
      const { approvalId, shown } = await requestAndApprove(api, check, shownBody);
      assert.deepEqual(shown.context, { amount: 1500 }, 'the approver is shown the context');
      assert.equal(shown.resource, shownBody.resource);
      if (where === 'sidecar') await waitSynced(cp, sc1);

      const attacks: [string, Record<string, unknown>][] = [
        ['another amount (the issue)', { ...shownBody, context: { amount: 999999 } }],
        ['an extra context field', { ...shownBody, context: { amount: 1500, payee: 'attacker' } }],
        // The rule cannot be evaluated without an amount: it fails closed (approval required).
        ['no context at all', { ...shownBody, context: {} }],
        ['another resource', { ...shownBody, resource: 'acct_attacker' }],
        ['another token of the same agent', { ...shownBody, token: otherToken }],
      ];
      for (const [what, body] of attacks) {
        const r = await check({ ...body, approval_id: approvalId });
        assert.equal(r.status, 200, r.text);
        assert.notEqual(r.body.decision, 'ALLOW', `${what} was allowed with the grant: ${r.text}`);
        assert.equal(r.body.allowed, false, what);
        assert.equal(r.body.decision, 'APPROVAL_REQUIRED', `${what}: ${r.text}`);
        assert.match(r.body.reason, /granted for a different request/, `${what}: ${r.text}`);
        assert.notEqual(r.body.approval_id, approvalId, `${what}: a new request gets its own approval`);
      }
      assert.equal(await approvalStatus(api, approvalId), 'APPROVED', 'the attacks did not use the grant');

      // Exactly what the approver saw is allowed, once.
      const ok = await check({ ...shownBody, approval_id: approvalId });
      assert.equal(ok.body.decision, 'ALLOW', ok.text);
      assert.equal(await approvalStatus(api, approvalId), 'USED');
      const again = await check({ ...shownBody, approval_id: approvalId });
      assert.equal(again.body.decision, 'APPROVAL_REQUIRED', again.text);
    });
  }

  // ---- item 2 ------------------------------------------------------------------------------

  it('item 2: one grant, 10 concurrent central checks presenting it: exactly one ALLOW', async function () {
    for (let round = 0; round < 3; round++) {
      const body = bigTransfer();
      const { approvalId } = await requestAndApprove(api, central, body);
      const rs = await Promise.all(
        Array.from({ length: 10 }, () => central({ ...body, approval_id: approvalId })),
      );
      const allowed = rs.filter((r) => r.body?.decision === 'ALLOW');
      console.log(`      round ${round + 1}: ${JSON.stringify(tally(rs))}`);
      assert.equal(allowed.length, 1, JSON.stringify(tally(rs)));
      for (const r of rs) assert.equal(r.status, 200, r.text);
      assert.ok(
        rs.every((r) => r.body.decision === 'ALLOW' || r.body.decision === 'APPROVAL_REQUIRED'),
        JSON.stringify(tally(rs)),
      );
      const a = (await api('GET', `/api/approvals/${approvalId}`)).body;
      assert.equal(a.status, 'USED');
      assert.equal(a.used_audit_id, allowed[0]!.body.audit_id, 'the approval names the check that used it');
    }
  });

  it('item 2: one grant raced by two sidecars and the control plane (10 checks each, at once): exactly one ALLOW fleet-wide', async function () {
    for (let round = 0; round < 3; round++) {
      const body = bigTransfer();
      const { approvalId } = await requestAndApprove(api, at(round % 2 === 0 ? sc1 : sc2), body);
      await synced();
      const points: [string, CheckAt][] = [
        ['gap-sc1', at(sc1)],
        ['gap-sc2', at(sc2)],
        ['control-plane', central],
      ];
      const rs: { where: string; r: CheckResult }[] = await Promise.all(
        points.flatMap(([where, check]) =>
          Array.from({ length: 10 }, async () => ({
            where,
            r: await check({ ...body, approval_id: approvalId }),
          })),
        ),
      );
      const allowed = rs.filter((x) => x.r.body?.decision === 'ALLOW');
      const byPoint = Object.fromEntries(
        points.map(([where]) => [where, tally(rs.filter((x) => x.where === where).map((x) => x.r))]),
      );
      console.log(`      round ${round + 1}: ${JSON.stringify(byPoint)}`);
      assert.equal(allowed.length, 1, JSON.stringify(byPoint));
      const a = (await api('GET', `/api/approvals/${approvalId}`)).body;
      assert.equal(a.status, 'USED');
      assert.equal(a.used_audit_id, allowed[0]!.r.body.audit_id);
      assert.equal(a.used_by, allowed[0]!.where);
    }
  });

  // ---- item 3 ------------------------------------------------------------------------------

  it('item 3: a grant used at a sidecar is refused at the control plane (and at the other sidecar) at once', async function () {
    const body = bigTransfer();
    const { approvalId } = await requestAndApprove(api, at(sc1), body);
    await synced();
    const used = await at(sc1)({ ...body, approval_id: approvalId });
    assert.equal(used.body.decision, 'ALLOW', used.text);
    // No wait: the audit record of the use has not even been shipped yet.
    const [atCp, atSc2] = await Promise.all([
      central({ ...body, approval_id: approvalId }),
      at(sc2)({ ...body, approval_id: approvalId }),
    ]);
    for (const [where, r] of [
      ['control plane', atCp],
      ['second sidecar', atSc2],
    ] as const) {
      assert.equal(r.status, 200, r.text);
      assert.notEqual(r.body.decision, 'ALLOW', `${where} allowed a used grant: ${r.text}`);
      assert.equal(r.body.decision, 'APPROVAL_REQUIRED', r.text);
      assert.match(r.body.reason, /already used/, r.text);
    }
  });

  it('item 3: a sidecar cut off from the control plane (frozen: SIGSTOP) answers a presented grant DENY APPROVAL_UNAVAILABLE, never ALLOW', async function () {
    const body = bigTransfer();
    const { approvalId } = await requestAndApprove(api, at(sc1), body);
    await synced();
    const thaw = freeze(cp);
    let r: CheckResult;
    const t0 = performance.now();
    try {
      r = await at(sc1)({ ...body, approval_id: approvalId });
    } finally {
      thaw();
    }
    const ms = performance.now() - t0;
    console.log(
      `      frozen control plane: ${r.body?.decision}/${r.body?.reason_code} after ${ms.toFixed(0)} ms`,
    );
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.allowed, false, r.text);
    assert.equal(r.body.decision, 'DENY', r.text);
    assert.equal(r.body.reason_code, 'APPROVAL_UNAVAILABLE', r.text);
    assert.equal(r.body.approval_id, approvalId);

    // Thawed: the consume the sidecar gave up on reaches the owner late and is not applied
    // (ConsumeApprovalRequest.not_after_ms), so the grant is not spent on a DENY: the re-check is
    // allowed, once.
    await waitSynced(cp, sc1);
    const after = await at(sc1)({ ...body, approval_id: approvalId });
    const again = await at(sc2)({ ...body, approval_id: approvalId });
    const a = (await api('GET', `/api/approvals/${approvalId}`)).body;
    const usedBy =
      a.used_audit_id === r.body.audit_id
        ? 'the DENY'
        : a.used_audit_id === after.body.audit_id
          ? 'the re-check'
          : a.used_audit_id;
    console.log(
      `      after the thaw: the re-check ${after.body.decision}/${after.body.reason_code}; approval ${a.status}, used by ${usedBy}`,
    );
    assert.notEqual(again.body.decision, 'ALLOW', `a second ALLOW for one grant: ${again.text}`);
    assert.equal(a.status, 'USED');
    assert.equal(after.body.decision, 'ALLOW', `the late consume was applied: ${after.text}`);
    assert.equal(a.used_audit_id, after.body.audit_id, 'used by the check it allowed, not by the DENY');
  });

  it('item 3: a sidecar whose control plane is gone (SIGKILL) answers a presented grant DENY APPROVAL_UNAVAILABLE; once it is back the grant still works, once', async function () {
    const body = bigTransfer();
    const { approvalId } = await requestAndApprove(api, at(sc1), body);
    await synced();
    await cp.kill();
    const r = await at(sc1)({ ...body, approval_id: approvalId });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.allowed, false, r.text);
    assert.equal(r.body.decision, 'DENY', r.text);
    assert.equal(r.body.reason_code, 'APPROVAL_UNAVAILABLE', r.text);
    // Also at the other sidecar, and again: never ALLOW while the owner is away.
    const r2 = await at(sc2)({ ...body, approval_id: approvalId });
    assert.equal(r2.body.reason_code, 'APPROVAL_UNAVAILABLE', r2.text);

    await startCp();
    await waitFor('both sidecars live again', async () =>
      sc1.output.filter((l) => l.includes('"sync live"')).length >= 2 &&
      sc2.output.filter((l) => l.includes('"sync live"')).length >= 2
        ? true
        : undefined,
    );
    await synced();
    assert.equal(
      await approvalStatus(api, approvalId),
      'APPROVED',
      'the refused checks did not use the grant',
    );
    const ok = await at(sc1)({ ...body, approval_id: approvalId });
    assert.equal(ok.body.decision, 'ALLOW', ok.text);
    const twice = await at(sc2)({ ...body, approval_id: approvalId });
    assert.notEqual(twice.body.decision, 'ALLOW', twice.text);
  });

  it('no line of any output contains a token or the admin key', function () {
    fx.assertNoSecretsInLogs(cp.adminKey);
  });
});
