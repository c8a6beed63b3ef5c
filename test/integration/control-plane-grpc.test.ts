/**
 * The control plane's gRPC API against the real process: the generated clients
 * for AdminService, DecisionService and Health, status codes for bad input and
 * auth, the ExportAudit stream, and server reflection that a strict client
 * (buf curl) accepts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import {
  AdminServiceClient,
  ExportAuditRequest,
  QueryAuditRequest,
  Role,
  type AuditRecord,
} from '../../src/gen/act/v1/admin';
import { Decision, DecisionServiceClient, ReasonCode } from '../../src/gen/act/v1/decision';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../../src/gen/grpc/health/v1/health';
import { startControlPlane, tempDir, type ControlPlaneProcess } from '../support/processes';
import { futureTime } from '../support/control-plane-helpers';

const run = promisify(execFile);
const BUF = path.resolve(__dirname, '../../node_modules/.bin/buf');

/** Calls a generated unary method with metadata, as a promise. */
function call<Req, Res>(client: grpc.Client, method: string, req: Req, md: grpc.Metadata): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!.call(
      client,
      req,
      md,
      (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)),
    );
  });
}

async function rejectsWith(p: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    assert.equal(e.code, code, `expected ${grpc.status[code]}, got ${grpc.status[e.code]}: ${e.details}`);
    return e;
  }
  assert.fail(`expected ${grpc.status[code]}, but the call succeeded`);
}

