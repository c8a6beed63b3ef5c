/**
 * The SDK's adapters with the real frameworks against a real control plane and sidecar:
 * an Express 5 app and a Fastify 5 app listening on loopback ports (requests over HTTP with
 * fetch), and LangChain.js tools from @langchain/core. Allowed requests reach the handler; a deny
 * is a 403 (a tool answer the model can read); a required approval carries its id; an unreachable
 * sidecar fails closed (503, or a thrown error), and the handler or tool never runs then.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { ToolMessage } from '@langchain/core/messages';
import { tool } from '@langchain/core/tools';
import { ACTClient, ACTUnavailableError } from '@act-platform/sdk';
import { actExpress } from '@act-platform/sdk/express';
import { actFastify } from '@act-platform/sdk/fastify';
import { withACT } from '@act-platform/sdk/langchain';
import {
  ApprovalStatus,
  Decision,
  DecisionServiceService,
  ReasonCode,
  type DecisionServiceServer,
} from '../../src/gen/act/v1/decision';
import { SEED, type Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import {
  SidecarFixture,
  freePort,
  restClient,
  waitAudit,
  waitFor,
  waitSynced,
} from '../support/sidecar-helpers';

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const post = (url: string, body: unknown) =>
  get(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('@act-platform/sdk adapters (Express, Fastify, LangChain.js) against a live sidecar', function () {
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
  let agentId: string;
  let act: ACTClient;
  let billing: ACTClient;
  let down: ACTClient;

  before(async function () {
    cp = await fx.controlPlane(fx.dir('sdka-cp'));
    api = restClient(cp.url, cp.adminKey);
    sc = await fx.sidecar(cp, fx.dir('sdka-sc'), { sidecarId: 'sc-sdk-adapters' });
    const a = await fx.agentWithToken(api, 'sdk-adapters-agent');
    agentId = a.agentId;
    const b = await fx.createAgent(api, { name: 'sdk-adapters-billing' });
    const policy = await fx.createPolicy(api, {
      name: 'sdk-adapters transactions',
      capabilities: ['create:transaction', 'call:make_payment'],
      approval_rules: ['context.amount > 1000'],
    });
    const bt = await fx.issue(api, b.agent_id, [policy.policy_id]);
    await waitSynced(cp, sc);
    const address = `127.0.0.1:${sc.grpcPort}`;
    act = client({ token: a.token, address });
    billing = client({ token: bt.token, address });
    down = client({ token: a.token, address: `127.0.0.1:${await freePort()}`, maxAttempts: 1 });
  });

  after(async function () {
    for (const c of clients) c.close();
    await fx.teardown();
  });

  /** Approves `approvalId` at the control plane once it has arrived there. */
  async function approve(approvalId: string): Promise<void> {
    await waitFor('the approval at the control plane', async () =>
      (await api('GET', `/api/approvals/${approvalId}`)).status === 200 ? true : undefined,
    );
    const r = await api('POST', `/api/approvals/${approvalId}/approve`, { comment: 'ok' });
    assert.equal(r.status, 200, r.text);
  }

  describe('Express middleware', function () {
    let server: Server;
    let url: string;
    const ran: string[] = [];

    before(async function () {
      const app = express();
      app.use(express.json());
      const read = actExpress<express.Request<{ resourceId: string }>>({
        client: act,
        action: 'read:customer_profile',
        resource: (req) => req.params.resourceId,
        context: (req) => ({ ip: req.ip, via: 'express' }),
      });
      app.get('/customers/:resourceId', read, (req, res) => {
        ran.push(`read ${req.params.resourceId}`);
        res.json({ ok: true, audit_id: res.locals.act.auditId });
      });
      app.delete(
        '/customers/:resourceId',
        actExpress<express.Request<{ resourceId: string }>>({
          client: act,
          action: 'delete:customer_account',
          resource: (req) => req.params.resourceId,
        }),
        (_req, res) => {
          ran.push('delete');
          res.json({ ok: true });
        },
      );
      app.post(
        '/transactions',
        actExpress<express.Request>({
          client: billing,
          action: 'create:transaction',
          context: (req) => ({ amount: req.body.amount }),
        }),
        (_req, res) => {
          ran.push('transaction');
          res.json({ ok: true });
        },
      );
      app.get(
        '/down/:id',
        actExpress({ client: down, action: 'read:customer_profile', resource: (req) => req.params.id }),
        (_req, res) => {
          ran.push('down');
          res.json({ ok: true });
        },
      );
      app.get(
        '/broken',
        actExpress({ client: act, action: () => undefined as unknown as string }),
        (_req, res) => {
          ran.push('broken');
          res.json({ ok: true });
        },
      );
      // Express's default error handler would print the stack; answer 500 quietly instead.
      app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        res.status(500).json({ error: err.name });
      });
      server = app.listen(0, '127.0.0.1');
      await new Promise<void>((r) => server.once('listening', () => r()));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });

    after(async function () {
      await new Promise<void>((r) => server.close(() => r()));
    });

    it('allowed: the handler runs, with the decision in res.locals.act (audited with the route context)', async function () {
      const r = await get(`${url}/customers/customer_54321`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(ran, ['read customer_54321']);
      const rec = await waitAudit(api, r.body.audit_id, `agent_id=${agentId}`);
      assert.equal(rec.action, 'read:customer_profile');
      assert.equal(rec.resource, 'customer_54321');
      assert.equal(rec.context.via, 'express');
    });

    it('denied: 403 {error, reason, reason_code, audit_id}; the handler does not run', async function () {
      ran.length = 0;
      const r = await get(`${url}/customers/customer_54321`, { method: 'DELETE' });
      assert.equal(r.status, 403);
      assert.equal(r.body.error, 'Agent not authorized');
      assert.equal(r.body.reason, 'Capability not granted in token');
      assert.equal(r.body.reason_code, 'CAPABILITY_NOT_GRANTED');
      assert.match(r.body.audit_id, /^audit_/);
      assert.equal(r.body.approval_id, undefined);
      assert.deepEqual(ran, []);
    });

    it('approval required: 403 with approval_id; the handler does not run', async function () {
      ran.length = 0;
      const small = await post(`${url}/transactions`, { amount: 5 });
      assert.equal(small.status, 200);
      const big = await post(`${url}/transactions`, { amount: 5000 });
      assert.equal(big.status, 403);
      assert.equal(big.body.error, 'Approval required');
      assert.equal(big.body.reason_code, 'APPROVAL_REQUIRED_BY_POLICY');
      assert.match(big.body.approval_id, /^approval_/);
      assert.deepEqual(ran, ['transaction']);
    });

    it('sidecar unreachable: 503, fail closed; the handler does not run', async function () {
      ran.length = 0;
      const r = await get(`${url}/down/c1`);
      assert.equal(r.status, 503);
      assert.equal(r.body.error, 'Permission check unavailable');
      assert.equal(r.body.reason_code, 'UNAVAILABLE');
      assert.doesNotMatch(JSON.stringify(r.body), /127\.0\.0\.1/, 'no internal address to the caller');
      assert.deepEqual(ran, []);
    });

    it('a request the sidecar calls malformed is a 400; a resolver that returns no action goes to next(err)', async function () {
      ran.length = 0;
      const long = await get(`${url}/customers/${'x'.repeat(2000)}`);
      assert.equal(long.status, 400, JSON.stringify(long.body));
      assert.equal(long.body.reason_code, 'INVALID_ARGUMENT');
      const broken = await get(`${url}/broken`);
      assert.equal(broken.status, 500);
      assert.equal(broken.body.error, 'TypeError');
      assert.deepEqual(ran, []);
    });
  });

  describe('Fastify preHandler hook', function () {
    let app: FastifyInstance;
    let url: string;
    const ran: string[] = [];

    before(async function () {
      app = Fastify();
      app.get<{ Params: { id: string } }>(
        '/customers/:id',
        {
          preHandler: actFastify<{ Params: { id: string } }>({
            client: act,
            action: 'read:customer_profile',
            resource: (req) => req.params.id,
          }),
        },
        async (req) => {
          ran.push(`read ${req.params.id}`);
          return { ok: true, reason_code: req.act?.reasonCode };
        },
      );
      app.delete(
        '/customers/:id',
        { preHandler: actFastify({ client: act, action: 'delete:customer_account' }) },
        async () => {
          ran.push('delete');
          return { ok: true };
        },
      );
      app.post<{ Body: { amount: number } }>(
        '/transactions',
        {
          preHandler: actFastify<{ Body: { amount: number } }>({
            client: billing,
            action: 'create:transaction',
            context: (req) => ({ amount: req.body.amount }),
          }),
        },
        async () => {
          ran.push('transaction');
          return { ok: true };
        },
      );
      app.get(
        '/down',
        { preHandler: actFastify({ client: down, action: 'read:customer_profile' }) },
        async () => {
          ran.push('down');
          return { ok: true };
        },
      );
      await app.listen({ port: 0, host: '127.0.0.1' });
      url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    });

    after(async function () {
      await app.close();
    });

    it('allowed: the handler runs, with the decision as request.act', async function () {
      const r = await get(`${url}/customers/customer_54321`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, { ok: true, reason_code: 'GRANTED' });
      assert.deepEqual(ran, ['read customer_54321']);
    });

    it('denied: 403 {error, reason, reason_code, audit_id}; the handler does not run', async function () {
      ran.length = 0;
      const r = await get(`${url}/customers/c1`, { method: 'DELETE' });
      assert.equal(r.status, 403);
      assert.equal(r.body.error, 'Agent not authorized');
      assert.equal(r.body.reason_code, 'CAPABILITY_NOT_GRANTED');
      assert.match(r.body.audit_id, /^audit_/);
      assert.deepEqual(ran, []);
    });

    it('approval required: 403 with approval_id', async function () {
      ran.length = 0;
      const r = await post(`${url}/transactions`, { amount: 5000 });
      assert.equal(r.status, 403);
      assert.equal(r.body.error, 'Approval required');
      assert.match(r.body.approval_id, /^approval_/);
      assert.deepEqual(ran, []);
    });

    it('sidecar unreachable: 503, fail closed; the handler does not run', async function () {
      ran.length = 0;
      const r = await get(`${url}/down`);
      assert.equal(r.status, 503);
      assert.equal(r.body.reason_code, 'UNAVAILABLE');
      assert.deepEqual(ran, []);
    });

    it('as an app-wide hook (addHook): every route is checked', async function () {
      const wide = Fastify();
      wide.addHook(
        'preHandler',
        actFastify({
          client: act,
          action: (req) => (req.method === 'GET' ? 'read:customer_profile' : SEED.deniedAction),
        }),
      );
      wide.get('/a', async () => ({ ok: true }));
      wide.post('/b', async () => ({ ok: true }));
      await wide.listen({ port: 0, host: '127.0.0.1' });
      try {
        const base = `http://127.0.0.1:${(wide.server.address() as AddressInfo).port}`;
        assert.equal((await get(`${base}/a`)).status, 200);
        assert.equal((await post(`${base}/b`, {})).status, 403);
      } finally {
        await wide.close();
      }
    });
  });

  describe('LangChain.js tool wrapper', function () {
    const ran: unknown[] = [];
    const profileTool = tool(
      async (input: { customerId: string }) => {
        ran.push(input);
        return `profile of ${input.customerId}`;
      },
      {
        name: 'read_customer_profile',
        description: 'Reads a customer profile',
        schema: {
          type: 'object',
          properties: { customerId: { type: 'string' } },
          required: ['customerId'],
        },
      },
    );
    const deleteTool = tool(
      async (input: { customerId: string }) => {
        ran.push(input);
        return 'deleted';
      },
      {
        name: 'delete_account',
        description: 'Deletes a customer account',
        schema: { type: 'object', properties: { customerId: { type: 'string' } }, required: ['customerId'] },
      },
    );
    const paymentTool = tool(
      async (input: { amount: number; to: string }) => {
        ran.push(input);
        return `paid ${input.amount} to ${input.to}`;
      },
      {
        name: 'make_payment',
        description: 'Pays an amount',
        schema: {
          type: 'object',
          properties: { amount: { type: 'number' }, to: { type: 'string' } },
          required: ['amount', 'to'],
        },
      },
    );

    it('allowed: the check runs first, then the tool (plain input or a tool call)', async function () {
      ran.length = 0;
      const guarded = withACT(profileTool, {
        client: act,
        action: 'read:customer_profile',
        resource: (i: { customerId: string }) => i.customerId,
      });
      assert.equal(guarded.name, 'read_customer_profile');
      assert.equal(guarded.description, 'Reads a customer profile');
      assert.equal(await guarded.invoke({ customerId: 'customer_54321' }), 'profile of customer_54321');
      assert.deepEqual(ran, [{ customerId: 'customer_54321' }]);
      const asCall = await guarded.invoke({
        id: 'call_1',
        name: 'read_customer_profile',
        args: { customerId: 'c2' },
        type: 'tool_call',
      });
      assert.ok(asCall instanceof ToolMessage);
      assert.equal(asCall.status, 'success');
      assert.equal(asCall.content, 'profile of c2');
      assert.equal(asCall.tool_call_id, 'call_1');
    });

    it('denied: "Permission denied: …" as the answer (a ToolMessage with status error for a tool call); the tool does not run', async function () {
      ran.length = 0;
      const guarded = withACT(deleteTool, { client: act }); // action call:delete_account, not granted
      const text = await guarded.invoke({ customerId: 'c1' });
      assert.equal(typeof text, 'string');
      assert.match(
        text as string,
        /^Permission denied: Capability not granted in token \[CAPABILITY_NOT_GRANTED\] \(missing capability call:delete_account\)/,
      );
      const msg = await guarded.invoke({
        id: 'call_2',
        name: 'delete_account',
        args: { customerId: 'c1' },
        type: 'tool_call',
      });
      assert.ok(msg instanceof ToolMessage);
      assert.equal(msg.status, 'error');
      assert.equal(msg.tool_call_id, 'call_2');
      assert.match(String(msg.content), /^Permission denied: /);
      assert.deepEqual(ran, []);
    });

    it('approval: "Needs human approval (approval_…)"; once approved the same call runs, once', async function () {
      ran.length = 0;
      const guarded = withACT(paymentTool, { client: billing }); // action call:make_payment
      const args = { amount: 5000, to: 'acct_9' };
      const first = (await guarded.invoke(args)) as string;
      const m = /^Needs human approval \((approval_[A-Za-z0-9_-]+)\): /.exec(first);
      assert.ok(m, first);
      assert.deepEqual(ran, []);
      await approve(m[1]!);
      // The wrapper presents the remembered approval when the same call comes again.
      const out = await waitFor('the approved call to run', async () => {
        const r = (await guarded.invoke(args)) as string;
        return r.startsWith('Needs human approval') ? undefined : r;
      });
      assert.equal(out, 'paid 5000 to acct_9');
      assert.deepEqual(ran, [args]);
      // Used once: the next identical call needs a new approval.
      const again = (await guarded.invoke(args)) as string;
      assert.match(again, /^Needs human approval \(approval_/);
      assert.ok(!again.includes(m[1]!), again);
      assert.deepEqual(ran, [args]);
    });

    it('sidecar unreachable: the call throws ACTUnavailableError and the tool does not run', async function () {
      ran.length = 0;
      const guarded = withACT(profileTool, { client: down, action: 'read:customer_profile' });
      await assert.rejects(guarded.invoke({ customerId: 'c1' }), ACTUnavailableError);
      assert.deepEqual(ran, []);
    });

    it('waitForApprovalMs: waits on WaitForApproval, re-checks with the approval, then runs (scripted DecisionService)', async function () {
      // The live sidecar's WaitForApproval is not served yet: a scripted grpc-js server stands in.
      const seen: { method: string; req: any }[] = [];
      const server = new grpc.Server();
      const impl: DecisionServiceServer = {
        checkPermission: (call, cb) => {
          seen.push({ method: 'check', req: call.request });
          const approved = call.request.approval_id === 'approval_9';
          cb(null, {
            allowed: approved,
            action: call.request.action,
            decision: approved ? Decision.ALLOW : Decision.APPROVAL_REQUIRED,
            reason_code: approved ? ReasonCode.GRANTED : ReasonCode.APPROVAL_REQUIRED_BY_POLICY,
            reason: approved ? 'ok' : 'Human approval required',
            audit_id: 'audit_x',
            approval_id: 'approval_9',
            details: undefined,
            policy_revision: 1,
          });
        },
        checkPermissions: (_call, cb) => cb({ code: grpc.status.UNIMPLEMENTED }),
        waitForApproval: (call) => {
          seen.push({ method: 'wait', req: call.request });
          call.write({
            approval_id: 'approval_9',
            status: ApprovalStatus.APPROVED,
            decided: true,
            resolved_by: 'ops',
            comment: '',
            expires_at: '',
            reason: 'Approved',
          });
          call.end();
        },
      };
      server.addService(DecisionServiceService, impl);
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) =>
          e ? reject(e) : resolve(p),
        ),
      );
      try {
        ran.length = 0;
        const c = client({ token: 'act_scripted.sig', address: `127.0.0.1:${port}` });
        const guarded = withACT(paymentTool, { client: c, waitForApprovalMs: 5000 });
        assert.equal(await guarded.invoke({ amount: 5000, to: 'acct_1' }), 'paid 5000 to acct_1');
        assert.deepEqual(
          seen.map((s) => [s.method, s.req.approval_id]),
          [
            ['check', ''],
            ['wait', 'approval_9'],
            ['check', 'approval_9'],
          ],
        );
        assert.equal(seen[1]!.req.timeout_ms, 5000);
        assert.deepEqual(seen[2]!.req.context, { amount: 5000, to: 'acct_1' });
        assert.equal(ran.length, 1);
      } finally {
        server.forceShutdown();
      }
    });
  });

  it("the description's example: checkPermission() inside a hand-written Express middleware", async function () {
    // As in the product description, with `req.route.action` set on the route object.
    const app = express();
    async function actAuthMiddleware(
      req: express.Request<{ resourceId: string }>,
      res: express.Response,
      next: express.NextFunction,
    ) {
      const allowed = await act.checkPermission({
        action: req.route.action,
        resource: req.params.resourceId,
        context: { ip: req.ip, user: (req as express.Request & { user?: unknown }).user },
      });
      if (allowed) {
        next(); // Permission granted
      } else {
        res.status(403).json({ error: 'Agent not authorized' });
      }
    }
    const read = app.route('/customers/:resourceId') as ReturnType<typeof app.route> & { action?: string };
    read.action = SEED.check.action;
    read.get(actAuthMiddleware, (_req, res) => res.json({ ok: true }));
    const del = app.route('/accounts/:resourceId') as ReturnType<typeof app.route> & { action?: string };
    del.action = SEED.deniedAction;
    del.get(actAuthMiddleware, (_req, res) => res.json({ ok: true }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((r) => server.once('listening', () => r()));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      assert.equal((await get(`${base}/customers/customer_54321`)).status, 200);
      const no = await get(`${base}/accounts/customer_54321`);
      assert.equal(no.status, 403);
      assert.deepEqual(no.body, { error: 'Agent not authorized' });
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
