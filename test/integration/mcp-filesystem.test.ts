/**
 * The reference filesystem MCP server (npm, stdio, spawned by the sidecar) behind the gateway,
 * with a read-only token: reads under `read:mcp_file:<tmp>/**` are allowed, anything else the
 * filesystem server offers is hidden, and `write_file` is denied before the server sees it (the
 * file is never created). Path tricks are refused by ACT itself, not left to the upstream.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Rest } from '../support/control-plane-helpers';
import {
  FILESYSTEM,
  McpClients,
  decisionOf,
  startGatewaySidecar,
  textOf,
  type GatewaySidecar,
} from '../support/mcp-world';
import { restClient, SidecarFixture, waitFor, waitSynced } from '../support/sidecar-helpers';
import type { ControlPlaneProcess } from '../support/processes';

describe('MCP gateway in front of @modelcontextprotocol/server-filesystem', function () {
  this.timeout(120_000);
  const fx = new SidecarFixture();
  const clients = new McpClients();
  let cp: ControlPlaneProcess;
  let api: Rest;
  let sc: GatewaySidecar;
  let root: string;
  let readOnly: string;
  let writer: string;

  before(async function () {
    cp = await fx.controlPlane(fx.dir('mcpfs-cp'));
    api = restClient(cp.url, cp.adminKey);
    root = fx.dir('mcpfs-files');
    mkdirSync(path.join(root, 'docs'));
    writeFileSync(path.join(root, 'docs', 'readme.txt'), 'hello from the docs\n');
    writeFileSync(path.join(root, 'top.txt'), 'top level\n');

    const agent = await fx.createAgent(api, { name: 'mcp files agent' });
    const ro = await fx.createPolicy(api, { name: 'read files', capabilities: [`read:mcp_file:${root}/**`] });
    readOnly = (await fx.issue(api, agent.agent_id, [ro.policy_id])).token;
    const rw = await fx.createPolicy(api, {
      name: 'read and write docs',
      capabilities: [`read:mcp_file:${root}/**`, `write:mcp_file:${root}/docs/*`],
    });
    writer = (await fx.issue(api, agent.agent_id, [rw.policy_id])).token;

    sc = await startGatewaySidecar(fx, cp, {
      servers: {
        files: {
          command: process.execPath,
          args: [FILESYSTEM, root],
          tools: {
            read_text_file: { action: 'read:mcp_file', resource: '/path' },
            write_file: {
              action: 'write:mcp_file',
              resource: '/path',
              context: ['/path'],
              redact: ['/content'],
            },
          },
        },
      },
    });
    await waitSynced(cp, sc);
  });

  after(async function () {
    await clients.closeAll();
    await fx.teardown();
  });

  it('a read-only token sees read_text_file only, and reads under its path pattern', async function () {
    const c = await clients.connect(sc.mcpUrl, readOnly);
    const names = (await c.listTools()).tools.map((t) => t.name);
    assert.deepEqual(names, ['files.read_text_file'], 'write_file, list_directory, move_file, … are hidden');
    const res = await c.callTool({
      name: 'files.read_text_file',
      arguments: { path: path.join(root, 'docs', 'readme.txt') },
    });
    assert.equal(res.isError, undefined, textOf(res));
    assert.match(textOf(res), /hello from the docs/);
  });

  it('write_file is denied for the read-only token and the file is never created', async function () {
    const c = await clients.connect(sc.mcpUrl, readOnly);
    const target = path.join(root, 'docs', 'new.txt');
    const res = await c.callTool({ name: 'files.write_file', arguments: { path: target, content: 'pwned' } });
    assert.equal(res.isError, true);
    assert.equal(decisionOf(res)?.reason_code, 'CAPABILITY_NOT_GRANTED');
    assert.match(textOf(res), /write:mcp_file/);
    assert.equal(existsSync(target), false);
  });

  it('outside the pattern, or with .. segments, ACT denies before the filesystem server is asked', async function () {
    const c = await clients.connect(sc.mcpUrl, readOnly);
    const outside = await c.callTool({ name: 'files.read_text_file', arguments: { path: '/etc/hostname' } });
    assert.equal(outside.isError, true);
    assert.equal(decisionOf(outside)?.reason_code, 'CAPABILITY_NOT_GRANTED');
    const sneaky = await c.callTool({
      name: 'files.read_text_file',
      arguments: { path: `${root}/docs/../../../etc/hostname` },
    });
    assert.equal(sneaky.isError, true);
    assert.equal(decisionOf(sneaky)?.reason_code, 'RESOURCE_PATH_INVALID');
    const noPath = await c.callTool({ name: 'files.read_text_file', arguments: {} });
    assert.equal(noPath.isError, true, 'no resource matches no pattern');
    assert.equal(decisionOf(noPath)?.reason_code, 'CAPABILITY_NOT_GRANTED');
  });

  it('a writer may write under docs/ only; the content is redacted in the audit record', async function () {
    const c = await clients.connect(sc.mcpUrl, writer);
    const names = (await c.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['files.read_text_file', 'files.write_file']);
    const target = path.join(root, 'docs', 'note.txt');
    const ok = await c.callTool({
      name: 'files.write_file',
      arguments: { path: target, content: 'secret note' },
    });
    assert.equal(ok.isError, undefined, textOf(ok));
    assert.equal(existsSync(target), true);
    const top = await c.callTool({
      name: 'files.write_file',
      arguments: { path: path.join(root, 'x.txt'), content: 'no' },
    });
    assert.equal(top.isError, true);
    assert.equal(existsSync(path.join(root, 'x.txt')), false);

    const allowed = await waitFor('the ALLOW record of the write', async () => {
      const audit = await api('GET', '/api/audit/export?format=ndjson&action=write:mcp_file');
      assert.ok(!audit.text.includes('secret note'), 'written content never reaches the audit trail');
      return audit.text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
        .find((r) => r.decision === 'ALLOW' && r.resource === target && r.context.mcp.record !== 'outcome');
    });
    assert.deepEqual(
      Object.keys(allowed.context.arguments),
      ['path'],
      'only the mapped argument is in the context',
    );
  });
});
