/**
 * `@act-platform/sdk`'s ACTClient against a real control plane and a real sidecar
 * (dist/bin/act.js, temp LMDB dirs): every check method over TCP and a unix socket, the
 * defaults from the environment, approvals end to end, one channel per client (counted at a TCP
 * relay in front of the sidecar), and a sidecar that goes away.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { ACTClient, ACTError, ACTInvalidArgumentError, ACTUnavailableError } from '@act-platform/sdk';
import { SEED, type Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import { SidecarFixture, restClient, waitAudit, waitFor, waitSynced } from '../support/sidecar-helpers';

interface Relay {
  port: number;
  opened: number;
  live: number;
  close(): Promise<void>;
}

/** A TCP relay to `port` that counts the connections made through it. */
async function relay(port: number): Promise<Relay> {
  const sockets = new Set<net.Socket>();
  const state: Relay = { port: 0, opened: 0, live: 0, close: async () => undefined };
  const server = net.createServer((client) => {
    state.opened++;
    state.live++;
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
    };
    client.once('close', () => {
      state.live--;
      done();
    });
    upstream.once('close', done);
    client.on('error', done);
    upstream.on('error', done);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.port = (server.address() as net.AddressInfo).port;
  state.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return state;
}

describe('@act-platform/sdk ACTClient against a live sidecar', function () {
  const fx = new SidecarFixture();
  const clients: ACTClient[] = [];
  const client = (o: ConstructorParameters<typeof ACTClient>[0]) => {
    const c = new ACTClient(o);
    clients.push(c);
    return c;
  };
  let cp: ControlPlaneProcess;
  let api: Rest;
  let sc: SidecarProcess;
  let sockPath: string;
  let agentId: string;
  let token: string;
  let billingToken: string;
  let act: ACTClient;

  before(async function () {
    cp = await fx.controlPlane(fx.dir('sdkc-cp'));
    api = restClient(cp.url, cp.adminKey);
    sockPath = path.join(fx.dir('sdkc-sock'), 'decision.sock');
    sc = await fx.sidecar(cp, fx.dir('sdkc-sc'), {
      sidecarId: 'sc-sdk-ts',
      args: ['--grpc-addr', `127.0.0.1:0,unix:${sockPath}`],
    });
    const a = await fx.agentWithToken(api, 'sdk-ts-support-agent');
    agentId = a.agentId;
    token = a.token;
    const billing = await fx.createAgent(api, { name: 'sdk-ts-billing-agent' });
    const policy = await fx.createPolicy(api, {
      name: 'sdk-ts transactions',
      capabilities: ['create:transaction'],
      approval_rules: ['context.amount > 1000'],
    });
    billingToken = (await fx.issue(api, billing.agent_id, [policy.policy_id])).token;
    await waitSynced(cp, sc);
    act = client({ token, address: `127.0.0.1:${sc.grpcPort}` });
  });

  after(async function () {
    for (const c of clients) c.close();
    await fx.teardown();
  });

  it('checkPermission() resolves to a boolean: true for a granted action, false for one not granted', async function () {
    const yes = await act.checkPermission({
      action: SEED.check.action,
      resource: SEED.check.resource,
      context: SEED.check.context,
    });
    const no = await act.checkPermission({ action: SEED.deniedAction, resource: SEED.check.resource });
    assert.equal(yes, true);
    assert.equal(no, false);
  });

  it('the description\'s object form checks and audits the real action and context (not "[object Object]")', async function () {
    const d = await act.check({
      action: SEED.check.action,
      resource: SEED.check.resource,
      context: SEED.check.context,
    });
    const rec = await waitAudit(api, d.auditId, `agent_id=${agentId}`);
    assert.equal(rec.action, SEED.check.action);
    assert.equal(rec.resource, SEED.check.resource);
    assert.deepEqual(rec.context, SEED.check.context);
    assert.equal(rec.decision, 'ALLOW');
    assert.equal(rec.source, 'sc-sdk-ts');
  });

  it('check() resolves to the whole decision, with names and typed details', async function () {
    const ok = await act.check({ action: 'read:customer_profile', resource: 'customer_1' });
    assert.equal(ok.allowed, true);
    assert.equal(ok.decision, 'ALLOW');
    assert.equal(ok.reasonCode, 'GRANTED');
    assert.equal(ok.reason, 'Token valid, capability granted');
    assert.equal(ok.action, 'read:customer_profile');
    assert.match(ok.auditId, /^audit_/);
    assert.equal(ok.approvalId, undefined);
    assert.ok(Number.isInteger(ok.policyRevision) && ok.policyRevision > 0, String(ok.policyRevision));

    const no = await act.check({ action: SEED.deniedAction, resource: 'customer_1' });
    assert.equal(no.allowed, false);
    assert.equal(no.decision, 'DENY');
    assert.equal(no.reasonCode, 'CAPABILITY_NOT_GRANTED');
    assert.equal(no.reason, 'Capability not granted in token');
    assert.equal(no.details.missingCapability, SEED.deniedAction);
    assert.notEqual(no.auditId, ok.auditId);
  });

  it('approvals: APPROVAL_REQUIRED is false with an approval id; once approved, the same check with it is allowed once', async function () {
    const billing = client({ token: billingToken, address: `127.0.0.1:${sc.grpcPort}` });
    const request = { action: 'create:transaction', resource: 'acct_9', context: { amount: 5000 } };
    assert.equal(await billing.checkPermission({ ...request, context: { amount: 5 } }), true);
    assert.equal(await billing.checkPermission(request), false);
    const pending = await billing.check(request);
    assert.equal(pending.decision, 'APPROVAL_REQUIRED');
    assert.equal(pending.reasonCode, 'APPROVAL_REQUIRED_BY_POLICY');
    assert.match(pending.approvalId ?? '', /^approval_/);
    const approvalId = pending.approvalId!;

    await waitFor('the approval at the control plane', async () =>
      (await api('GET', `/api/approvals/${approvalId}`)).status === 200 ? true : undefined,
    );
    const ok = await api('POST', `/api/approvals/${approvalId}/approve`, { comment: 'fine' });
    assert.equal(ok.status, 200, ok.text);

    const allowed = await waitFor('ALLOW with the approval', async () => {
      const d = await billing.check({ ...request, approvalId });
      return d.decision === 'APPROVAL_REQUIRED' ? undefined : d;
    });
    assert.equal(allowed.allowed, true, JSON.stringify(allowed));
    // Used once: presenting it again asks for a new approval.
    const again = await billing.check({ ...request, approvalId });
    assert.equal(again.allowed, false);
    assert.equal(again.decision, 'APPROVAL_REQUIRED');
    assert.notEqual(again.approvalId, approvalId);
  });

  it('checkBatch() decides each item in order, each with its own audit record', async function () {
    const ds = await act.checkBatch([
      { action: 'read:customer_profile', resource: 'c1' },
      { action: SEED.deniedAction, resource: 'c1' },
      { action: 'create:support_ticket', context: { reason: 'batch' } },
    ]);
    assert.deepEqual(
      ds.map((d) => [d.action, d.allowed, d.reasonCode]),
      [
        ['read:customer_profile', true, 'GRANTED'],
        [SEED.deniedAction, false, 'CAPABILITY_NOT_GRANTED'],
        ['create:support_ticket', true, 'GRANTED'],
      ],
    );
    assert.equal(new Set(ds.map((d) => d.auditId)).size, 3);
  });

  it('a unix socket address ("unix:/path") works the same', async function () {
    const u = client({ token, address: `unix:${sockPath}` });
    assert.equal(await u.checkPermission({ action: 'read:customer_profile' }), true);
    assert.equal(await u.checkPermission({ action: SEED.deniedAction }), false);
  });

  it('defaults: the token from ACT_TOKEN, the address from the first entry of ACT_SIDECAR_GRPC_ADDR', async function () {
    const saved = { t: process.env.ACT_TOKEN, a: process.env.ACT_SIDECAR_GRPC_ADDR };
    try {
      process.env.ACT_TOKEN = token;
      process.env.ACT_SIDECAR_GRPC_ADDR = `unix:${sockPath},127.0.0.1:1`;
      const d = client({});
      assert.equal(d.address, `unix:${sockPath}`);
      assert.equal(await d.checkPermission({ action: 'read:customer_profile' }), true);
      delete process.env.ACT_SIDECAR_GRPC_ADDR;
      assert.equal(client({}).address, '127.0.0.1:8711');
      delete process.env.ACT_TOKEN;
      assert.throws(() => new ACTClient(), TypeError);
    } finally {
      for (const [k, v] of [
        ['ACT_TOKEN', saved.t],
        ['ACT_SIDECAR_GRPC_ADDR', saved.a],
      ] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });

  it('one channel per client: 50 checks, sequential and concurrent, over one connection; close() ends it', async function () {
    const r = await relay(sc.grpcPort);
    try {
      const c = new ACTClient({ token, address: `127.0.0.1:${r.port}` });
      for (let i = 0; i < 25; i++)
        assert.equal(await c.checkPermission({ action: 'read:customer_profile' }), true);
      const all = await Promise.all(
        Array.from({ length: 25 }, () => c.checkPermission({ action: 'read:customer_profile' })),
      );
      assert.ok(all.every((x) => x === true));
      assert.equal(r.opened, 1);
      c.close();
      await waitFor('the connection closed', async () => (r.live === 0 ? true : undefined), {
        timeoutMs: 10_000,
      });
      await assert.rejects(
        c.checkPermission({ action: 'read:customer_profile' }),
        (e: unknown) => e instanceof ACTError && e.code === 'CLOSED',
      );
      assert.equal(r.opened, 1);
    } finally {
      await r.close();
    }
  });

  it('a request the sidecar refuses as malformed (an action over 256 bytes) rejects with ACTInvalidArgumentError', async function () {
    await assert.rejects(act.checkPermission({ action: `read:${'x'.repeat(300)}` }), ACTInvalidArgumentError);
  });

  it('a sidecar that goes away: checks reject with ACTUnavailableError, never resolve', async function () {
    const gone = await fx.sidecar(cp, fx.dir('sdkc-sc2'), { sidecarId: 'sc-sdk-ts-2' });
    await waitSynced(cp, gone);
    const c = client({ token, address: `127.0.0.1:${gone.grpcPort}` });
    assert.equal(await c.checkPermission({ action: 'read:customer_profile' }), true);
    await gone.stop();
    for (const p of [
      c.checkPermission({ action: 'read:customer_profile' }),
      c.check({ action: 'read:customer_profile' }),
      c.checkBatch([{ action: 'read:customer_profile' }]),
    ] as Promise<unknown>[])
      await assert.rejects(p, ACTUnavailableError);
  });

  it('the token (sent in the request and as the bearer) appears in no log line of either process', function () {
    fx.assertNoSecretsInLogs(cp.adminKey);
  });
});
