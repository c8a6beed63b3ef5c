/**
 * `act mcp wrap` as a desktop agent runs it: the official SDK's Client spawns the wrapper over
 * stdio (StdioClientTransport), the wrapper spawns the real reference "everything" server, and
 * every call is checked against a real sidecar over gRPC, whose records reach the control plane.
 * The wrapped server never holds the ACT token; a denied call never reaches it.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Rest } from '../support/control-plane-helpers';
import { EVERYTHING, decisionOf, textOf } from '../support/mcp-world';
import { ACT_BIN, type ControlPlaneProcess, type SidecarProcess } from '../support/processes';
import { restClient, SidecarFixture, waitFor, waitSynced } from '../support/sidecar-helpers';

describe('act mcp wrap (stdio wrapper around a local MCP server)', function () {
  this.timeout(120_000);
  const fx = new SidecarFixture();
  let cp: ControlPlaneProcess;
  let sc: SidecarProcess;
  let api: Rest;
  let token: string;
  let agentId: string;
  let client: Client;
  let stderr = '';

  before(async function () {
    cp = await fx.controlPlane(fx.dir('mcpwrap-cp'));
    api = restClient(cp.url, cp.adminKey);
    sc = await fx.sidecar(cp, fx.dir('mcpwrap-sc'));
    const agent = await fx.createAgent(api, { name: 'desktop agent' });
    agentId = agent.agent_id;
    const policy = await fx.createPolicy(api, {
      name: 'desktop tools',
      capabilities: ['call:everything.echo', 'call:everything.get-env', 'add:numbers'],
      approval_rules: [
        { expression: 'context.arguments.a > 100', actions: ['add:numbers'] },
        { expression: 'context.arguments.message == "needs a human"', actions: ['call:everything.echo'] },
      ],
    });
    token = (await fx.issue(api, agent.agent_id, [policy.policy_id])).token;
    await waitSynced(cp, sc);

    const cfg = path.join(fx.dir('mcpwrap-cfg'), 'wrap.yaml');
    writeFileSync(
      cfg,
      [
        'servers:',
        '  everything:',
        '    tools:',
        '      get-sum: { action: "add:numbers", on_approval: return }',
        '      get-tiny-image: { hidden: true }',
      ].join('\n'),
    );
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        ACT_BIN,
        'mcp',
        'wrap',
        '--token-env',
        'MY_ACT_TOKEN',
        '--config',
        cfg,
        '--',
        process.execPath,
        EVERYTHING,
        'stdio',
      ],
      env: {
        PATH: process.env.PATH ?? '',
        MY_ACT_TOKEN: token,
        ACT_SIDECAR_GRPC_ADDR: `127.0.0.1:${sc.grpcPort}`,
      },
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    client = new Client({ name: 'desktop', version: '1.0.0' });
    await client.connect(transport);
  });

  after(async function () {
    await client?.close().catch(() => undefined);
    await fx.teardown();
  });

  it("lists the server's tools under their own names (minus hidden ones)", async function () {
    const names = (await client.listTools()).tools.map((t) => t.name);
    assert.ok(names.includes('echo') && names.includes('get-sum'), names.join(', '));
    assert.ok(!names.includes('get-tiny-image'), 'hidden in the config');
  });

  it('an allowed call is forwarded; its decision record is written by the sidecar', async function () {
    const res = await client.callTool({ name: 'echo', arguments: { message: 'hi there' } });
    assert.equal(res.isError, undefined, textOf(res));
    assert.match(textOf(res), /hi there/);
    const rec = await waitFor('the decision record at the control plane', async () => {
      const r = await api(
        'GET',
        `/api/audit/export?format=ndjson&agent_id=${agentId}&action=call:everything.echo`,
      );
      return r.text ? JSON.parse(r.text.split('\n')[0]!) : undefined;
    });
    assert.equal(rec.decision, 'ALLOW');
    assert.equal(rec.source, sc.sidecarId);
    assert.equal(rec.context.arguments.message, 'hi there');
  });

  it('a call without the capability is denied with the reason and never reaches the server', async function () {
    const res = await client.callTool({ name: 'get-annotated-message', arguments: { messageType: 'error' } });
    assert.equal(res.isError, true);
    assert.equal(decisionOf(res)?.reason_code, 'CAPABILITY_NOT_GRANTED');
    assert.match(textOf(res), /Missing capability: call:everything.get-annotated-message/);
    // The wrapper logs an outcome for every forwarded call: none for this one.
    await client.callTool({ name: 'echo', arguments: { message: 'marker' } });
    await waitFor('the outcome line of the marker call', async () =>
      /"target":"echo"/.test(stderr) ? true : undefined,
    );
    assert.ok(!/"target":"get-annotated-message"/.test(stderr), 'the denied call was not forwarded');
  });

  it('approval required (on_approval: return): the id and how to retry; small sums pass', async function () {
    const small = await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
    assert.equal(small.isError, undefined, textOf(small));
    assert.match(textOf(small), /5/);
    const big = await client.callTool({ name: 'get-sum', arguments: { a: 200, b: 3 } });
    assert.equal(big.isError, true);
    assert.equal(decisionOf(big)?.decision, 'APPROVAL_REQUIRED');
    assert.match(textOf(big), /approval_/);
  });

  it('approval required (hold, the default): the call waits until an approver decides, then goes through once', async function () {
    const call = client.callTool({ name: 'echo', arguments: { message: 'needs a human' } }, undefined, {
      timeout: 60_000,
      resetTimeoutOnProgress: true,
    });
    const approval = await waitFor('the pending approval', async () => {
      const r = await api('GET', '/api/approvals?status=PENDING&limit=100');
      return (r.body.approvals as any[]).find(
        (a) => a.agent_id === agentId && a.action === 'call:everything.echo',
      );
    });
    assert.equal(approval.context.arguments.message, 'needs a human');
    const ok = await api('POST', `/api/approvals/${approval.approval_id}/approve`, {});
    assert.equal(ok.status, 200, ok.text);
    const res = await call;
    assert.equal(res.isError, undefined, textOf(res));
    assert.match(textOf(res), /needs a human/);
  });

  it('the wrapped server does not get the ACT token in its environment', async function () {
    const res = await client.callTool({ name: 'get-env', arguments: {} });
    assert.equal(res.isError, undefined, textOf(res));
    const env = textOf(res);
    assert.ok(env.includes('ACT_SIDECAR_GRPC_ADDR'), 'the rest of the environment is passed on');
    assert.ok(!env.includes(token), 'no ACT token in the child');
    assert.ok(!env.includes('MY_ACT_TOKEN'));
  });

  it('logs go to stderr without the token; stdout carried only MCP (the client parsed every line)', function () {
    assert.match(stderr, /mcp wrap serving on stdio/);
    assert.ok(!stderr.includes(token));
  });

  it('closing the client ends the wrapper (and with it the wrapped server)', async function () {
    const pid = (client.transport as StdioClientTransport).pid;
    assert.ok(pid);
    await client.close();
    await waitFor(
      'the wrapper to exit',
      async () => {
        try {
          process.kill(pid, 0);
          return undefined;
        } catch {
          return true;
        }
      },
      { timeoutMs: 10_000 },
    );
  });

  it('bad usage is one line on stderr and exit code 2', async function () {
    const { spawnSync } = await import('node:child_process');
    const r = spawnSync(process.execPath, [ACT_BIN, 'mcp', 'wrap', '--', 'true'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--token-env is required/);
    assert.equal(r.stdout, '');
  });
});
