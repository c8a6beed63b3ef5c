/**
 * The control plane's REST API against the real process (dist/bin/act.js
 * control-plane on port 0, temp LMDB data dir): the seed's four calls, CRUD,
 * revocation and attenuation, approvals, auth and roles, a table of bad inputs
 * that must leave the store unchanged, restart durability, audit exports and
 * follow mode, signing key rotation, and that no secret reaches the logs.
 */
import assert from 'node:assert/strict';
import { parse as parseCsv } from 'csv-parse/sync';
import { restClient, startControlPlane, tempDir, type ControlPlaneProcess } from '../support/processes';
import {
  SEED,
  exportNdjson,
  futureTime,
  pageAll,
  snapshot,
  type Rest,
} from '../support/control-plane-helpers';

const CHECK_KEYS = [
  'action',
  'allowed',
  'audit_id',
  'decision',
  'details',
  'policy_revision',
  'reason',
  'reason_code',
];

describe('control plane REST API (real process)', function () {
  /** Every process started here, stopped in `after`. */
  const procs: ControlPlaneProcess[] = [];
  const dirs: { remove(): void }[] = [];
  /** Every ACT token and API key secret handed out, to prove none reaches the logs. */
  const secrets: string[] = [];

  let cp: ControlPlaneProcess;
  let api: Rest;
  /** A policy like the seed's without allowed_hours, so checks pass at any time of day. */
  let anyHourPolicyId: string;

  const start = async (dir: string) => {
    const p = await startControlPlane(dir);
    procs.push(p);
    return p;
  };

  before(async function () {
    const d = tempDir('cp-rest');
    dirs.push(d);
    cp = await start(d.dir);
    api = restClient(cp.url, cp.adminKey);
  });

  after(async function () {
    for (const p of procs) await p.stop();
    for (const d of dirs) d.remove();
  });

  // ---- small helpers over `api` ----

  async function createAgent(name: string, extra: Record<string, unknown> = {}, client = api): Promise<any> {
    const r = await client('POST', '/api/agents', { name, ...extra });
    assert.equal(r.status, 201, r.text);
    return r.body;
  }

  async function createPolicy(body: Record<string, unknown>, client = api): Promise<any> {
    const r = await client('POST', '/api/policies', body);
    assert.equal(r.status, 201, r.text);
    return r.body;
  }

  async function issue(
    agentId: string,
    policyIds: string[],
    extra: Record<string, unknown> = {},
    client = api,
  ): Promise<any> {
    const r = await client('POST', '/api/tokens', {
      agent_id: agentId,
      policy_ids: policyIds,
      expires_at: futureTime(30),
      ...extra,
    });
    assert.equal(r.status, 201, r.text);
    secrets.push(r.body.token);
    return r.body;
  }

  async function check(
    token: string,
    action: string,
    extra: Record<string, unknown> = {},
    client = api,
  ): Promise<any> {
    const r = await client('POST', '/api/enforcement/check', { token, action, ...extra });
    assert.equal(r.status, 200, r.text);
    return r.body;
  }

  /** A fresh agent with a token on the any-hour policy (or the given policies). */
  async function agentWithToken(name: string, policyIds = [anyHourPolicyId], client = api) {
    const agent = await createAgent(name, {}, client);
    const tok = await issue(agent.agent_id, policyIds, {}, client);
    return { agent, tok };
  }

  // ------------------------------------------------------------------

  describe("the seed's four calls", function () {
    let agentId: string;
    let seedPolicyId: string;
    let anyHourToken: string;

    it('POST /api/agents with the seed body returns an agent id', async function () {
      const r = await api('POST', '/api/agents', SEED.agent);
      assert.equal(r.status, 201, r.text);
      assert.match(r.body.agent_id, /^agent_/);
      assert.equal(r.body.name, SEED.agent.name);
      assert.equal(r.body.description, SEED.agent.description);
      assert.deepEqual(r.body.metadata, SEED.agent.metadata);
      assert.equal(r.body.status, 'ACTIVE');
      agentId = r.body.agent_id;
    });

    it('POST /api/policies with the seed body returns the policy', async function () {
      const r = await api('POST', '/api/policies', SEED.policy);
      assert.equal(r.status, 201, r.text);
      assert.match(r.body.policy_id, /^policy_/);
      assert.equal(r.body.name, SEED.policy.name);
      assert.deepEqual(r.body.capabilities, SEED.policy.capabilities);
      assert.equal(r.body.constraints.max_actions_per_day, 1000);
      assert.equal(r.body.constraints.allowed_hours, '09:00-17:00 UTC');
      assert.equal(r.body.constraints.rate_limit, '100 per minute');
      assert.equal(r.body.version, 1);
      seedPolicyId = r.body.policy_id;

      const { allowed_hours: _drop, ...constraints } = SEED.policy.constraints;
      const anyHour = await createPolicy({
        ...SEED.policy,
        name: 'Customer Support Policy (any hour)',
        constraints,
      });
      anyHourPolicyId = anyHour.policy_id;
    });

    it('POST /api/tokens with the seed body (future expiry, real ids) returns the seed response shape', async function () {
      const expires = futureTime(30);
      const r = await api('POST', '/api/tokens', {
        ...SEED.token,
        agent_id: agentId,
        policy_ids: [seedPolicyId],
        expires_at: expires,
      });
      assert.equal(r.status, 201, r.text);
      secrets.push(r.body.token);
      assert.match(r.body.token, /^act_/);
      assert.equal(r.body.agent_id, agentId);
      assert.equal(r.body.expires_at, expires);
      assert.deepEqual(r.body.capabilities, SEED.policy.capabilities);

      // The seed's approved check, against the seed policy with its 09:00-17:00 UTC window.
      const c = await check(r.body.token, SEED.check.action, {
        resource: SEED.check.resource,
        context: SEED.check.context,
      });
      assert.deepEqual(Object.keys(c).sort(), CHECK_KEYS);
      assert.equal(c.action, SEED.check.action);
      assert.match(c.audit_id, /^audit_/);
      // The decision's clock is the audit record's time: derive the expected answer from it.
      const audit = (await exportNdjson(api, `agent_id=${agentId}`)).find((x) => x.audit_id === c.audit_id);
      assert.ok(audit, 'the check has an audit record');
      const hour = new Date(audit.time).getUTCHours();
      const inHours = hour >= 9 && hour < 17;
      assert.equal(c.allowed, inHours, `audit time ${audit.time}`);
      if (inHours) {
        assert.equal(c.reason, 'Token valid, capability granted');
        assert.equal(c.reason_code, 'GRANTED');
      } else {
        assert.equal(c.reason_code, 'OUTSIDE_ALLOWED_HOURS');
        assert.equal(c.decision, 'DENY');
      }

      const t2 = await issue(agentId, [anyHourPolicyId], { metadata: SEED.token.metadata });
      anyHourToken = t2.token;
    });

    it('POST /api/enforcement/check (approved) answers exactly the seed response plus the decision fields', async function () {
      const r = await api('POST', '/api/enforcement/check', { ...SEED.check, token: anyHourToken });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(Object.keys(r.body).sort(), CHECK_KEYS);
      assert.equal(r.body.allowed, true);
      assert.equal(r.body.action, 'read:customer_profile');
      assert.equal(r.body.reason, 'Token valid, capability granted');
      assert.match(r.body.audit_id, /^audit_/);
      assert.equal(r.body.decision, 'ALLOW');
      assert.equal(r.body.reason_code, 'GRANTED');
      assert.equal(typeof r.body.details, 'object');
      assert.equal(typeof r.body.policy_revision, 'number');
    });

    it('POST /api/enforcement/check (denied delete:customer_account) answers the seed denial', async function () {
      const r = await api('POST', '/api/enforcement/check', {
        ...SEED.check,
        token: anyHourToken,
        action: SEED.deniedAction,
      });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(Object.keys(r.body).sort(), CHECK_KEYS);
      assert.equal(r.body.allowed, false);
      assert.equal(r.body.action, 'delete:customer_account');
      assert.equal(r.body.reason, 'Capability not granted in token');
      assert.match(r.body.audit_id, /^audit_/);
      assert.equal(r.body.decision, 'DENY');
      assert.equal(r.body.reason_code, 'CAPABILITY_NOT_GRANTED');
    });

    it('accepts the ACT token itself as the bearer for a check, and no other unauthenticated caller', async function () {
      const withToken = restClient(cp.url, anyHourToken);
      const r = await withToken('POST', '/api/enforcement/check', { ...SEED.check, token: anyHourToken });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.allowed, true);

      const anon = restClient(cp.url);
      const r2 = await anon('POST', '/api/enforcement/check', { ...SEED.check, token: anyHourToken });
      assert.equal(r2.status, 401, r2.text);
      assert.equal(r2.body.error.code, 'UNAUTHENTICATED');
    });
  });

  // ------------------------------------------------------------------

  describe('CRUD', function () {
    it('agents: create, list with limit=2 and cursors, get, patch, disable/enable, delete revokes tokens', async function () {
      const created = [];
      for (let i = 0; i < 5; i++)
        created.push(
          await createAgent(`crud-agent-${i}`, { description: `agent ${i}`, metadata: { i: `${i}` } }),
        );

      // Paging with limit=2 visits every agent exactly once.
      const seen: string[] = [];
      let cursor = '';
      let pages = 0;
      do {
        const r = await api('GET', `/api/agents?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        assert.equal(r.status, 200, r.text);
        assert.ok(r.body.agents.length <= 2);
        seen.push(...r.body.agents.map((a: any) => a.agent_id));
        cursor = r.body.next_cursor;
        pages++;
      } while (cursor);
      assert.ok(pages >= 3);
      assert.equal(new Set(seen).size, seen.length, 'no agent twice');
      for (const a of created) assert.ok(seen.includes(a.agent_id));
      assert.deepEqual(
        new Set(seen),
        new Set((await pageAll(api, '/api/agents', 'agents')).map((a) => a.agent_id)),
      );

      const a0 = created[0];
      const got = await api('GET', `/api/agents/${a0.agent_id}`);
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, a0);

      const patched = await api('PATCH', `/api/agents/${a0.agent_id}`, {
        description: 'changed',
        metadata: { team: 'x' },
      });
      assert.equal(patched.status, 200, patched.text);
      assert.equal(patched.body.description, 'changed');
      assert.deepEqual(patched.body.metadata, { team: 'x' });
      assert.equal(patched.body.name, a0.name);
      assert.equal((await api('GET', `/api/agents/${a0.agent_id}`)).body.description, 'changed');

      const tok = await issue(a0.agent_id, [anyHourPolicyId]);
      assert.equal((await check(tok.token, 'read:customer_profile')).allowed, true);

      const dis = await api('POST', `/api/agents/${a0.agent_id}/disable`);
      assert.equal(dis.status, 200, dis.text);
      assert.equal(dis.body.status, 'DISABLED');
      const denied = await check(tok.token, 'read:customer_profile');
      assert.equal(denied.allowed, false);
      assert.equal(denied.reason_code, 'AGENT_DISABLED');

      const en = await api('POST', `/api/agents/${a0.agent_id}/enable`);
      assert.equal(en.status, 200, en.text);
      assert.equal(en.body.status, 'ACTIVE');
      assert.equal((await check(tok.token, 'read:customer_profile')).allowed, true);

      const del = await api('DELETE', `/api/agents/${a0.agent_id}`);
      assert.equal(del.status, 200, del.text);
      assert.equal(del.body.deleted, true);
      assert.deepEqual(del.body.revoked_token_ids, [tok.token_id]);
      assert.equal((await api('GET', `/api/agents/${a0.agent_id}`)).status, 404);
      const info = await api('GET', `/api/tokens/${tok.token_id}`);
      assert.equal(info.status, 200);
      assert.equal(info.body.revoked, true);
      const after = await check(tok.token, 'read:customer_profile');
      assert.equal(after.allowed, false);
      assert.ok(['TOKEN_REVOKED', 'AGENT_UNKNOWN'].includes(after.reason_code), after.reason_code);
      // The name is free again.
      await createAgent(a0.name);
    });

    it('policies: create, list, get, update to version 2 (effective at once), delete → POLICY_UNKNOWN', async function () {
      const p = await createPolicy({ name: 'crud-policy', capabilities: ['read:invoice'] });
      assert.equal(p.version, 1);
      const listed = await pageAll(api, '/api/policies', 'policies');
      assert.ok(listed.some((x) => x.policy_id === p.policy_id));
      const got = await api('GET', `/api/policies/${p.policy_id}`);
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, p);

      const { tok } = await agentWithToken('crud-policy-agent', [p.policy_id]);
      assert.equal((await check(tok.token, 'read:invoice')).allowed, true);
      const before = await check(tok.token, 'write:invoice');
      assert.equal(before.allowed, false);
      assert.equal(before.reason_code, 'CAPABILITY_NOT_GRANTED');

      const up = await api('PUT', `/api/policies/${p.policy_id}`, {
        name: 'crud-policy',
        capabilities: ['read:invoice', 'write:invoice'],
      });
      assert.equal(up.status, 200, up.text);
      assert.equal(up.body.version, 2);
      assert.deepEqual(up.body.capabilities, ['read:invoice', 'write:invoice']);
      assert.equal(up.body.created_at, p.created_at);
      const nowAllowed = await check(tok.token, 'write:invoice');
      assert.equal(nowAllowed.allowed, true);
      assert.ok(nowAllowed.policy_revision > before.policy_revision);

      const del = await api('DELETE', `/api/policies/${p.policy_id}`);
      assert.equal(del.status, 200, del.text);
      assert.deepEqual(del.body, { id: p.policy_id, deleted: true, revision: del.body.revision });
      assert.ok(
        Number.isInteger(del.body.revision) && del.body.revision > 0,
        'the deletion names its revision',
      );
      assert.equal((await api('GET', `/api/policies/${p.policy_id}`)).status, 404);
      const gone = await check(tok.token, 'read:invoice');
      assert.equal(gone.allowed, false);
      assert.equal(gone.reason_code, 'POLICY_UNKNOWN');
    });

    it('tokens: list and get describe tokens but never return the token string', async function () {
      const { agent, tok } = await agentWithToken('crud-token-agent');
      const list = await api('GET', `/api/tokens?agent_id=${agent.agent_id}`);
      assert.equal(list.status, 200, list.text);
      assert.deepEqual(
        list.body.tokens.map((t: any) => t.token_id),
        [tok.token_id],
      );
      const got = await api('GET', `/api/tokens/${tok.token_id}`);
      assert.equal(got.status, 200, got.text);
      assert.equal(got.body.token_id, tok.token_id);
      assert.equal(got.body.agent_id, agent.agent_id);
      assert.deepEqual(got.body.policy_ids, [anyHourPolicyId]);
      assert.equal(got.body.expires_at, tok.expires_at);
      assert.equal(got.body.revoked, false);
      assert.equal('token' in got.body, false);
      const all = await api('GET', '/api/tokens?include_inactive=true&limit=500');
      for (const s of secrets) {
        assert.equal(got.text.includes(s), false);
        assert.equal(list.text.includes(s), false);
        assert.equal(all.text.includes(s), false);
      }
      assert.equal(/act_[A-Za-z0-9_-]{20}/.test(all.text), false);
    });
  });

  // ------------------------------------------------------------------

  describe('revocation and attenuation', function () {
    let policyId: string;
    before(async function () {
      policyId = (
        await createPolicy({
          name: 'attenuation-policy',
          capabilities: ['read:customer_profile', 'read:order_history', 'create:support_ticket'],
        })
      ).policy_id;
    });

    it('an attenuated child can do only its subset; revoking the parent revokes both', async function () {
      const { tok: parent } = await agentWithToken('attenuation-agent', [policyId]);
      const r = await api('POST', `/api/tokens/${parent.token_id}/attenuate`, {
        capabilities: ['read:customer_profile'],
      });
      assert.equal(r.status, 201, r.text);
      secrets.push(r.body.token);
      const child = r.body;
      assert.match(child.token, /^act_/);
      assert.equal(child.parent_token_id, parent.token_id);
      assert.deepEqual(child.capabilities, ['read:customer_profile']);
      assert.equal(child.expires_at, parent.expires_at);

      assert.equal((await check(child.token, 'read:customer_profile')).allowed, true);
      const narrow = await check(child.token, 'read:order_history');
      assert.equal(narrow.allowed, false);
      assert.equal(narrow.reason_code, 'CAPABILITY_NOT_GRANTED');
      assert.equal((await check(parent.token, 'read:order_history')).allowed, true);

      const rev = await api('POST', `/api/tokens/${parent.token_id}/revoke`, { reason: 'test' });
      assert.equal(rev.status, 200, rev.text);
      assert.deepEqual(new Set(rev.body.revoked_token_ids), new Set([parent.token_id, child.token_id]));
      for (const t of [parent.token, child.token]) {
        const c = await check(t, 'read:customer_profile');
        assert.equal(c.allowed, false);
        assert.equal(c.reason_code, 'TOKEN_REVOKED');
      }
      assert.equal((await api('GET', `/api/tokens/${child.token_id}`)).body.revoked, true);
    });

    it('attenuation that widens → 400 capabilities[0]; a child outliving its parent → 400 expires_at', async function () {
      const { tok: parent } = await agentWithToken('attenuation-agent-2', [policyId]);
      const before = await snapshot(api);
      const wide = await api('POST', `/api/tokens/${parent.token_id}/attenuate`, {
        capabilities: ['delete:customer_account'],
      });
      assert.equal(wide.status, 400, wide.text);
      assert.equal(wide.body.error.code, 'INVALID_ARGUMENT');
      assert.equal(wide.body.error.field, 'capabilities[0]');

      const shortParent = await issue(parent.agent_id, [policyId], { expires_at: futureTime(5) });
      const mid = await snapshot(api);
      const late = await api('POST', `/api/tokens/${shortParent.token_id}/attenuate`, {
        capabilities: ['read:customer_profile'],
        expires_at: futureTime(10),
      });
      assert.equal(late.status, 400, late.text);
      assert.equal(late.body.error.field, 'expires_at');
      assert.deepEqual(await snapshot(api), mid);
      assert.equal((before.tokens as unknown[]).length + 1, (mid.tokens as unknown[]).length);
    });
  });

  // ------------------------------------------------------------------

  describe('approvals', function () {
    it('context.amount > 1000 needs a human: APPROVAL_REQUIRED → approve → ALLOW once → required again', async function () {
      const policy = await createPolicy({
        name: 'transactions',
        capabilities: ['create:transaction'],
        approval_rules: ['context.amount > 1000'],
      });
      const { tok } = await agentWithToken('billing-agent', [policy.policy_id]);
      assert.equal(
        (await check(tok.token, 'create:transaction', { context: { amount: 500 } })).allowed,
        true,
      );

      const big = { resource: 'acct_1', context: { amount: 5000 } };
      const pending = await check(tok.token, 'create:transaction', big);
      assert.equal(pending.allowed, false);
      assert.equal(pending.decision, 'APPROVAL_REQUIRED');
      assert.equal(pending.reason_code, 'APPROVAL_REQUIRED_BY_POLICY');
      assert.match(pending.approval_id, /^approval_/);

      const k = await api('POST', '/api/api-keys', { name: 'finance approver', role: 'APPROVER' });
      assert.equal(k.status, 201, k.text);
      assert.equal(k.body.api_key.role, 'APPROVER');
      secrets.push(k.body.secret);
      const approver = restClient(cp.url, k.body.secret);
      const list = await approver('GET', '/api/approvals?status=PENDING');
      assert.equal(list.status, 200, list.text);
      assert.ok(list.body.approvals.some((a: any) => a.approval_id === pending.approval_id));

      const ok = await approver('POST', `/api/approvals/${pending.approval_id}/approve`, { comment: 'fine' });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.body.status, 'APPROVED');
      assert.equal(ok.body.resolved_by, 'finance approver');

      const allowed = await check(tok.token, 'create:transaction', {
        ...big,
        approval_id: pending.approval_id,
      });
      assert.equal(allowed.allowed, true, JSON.stringify(allowed));
      assert.equal(allowed.decision, 'ALLOW');
      assert.equal((await approver('GET', `/api/approvals/${pending.approval_id}`)).body.status, 'USED');

      const again = await check(tok.token, 'create:transaction', {
        ...big,
        approval_id: pending.approval_id,
      });
      assert.equal(again.allowed, false);
      assert.equal(again.decision, 'APPROVAL_REQUIRED', JSON.stringify(again));
    });
  });

  // ------------------------------------------------------------------

  describe('auth and roles', function () {
    it('no header → 401 with www-authenticate; a bad key → 401', async function () {
      const anon = restClient(cp.url);
      const r = await anon('GET', '/api/agents');
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'UNAUTHENTICATED');
      assert.equal(typeof r.body.error.message, 'string');
      assert.equal(r.headers.get('www-authenticate'), 'Bearer');
      assert.match(r.headers.get('content-type') ?? '', /^application\/json/);

      const bad = await restClient(cp.url, 'not-the-key-0123456789')('GET', '/api/agents');
      assert.equal(bad.status, 401);
      assert.equal(bad.body.error.code, 'UNAUTHENTICATED');
      const malformed = await anon('GET', '/api/agents', undefined, { authorization: 'Basic abc' });
      assert.equal(malformed.status, 401);
    });

    it('auditor reads the audit but cannot write; approver sees approvals but not the audit; a revoked key → 401', async function () {
      const mk = async (name: string, role: string) => {
        const r = await api('POST', '/api/api-keys', { name, role });
        assert.equal(r.status, 201, r.text);
        assert.match(r.body.secret, /^actk_/);
        secrets.push(r.body.secret);
        return r.body;
      };
      const auditorKey = await mk('auditor', 'AUDITOR');
      const approverKey = await mk('approver', 'APPROVER');
      const auditor = restClient(cp.url, auditorKey.secret);
      const approver = restClient(cp.url, approverKey.secret);

      assert.equal((await auditor('GET', '/api/audit')).status, 200);
      const denied = await auditor('POST', '/api/agents', { name: 'by auditor' });
      assert.equal(denied.status, 403, denied.text);
      assert.equal(denied.body.error.code, 'PERMISSION_DENIED');
      assert.equal((await auditor('GET', '/api/agents')).status, 403);

      assert.equal((await approver('GET', '/api/approvals')).status, 200);
      const noAudit = await approver('GET', '/api/audit');
      assert.equal(noAudit.status, 403);
      assert.equal(noAudit.body.error.code, 'PERMISSION_DENIED');

      const keys = await api('GET', '/api/api-keys');
      assert.equal(keys.status, 200);
      for (const s of secrets) assert.equal(keys.text.includes(s), false);

      const rev = await api('DELETE', `/api/api-keys/${auditorKey.api_key.api_key_id}`);
      assert.equal(rev.status, 200, rev.text);
      const after = await auditor('GET', '/api/audit');
      assert.equal(after.status, 401);
      assert.equal(after.body.error.code, 'UNAUTHENTICATED');
      assert.equal((await approver('GET', '/api/approvals')).status, 200);
    });
  });

  // ------------------------------------------------------------------

  describe('bad inputs: each gets its error and leaves the store unchanged', function () {
    interface Fixture {
      agentId: string;
      agentName: string;
      policyId: string;
      policyName: string;
      token: string;
      tokenId: string;
    }
    interface Row {
      note: string;
      method: string;
      path: string | ((f: Fixture) => string);
      body?: unknown | ((f: Fixture) => unknown);
      headers?: Record<string, string>;
      status: number;
      code: string;
      field?: string;
    }
    const f = {} as Fixture;
    const policy = (extra: Record<string, unknown>) => ({
      name: 'bad-policy',
      capabilities: ['read:x'],
      ...extra,
    });
    const tokenBody = (extra: Record<string, unknown>) => (fx: Fixture) => ({
      agent_id: fx.agentId,
      policy_ids: [fx.policyId],
      expires_at: futureTime(30),
      ...extra,
    });
    const tenYears = () => {
      const d = new Date();
      d.setUTCFullYear(d.getUTCFullYear() + 10);
      return d.toISOString().replace(/\.\d+Z$/, 'Z');
    };
    const UNKNOWN_AGENT = 'agent_01zzzzzzzzzzzzzzzzzzzzzzzz';
    const UNKNOWN_POLICY = 'policy_01zzzzzzzzzzzzzzzzzzzzzzzz';
    const MIB = 1024 * 1024;

    const rows: Row[] = [
      {
        note: 'agent: missing name',
        method: 'POST',
        path: '/api/agents',
        body: { description: 'x' },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'name',
      },
      {
        note: 'agent: empty name',
        method: 'POST',
        path: '/api/agents',
        body: { name: '' },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'name',
      },
      {
        note: 'agent: blank name',
        method: 'POST',
        path: '/api/agents',
        body: { name: '   ' },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'name',
      },
      {
        note: 'agent: name of 201 chars',
        method: 'POST',
        path: '/api/agents',
        body: { name: 'n'.repeat(201) },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'name',
      },
      {
        note: 'agent: name is a number',
        method: 'POST',
        path: '/api/agents',
        body: { name: 42 },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'name',
      },
      {
        note: 'agent: name with control characters',
        method: 'POST',
        path: '/api/agents',
        body: { name: 'a\u0001b' },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'name',
      },
      {
        note: 'agent: duplicate name',
        method: 'POST',
        path: '/api/agents',
        body: (fx: Fixture) => ({ name: fx.agentName }),
        status: 409,
        code: 'ALREADY_EXISTS',
        field: 'name',
      },
      {
        note: 'agent: duplicate name in another case',
        method: 'POST',
        path: '/api/agents',
        body: (fx: Fixture) => ({ name: fx.agentName.toUpperCase() }),
        status: 409,
        code: 'ALREADY_EXISTS',
        field: 'name',
      },
      {
        note: 'agent: metadata value not a string',
        method: 'POST',
        path: '/api/agents',
        body: { name: 'm1', metadata: { team: 1 } },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'metadata.team',
      },
      {
        note: 'agent: metadata with 65 entries',
        method: 'POST',
        path: '/api/agents',
        body: {
          name: 'm2',
          metadata: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])),
        },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'metadata',
      },
      {
        note: 'agent: metadata is an array',
        method: 'POST',
        path: '/api/agents',
        body: { name: 'm3', metadata: ['a'] },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'metadata',
      },
      {
        note: 'agent: description of 2001 chars',
        method: 'POST',
        path: '/api/agents',
        body: { name: 'd1', description: 'd'.repeat(2001) },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'description',
      },
      {
        note: 'agent: PATCH the name',
        method: 'PATCH',
        path: (fx: Fixture) => `/api/agents/${fx.agentId}`,
        body: { name: 'renamed' },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'name',
      },
      {
        note: 'agent: PATCH description and a bad metadata (nothing applied)',
        method: 'PATCH',
        path: (fx: Fixture) => `/api/agents/${fx.agentId}`,
        body: { description: 'new', metadata: { ok: 'x', bad: 2 } },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'metadata.bad',
      },
      {
        note: 'agent: GET unknown id',
        method: 'GET',
        path: `/api/agents/${UNKNOWN_AGENT}`,
        status: 404,
        code: 'NOT_FOUND',
        field: 'agent_id',
      },
      {
        note: 'agent: list with limit=0',
        method: 'GET',
        path: '/api/agents?limit=0',
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'limit',
      },
      {
        note: 'agent: list with a bad cursor',
        method: 'GET',
        path: '/api/agents?cursor=%21%21',
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'cursor',
      },
      {
        note: 'policy: capability "read" (no colon)',
        method: 'POST',
        path: '/api/policies',
        body: policy({ capabilities: ['read'] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilities[0]',
      },
      {
        note: 'policy: capability "read:" (empty type)',
        method: 'POST',
        path: '/api/policies',
        body: policy({ capabilities: ['read:customer', 'read:'] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilities[1]',
      },
      {
        note: 'policy: capability "READ:x:y:z"',
        method: 'POST',
        path: '/api/policies',
        body: policy({ capabilities: ['READ:x:y:z'] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilities[0]',
      },
      {
        note: 'policy: capability "read customer"',
        method: 'POST',
        path: '/api/policies',
        body: policy({ capabilities: ['read customer'] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilities[0]',
      },
      {
        note: 'policy: capability not a string',
        method: 'POST',
        path: '/api/policies',
        body: policy({ capabilities: [7] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilities[0]',
      },
      {
        note: 'policy: empty capabilities',
        method: 'POST',
        path: '/api/policies',
        body: policy({ capabilities: [] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilities',
      },
      {
        note: 'policy: capabilities not an array',
        method: 'POST',
        path: '/api/policies',
        body: policy({ capabilities: 'read:x' }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilities',
      },
      {
        note: 'policy: missing name',
        method: 'POST',
        path: '/api/policies',
        body: { capabilities: ['read:x'] },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'name',
      },
      {
        note: 'policy: duplicate name',
        method: 'POST',
        path: '/api/policies',
        body: (fx: Fixture) => policy({ name: fx.policyName }),
        status: 409,
        code: 'ALREADY_EXISTS',
        field: 'name',
      },
      {
        note: 'policy: unknown field',
        method: 'POST',
        path: '/api/policies',
        body: policy({ capabilitys: ['read:x'] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilitys',
      },
      {
        note: 'policy: rate_limit "lots per minute"',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { rate_limit: 'lots per minute' } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.rate_limit',
      },
      {
        note: 'policy: rate_limit "100 per fortnight"',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { rate_limit: '100 per fortnight' } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.rate_limit',
      },
      {
        note: 'policy: allowed_hours "9-5"',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { allowed_hours: '9-5' } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.allowed_hours',
      },
      {
        note: 'policy: allowed_hours "25:00-26:00 UTC"',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { allowed_hours: '25:00-26:00 UTC' } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.allowed_hours',
      },
      {
        note: 'policy: allowed_hours in zone Mars/Olympus',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { allowed_hours: '09:00-17:00 Mars/Olympus' } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.allowed_hours',
      },
      {
        note: 'policy: max_actions_per_day negative',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { max_actions_per_day: -1 } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.max_actions_per_day',
      },
      {
        note: 'policy: max_actions_per_day float',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { max_actions_per_day: 1.5 } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.max_actions_per_day',
      },
      {
        note: 'policy: max_actions_per_day string',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { max_actions_per_day: '1000' } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.max_actions_per_day',
      },
      {
        note: 'policy: unknown constraint key',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: { max_refunds: 3 } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints.max_refunds',
      },
      {
        note: 'policy: constraints not an object',
        method: 'POST',
        path: '/api/policies',
        body: policy({ constraints: 'none' }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'constraints',
      },
      {
        note: 'policy: CEL syntax error in conditions',
        method: 'POST',
        path: '/api/policies',
        body: policy({ conditions: ['context.amount >'] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'conditions[0].expression',
      },
      {
        note: 'policy: CEL unknown variable in approval_rules',
        method: 'POST',
        path: '/api/policies',
        body: policy({ approval_rules: ['amount > 1000'] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'approval_rules[0].expression',
      },
      {
        note: 'policy: PUT with a bad capability (old version kept)',
        method: 'PUT',
        path: (fx: Fixture) => `/api/policies/${fx.policyId}`,
        body: (fx: Fixture) => ({ name: fx.policyName, capabilities: ['read:x', 'nope'] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'capabilities[1]',
      },
      {
        note: 'policy: PUT unknown id',
        method: 'PUT',
        path: `/api/policies/${UNKNOWN_POLICY}`,
        body: policy({}),
        status: 404,
        code: 'NOT_FOUND',
        field: 'policy_id',
      },
      {
        note: 'token: expires_at in the past',
        method: 'POST',
        path: '/api/tokens',
        body: tokenBody({ expires_at: '2020-01-01T00:00:00Z' }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'expires_at',
      },
      {
        note: 'token: expires_at 10 years away',
        method: 'POST',
        path: '/api/tokens',
        body: (fx: Fixture) => tokenBody({ expires_at: tenYears() })(fx),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'expires_at',
      },
      {
        note: 'token: expires_at not RFC 3339',
        method: 'POST',
        path: '/api/tokens',
        body: tokenBody({ expires_at: '31/12/2030' }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'expires_at',
      },
      {
        note: 'token: unknown agent id',
        method: 'POST',
        path: '/api/tokens',
        body: (fx: Fixture) => tokenBody({ agent_id: UNKNOWN_AGENT })(fx),
        status: 404,
        code: 'NOT_FOUND',
        field: 'agent_id',
      },
      {
        note: 'token: unknown policy id',
        method: 'POST',
        path: '/api/tokens',
        body: tokenBody({ policy_ids: [UNKNOWN_POLICY] }),
        status: 404,
        code: 'NOT_FOUND',
        field: 'policy_ids[0]',
      },
      {
        note: 'token: second policy id unknown',
        method: 'POST',
        path: '/api/tokens',
        body: (fx: Fixture) => tokenBody({ policy_ids: [fx.policyId, UNKNOWN_POLICY] })(fx),
        status: 404,
        code: 'NOT_FOUND',
        field: 'policy_ids[1]',
      },
      {
        note: 'token: empty policy_ids',
        method: 'POST',
        path: '/api/tokens',
        body: tokenBody({ policy_ids: [] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'policy_ids',
      },
      {
        note: 'token: duplicate policy_ids',
        method: 'POST',
        path: '/api/tokens',
        body: (fx: Fixture) => tokenBody({ policy_ids: [fx.policyId, fx.policyId] })(fx),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'policy_ids',
      },
      {
        note: 'token: metadata value not a string',
        method: 'POST',
        path: '/api/tokens',
        body: tokenBody({ metadata: { purpose: false } }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'metadata.purpose',
      },
      {
        note: 'token: revoke unknown token',
        method: 'POST',
        path: '/api/tokens/tok_01zzzzzzzzzzzzzzzzzzzzzzzz/revoke',
        status: 404,
        code: 'NOT_FOUND',
        field: 'token_id',
      },
      {
        note: 'body: over 1 MiB',
        method: 'POST',
        path: '/api/agents',
        body: JSON.stringify({ name: 'big', description: 'x'.repeat(MIB) }),
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
      },
      {
        note: 'body: text/plain',
        method: 'POST',
        path: '/api/agents',
        body: JSON.stringify({ name: 'plain' }),
        headers: { 'content-type': 'text/plain' },
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        note: 'body: no content type on a policy update',
        method: 'PUT',
        path: (fx: Fixture) => `/api/policies/${fx.policyId}`,
        body: (fx: Fixture) => JSON.stringify({ name: fx.policyName, capabilities: ['read:y'] }),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      },
      {
        note: 'body: invalid JSON',
        method: 'POST',
        path: '/api/agents',
        body: '{"name": "half',
        status: 400,
        code: 'INVALID_ARGUMENT',
      },
      {
        note: 'body: JSON array',
        method: 'POST',
        path: '/api/agents',
        body: '[{"name":"in an array"}]',
        status: 400,
        code: 'INVALID_ARGUMENT',
      },
      {
        note: 'body: JSON string',
        method: 'POST',
        path: '/api/policies',
        body: '"read:x"',
        status: 400,
        code: 'INVALID_ARGUMENT',
      },
      {
        note: 'check: missing token',
        method: 'POST',
        path: '/api/enforcement/check',
        body: { action: 'read:customer_profile' },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'token',
      },
      {
        note: 'check: action of 257 chars',
        method: 'POST',
        path: '/api/enforcement/check',
        body: (fx: Fixture) => ({ token: fx.token, action: 'read:' + 'a'.repeat(252) }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'action',
      },
      {
        note: 'check: context not an object',
        method: 'POST',
        path: '/api/enforcement/check',
        body: (fx: Fixture) => ({ token: fx.token, action: 'read:x', context: 'from the web' }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'context',
      },
      {
        note: 'check: resource not a string',
        method: 'POST',
        path: '/api/enforcement/check',
        body: (fx: Fixture) => ({ token: fx.token, action: 'read:x', resource: 12 }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'resource',
      },
      {
        note: 'check-batch: no items',
        method: 'POST',
        path: '/api/enforcement/check-batch',
        body: (fx: Fixture) => ({ token: fx.token, items: [] }),
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'items',
      },
      {
        note: 'audit: unknown decision filter',
        method: 'GET',
        path: '/api/audit?decision=MAYBE',
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'decision',
      },
      {
        note: 'api key: unknown role',
        method: 'POST',
        path: '/api/api-keys',
        body: { name: 'k', role: 'ROOT' },
        status: 400,
        code: 'INVALID_ARGUMENT',
        field: 'role',
      },
      { note: 'unknown route', method: 'GET', path: '/api/widgets', status: 404, code: 'NOT_FOUND' },
      {
        note: 'unknown method on a route',
        method: 'DELETE',
        path: '/api/tokens',
        status: 404,
        code: 'NOT_FOUND',
      },
    ];

    before(async function () {
      const agent = await createAgent('bad-input-agent');
      const p = await createPolicy({ name: 'bad-input-policy', capabilities: ['read:x'] });
      const tok = await issue(agent.agent_id, [p.policy_id]);
      Object.assign(f, {
        agentId: agent.agent_id,
        agentName: agent.name,
        policyId: p.policy_id,
        policyName: p.name,
        token: tok.token,
        tokenId: tok.token_id,
      });
    });

    it(`the table has at least 30 rows (${rows.length})`, function () {
      assert.ok(rows.length >= 30);
      assert.equal(new Set(rows.map((r) => r.note)).size, rows.length);
    });

    for (const row of rows) {
      it(`${row.method} ${typeof row.path === 'string' ? row.path.slice(0, 60) : '…'} — ${row.note} → ${row.status} ${row.code}`, async function () {
        const path = typeof row.path === 'function' ? row.path(f) : row.path;
        const body = typeof row.body === 'function' ? (row.body as (fx: Fixture) => unknown)(f) : row.body;
        const before = await snapshot(api);
        const r = await api(row.method, path, body, row.headers);
        assert.equal(r.status, row.status, r.text.slice(0, 500));
        assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
        assert.ok(r.body && typeof r.body.error === 'object', r.text.slice(0, 500));
        const allowedKeys = new Set(['code', 'message', 'field']);
        for (const k of Object.keys(r.body.error)) assert.ok(allowedKeys.has(k), `unexpected key ${k}`);
        assert.deepEqual(Object.keys(r.body), ['error']);
        assert.equal(r.body.error.code, row.code);
        assert.equal(typeof r.body.error.message, 'string');
        assert.ok(r.body.error.message.length > 0);
        if (row.field !== undefined) assert.equal(r.body.error.field, row.field, r.body.error.message);
        else assert.equal(r.body.error.field, undefined);
        assert.deepEqual(await snapshot(api), before, 'the store is unchanged');
      });
    }

    it('after the whole table the fixture still works exactly as before', async function () {
      const p = await api('GET', `/api/policies/${f.policyId}`);
      assert.equal(p.body.version, 1);
      assert.deepEqual(p.body.capabilities, ['read:x']);
      const a = await api('GET', `/api/agents/${f.agentId}`);
      assert.equal(a.body.description, undefined, 'an unset description is absent, not ""');
      assert.deepEqual(a.body.metadata, {});
      assert.equal((await check(f.token, 'read:x')).allowed, true);
    });
  });

  // ------------------------------------------------------------------

  describe('audit export and follow', function () {
    const N = 60;
    let agentId: string;

    before(async function () {
      const { agent, tok } = await agentWithToken('export-agent');
      agentId = agent.agent_id;
      const actions = ['read:customer_profile', 'delete:customer_account', 'create:support_ticket'];
      for (let i = 0; i < N; i++) {
        await check(tok.token, actions[i % 3]!, {
          resource: `customer_${i}`,
          // Commas, quotes, newlines and nesting must survive CSV.
          context: { i, note: `line "one", ${i}\nline two`, nested: { ok: i % 2 === 0, list: [1, 'a'] } },
        });
      }
    });

    /** Every record through GET /api/audit with small pages. */
    async function paged(query = ''): Promise<any[]> {
      return pageAll(api, `/api/audit${query ? `?${query}` : ''}`, 'records', 7);
    }

    const byId = (records: any[]) => new Map(records.map((r) => [r.audit_id, r]));

    it('NDJSON, JSON and CSV exports parse back to the records GET /api/audit pages through', async function () {
      const viaQuery = await paged();
      assert.ok(viaQuery.length >= N);
      const want = byId(viaQuery);
      assert.equal(want.size, viaQuery.length, 'paging returns each record once');

      const ndjson = await exportNdjson(api);
      assert.deepEqual(byId(ndjson), want);

      const j = await api('GET', '/api/audit/export?format=json');
      assert.equal(j.status, 200);
      assert.match(j.headers.get('content-type') ?? '', /^application\/json/);
      assert.ok(Array.isArray(j.body));
      assert.deepEqual(byId(j.body), want);

      const c = await api('GET', '/api/audit/export?format=csv');
      assert.equal(c.status, 200);
      assert.match(c.headers.get('content-type') ?? '', /^text\/csv/);
      const rows = parseCsv(c.text, { columns: true }) as Record<string, string>[];
      assert.equal(rows.length, want.size);
      const fromCsv = rows.map((r) => {
        const out: Record<string, unknown> = { ...r };
        for (const k of ['seq', 'policy_revision', 'latency_us']) out[k] = Number(r[k]);
        assert.ok(r.allowed === 'true' || r.allowed === 'false', r.allowed);
        out.allowed = r.allowed === 'true';
        out.context = JSON.parse(r.context!);
        out.policy_ids = r.policy_ids ? r.policy_ids.split(';') : [];
        out.details = JSON.parse(r.details!);
        // Empty cells are fields the record does not set (JSON omits them).
        for (const k of Object.keys(out)) if (out[k] === '') delete out[k];
        return out;
      });
      // The CSV has one column per audit field, the structured details as JSON.
      const columns = Object.keys(rows[0]!);
      assert.ok(columns.length >= 20, columns.join(','));
      for (const r of viaQuery)
        assert.deepEqual(
          Object.keys(r).filter((k) => !columns.includes(k)),
          [],
        );
      const project = (v: any) =>
        Object.fromEntries(
          columns
            .filter((c) => c === 'context' || v[c] !== undefined)
            .map((c) => [c, c === 'context' ? (v.context ?? {}) : v[c]]),
        );
      assert.deepEqual(byId(fromCsv), new Map([...want].map(([k, v]) => [k, project(v)])));
      // Oldest first in exports.
      assert.deepEqual(
        ndjson.map((r) => r.audit_id),
        rows.map((r) => r.audit_id),
      );
    });

    it('filters: agent_id, decision, reason_code, since/until', async function () {
      const all = await exportNdjson(api);
      const mine = await exportNdjson(api, `agent_id=${agentId}`);
      assert.equal(mine.length, N);
      assert.ok(mine.every((r) => r.agent_id === agentId));
      assert.deepEqual(byId(await paged(`agent_id=${agentId}`)), byId(mine));

      const deny = await exportNdjson(api, 'decision=DENY');
      assert.deepEqual(
        deny.map((r) => r.audit_id),
        all.filter((r) => r.decision === 'DENY').map((r) => r.audit_id),
      );
      assert.ok(deny.length >= N / 3);
      const denyMine = await exportNdjson(api, `agent_id=${agentId}&decision=deny`);
      assert.equal(denyMine.length, N / 3);

      const notGranted = await exportNdjson(api, 'reason_code=CAPABILITY_NOT_GRANTED');
      assert.deepEqual(
        notGranted.map((r) => r.audit_id),
        all.filter((r) => r.reason_code === 'CAPABILITY_NOT_GRANTED').map((r) => r.audit_id),
      );

      const since = mine[10].time as string;
      const until = mine[40].time as string;
      const window = await exportNdjson(
        api,
        `agent_id=${agentId}&since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`,
      );
      const expect = mine.filter(
        (r) => Date.parse(r.time) >= Date.parse(since) && Date.parse(r.time) < Date.parse(until),
      );
      assert.deepEqual(
        window.map((r) => r.audit_id),
        expect.map((r) => r.audit_id),
      );
      assert.ok(window.length > 0);
      const pagedWindow = await paged(
        `agent_id=${agentId}&since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`,
      );
      assert.deepEqual(byId(pagedWindow), byId(window));
    });

    it('bad filter values → 400 naming the field', async function () {
      const cases: [string, string][] = [
        ['decision=MAYBE', 'decision'],
        ['reason_code=BECAUSE', 'reason_code'],
        ['since=yesterday', 'since'],
        ['until=2030-13-01T00:00:00Z', 'until'],
        ['since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z', 'until'],
        ['format=xml', 'format'],
        ['cursor=%25%25', 'cursor'],
      ];
      for (const [query, field] of cases) {
        for (const route of ['/api/audit/export', '/api/audit']) {
          if (route === '/api/audit' && query.startsWith('format')) continue;
          const r = await api('GET', `${route}?${query}`);
          assert.equal(r.status, 400, `${route}?${query}: ${r.text}`);
          assert.equal(r.body.error.code, 'INVALID_ARGUMENT');
          assert.equal(r.body.error.field, field, `${route}?${query}`);
        }
      }
      const lim = await api('GET', '/api/audit?limit=5000');
      assert.equal(lim.status, 400);
      assert.equal(lim.body.error.field, 'limit');
    });

    it('GET /api/audit/follow streams a new record as NDJSON', async function () {
      const { agent, tok } = await agentWithToken('follow-agent');
      const ac = new AbortController();
      try {
        const res = await fetch(`${cp.url}/api/audit/follow?agent_id=${agent.agent_id}`, {
          headers: { authorization: `Bearer ${cp.adminKey}` },
          signal: ac.signal,
        });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
        const c = await check(tok.token, 'read:customer_profile', { resource: 'followed' });
        const reader = res.body!.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        let rec: any;
        while (rec === undefined) {
          const { value, done } = await reader.read();
          assert.equal(done, false, 'stream ended before a record');
          buf += decoder.decode(value, { stream: true });
          const line = buf.split('\n').find((l) => l.trim() !== '');
          if (line !== undefined && buf.includes(line + '\n')) rec = JSON.parse(line);
        }
        assert.equal(rec.audit_id, c.audit_id);
        assert.equal(rec.agent_id, agent.agent_id);
        assert.equal(rec.resource, 'followed');
        assert.equal(rec.decision, 'ALLOW');
        await reader.cancel().catch(() => undefined);
      } finally {
        ac.abort();
      }
    });
  });

  // ------------------------------------------------------------------

  describe('signing key rotation', function () {
    it('rotates: two keys, one active; old tokens still verify; new tokens use the new key', async function () {
      const { agent, tok: old } = await agentWithToken('rotation-agent');
      const k0 = await api('GET', '/api/keys');
      assert.equal(k0.status, 200);
      assert.equal(k0.body.keys.length, 1);
      const oldKey = k0.body.keys[0].key_id;
      assert.equal((await api('GET', `/api/tokens/${old.token_id}`)).body.key_id, oldKey);

      const rot = await api('POST', '/api/keys/rotate');
      assert.equal(rot.status, 201, rot.text);
      assert.notEqual(rot.body.key_id, oldKey);
      assert.equal(rot.body.active, true);

      const k1 = await api('GET', '/api/keys');
      assert.equal(k1.body.keys.length, 2);
      assert.deepEqual(
        k1.body.keys.filter((k: any) => k.active).map((k: any) => k.key_id),
        [rot.body.key_id],
      );
      assert.ok(k1.body.keys.some((k: any) => k.key_id === oldKey && k.active === false));

      assert.equal((await check(old.token, 'read:customer_profile')).allowed, true);
      const fresh = await issue(agent.agent_id, [anyHourPolicyId]);
      assert.equal((await api('GET', `/api/tokens/${fresh.token_id}`)).body.key_id, rot.body.key_id);
      assert.equal((await check(fresh.token, 'read:customer_profile')).allowed, true);
    });
  });

  // ------------------------------------------------------------------

  describe('restart', function () {
    it('keeps all data; the audit hash chain continues; an old token still verifies', async function () {
      const d = tempDir('cp-restart');
      dirs.push(d);
      const first = await start(d.dir);
      const a1 = restClient(first.url, first.adminKey);
      const agent = await createAgent('durable-agent', { metadata: { team: 'ops' } }, a1);
      const p = await createPolicy(
        { name: 'durable-policy', capabilities: ['read:report'], conditions: ['context.ip != ""'] },
        a1,
      );
      const tok = await issue(agent.agent_id, [p.policy_id], {}, a1);
      const revoked = await issue(agent.agent_id, [p.policy_id], {}, a1);
      assert.equal((await a1('POST', `/api/tokens/${revoked.token_id}/revoke`)).status, 200);
      const key = await a1('POST', '/api/api-keys', { name: 'durable auditor', role: 'AUDITOR' });
      secrets.push(key.body.secret);
      assert.equal(
        (await check(tok.token, 'read:report', { context: { ip: '10.0.0.1' } }, a1)).allowed,
        true,
      );
      assert.equal((await check(tok.token, 'write:report', {}, a1)).allowed, false);
      const before = await snapshot(a1);
      const keysBefore = (await a1('GET', '/api/keys')).body;

      assert.equal(await first.stop(), 0, 'SIGTERM exits 0');

      const second = await start(d.dir);
      const a2 = restClient(second.url, second.adminKey);
      assert.deepEqual(await snapshot(a2), before);
      assert.deepEqual((await a2('GET', '/api/keys')).body, keysBefore);
      assert.equal((await restClient(second.url, key.body.secret)('GET', '/api/audit')).status, 200);

      const lastBefore = (await exportNdjson(a2)).at(-1);
      const c = await check(tok.token, 'read:report', { context: { ip: '10.0.0.2' } }, a2);
      assert.equal(c.allowed, true);
      const r = await check(revoked.token, 'read:report', { context: { ip: '10.0.0.2' } }, a2);
      assert.equal(r.reason_code, 'TOKEN_REVOKED');

      const records = await exportNdjson(a2);
      const next = records.find((x) => x.audit_id === c.audit_id);
      assert.equal(next.source, 'control-plane');
      assert.equal(next.seq, lastBefore.seq + 1);
      assert.equal(next.prev_hash, lastBefore.hash);
      // The whole chain links, across the restart.
      const chain = records.filter((x) => x.source === 'control-plane').sort((x, y) => x.seq - y.seq);
      assert.equal(chain.length, 4);
      chain.forEach((x, i) => {
        assert.equal(x.seq, i + 1);
        if (i > 0) assert.equal(x.prev_hash, chain[i - 1].hash);
      });
    });
  });

  // ------------------------------------------------------------------

  describe('logs', function () {
    it('no process output contains an issued token, an API key secret or the admin key', function () {
      assert.ok(secrets.length > 10);
      for (const p of procs) {
        assert.ok(p.output.length > 0);
        for (const line of p.output) {
          assert.equal(line.includes(p.adminKey), false, `admin key in: ${line.slice(0, 200)}`);
          for (const s of secrets) assert.equal(line.includes(s), false, `secret in: ${line.slice(0, 200)}`);
          assert.equal(/act_[A-Za-z0-9_-]{40,}\.[A-Za-z0-9_-]{20,}/.test(line), false, line.slice(0, 200));
          assert.equal(/actk_ak_/.test(line), false, line.slice(0, 200));
        }
      }
    });
  });
});
