/**
 * The MCP gateway end to end with real parts: a control plane and a sidecar process (dist/),
 * the official SDK's Client over Streamable HTTP with the agent's ACT token as the bearer, and
 * real upstream MCP servers — a billing server made here with the SDK (HTTP) and the reference
 * "everything" server from npm (stdio, spawned by the sidecar).
 *
 * What it proves: least-privilege tool lists; ALLOW forwarded with a decision record (arguments
 * redacted) and an outcome record linked to it; DENY as an isError result the upstream never
 * sees; APPROVAL_REQUIRED held with progress until an approver releases it, or answered at once;
 * the grant bound to the exact arguments and used once (a replay asks again); revocation
 * mid-session; list_changed; upstream down or slow → a clean error in time; malformed JSON-RPC
 * → the protocol's error, and the gateway still serves.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Rest } from '../support/control-plane-helpers';
import { startBillingServer, type BillingServer } from '../support/mcp-billing';
import {
  EVERYTHING,
  McpClients,
  decisionOf,
  rawPost,
  startGatewaySidecar,
  textOf,
  type GatewaySidecar,
} from '../support/mcp-world';
import { freePort, restClient, SidecarFixture, waitFor, waitSynced } from '../support/sidecar-helpers';
import type { ControlPlaneProcess } from '../support/processes';
import { spawnAct } from '../support/processes';

describe('MCP gateway (sidecar, Streamable HTTP)', function () {
  this.timeout(120_000);
  const fx = new SidecarFixture();
  const clients = new McpClients();
  let cp: ControlPlaneProcess;
  let api: Rest;
  let billing: BillingServer;
  let sc: GatewaySidecar;
  let downPort: number;
  let hang: net.Server;
  let payer: { token: string; tokenId: string; agentId: string };
  let reader: { token: string; tokenId: string };

  before(async function () {
    cp = await fx.controlPlane(fx.dir('mcp-cp'));
    api = restClient(cp.url, cp.adminKey);
    billing = await startBillingServer();
    downPort = await freePort();
    // Accepts connections and never answers: an upstream that hangs.
    hang = net.createServer(() => undefined);
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));

    const agent = await fx.createAgent(api, { name: 'mcp billing agent' });
    const policy = await fx.createPolicy(api, {
      name: 'billing over MCP',
      capabilities: [
        'read:account_balance',
        'create:transaction',
        'create:refund',
        'call:billing.slow_op',
        'call:billing.echo',
        'call:everything.echo',
        'call:everything.trigger-long-running-operation',
        'call:down.anything',
        'call:hang.anything',
        'call:billing.big',
        'read:mcp_resource',
        'get:mcp_prompt:everything.simple-prompt',
      ],
      conditions: [{ expression: 'context.arguments.amount <= 50000', actions: ['create:transaction'] }],
      approval_rules: [
        {
          expression: 'context.arguments.amount > 1000',
          actions: ['create:transaction', 'create:refund'],
          description: 'payments over $1000',
        },
      ],
    });
    const tok = await fx.issue(api, agent.agent_id, [policy.policy_id]);
    payer = { token: tok.token, tokenId: tok.token_id, agentId: agent.agent_id };

    const readerAgent = await fx.createAgent(api, { name: 'mcp read-only agent' });
    const readerPolicy = await fx.createPolicy(api, {
      name: 'balances only',
      capabilities: ['read:account_balance'],
    });
    const rt = await fx.issue(api, readerAgent.agent_id, [readerPolicy.policy_id]);
    reader = { token: rt.token, tokenId: rt.token_id };

    sc = await startGatewaySidecar(fx, cp, {
      servers: {
        billing: {
          url: billing.url,
          timeout: '2s',
          tools: {
            create_transaction: {
              action: 'create:transaction',
              resource: '/account_id',
              redact: ['/card_number'],
              on_approval: 'hold',
              approval_timeout: '90s',
            },
            create_refund: { action: 'create:refund', resource: '/account_id', on_approval: 'return' },
            get_balance: { action: 'read:account_balance', resource: '/account_id' },
          },
        },
        everything: { command: process.execPath, args: [EVERYTHING, 'stdio'] },
        down: {
          url: `http://127.0.0.1:${downPort}/mcp`,
          connect_timeout: '2s',
          tools: { anything: { action: 'call:down.anything' } },
        },
        hang: {
          url: `http://127.0.0.1:${(hang.address() as net.AddressInfo).port}/mcp`,
          connect_timeout: '1s',
          tools: { anything: { action: 'call:hang.anything' } },
        },
      },
      limits: { max_result_bytes: 65536 },
      approvals: { progress_interval: '200ms' },
    });
    await waitSynced(cp, sc);
  });

  after(async function () {
    await clients.closeAll();
    await fx.teardown();
    await billing?.close();
    hang?.close();
  });

  const names = async (c: Client) => (await c.listTools()).tools.map((t) => t.name).sort();

  it('tools/list shows only the tools the token can ever be allowed, namespaced per upstream', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const list = await names(c);
    for (const t of [
      'billing.create_transaction',
      'billing.create_refund',
      'billing.get_balance',
      'billing.slow_op',
      'billing.echo',
      'everything.echo',
      'everything.trigger-long-running-operation',
    ])
      assert.ok(list.includes(t), `${t} listed: ${list.join(', ')}`);
    // Not granted: hidden (the everything server has a dozen more tools).
    assert.ok(!list.includes('everything.get-sum'), list.join(', '));
    assert.ok(!list.includes('everything.get-env'), list.join(', '));
    assert.ok(
      list.every((n) => n.startsWith('billing.') || n.startsWith('everything.')),
      list.join(', '),
    );

    const r = await clients.connect(sc.mcpUrl, reader.token);
    assert.deepEqual(await names(r), ['billing.get_balance']);
  });

  it('a token without the capability: not listed, and a direct call is denied with what is missing; the upstream never sees it', async function () {
    const r = await clients.connect(sc.mcpUrl, reader.token);
    const before = billing.callsOf('create_transaction').length;
    const res = await r.callTool({
      name: 'billing.create_transaction',
      arguments: { account_id: 'acct_1', amount: 5 },
    });
    assert.equal(res.isError, true);
    assert.match(textOf(res), /ACT denied/);
    assert.match(textOf(res), /Missing capability: create:transaction/);
    assert.equal(decisionOf(res)?.reason_code, 'CAPABILITY_NOT_GRANTED');
    assert.equal(billing.callsOf('create_transaction').length, before);
    // An allowed one for the same token goes through.
    const ok = await r.callTool({ name: 'billing.get_balance', arguments: { account_id: 'acct_1' } });
    assert.equal(ok.isError, undefined);
    assert.match(textOf(ok), /balance of acct_1/);
  });

  it('$500 create_transaction: allowed and forwarded; a decision record (arguments redacted) and a linked outcome record', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const args = { account_id: 'acct_1', amount: 500, currency: 'USD', card_number: '4111111111111111' };
    const res = await c.callTool({ name: 'billing.create_transaction', arguments: args });
    assert.equal(res.isError, undefined, textOf(res));
    assert.match(textOf(res), /create_transaction tx_\d+ 500 on acct_1/);
    const got = billing.callsOf('create_transaction').at(-1)!;
    assert.deepEqual(
      got.args,
      args,
      'the upstream gets the arguments as sent (redaction is for the audit trail)',
    );

    const records = await waitFor('decision and outcome records at the control plane', async () => {
      const all = await auditOf(api, payer.agentId);
      const outcome = all.find(
        (x) => x.context?.mcp?.record === 'outcome' && x.context.mcp.tool === 'create_transaction',
      );
      if (!outcome) return undefined;
      const decision = all.find((x) => x.audit_id === outcome.context.mcp.decision_audit_id);
      return decision ? { decision, outcome } : undefined;
    });
    const { decision, outcome } = records;
    assert.equal(decision.decision, 'ALLOW');
    assert.equal(decision.action, 'create:transaction');
    assert.equal(decision.resource, 'acct_1');
    assert.equal(decision.context.arguments.amount, 500);
    assert.equal(decision.context.arguments.card_number, '[redacted]');
    assert.equal(decision.context.mcp.server, 'billing');
    assert.match(decision.context.arguments_sha256, /^[0-9a-f]{64}$/);
    assert.ok(
      !JSON.stringify(decision).includes('4111111111111111'),
      'no card number in the decision record',
    );
    assert.ok(!JSON.stringify(outcome).includes('4111111111111111'), 'no card number in the outcome record');
    assert.equal(outcome.context.mcp.outcome, 'ok');
    assert.equal(outcome.action, 'create:transaction');
    assert.ok(outcome.context.mcp.latency_ms >= 0);
    assert.ok(outcome.audit_id > decision.audit_id, 'the outcome comes after its decision');
    assert.ok(outcome.seq > decision.seq, 'and after it in the sidecar chain');
  });

  it('$5,000 create_transaction is held with progress while a human decides; approved → forwarded once', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const before = billing.callsOf('create_transaction').length;
    const progress: string[] = [];
    const args = { account_id: 'acct_2', amount: 5000, currency: 'USD' };
    const call = c.callTool({ name: 'billing.create_transaction', arguments: args }, undefined, {
      onprogress: (p) => progress.push(p.message ?? ''),
      timeout: 60_000,
      resetTimeoutOnProgress: true,
    });
    const approval = await pendingApproval(api, payer.tokenId, 'acct_2');
    await waitFor('a progress notification while held', async () => (progress.length > 0 ? true : undefined));
    assert.match(progress[0]!, new RegExp(`waiting for a human to approve ${approval.approval_id}`));
    assert.equal(
      billing.callsOf('create_transaction').length,
      before,
      'nothing reached the upstream while held',
    );
    assert.equal(approval.action, 'create:transaction');
    assert.equal(approval.context.arguments.amount, 5000, 'the approver sees the arguments');

    const ok = await api('POST', `/api/approvals/${approval.approval_id}/approve`, { comment: 'fine' });
    assert.equal(ok.status, 200, ok.text);
    const res = await call;
    assert.equal(res.isError, undefined, textOf(res));
    assert.match(textOf(res), /create_transaction tx_\d+ 5000 on acct_2/);
    assert.equal(billing.callsOf('create_transaction').length, before + 1);
    await waitFor('the approval USED', async () =>
      (await api('GET', `/api/approvals/${approval.approval_id}`)).body.status === 'USED' ? true : undefined,
    );

    // A replay with the used approval (from another session) is not executed: a new approval is asked.
    const other = await clients.connect(sc.mcpUrl, payer.token);
    const replay = other.callTool(
      {
        name: 'billing.create_transaction',
        arguments: args,
        _meta: { 'act.dev/approval_id': approval.approval_id },
      },
      undefined,
      { timeout: 60_000, resetTimeoutOnProgress: true },
    );
    const second = await pendingApproval(api, payer.tokenId, 'acct_2', approval.approval_id);
    assert.notEqual(second.approval_id, approval.approval_id);
    const no = await api('POST', `/api/approvals/${second.approval_id}/deny`, { comment: 'replay' });
    assert.equal(no.status, 200, no.text);
    const denied = await replay;
    assert.equal(denied.isError, true);
    assert.equal(decisionOf(denied)?.reason_code, 'APPROVAL_DENIED', textOf(denied));
    assert.equal(
      billing.callsOf('create_transaction').length,
      before + 1,
      'the replay never reached the upstream',
    );
  });

  it('create_refund (on_approval: return) answers at once with the approval id; the grant binds the exact arguments', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const before = billing.callsOf('create_refund').length;
    const args = { account_id: 'acct_3', amount: 2000 };
    const first = await c.callTool({ name: 'billing.create_refund', arguments: args });
    assert.equal(first.isError, true);
    const id = decisionOf(first)?.approval_id as string;
    assert.match(id, /^approval_/);
    assert.match(textOf(first), new RegExp(`Ask a person to approve ${id}`));
    assert.match(textOf(first), /exactly the same call again/);
    await waitFor('the approval at the control plane', async () =>
      (await api('GET', `/api/approvals/${id}`)).status === 200 ? true : undefined,
    );
    assert.equal((await api('POST', `/api/approvals/${id}/approve`, {})).status, 200);

    // Other arguments are another request: a new approval, not this grant.
    const changed = await c.callTool({ name: 'billing.create_refund', arguments: { ...args, amount: 2001 } });
    assert.equal(changed.isError, true);
    assert.notEqual(decisionOf(changed)?.approval_id, id);
    assert.equal(billing.callsOf('create_refund').length, before);

    // The same call again, in the same session: the remembered grant is used, once.
    const res = await waitFor('the grant at the sidecar', async () => {
      const r = await c.callTool({ name: 'billing.create_refund', arguments: args });
      return r.isError ? undefined : r;
    });
    assert.match(textOf(res), /create_refund tx_\d+ 2000 on acct_3/);
    assert.equal(billing.callsOf('create_refund').length, before + 1);
    const again = await c.callTool({ name: 'billing.create_refund', arguments: args });
    assert.equal(again.isError, true, 'a grant is used once');
    assert.equal(decisionOf(again)?.decision, 'APPROVAL_REQUIRED');
    assert.equal(billing.callsOf('create_refund').length, before + 1);
  });

  it('a condition on the arguments denies with the rule (context.arguments.amount)', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const res = await c.callTool({
      name: 'billing.create_transaction',
      arguments: { account_id: 'acct_4', amount: 60000 },
    });
    assert.equal(res.isError, true);
    assert.equal(decisionOf(res)?.reason_code, 'CONDITION_FAILED');
    assert.match(textOf(res), /context\.arguments\.amount <= 50000/);
  });

  it('progress of a long-running upstream tool reaches the agent (everything server over stdio)', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const echo = await c.callTool({ name: 'everything.echo', arguments: { message: 'hello' } });
    assert.match(textOf(echo), /hello/);
    const progress: number[] = [];
    const res = await c.callTool(
      { name: 'everything.trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
      undefined,
      { onprogress: (p) => progress.push(p.progress) },
    );
    assert.equal(res.isError, undefined, textOf(res));
    assert.ok(progress.length >= 2, `progress relayed: ${progress.join(',')}`);
    const sum = await c.callTool({ name: 'everything.get-sum', arguments: { a: 1, b: 2 } });
    assert.equal(sum.isError, true, 'not granted, so not called');
    assert.match(textOf(sum), /Missing capability: call:everything.get-sum/);
  });

  it('resources go through the same check (read:mcp_resource); a token without it lists none and is refused', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const list = await c.listResources();
    assert.ok(list.resources.length > 0);
    const uri = list.resources[0]!.uri;
    const read = await c.readResource({ uri });
    assert.ok(read.contents.length > 0);

    const r = await clients.connect(sc.mcpUrl, reader.token);
    assert.deepEqual((await r.listResources()).resources, []);
    const err = await r.readResource({ uri }).then(
      () => assert.fail('expected a refusal'),
      (e: McpError) => e,
    );
    assert.equal(err.code, -32010);
    assert.match(err.message, /Missing capability: read:mcp_resource/);
  });

  it('prompts go through the same check (get:mcp_prompt, resource <server>.<prompt>)', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const prompts = (await c.listPrompts()).prompts.map((p) => p.name);
    assert.ok(prompts.includes('everything.simple-prompt'), prompts.join(', '));
    const ok = await c.getPrompt({ name: 'everything.simple-prompt' });
    assert.ok(ok.messages.length > 0);
    // The capability's resource pattern names one prompt: another is refused.
    const err = await c.getPrompt({ name: 'everything.args-prompt', arguments: { city: 'Paris' } }).then(
      () => assert.fail('expected a refusal'),
      (e: McpError) => e,
    );
    assert.equal(err.code, -32010);
    assert.match(err.message, /get:mcp_prompt on "everything.args-prompt"/);
    const r = await clients.connect(sc.mcpUrl, reader.token);
    assert.deepEqual((await r.listPrompts()).prompts, []);
  });

  it('an upstream that is down: a clean MCP error at once, audited, and the gateway goes on serving', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const t0 = Date.now();
    const err = await c.callTool({ name: 'down.anything', arguments: {} }).then(
      () => assert.fail('expected an error'),
      (e: McpError) => e,
    );
    assert.ok(err instanceof McpError, String(err));
    assert.equal(err.code, -32000);
    assert.match(err.message, /upstream MCP server down is unavailable/);
    assert.ok(Date.now() - t0 < 10_000);
    const ok = await c.callTool({ name: 'billing.echo', arguments: { text: 'still here' } });
    assert.equal(textOf(ok), 'still here');
    const outcome = await waitFor('the outcome record of the failed call', async () =>
      (await auditOf(api, payer.agentId)).find(
        (x) => x.context?.mcp?.record === 'outcome' && x.context.mcp.server === 'down',
      ),
    );
    assert.equal(outcome.context.mcp.outcome, 'upstream_error');
  });

  it('an upstream that accepts connections and never answers: a clean error within connect_timeout', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const t0 = Date.now();
    const err = await c.callTool({ name: 'hang.anything', arguments: {} }).then(
      () => assert.fail('expected an error'),
      (e: McpError) => e,
    );
    assert.equal(err.code, -32000, err.message);
    assert.match(err.message, /upstream MCP server hang is unavailable/);
    assert.ok(Date.now() - t0 < 10_000, `answered after ${Date.now() - t0} ms`);
    // tools/list does not hang on it either.
    assert.ok((await names(c)).includes('billing.echo'));
  });

  it('an upstream answer over limits.max_result_bytes is refused, not passed on', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const ok = await c.callTool({ name: 'billing.big', arguments: { bytes: 1000 } });
    assert.equal(textOf(ok).length, 1000);
    const err = await c.callTool({ name: 'billing.big', arguments: { bytes: 200_000 } }).then(
      () => assert.fail('expected an error'),
      (e: McpError) => e,
    );
    assert.match(err.message, /larger than 65536 bytes/);
    const outcome = await waitFor('the outcome record', async () =>
      (await auditOf(api, payer.agentId)).find(
        (x) => x.context?.mcp?.record === 'outcome' && x.context.mcp.outcome === 'result_too_large',
      ),
    );
    assert.equal(outcome.context.mcp.tool, 'big');
    assert.equal(textOf(await c.callTool({ name: 'billing.echo', arguments: { text: 'next' } })), 'next');
  });

  it('an upstream that is slow: RequestTimeout within the configured timeout (2s), not a hung agent', async function () {
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const t0 = Date.now();
    const err = await c.callTool({ name: 'billing.slow_op', arguments: { ms: 20_000 } }).then(
      () => assert.fail('expected a timeout'),
      (e: McpError) => e,
    );
    const took = Date.now() - t0;
    assert.equal(err.code, -32001, err.message);
    assert.match(err.message, /did not answer in time/);
    assert.ok(took < 15_000, `answered after ${took} ms`);
    const ok = await c.callTool({ name: 'billing.echo', arguments: { text: 'after the timeout' } });
    assert.equal(textOf(ok), 'after the timeout');
  });

  it('malformed JSON-RPC gets the protocol error (never a crash); bad bearer or session is refused; the gateway still serves', async function () {
    const auth = { authorization: `Bearer ${payer.token}` };
    const parse = await rawPost(sc.mcpUrl, '{"jsonrpc":"2.0","id":1,"method":', auth);
    assert.equal(parse.status, 400);
    assert.equal(parse.json.error.code, -32700);
    const notInit = await rawPost(sc.mcpUrl, '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', auth);
    assert.equal(notInit.status, 400);
    const noBearer = await rawPost(sc.mcpUrl, '{}');
    assert.equal(noBearer.status, 401);
    assert.match(String(noBearer.headers.get('www-authenticate')), /^Bearer/);
    const badToken = await rawPost(
      sc.mcpUrl,
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
      { authorization: `Bearer act_${'A'.repeat(60)}.${'B'.repeat(40)}` },
    );
    assert.equal(badToken.status, 401, badToken.text);
    const big = await rawPost(sc.mcpUrl, JSON.stringify({ pad: 'x'.repeat(2 * 1024 * 1024) }), auth);
    assert.equal(big.status, 413);

    // On a live session: a bad request and an unknown method are answered, not fatal.
    const c = await clients.connect(sc.mcpUrl, payer.token);
    const sid = (c.transport as unknown as { sessionId: string }).sessionId;
    const session = { ...auth, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' };
    const badParams = await rawPost(
      sc.mcpUrl,
      '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":5}}',
      session,
    );
    assert.equal(badParams.json.error.code, -32602, badParams.text);
    const unknown = await rawPost(sc.mcpUrl, '{"jsonrpc":"2.0","id":8,"method":"no/such"}', session);
    assert.equal(unknown.json.error.code, -32601, unknown.text);
    const garbage = await rawPost(sc.mcpUrl, '[1,2,3]', session);
    assert.ok(garbage.status >= 400, garbage.text);
    // The session belongs to its token: another token cannot use it.
    const stolen = await rawPost(sc.mcpUrl, '{"jsonrpc":"2.0","id":9,"method":"tools/list"}', {
      ...session,
      authorization: `Bearer ${reader.token}`,
    });
    assert.equal(stolen.status, 403);
    const unknownTool = await c.callTool({ name: 'billing.nope', arguments: {} }).then(
      () => assert.fail('expected an error'),
      (e: McpError) => e,
    );
    assert.equal(unknownTool.code, -32602);

    const ok = await c.callTool({ name: 'billing.echo', arguments: { text: 'fine' } });
    assert.equal(textOf(ok), 'fine');
    assert.equal(sc.child.exitCode, null);
  });

  it('revoking the token mid-session: the session is told its tools changed, and the next call is denied', async function () {
    const agent = await fx.createAgent(api, { name: 'mcp revoked agent' });
    const policy = await fx.createPolicy(api, { name: 'echo only', capabilities: ['call:billing.echo'] });
    const tok = await fx.issue(api, agent.agent_id, [policy.policy_id]);
    await waitSynced(cp, sc);
    const c = await clients.connect(sc.mcpUrl, tok.token);
    let changed = 0;
    c.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    assert.deepEqual(await names(c), ['billing.echo']);
    const before = billing.callsOf('echo').length;
    assert.equal(textOf(await c.callTool({ name: 'billing.echo', arguments: { text: 'one' } })), 'one');

    const r = await api('POST', `/api/tokens/${tok.token_id}/revoke?wait=5s`, { reason: 'test' });
    assert.equal(r.status, 200, r.text);
    await waitFor('notifications/tools/list_changed', async () => (changed > 0 ? true : undefined));
    assert.deepEqual(await names(c), []);
    const res = await c.callTool({ name: 'billing.echo', arguments: { text: 'two' } });
    assert.equal(res.isError, true);
    assert.equal(decisionOf(res)?.reason_code, 'TOKEN_REVOKED');
    assert.equal(
      billing.callsOf('echo').length,
      before + 1,
      'the call after the revocation never reached the upstream',
    );
  });

  it('a policy change shows up in tools/list with list_changed', async function () {
    const agent = await fx.createAgent(api, { name: 'mcp growing agent' });
    const policy = await fx.createPolicy(api, { name: 'grows', capabilities: ['call:billing.echo'] });
    const tok = await fx.issue(api, agent.agent_id, [policy.policy_id]);
    await waitSynced(cp, sc);
    const c = await clients.connect(sc.mcpUrl, tok.token);
    let changed = 0;
    c.setNotificationHandler(ToolListChangedNotificationSchema, () => void changed++);
    assert.deepEqual(await names(c), ['billing.echo']);
    const put = await api('PUT', `/api/policies/${policy.policy_id}?wait=5s`, {
      name: 'grows',
      capabilities: ['call:billing.echo', 'read:account_balance'],
    });
    assert.equal(put.status, 200, put.text);
    await waitFor('notifications/tools/list_changed', async () => (changed > 0 ? true : undefined));
    assert.deepEqual(await names(c), ['billing.echo', 'billing.get_balance']);
  });

  it('a bad config stops the sidecar at start with one line naming the field', async function () {
    const dir = fx.dir('mcp-bad');
    const file = `${dir}/mcp.yaml`;
    writeFileSync(
      file,
      'servers:\n  billing:\n    url: http://127.0.0.1:1/mcp\n    tools:\n      create_transaction:\n        on_approval: wait\n',
    );
    const p = spawnAct(
      [
        'sidecar',
        '--grpc-addr',
        '127.0.0.1:0',
        '--http-addr',
        '127.0.0.1:0',
        '--data-dir',
        `${dir}/data`,
        '--control-plane',
        `127.0.0.1:${cp.grpcPort}`,
        '--mcp-config',
        file,
        '--mcp-addr',
        '127.0.0.1:0',
      ],
      { ACT_SIDECAR_KEY: cp.adminKey },
    );
    const code = await new Promise<number | null>((r) => p.child.once('exit', (c) => r(c)));
    assert.notEqual(code, 0);
    // One line (plain, or the JSON log line of the failed start) with the field and the setting.
    const lines = p.output.map((l) => {
      try {
        const rec = JSON.parse(l) as { err?: { message?: string; setting?: string } };
        return `${rec.err?.message ?? ''} ${rec.err?.setting ?? ''}`;
      } catch {
        return l;
      }
    });
    const line = lines.find((l) => l.includes('on_approval'));
    assert.ok(line, p.output.join('\n'));
    assert.match(
      line,
      /servers\.billing\.tools\.create_transaction\.on_approval: expected "hold" or "return", got "wait"/,
    );
    assert.match(line, /--mcp-config ?\/ ?ACT_MCP_CONFIG/);
  });

  it('a sidecar killed while the upstream works leaves the call on record (the decision), with no outcome', async function () {
    const dataDir = fx.dir('mcp-crash');
    const configFile = `${dataDir}/mcp.yaml`;
    writeFileSync(configFile, `servers:\n  billing:\n    url: ${billing.url}\n    timeout: 30s\n`);
    const args = ['--mcp-config', configFile, '--mcp-addr', '127.0.0.1:0'];
    const first = await fx.sidecar(cp, `${dataDir}/data`, { sidecarId: 'mcp-crash', args });
    const url = `http://127.0.0.1:${Number((await first.waitForLog('mcp gateway listening')).mcp_port)}/mcp`;
    await waitSynced(cp, first);
    const c = await clients.connect(url, payer.token);
    const before = billing.callsOf('slow_op').length;
    const pending = c.callTool({ name: 'billing.slow_op', arguments: { ms: 8000 } }).catch((e: Error) => e);
    await waitFor('the upstream to get the call', async () =>
      billing.callsOf('slow_op').length > before ? true : undefined,
    );
    await first.kill(); // SIGKILL while the upstream works
    assert.ok((await pending) instanceof Error, 'the agent sees the connection drop');

    const second = await fx.sidecar(cp, `${dataDir}/data`, { sidecarId: 'mcp-crash', args });
    await second.waitForLog('mcp gateway listening');
    const decision = await waitFor('the decision record, shipped by the restarted sidecar', async () =>
      (await auditOf(api, payer.agentId)).find(
        (x) =>
          x.source === 'mcp-crash' &&
          x.action === 'call:billing.slow_op' &&
          x.context?.mcp?.record !== 'outcome',
      ),
    );
    assert.equal(decision.decision, 'ALLOW');
    assert.equal(decision.context.arguments.ms, 8000);
    const outcome = (await auditOf(api, payer.agentId)).find(
      (x) => x.context?.mcp?.decision_audit_id === decision.audit_id,
    );
    assert.equal(outcome, undefined, 'no outcome was recorded for a call the crash cut off');
  });

  it('no token or key reaches a log line', function () {
    fx.assertNoSecretsInLogs(cp.adminKey);
  });
});

/** Every audit record of an agent (NDJSON export). */
async function auditOf(api: Rest, agentId: string): Promise<any[]> {
  const r = await api('GET', `/api/audit/export?format=ndjson&agent_id=${agentId}`);
  assert.equal(r.status, 200, r.text);
  return r.text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Waits for a PENDING approval of `tokenId` on `resource` (other than `not`). */
async function pendingApproval(api: Rest, tokenId: string, resource: string, not?: string): Promise<any> {
  return waitFor('a pending approval at the control plane', async () => {
    const r = await api('GET', '/api/approvals?status=PENDING&limit=100');
    return (r.body.approvals as any[]).find(
      (a) => a.token_id === tokenId && a.resource === resource && a.approval_id !== not,
    );
  });
}
