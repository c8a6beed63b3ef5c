/**
 * The MCP config is validated once: every problem names its field in one line, unknown fields
 * are refused (a typo never silently drops a redaction), and defaults are what docs/mcp.md says.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StartupError } from '../../../src/common/errors';
import { loadMcpConfig, parseMcpConfig, McpConfigError } from '../../../src/mcp/config';

const gw = (doc: unknown, env: NodeJS.ProcessEnv = {}) => parseMcpConfig(doc, env, { wrapper: false });
const fails = (doc: unknown, field: string, re: RegExp, env: NodeJS.ProcessEnv = {}) => {
  assert.throws(
    () => gw(doc, env),
    (e: unknown) => {
      assert.ok(e instanceof McpConfigError, String(e));
      assert.equal(e.field, field);
      assert.match(e.message, re);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    },
  );
};

describe('MCP config', () => {
  it('defaults: hold for 50s, all arguments in the context, nothing redacted, 30s timeout', () => {
    const c = gw({ servers: { billing: { url: 'http://127.0.0.1:9/mcp' } } });
    const s = c.servers[0]!;
    assert.equal(s.name, 'billing');
    assert.deepEqual(s.transport, { kind: 'http', url: 'http://127.0.0.1:9/mcp', headers: {} });
    assert.equal(s.timeoutMs, 30_000);
    assert.equal(s.connectTimeoutMs, 10_000);
    assert.deepEqual(s.defaults, {
      action: undefined,
      resource: undefined,
      context: 'all',
      redact: [],
      onApproval: 'hold',
      approvalTimeoutMs: 50_000,
      hidden: false,
    });
    assert.equal(s.resourcesAction, 'read:mcp_resource');
    assert.equal(s.promptsAction, 'get:mcp_prompt');
    assert.equal(c.limits.maxMessageBytes, 1024 * 1024);
    assert.equal(c.limits.maxSessions, 256);
    assert.equal(c.progressIntervalMs, 5000);
  });

  it('a tool rule inherits the server defaults and overrides them', () => {
    const c = gw({
      servers: {
        files: {
          command: 'node',
          args: ['server.js', 7],
          defaults: { on_approval: 'return', redact: ['/secret'] },
          tools: {
            write_file: { action: 'write:mcp_file', resource: '/path', context: ['/path'] },
            read_file: { on_approval: 'hold', approval_timeout: '2m' },
          },
        },
      },
    });
    const s = c.servers[0]!;
    assert.deepEqual(s.transport, {
      kind: 'stdio',
      command: 'node',
      args: ['server.js', '7'],
      env: {},
      cwd: undefined,
    });
    const w = s.tools.get('write_file')!;
    assert.equal(w.action, 'write:mcp_file');
    assert.deepEqual(w.resource, { text: '/path', pointer: ['path'] });
    assert.deepEqual(w.context, [['path']]);
    assert.deepEqual(w.redact, [['secret']]);
    assert.equal(w.onApproval, 'return');
    const r = s.tools.get('read_file')!;
    assert.equal(r.onApproval, 'hold');
    assert.equal(r.approvalTimeoutMs, 120_000);
  });

  it('${VAR} in headers and env comes from the environment; a missing one is an error naming the field', () => {
    const c = gw(
      { servers: { b: { url: 'https://x.example/mcp', headers: { Authorization: 'Bearer ${KEY}' } } } },
      { KEY: 's3cret' },
    );
    assert.deepEqual((c.servers[0]!.transport as { headers: unknown }).headers, {
      Authorization: 'Bearer s3cret',
    });
    fails(
      { servers: { b: { command: 'x', env: { TOKEN: '${NOPE}' } } } },
      'servers.b.env.TOKEN',
      /NOPE is not set/,
    );
  });

  const bad: [string, unknown, string, RegExp][] = [
    ['no servers', {}, 'servers', /expected a mapping/],
    ['empty servers', { servers: {} }, 'servers', /at least one/],
    [
      'bad server name',
      { servers: { 'Bad.Name': { url: 'http://a/' } } },
      'servers.Bad.Name',
      /\[a-z0-9_-\]/,
    ],
    ['no transport', { servers: { a: {} } }, 'servers.a', /url .* or command/],
    ['both transports', { servers: { a: { url: 'http://a/', command: 'x' } } }, 'servers.a', /not both/],
    ['not a URL', { servers: { a: { url: 'nope' } } }, 'servers.a.url', /not a URL/],
    ['ws URL', { servers: { a: { url: 'ws://a/' } } }, 'servers.a.url', /http/],
    [
      'args on http',
      { servers: { a: { url: 'http://a/', args: [] } } },
      'servers.a.args',
      /only for a command/,
    ],
    [
      'unknown server field',
      { servers: { a: { url: 'http://a/', timeuot: '1s' } } },
      'servers.a.timeuot',
      /unknown field/,
    ],
    ['unknown top field', { servers: { a: { url: 'http://a/' } }, limit: {} }, 'limit', /unknown field/],
    [
      'typo in a rule',
      { servers: { a: { url: 'http://a/', tools: { t: { redcat: ['/x'] } } } } },
      'servers.a.tools.t.redcat',
      /unknown field/,
    ],
    [
      'wildcard action',
      { servers: { a: { url: 'http://a/', tools: { t: { action: 'call:*' } } } } },
      'servers.a.tools.t.action',
      /not an action/,
    ],
    [
      'action in defaults',
      { servers: { a: { url: 'http://a/', defaults: { action: 'call:x' } } } },
      'servers.a.defaults.action',
      /unknown field/,
    ],
    [
      'pointer without /',
      { servers: { a: { url: 'http://a/', tools: { t: { resource: 'path' } } } } },
      'servers.a.tools.t.resource',
      /JSON pointer/,
    ],
    [
      'bad ~ escape',
      { servers: { a: { url: 'http://a/', tools: { t: { redact: ['/a~2'] } } } } },
      'servers.a.tools.t.redact[0]',
      /~/,
    ],
    [
      'bad on_approval',
      { servers: { a: { url: 'http://a/', tools: { t: { on_approval: 'wait' } } } } },
      'servers.a.tools.t.on_approval',
      /"hold" or "return"/,
    ],
    [
      'bad duration',
      { servers: { a: { url: 'http://a/', timeout: '30 seconds' } } },
      'servers.a.timeout',
      /duration/,
    ],
    [
      'approval wait over 15m',
      { servers: { a: { url: 'http://a/', tools: { t: { approval_timeout: '1h' } } } } },
      'servers.a.tools.t.approval_timeout',
      /15m/,
    ],
    [
      'bad limit',
      { servers: { a: { url: 'http://a/' } }, limits: { max_sessions: 0 } },
      'limits.max_sessions',
      /integer/,
    ],
    [
      'bad origin',
      { servers: { a: { url: 'http://a/' } }, allowed_origins: ['*'] },
      'allowed_origins',
      /origins/,
    ],
    [
      'bad resources action',
      { servers: { a: { url: 'http://a/', resources: { action: 'READ' } } } },
      'servers.a.resources.action',
      /not an action/,
    ],
  ];
  for (const [what, doc, field, re] of bad) it(`refuses ${what} (${field})`, () => fails(doc, field, re));

  it('the wrapper form: one server, no url or command (the command follows --)', () => {
    const w = parseMcpConfig(
      { servers: { files: { tools: { x: { hidden: true } } } } },
      {},
      { wrapper: true },
    );
    assert.equal(w.servers[0]!.transport, undefined);
    assert.equal(parseMcpConfig({}, {}, { wrapper: true }).servers[0]!.name, 'local');
    assert.throws(() => parseMcpConfig({ servers: { a: {}, b: {} } }, {}, { wrapper: true }), /exactly one/);
    assert.throws(
      () => parseMcpConfig({ servers: { a: { command: 'x' } } }, {}, { wrapper: true }),
      /after --/,
    );
  });

  describe('files', () => {
    let dir: string;
    before(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'act-mcpcfg-'))));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const startupError = (file: string, re: RegExp) =>
      assert.throws(
        () => loadMcpConfig(file, {}),
        (e: unknown) =>
          e instanceof StartupError && re.test(e.message) && e.setting === '--mcp-config / ACT_MCP_CONFIG',
      );

    it('reads YAML and JSON alike', () => {
      writeFileSync(path.join(dir, 'a.yaml'), 'servers:\n  b:\n    url: http://127.0.0.1:1/mcp\n');
      writeFileSync(
        path.join(dir, 'a.json'),
        JSON.stringify({ servers: { b: { url: 'http://127.0.0.1:1/mcp' } } }),
      );
      assert.deepEqual(
        loadMcpConfig(path.join(dir, 'a.yaml'), {}),
        loadMcpConfig(path.join(dir, 'a.json'), {}),
      );
    });

    it('a missing file, bad YAML, duplicate keys and a field error are StartupErrors naming the file', () => {
      startupError(path.join(dir, 'missing.yaml'), /cannot read MCP config/);
      writeFileSync(path.join(dir, 'bad.yaml'), 'servers: [\n');
      startupError(path.join(dir, 'bad.yaml'), /not valid YAML/);
      writeFileSync(
        path.join(dir, 'dup.yaml'),
        'servers:\n  b:\n    url: http://a/\n  b:\n    url: http://b/\n',
      );
      startupError(path.join(dir, 'dup.yaml'), /not valid YAML/);
      writeFileSync(path.join(dir, 'field.yaml'), 'servers:\n  b:\n    url: 5\n');
      startupError(path.join(dir, 'field.yaml'), /field\.yaml: servers\.b\.url: expected a URL string/);
    });

    it('refuses a YAML alias bomb', () => {
      const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
      for (let i = 1; i < 12; i++)
        lines.push(
          `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9)
            .fill(`*${String.fromCharCode(96 + i)}`)
            .join(',')}]`,
        );
      writeFileSync(path.join(dir, 'bomb.yaml'), lines.join('\n'));
      startupError(path.join(dir, 'bomb.yaml'), /not valid YAML|alias/i);
    });
  });
});
