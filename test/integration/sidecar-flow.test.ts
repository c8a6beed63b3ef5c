/**
 * A real control plane and a real sidecar (dist/bin/act.js, temp data dirs):
 * the seed's flow decided at the sidecar over loopback REST, gRPC on TCP and on
 * a unix socket; gRPC health and reflection; revocations and policy changes
 * reaching the sidecar (propagation measured over 100 revocations and printed);
 * approvals raised at the sidecar; bad input and refused configurations; and no
 * token in any log line.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { Decision, ReasonCode, type DecisionServiceClient } from '../../src/gen/act/v1/decision';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../../src/gen/grpc/health/v1/health';
import { SEED, type Rest } from '../support/control-plane-helpers';
import { spawnAct, type ControlPlaneProcess, type SidecarProcess } from '../support/processes';
import {
  SidecarFixture,
  anyHourSeedPolicy,
  grpcCheck,
  percentiles,
  restCheck,
  restClient,
  seedHoursExpectation,
  waitAudit,
  waitFor,
  waitSynced,
} from '../support/sidecar-helpers';

const run = promisify(execFile);
const BUF = path.resolve(__dirname, '../../node_modules/.bin/buf');

describe('sidecar: the decision path (real control plane + sidecar)', function () {
  const fx = new SidecarFixture();
  let cp: ControlPlaneProcess;
  let api: Rest;
  let sc: SidecarProcess;
  let sockPath: string;
  let tcp: DecisionServiceClient;
  let unix: DecisionServiceClient;

  before(async function () {
    cp = await fx.controlPlane(fx.dir('scf-cp'));
    api = restClient(cp.url, cp.adminKey);
    sockPath = path.join(fx.dir('scf-sock'), 'decision.sock');
    sc = await fx.sidecar(cp, fx.dir('scf-sc'), {
      sidecarId: 'sc-flow',
      args: ['--grpc-addr', `127.0.0.1:0,unix:${sockPath}`],
    });
    tcp = fx.decisionClient(`127.0.0.1:${sc.grpcPort}`);
    unix = fx.decisionClient(`unix:${sockPath}`);
    await sc.waitForLog('sync live');
  });

  after(async function () {
    await fx.teardown();
  });

  // ------------------------------------------------------------------

  describe("the seed's flow through the sidecar", function () {
    let agentId: string;
    let seedToken: string;
    let anyHourToken: string;

    before(async function () {
      // Created after the sidecar connected: everything reaches it as deltas.
      agentId = (await fx.createAgent(api, SEED.agent)).agent_id;
      const seedPolicy = await fx.createPolicy(api, SEED.policy);
      const anyHour = await fx.createPolicy(api, anyHourSeedPolicy());
      const t1 = await fx.issue(api, agentId, [seedPolicy.policy_id], { metadata: SEED.token.metadata });
      assert.deepEqual(t1.capabilities, SEED.policy.capabilities);
      seedToken = t1.token;
      anyHourToken = (await fx.issue(api, agentId, [anyHour.policy_id], { metadata: SEED.token.metadata }))
        .token;
      await waitSynced(cp, sc);
    });

    it('loopback REST: the seed check is allowed (any-hour copy), delete:customer_account is denied', async function () {
      const ok = await restCheck(sc, { ...SEED.check, token: anyHourToken });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.body.allowed, true, ok.text);
      assert.equal(ok.body.action, SEED.check.action);
      assert.equal(ok.body.reason, 'Token valid, capability granted');
      assert.equal(ok.body.decision, 'ALLOW');
      assert.equal(ok.body.reason_code, 'GRANTED');
      assert.match(ok.body.audit_id, /^audit_/);
      assert.equal(typeof ok.body.policy_revision, 'number');

      const no = await restCheck(sc, { ...SEED.check, token: anyHourToken, action: SEED.deniedAction });
      assert.equal(no.status, 200, no.text);
      assert.equal(no.body.allowed, false);
      assert.equal(no.body.reason, 'Capability not granted in token');
      assert.equal(no.body.decision, 'DENY');
      assert.equal(no.body.reason_code, 'CAPABILITY_NOT_GRANTED');

      // Both records reach the control plane, from the sidecar's chain.
      const rec = await waitAudit(api, ok.body.audit_id, `agent_id=${agentId}`);
      assert.equal(rec.source, 'sc-flow');
      assert.equal(rec.decision, 'ALLOW');
      assert.equal(rec.resource, SEED.check.resource);
      assert.deepEqual(rec.context, SEED.check.context);
      const rec2 = await waitAudit(api, no.body.audit_id, `agent_id=${agentId}`);
      assert.equal(rec2.reason_code, 'CAPABILITY_NOT_GRANTED');
    });

    it('loopback REST: the real seed policy (09:00-17:00 UTC) answers by the hour of its audit record', async function () {
      const r = await restCheck(sc, { ...SEED.check, token: seedToken });
      assert.equal(r.status, 200, r.text);
      const rec = await waitAudit(api, r.body.audit_id, `agent_id=${agentId}`);
      const want = seedHoursExpectation(rec.time);
      assert.equal(r.body.allowed, want.allowed, `audit time ${rec.time}: ${r.text}`);
      assert.equal(r.body.reason_code, want.reasonCode, `audit time ${rec.time}`);
      assert.equal(rec.reason_code, want.reasonCode);
    });

    for (const via of ['tcp', 'unix'] as const) {
      it(`gRPC over ${via === 'tcp' ? 'TCP' : 'the unix socket'}: seed check, denial, and the seed policy by the hour`, async function () {
        const client = via === 'tcp' ? tcp : unix;
        const ok = await grpcCheck(client, {
          token: anyHourToken,
          action: SEED.check.action,
          resource: SEED.check.resource,
          context: { ...SEED.check.context },
        });
        assert.equal(ok.allowed, true);
        assert.equal(ok.decision, Decision.ALLOW);
        assert.equal(ok.reason_code, ReasonCode.GRANTED);
        assert.equal(ok.reason, 'Token valid, capability granted');
        assert.match(ok.audit_id, /^audit_/);

        const no = await grpcCheck(client, { token: anyHourToken, action: SEED.deniedAction });
        assert.equal(no.allowed, false);
        assert.equal(no.decision, Decision.DENY);
        assert.equal(no.reason_code, ReasonCode.CAPABILITY_NOT_GRANTED);

        const s = await grpcCheck(client, {
          token: seedToken,
          action: SEED.check.action,
          resource: SEED.check.resource,
          context: { ...SEED.check.context },
        });
        const rec = await waitAudit(api, s.audit_id, `agent_id=${agentId}`);
        const want = seedHoursExpectation(rec.time);
        assert.equal(s.allowed, want.allowed, `audit time ${rec.time}`);
        assert.equal(ReasonCode[s.reason_code], want.reasonCode, `audit time ${rec.time}`);
        assert.equal(rec.source, 'sc-flow');
      });
    }

    it('gRPC health: Health/Check answers SERVING (overall and DecisionService), on TCP and the socket', async function () {
      for (const target of [`127.0.0.1:${sc.grpcPort}`, `unix:${sockPath}`]) {
        const health = fx.track(new HealthClient(target, grpc.credentials.createInsecure()));
        for (const service of ['', 'act.v1.DecisionService']) {
          const res = await new Promise<any>((resolve, reject) =>
            health.check({ service }, (err, r) => (err ? reject(err) : resolve(r))),
          );
          assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING, `${target} ${service}`);
        }
      }
    });

    it('gRPC reflection: buf curl --list-services lists act.v1.DecisionService', async function () {
      const { stdout } = await run(
        BUF,
        [
          'curl',
          '--protocol',
          'grpc',
          '--http2-prior-knowledge',
          '--list-services',
          `http://127.0.0.1:${sc.grpcPort}`,
        ],
        { timeout: 30_000 },
      );
      const services = stdout.split('\n').filter((l) => l.trim() !== '');
      assert.ok(services.includes('act.v1.DecisionService'), stdout);
      assert.ok(services.includes('grpc.health.v1.Health'), stdout);
      // The sidecar serves decisions only: no admin API on its port.
      assert.equal(services.includes('act.v1.AdminService'), false, stdout);
    });
  });

  // ------------------------------------------------------------------

  describe('changes at the control plane reach the sidecar', function () {
    it('a revocation → TOKEN_REVOKED; a policy update removing a capability → CAPABILITY_NOT_GRANTED', async function () {
      const a = await fx.agentWithToken(api, 'change-agent', ['read:invoice', 'write:invoice']);
      const other = await fx.issue(api, a.agentId, [a.policyId]);
      await waitSynced(cp, sc);
      assert.equal((await grpcCheck(tcp, { token: a.token, action: 'write:invoice' })).allowed, true);
      assert.equal((await grpcCheck(tcp, { token: other.token, action: 'read:invoice' })).allowed, true);

      await fx.revoke(api, other.token_id);
      const revoked = await waitFor('TOKEN_REVOKED at the sidecar', async () => {
        const r = await grpcCheck(tcp, { token: other.token, action: 'read:invoice' });
        return r.reason_code === ReasonCode.TOKEN_REVOKED ? r : undefined;
      });
      assert.equal(revoked.allowed, false);
      assert.equal(revoked.decision, Decision.DENY);
      // Over REST too, and the sibling token is untouched.
      const viaRest = await restCheck(sc, { token: other.token, action: 'read:invoice' });
      assert.equal(viaRest.body.reason_code, 'TOKEN_REVOKED');
      assert.equal((await grpcCheck(tcp, { token: a.token, action: 'read:invoice' })).allowed, true);

      const up = await api('PUT', `/api/policies/${a.policyId}`, {
        name: 'change-agent policy',
        capabilities: ['read:invoice'],
      });
      assert.equal(up.status, 200, up.text);
      assert.equal(up.body.version, 2);
      const denied = await waitFor('CAPABILITY_NOT_GRANTED at the sidecar', async () => {
        const r = await restCheck(sc, { token: a.token, action: 'write:invoice' });
        return r.body.reason_code === 'CAPABILITY_NOT_GRANTED' ? r.body : undefined;
      });
      assert.equal(denied.allowed, false);
      assert.equal(denied.details.missing_capability, 'write:invoice');
      assert.equal((await restCheck(sc, { token: a.token, action: 'read:invoice' })).body.allowed, true);
    });

    it('revocation propagation over 100 tokens (revoke response → first TOKEN_REVOKED at the sidecar)', async function () {
      const N = 100;
      const a = await fx.agentWithToken(api, 'propagation-agent', ['read:customer_profile']);
      const tokens: { token: string; token_id: string }[] = [];
      for (let i = 0; i < N; i++) tokens.push(await fx.issue(api, a.agentId, [a.policyId]));
      await waitSynced(cp, sc);

      const ms: number[] = [];
      let polls = 0;
      for (const t of tokens) {
        const before = await grpcCheck(tcp, { token: t.token, action: 'read:customer_profile' });
        assert.equal(before.allowed, true, ReasonCode[before.reason_code]);
        await fx.revoke(api, t.token_id);
        const t0 = performance.now();
        for (;;) {
          polls++;
          const r = await grpcCheck(tcp, { token: t.token, action: 'read:customer_profile' });
          if (r.reason_code === ReasonCode.TOKEN_REVOKED) break;
          assert.equal(
            r.reason_code,
            ReasonCode.GRANTED,
            'before the revocation arrives it is still allowed',
          );
        }
        ms.push(performance.now() - t0);
      }
      assert.equal(ms.length, N);
      const p = percentiles(ms);
      console.log(
        `      revocation propagation over ${N} tokens (gRPC polling at the sidecar, ${polls} checks): ` +
          `median ${p.median.toFixed(2)} ms, p99 ${p.p99.toFixed(2)} ms, min ${p.min.toFixed(2)} ms, max ${p.max.toFixed(2)} ms`,
      );
    });
  });

  // ------------------------------------------------------------------

  describe('approvals through the sidecar', function () {
    it('APPROVAL_REQUIRED at the sidecar → the approval appears upstream → approve → ALLOW once at the sidecar → required again', async function () {
      const agent = await fx.createAgent(api, { name: 'sidecar-billing-agent' });
      const policy = await fx.createPolicy(api, {
        name: 'sidecar transactions',
        capabilities: ['create:transaction'],
        approval_rules: ['context.amount > 1000'],
      });
      const tok = await fx.issue(api, agent.agent_id, [policy.policy_id]);
      await waitSynced(cp, sc);
      const small = await restCheck(sc, {
        token: tok.token,
        action: 'create:transaction',
        context: { amount: 5 },
      });
      assert.equal(small.body.allowed, true, small.text);

      const big = {
        token: tok.token,
        action: 'create:transaction',
        resource: 'acct_9',
        context: { amount: 5000 },
      };
      const pending = await restCheck(sc, big);
      assert.equal(pending.status, 200, pending.text);
      assert.equal(pending.body.allowed, false);
      assert.equal(pending.body.decision, 'APPROVAL_REQUIRED');
      assert.equal(pending.body.reason_code, 'APPROVAL_REQUIRED_BY_POLICY');
      assert.match(pending.body.approval_id, /^approval_/);
      const approvalId = pending.body.approval_id as string;

      // The approval travels upstream inside the audit record.
      const upstream = await waitFor('the approval at the control plane', async () => {
        const r = await api('GET', `/api/approvals/${approvalId}`);
        return r.status === 200 ? r.body : undefined;
      });
      assert.equal(upstream.status, 'PENDING');
      assert.equal(upstream.agent_id, agent.agent_id);
      assert.equal(upstream.token_id, tok.token_id);
      assert.equal(upstream.action, 'create:transaction');
      assert.equal(upstream.resource, 'acct_9');
      assert.equal(upstream.audit_id, pending.body.audit_id);

      // Presented again before anyone approved: still required, same approval.
      const again = await restCheck(sc, { ...big, approval_id: approvalId });
      assert.equal(again.body.decision, 'APPROVAL_REQUIRED');
      assert.equal(again.body.approval_id, approvalId);

      const ok = await api('POST', `/api/approvals/${approvalId}/approve`, { comment: 'fine' });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.body.status, 'APPROVED');

      // Once the approval syncs down, the re-check with it is allowed, once.
      const allowed = await waitFor('ALLOW with the approval at the sidecar', async () => {
        const r = await restCheck(sc, { ...big, approval_id: approvalId });
        if (r.body.decision === 'APPROVAL_REQUIRED') return undefined;
        return r.body;
      });
      assert.equal(allowed.decision, 'ALLOW', JSON.stringify(allowed));
      assert.equal(allowed.allowed, true);

      const once = await restCheck(sc, { ...big, approval_id: approvalId });
      assert.equal(once.body.allowed, false);
      assert.equal(once.body.decision, 'APPROVAL_REQUIRED', once.text);
      assert.notEqual(once.body.approval_id, approvalId, 'a used approval asks for a new one');

      // Upstream it becomes USED (from the sidecar's ALLOW record), and the sidecar, synced, agrees.
      await waitFor('the approval USED at the control plane', async () => {
        const r = await api('GET', `/api/approvals/${approvalId}`);
        return r.body.status === 'USED' ? true : undefined;
      });
      await waitSynced(cp, sc);
      const later = await grpcCheck(tcp, { ...big, context: { amount: 5000 }, approval_id: approvalId });
      assert.equal(later.decision, Decision.APPROVAL_REQUIRED);
    });
  });

  // ------------------------------------------------------------------

  describe('bad input and refused configurations', function () {
    it('a check without a token → gRPC INVALID_ARGUMENT and HTTP 400 naming the field', async function () {
      const err = await grpcCheck(tcp, { token: '', action: 'read:customer_profile' }).then(
        () => assert.fail('expected INVALID_ARGUMENT'),
        (e: grpc.ServiceError) => e,
      );
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${grpc.status[err.code]}: ${err.details}`);
      assert.match(err.details, /token/);

      const r = await restCheck(sc, { action: 'read:customer_profile' });
      assert.equal(r.status, 400, r.text);
      assert.match(r.text.trim(), /^\{/);
      assert.equal(r.body.error.code, 'INVALID_ARGUMENT');
      assert.equal(r.body.error.field, 'token');
      assert.equal(typeof r.body.error.message, 'string');

      const notJson = await restClient(sc.url)('POST', '/api/enforcement/check', '{"token":', {
        'content-type': 'application/json',
      });
      assert.equal(notJson.status, 400, notJson.text);
      assert.equal(notJson.body.error.code, 'INVALID_ARGUMENT');
    });

    it('a non-loopback --grpc-addr (0.0.0.0:0) refuses to start with a clear message', async function () {
      const p = spawnAct(
        [
          'sidecar',
          '--grpc-addr',
          '0.0.0.0:0',
          '--http-addr',
          '127.0.0.1:0',
          '--data-dir',
          fx.dir('scf-nonloop'),
          '--control-plane',
          `127.0.0.1:${cp.grpcPort}`,
        ],
        { ACT_SIDECAR_KEY: cp.adminKey },
      );
      fx.procs.push(p);
      const code = await new Promise<number | null>((resolve) => p.child.once('exit', resolve));
      assert.notEqual(code, 0);
      const text = p.output.join('\n');
      assert.match(text, /0\.0\.0\.0:0 is not a loopback address/, text);
      assert.equal(
        p.output.some((l) => l.includes('sidecar listening')),
        false,
      );
    });

    it('a wrong key: "sync refused", no retry, and checks answer REPLICA_STALE (no replica)', async function () {
      const a = await fx.agentWithToken(api, 'wrong-key-agent', ['read:customer_profile']);
      const bad = await fx.sidecar(cp, fx.dir('scf-badkey'), {
        sidecarId: 'sc-badkey',
        env: { ACT_SIDECAR_KEY: 'wrong-sidecar-key-0123456789abcdef' },
        args: ['--stale-after', '2s'],
      });
      const refused = await bad.waitForLog(/^sync refused/);
      assert.equal(refused.code, 'UNAUTHENTICATED');
      // Give a retry the chance to show itself (backoff starts at 200 ms).
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(bad.output.filter((l) => l.includes('sync refused')).length, 1, bad.output.join('\n'));
      assert.equal(
        bad.output.some((l) => l.includes('sync disconnected')),
        false,
      );
      const ready = await restClient(bad.url)('GET', '/readyz');
      assert.equal(ready.status, 503);
      assert.equal(ready.body.sync, 'failed');

      const r = await restCheck(bad, { token: a.token, action: 'read:customer_profile' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.allowed, false);
      assert.equal(r.body.reason_code, 'REPLICA_STALE', r.text);
      const client = fx.decisionClient(`127.0.0.1:${bad.grpcPort}`);
      const g = await grpcCheck(client, { token: a.token, action: 'read:customer_profile' });
      assert.equal(g.reason_code, ReasonCode.REPLICA_STALE, ReasonCode[g.reason_code]);
      // The control plane logged the refusal without the key.
      assert.ok(cp.output.some((l) => l.includes('sync refused')));
      assert.equal(
        cp.output.some((l) => l.includes('wrong-sidecar-key-0123456789abcdef')),
        false,
      );
      assert.equal(
        bad.output.some((l) => l.includes('wrong-sidecar-key-0123456789abcdef')),
        false,
      );
    });
  });

  // ------------------------------------------------------------------

  describe('logs', function () {
    it('no line of sidecar or control-plane output contains a token', function () {
      assert.ok(fx.secrets.length > 100);
      fx.assertNoSecretsInLogs(cp.adminKey);
    });
  });
});