function bearer(key: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${key}`);
  return md;
}

describe('control plane gRPC API (real process)', function () {
  let dir: { dir: string; remove(): void };
  let cp: ControlPlaneProcess;
  let admin: AdminServiceClient;
  let decision: DecisionServiceClient;
  let health: HealthClient;
  let target: string;
  let md: grpc.Metadata;
  let agentId: string;
  let policyId: string;
  let token: string;

  before(async function () {
    dir = tempDir('cp-grpc');
    cp = await startControlPlane(dir.dir);
    target = `127.0.0.1:${cp.grpcPort}`;
    const creds = grpc.credentials.createInsecure();
    admin = new AdminServiceClient(target, creds);
    decision = new DecisionServiceClient(target, creds);
    health = new HealthClient(target, creds);
    md = bearer(cp.adminKey);
  });

  after(async function () {
    admin?.close();
    decision?.close();
    health?.close();
    await cp?.stop();
    dir?.remove();
  });

  it('creates an agent and a policy, issues a token and checks it', async function () {
    const agent: any = await call(
      admin,
      'createAgent',
      {
        name: 'grpc agent',
        description: 'over gRPC',
        metadata: { team: 'rpc' },
      },
      md,
    );
    assert.match(agent.agent_id, /^agent_/);
    assert.deepEqual(agent.metadata, { team: 'rpc' });
    agentId = agent.agent_id;

    const policy: any = await call(
      admin,
      'createPolicy',
      {
        name: 'grpc policy',
        description: '',
        capabilities: ['read:customer_profile', 'create:support_ticket'],
        constraints: {
          max_actions_per_day: 1000,
          allowed_hours: '',
          rate_limit: '100 per minute',
          timezone: '',
        },
        conditions: [],
        approval_rules: [],
      },
      md,
    );
    assert.match(policy.policy_id, /^policy_/);
    assert.equal(policy.version, 1);
    policyId = policy.policy_id;

    const expires = futureTime(30);
    const issued: any = await call(
      admin,
      'issueToken',
      {
        agent_id: agentId,
        policy_ids: [policyId],
        expires_at: expires,
        metadata: { purpose: 'grpc test' },
        not_before: '',
      },
      md,
    );
    assert.match(issued.token, /^act_/);
    assert.equal(issued.expires_at, expires);
    assert.deepEqual(issued.capabilities, ['read:customer_profile', 'create:support_ticket']);
    token = issued.token;

    const ok: any = await call(
      decision,
      'checkPermission',
      {
        token,
        action: 'read:customer_profile',
        resource: 'customer_54321',
        context: { ip: '10.0.1.50', reason: 'User inquiry about order status' },
        approval_id: '',
      },
      md,
    );
    assert.equal(ok.allowed, true);
    assert.equal(ok.decision, Decision.ALLOW);
    assert.equal(ok.reason_code, ReasonCode.GRANTED);
    assert.equal(ok.reason, 'Token valid, capability granted');
    assert.match(ok.audit_id, /^audit_/);

    const no: any = await call(
      decision,
      'checkPermission',
      {
        token,
        action: 'delete:customer_account',
        resource: 'customer_54321',
        context: undefined,
        approval_id: '',
      },
      bearer(token),
    );
    assert.equal(no.allowed, false);
    assert.equal(no.reason_code, ReasonCode.CAPABILITY_NOT_GRANTED);
    assert.equal(no.reason, 'Capability not granted in token');

    const got: any = await call(admin, 'getToken', { token_id: issued.token_id }, md);
    assert.equal(got.agent_id, agentId);
    assert.equal('token' in got, false);
  });

  it('bad input → INVALID_ARGUMENT naming the field, and nothing is written', async function () {
    const before: any = await call(admin, 'listPolicies', { limit: 500, cursor: '', name_contains: '' }, md);
    const e = await rejectsWith(
      call(
        admin,
        'createPolicy',
        {
          name: 'broken',
          description: '',
          capabilities: ['read:customer_profile', 'read customer'],
          conditions: [],
          approval_rules: [],
        },
        md,
      ),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.match(e.details, /capabilities\[1\]/);
    assert.deepEqual(e.metadata.get('act-field'), ['capabilities[1]']);
    assert.deepEqual(e.metadata.get('act-code'), ['INVALID_ARGUMENT']);
    const after: any = await call(admin, 'listPolicies', { limit: 500, cursor: '', name_contains: '' }, md);
    assert.deepEqual(after, before);

    const e2 = await rejectsWith(
      call(
        admin,
        'issueToken',
        {
          agent_id: agentId,
          policy_ids: [policyId],
          expires_at: '2020-01-01T00:00:00Z',
          metadata: {},
          not_before: '',
        },
        md,
      ),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.match(e2.details, /expires_at/);

    const e3 = await rejectsWith(
      call(
        admin,
        'issueToken',
        {
          agent_id: 'agent_01zzzzzzzzzzzzzzzzzzzzzzzz',
          policy_ids: [policyId],
          expires_at: futureTime(1),
          metadata: {},
          not_before: '',
        },
        md,
      ),
      grpc.status.NOT_FOUND,
    );
    assert.deepEqual(e3.metadata.get('act-field'), ['agent_id']);

    const e4 = await rejectsWith(
      call(admin, 'createAgent', { name: 'grpc agent', description: '', metadata: {} }, md),
      grpc.status.ALREADY_EXISTS,
    );
    assert.deepEqual(e4.metadata.get('act-field'), ['name']);

    const e5 = await rejectsWith(
      call(decision, 'checkPermission', { token: '', action: 'read:x', resource: '', approval_id: '' }, md),
      grpc.status.INVALID_ARGUMENT,
    );
    assert.deepEqual(e5.metadata.get('act-field'), ['token']);
  });

  it('no key → UNAUTHENTICATED; auditor calling CreateAgent → PERMISSION_DENIED', async function () {
    await rejectsWith(
      call(admin, 'createAgent', { name: 'anon', description: '', metadata: {} }, new grpc.Metadata()),
      grpc.status.UNAUTHENTICATED,
    );
    await rejectsWith(
      call(
        admin,
        'listAgents',
        { limit: 10, cursor: '', status: 0, name_contains: '' },
        bearer('wrong-key-0123456789'),
      ),
      grpc.status.UNAUTHENTICATED,
    );
    await rejectsWith(
      call(
        decision,
        'checkPermission',
        { token, action: 'read:x', resource: '', approval_id: '' },
        new grpc.Metadata(),
      ),
      grpc.status.UNAUTHENTICATED,
    );
    const key: any = await call(
      admin,
      'createApiKey',
      { name: 'grpc auditor', role: Role.AUDITOR, agent_ids: [] },
      md,
    );
    assert.match(key.secret, /^actk_/);
    assert.equal(key.api_key.role, Role.AUDITOR);
    const auditor = bearer(key.secret);
    await rejectsWith(
      call(admin, 'createAgent', { name: 'by auditor', description: '', metadata: {} }, auditor),
      grpc.status.PERMISSION_DENIED,
    );
    const page: any = await call(admin, 'queryAudit', QueryAuditRequest.fromPartial({ limit: 10 }), auditor);
    assert.ok(page.records.length >= 2);
  });

  it('ExportAudit streams every record, oldest first', async function () {
    const page: any = await call(admin, 'queryAudit', QueryAuditRequest.fromPartial({ limit: 1000 }), md);
    const records: AuditRecord[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = admin.exportAudit({ filter: undefined }, md);
      stream.on('data', (r: AuditRecord) => records.push(r));
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
    assert.equal(records.length, page.records.length);
    assert.deepEqual(
      records.map((r) => r.audit_id),
      [...page.records].reverse().map((r: AuditRecord) => r.audit_id),
    );
    assert.ok(records.every((r) => r.source === 'control-plane'));
    records.forEach((r, i) => {
      assert.equal(r.seq, i + 1);
      if (i > 0) assert.equal(r.prev_hash, records[i - 1]!.hash);
    });

    // Filtered to one agent and DENY.
    const denied: AuditRecord[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = admin.exportAudit(
        ExportAuditRequest.fromPartial({ filter: { agent_id: agentId, decision: Decision.DENY } }),
        md,
      );
      stream.on('data', (r: AuditRecord) => denied.push(r));
      stream.on('error', reject);
      stream.on('end', () => resolve());
    });
    assert.equal(denied.length, 1);
    assert.equal(denied[0]!.action, 'delete:customer_account');

    // Without a key the stream fails with UNAUTHENTICATED.
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const stream = admin.exportAudit({ filter: undefined }, new grpc.Metadata());
      stream.on('data', () => undefined);
      stream.on('error', resolve);
    });
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
  });

  it('Health/Check returns SERVING (overall and per service)', async function () {
    for (const service of ['', 'act.v1.AdminService', 'act.v1.DecisionService']) {
      const res: any = await call(health, 'check', { service }, new grpc.Metadata());
      assert.equal(res.status, HealthCheckResponse_ServingStatus.SERVING, service);
    }
    await rejectsWith(
      call(health, 'check', { service: 'no.such.Service' }, new grpc.Metadata()),
      grpc.status.NOT_FOUND,
    );
  });

  describe('server reflection with a strict client (buf curl)', function () {
    const buf = (...args: string[]) =>
      run(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args], { timeout: 30_000 });

    it('buf curl --list-services lists the ACT services, health and reflection', async function () {
      const { stdout } = await buf('--list-services', `http://${target}`);
      const services = stdout.split('\n').filter((l) => l.trim() !== '');
      for (const s of [
        'act.v1.AdminService',
        'act.v1.DecisionService',
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
      ])
        assert.ok(services.includes(s), `${s} missing from:\n${stdout}`);
    });

    it('buf curl --list-methods resolves every method through reflection', async function () {
      const { stdout } = await buf('--list-methods', `http://${target}`);
      for (const m of [
        'act.v1.AdminService/CreatePolicy',
        'act.v1.AdminService/ExportAudit',
        'act.v1.DecisionService/CheckPermission',
        'grpc.health.v1.Health/Check',
      ])
        assert.ok(stdout.split('\n').includes(m), `${m} missing from:\n${stdout}`);
    });

    it('buf curl calls DecisionService/CheckPermission (Struct context) and Health/Check', async function () {
      const body = JSON.stringify({
        token,
        action: 'read:customer_profile',
        resource: 'customer_1',
        context: { ip: '10.0.1.50' },
      });
      const { stdout } = await buf(
        '-H',
        `authorization: Bearer ${cp.adminKey}`,
        '-d',
        body,
        `http://${target}/act.v1.DecisionService/CheckPermission`,
      );
      const res = JSON.parse(stdout);
      assert.equal(res.allowed, true, stdout);
      assert.match(res.auditId, /^audit_/);
      assert.equal(res.decision, 'ALLOW');
      assert.equal(res.reasonCode, 'GRANTED');

      const h = await buf('-d', '{}', `http://${target}/grpc.health.v1.Health/Check`);
      assert.deepEqual(JSON.parse(h.stdout), { status: 'SERVING' });
    });

    it('buf curl calls AdminService with map fields (metadata)', async function () {
      const { stdout } = await buf(
        '-H',
        `authorization: Bearer ${cp.adminKey}`,
        '-d',
        JSON.stringify({ name: 'made by buf curl', metadata: { team: 'cli' } }),
        `http://${target}/act.v1.AdminService/CreateAgent`,
      );
      const agent = JSON.parse(stdout);
      assert.match(agent.agentId, /^agent_/);
      assert.deepEqual(agent.metadata, { team: 'cli' });
    });
  });

  describe('logs', function () {
    it('the process output holds neither the admin key nor the token', function () {
      assert.ok(cp.output.length > 0);
      for (const line of cp.output) {
        assert.equal(line.includes(cp.adminKey), false);
        assert.equal(line.includes(token), false);
        assert.equal(/actk_ak_/.test(line), false);
      }
    });
  });
});
