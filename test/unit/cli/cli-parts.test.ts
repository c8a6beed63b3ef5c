/** The CLI's pure parts: URL and key resolution, tables, receipts, check answers, start-up error lines. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sniffExportFile } from '../../../src/cli/audit-verify';
import { renderDecision, until } from '../../../src/cli/commands/check';
import { propagationLine } from '../../../src/cli/commands/shared';
import { tokenId } from '../../../src/cli/commands/tokens';
import { configPath, parseBaseUrl, resolveConnection } from '../../../src/cli/config';
import { contextValue, keyValue, list, timeArg } from '../../../src/cli/context';
import { UsageError } from '../../../src/cli/errors';
import { printable, renderTable } from '../../../src/cli/output';
import { describeStartupError, isGrpcBindNoise } from '../../../src/cli/startup-errors';
import { StartupError } from '../../../src/common/errors';
import { CONTROL_PLANE_OPTIONS } from '../../../src/control-plane/config';
import { SIDECAR_OPTIONS } from '../../../src/sidecar/config';

describe('cli parts', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'act-cli-unit-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('parseBaseUrl accepts http(s) URLs and refuses the rest with a hint', () => {
    assert.equal(parseBaseUrl('http://127.0.0.1:8700/', '--url'), 'http://127.0.0.1:8700');
    assert.equal(parseBaseUrl('https://act.example.com/base/', '--url'), 'https://act.example.com/base');
    assert.throws(() => parseBaseUrl('127.0.0.1:8700', '--url'), /did you mean http:\/\/127\.0\.0\.1:8700\?/);
    assert.throws(
      () => parseBaseUrl('localhost:8700', 'ACT_URL'),
      /^Error: ACT_URL: "localhost:8700" is not an http/,
    );
    assert.throws(() => parseBaseUrl('ftp://x', '--url'), UsageError);
    assert.throws(() => parseBaseUrl('http://a:b@h:1', '--url'), /not in the URL/);
    assert.throws(() => parseBaseUrl('http://h:1/?x=1', '--url'), /query/);
  });

  it('resolveConnection: flags > env > config file > default, and says where each came from', () => {
    const file = path.join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ url: 'http://file:1', key: 'file-key' }));
    const env = { ACT_CONFIG: file } as NodeJS.ProcessEnv;
    assert.deepEqual(
      { ...resolveConnection({}, env) },
      {
        url: 'http://file:1',
        urlFrom: `url in ${file}`,
        key: 'file-key',
        keyFrom: `key in ${file}`,
        configPath: file,
      },
    );
    const e2 = { ...env, ACT_URL: 'http://env:2', ACT_KEY: 'env-key' };
    const c2 = resolveConnection({}, e2);
    assert.equal(c2.url, 'http://env:2');
    assert.equal(c2.keyFrom, 'ACT_KEY');
    const c3 = resolveConnection({ url: 'http://flag:3', key: 'flag-key' }, e2);
    assert.deepEqual(
      [c3.url, c3.urlFrom, c3.key, c3.keyFrom],
      ['http://flag:3', '--url', 'flag-key', '--key'],
    );
    assert.equal(
      resolveConnection({}, { ACT_CONFIG: path.join(dir, 'none.json') }).url,
      'http://127.0.0.1:8700',
    );
    assert.equal(
      resolveConnection({}, { ACT_CONFIG: path.join(dir, 'none.json'), ACT_ADMIN_KEY: 'a' }).keyFrom,
      'ACT_ADMIN_KEY',
    );
    assert.equal(resolveConnection({}, { ...env, ACT_ADMIN_KEY: 'a', ACT_KEY: 'k' }).key, 'k');
    assert.equal(resolveConnection({}, env, { readFile: false }).key, undefined);
    writeFileSync(file, '[1]');
    assert.throws(() => resolveConnection({}, env), /must hold a JSON object/);
    assert.equal(configPath(undefined, { HOME: '/h' }), '/h/.config/act/config.json');
    assert.equal(configPath(undefined, { HOME: '/h', XDG_CONFIG_HOME: '/x' }), '/x/act/config.json');
  });

  it('option parsers: lists, key=value, context values, times ago', () => {
    assert.deepEqual(list('a,b', ['x']), ['x', 'a', 'b']);
    assert.deepEqual(keyValue('purpose=a=b', { k: 'v' }), { k: 'v', purpose: 'a=b' });
    assert.throws(() => keyValue('novalue', undefined), /key=value/);
    assert.deepEqual(
      contextValue('amount=5000', contextValue('ok=true', contextValue('ip=10.0.1.50', undefined))),
      {
        ip: '10.0.1.50',
        ok: true,
        amount: 5000,
      },
    );
    const t = Date.parse(timeArg('1h'));
    assert.ok(Math.abs(Date.now() - 3_600_000 - t) < 5000);
    assert.equal(timeArg('2026-01-31T09:00:00Z'), '2026-01-31T09:00:00Z');
    assert.throws(() => timeArg('yesterday'), /RFC 3339/);
  });

  it('tables: upper-case headers, two spaces between columns, no trailing blanks, "-" for empty', () => {
    const t = renderTable(
      ['ID', 'NAME', 'TAGS'],
      [
        ['a1', 'x', ['p', 'q']],
        ['b22', '', []],
      ],
    );
    assert.equal(t, 'ID   NAME  TAGS\na1   x     p,q\nb22  -     -\n');
  });

  it('control characters from the server are shown escaped, never sent to the terminal', () => {
    assert.equal(printable('a\u001b[2Jb\u0007c\u009bd\ne'), 'a\\u001b[2Jb\\u0007c\\u009bd\\u000ae');
    assert.equal(printable('line 1\nline\r2\n', true), 'line 1\nline\\u000d2\n');
    assert.equal(renderTable(['X'], [['\u001b]0;pwned\u0007']]), 'X\n\\u001b]0;pwned\\u0007\n');
  });

  it('propagation receipts', () => {
    assert.equal(
      propagationLine({
        revision: 42,
        applied: 2,
        total: 3,
        pending_sidecar_ids: ['sc-b'],
        complete: false,
        waited_ms: 5000,
      }),
      'applied 2 of 3 sidecars; pending: sc-b (revision 42, waited 5000 ms)',
    );
    assert.equal(
      propagationLine({
        revision: 7,
        applied: 1,
        total: 1,
        pending_sidecar_ids: [],
        complete: true,
        waited_ms: 3,
      }),
      'applied 1 of 1 sidecar (revision 7, waited 3 ms)',
    );
    assert.equal(
      propagationLine({ revision: 7, applied: 0, total: 0 }),
      'no connected sidecar holds it (revision 7)',
    );
    assert.equal(
      propagationLine({
        revision: 8,
        applied: 1,
        total: 1,
        pending_sidecar_ids: [],
        disconnected_sidecar_ids: ['sc-c'],
        complete: false,
        waited_ms: 5000,
      }),
      'applied 1 of 1 sidecar; cut off (may still decide until stale): sc-c (revision 8, waited 5000 ms)',
    );
    assert.equal(
      propagationLine({ revision: 8, applied: 0, total: 0, disconnected_sidecar_ids: ['sc-c'] }),
      'applied 0 of 0 sidecars; cut off (may still decide until stale): sc-c (revision 8)',
    );
    assert.equal(propagationLine(undefined), undefined);
  });

  it('check answers: when a window opens, and the approval id with what to do next', () => {
    const now = Date.parse('2026-12-02T02:18:00Z');
    assert.equal(until('2026-12-02T09:00:00Z', now), 'in 6h 42m');
    assert.equal(until('2026-12-04T09:00:30Z', now), 'in 2d 6h 43m');
    assert.equal(until('2026-12-02T02:00:00Z', now), 'now');
    const text = renderDecision(
      {
        allowed: false,
        decision: 'APPROVAL_REQUIRED',
        action: 'create:transaction',
        reason: 'Human approval required',
        reason_code: 'APPROVAL_REQUIRED_BY_POLICY',
        approval_id: 'approval_1',
        audit_id: 'audit_1',
        policy_revision: 3,
        details: { rule: 'context.amount > 1000', policy_id: 'policy_1' },
      },
      'acct_1',
    );
    assert.match(text, /^APPROVAL_REQUIRED {2}create:transaction on acct_1\n/);
    assert.match(text, /approval: {3}approval_1\n/);
    assert.match(text, /act approvals approve approval_1/);
    assert.match(text, /adding --approval-id approval_1/);
  });

  it('tokenId reads the id from a token string and refuses garbage', () => {
    assert.equal(tokenId('tok_abc'), 'tok_abc');
    assert.throws(() => tokenId('act_notatoken'), /not a valid ACT token/);
  });

  it('export files: NDJSON, JSON array, empty; CSV and anything else refused', async () => {
    const f = (name: string, text: string) => {
      const p = path.join(dir, name);
      writeFileSync(p, text);
      return p;
    };
    assert.equal(await sniffExportFile(f('a.ndjson', '{"audit_id":"x"}\n')), 'ndjson');
    assert.equal(await sniffExportFile(f('a.json', '\uFEFF  [{"audit_id":"x"}]')), 'json');
    assert.equal(await sniffExportFile(f('e', '')), 'empty');
    await assert.rejects(sniffExportFile(f('a.csv', 'audit_id,time\n')), /CSV export/);
    await assert.rejects(sniffExportFile(f('x.txt', 'hello')), /not an audit export/);
    await assert.rejects(sniffExportFile(path.join(dir, 'missing')), /cannot read/);
  });

  it('start-up errors: grpc-js bind summaries and node listen errors map to the listener that failed', () => {
    const cfg = {
      httpAddr: { host: '127.0.0.1', port: 8700 },
      grpcAddr: { host: '127.0.0.1', port: 8701 },
      dataDir: '/var/lib/act',
    };
    const grpcErr = new Error(
      'No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 127.0.0.1:8701]',
    );
    assert.equal(
      describeStartupError('control-plane', CONTROL_PLANE_OPTIONS, cfg, grpcErr)?.message,
      'act control-plane: cannot listen on 127.0.0.1:8701 (address in use): set --grpc-addr/ACT_GRPC_ADDR',
    );
    const httpErr = Object.assign(new Error('listen EACCES: permission denied 127.0.0.1:80'), {
      code: 'EACCES',
      syscall: 'listen',
      address: '127.0.0.1',
      port: 80,
    });
    assert.equal(
      describeStartupError(
        'control-plane',
        CONTROL_PLANE_OPTIONS,
        { ...cfg, httpAddr: { host: '127.0.0.1', port: 80 } },
        httpErr,
      )?.message,
      'act control-plane: cannot listen on 127.0.0.1:80 (permission denied; ports below 1024 need privileges): set --http-addr/ACT_HTTP_ADDR',
    );
    const v6 = Object.assign(new Error('listen EADDRNOTAVAIL'), {
      code: 'EADDRNOTAVAIL',
      syscall: 'listen',
      address: '::2',
      port: 8700,
    });
    assert.match(
      describeStartupError(
        'control-plane',
        CONTROL_PLANE_OPTIONS,
        { ...cfg, httpAddr: { host: '::2', port: 8700 } },
        v6,
      )!.message,
      /cannot listen on \[::2\]:8700 \(no such address on this machine\): set --http-addr/,
    );
    const unix = new Error(
      'No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use /run/act.sock]',
    );
    assert.equal(
      describeStartupError(
        'sidecar',
        SIDECAR_OPTIONS,
        { grpcAddr: ['unix:/run/act.sock'], httpAddr: ['127.0.0.1:8710'] },
        unix,
      )?.message,
      'act sidecar: cannot listen on /run/act.sock (address in use): set --grpc-addr/ACT_SIDECAR_GRPC_ADDR',
    );
    const fsErr = Object.assign(new Error('EACCES'), {
      code: 'EACCES',
      path: '/var/lib/act/store.mdb',
      syscall: 'open',
    });
    assert.match(
      describeStartupError('control-plane', CONTROL_PLANE_OPTIONS, cfg, fsErr)!.message,
      /cannot use the data directory \/var\/lib\/act \(permission denied: .*\): set --data-dir\/ACT_DATA_DIR/,
    );
    assert.equal(
      describeStartupError('control-plane', CONTROL_PLANE_OPTIONS, cfg, new TypeError('x is undefined')),
      undefined,
    );
    const own = new StartupError(
      'cannot listen on 127.0.0.1:8701 (No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 127.0.0.1:8701])',
      '--grpc-addr / ACT_GRPC_ADDR',
    );
    assert.equal(
      describeStartupError('control-plane', CONTROL_PLANE_OPTIONS, cfg, own)?.message,
      'act control-plane: cannot listen on 127.0.0.1:8701 (address in use): set --grpc-addr/ACT_GRPC_ADDR',
    );
    const sentence = new StartupError(
      '--http-addr takes one host:port',
      '--http-addr / ACT_SIDECAR_HTTP_ADDR',
    );
    assert.equal(
      describeStartupError('sidecar', SIDECAR_OPTIONS, {}, sentence)?.message,
      'act sidecar: --http-addr takes one host:port: set --http-addr/ACT_SIDECAR_HTTP_ADDR',
    );
    assert.ok(isGrpcBindNoise('No address added out of total 1 resolved'));
    assert.equal(isGrpcBindNoise('Connection dropped'), false);
  });
});
