/**
 * The `act` CLI against a real control plane: key rotation, revocation, audit
 * export and hash-chain verification, exit codes, and --help that lists every
 * flag and environment variable the processes read.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CONTROL_PLANE_OPTIONS } from '../../src/control-plane/config';
import { SIDECAR_OPTIONS } from '../../src/sidecar/config';
import {
  ACT_BIN,
  restClient,
  startControlPlane,
  tempDir,
  type ControlPlaneProcess,
} from '../support/processes';

function act(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [ACT_BIN, ...args],
      { env: { ...process.env, ...env } },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('act CLI', function () {
  this.timeout(60_000);
  const tmp = tempDir('cli');
  let cp: ControlPlaneProcess;
  let env: Record<string, string>;

  before(async () => {
    cp = await startControlPlane(path.join(tmp.dir, 'cp'));
    env = { ACT_URL: cp.url, ACT_KEY: cp.adminKey };
  });
  after(async () => {
    await cp?.stop();
    tmp.remove();
  });

  it('act keys rotate makes a new active key; old tokens keep verifying', async () => {
    const api = restClient(cp.url, cp.adminKey);
    const agent = (await api('POST', '/api/agents', { name: 'cli agent' })).body.agent_id;
    const policy = (await api('POST', '/api/policies', { name: 'cli', capabilities: ['read:*'] })).body
      .policy_id;
    const old = (await api('POST', '/api/tokens', { agent_id: agent, policy_ids: [policy] })).body;
    const r = await act(['keys', 'rotate'], env);
    assert.equal(r.code, 0, r.stderr);
    const rotated = JSON.parse(r.stdout) as { key_id: string; active: boolean };
    assert.equal(rotated.active, true);
    const list = JSON.parse((await act(['keys', 'list'], env)).stdout) as {
      keys: { key_id: string; active: boolean }[];
    };
    assert.equal(list.keys.length, 2);
    assert.deepEqual(
      list.keys.filter((k) => k.active).map((k) => k.key_id),
      [rotated.key_id],
    );
    const check = await api('POST', '/api/enforcement/check', { token: old.token, action: 'read:x' });
    assert.equal(check.body.allowed, true);
    const fresh = (await api('POST', '/api/tokens', { agent_id: agent, policy_ids: [policy] })).body;
    assert.equal((await api('GET', `/api/tokens/${fresh.token_id}`)).body.key_id, rotated.key_id);
    // revoke through the CLI
    const rv = await act(['tokens', 'revoke', '--token-id', old.token_id, '--reason', 'cli test'], env);
    assert.equal(rv.code, 0, rv.stderr);
    assert.deepEqual(JSON.parse(rv.stdout).revoked_token_ids, [old.token_id]);
    assert.equal(
      (await api('POST', '/api/enforcement/check', { token: old.token, action: 'read:x' })).body.reason_code,
      'TOKEN_REVOKED',
    );
  });

  it('act audit export and act audit verify: intact chain passes, a tampered export fails', async () => {
    const csv = await act(['audit', 'export', '--format', 'csv'], env);
    assert.equal(csv.code, 0, csv.stderr);
    assert.match(csv.stdout.split('\n')[0]!, /^audit_id,time,source,seq,/);
    const ok = await act(['audit', 'verify'], env);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /ok\s+control-plane: \d+ records/);
    const nd = await act(['audit', 'export'], env);
    const file = path.join(tmp.dir, 'audit.ndjson');
    const lines = nd.stdout.trim().split('\n');
    assert.ok(lines.length >= 2);
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    rec.resource = 'tampered';
    lines[0] = JSON.stringify(rec);
    writeFileSync(file, lines.join('\n') + '\n');
    const bad = await act(['audit', 'verify', '--file', file], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /hash does not match content/);
  });

  it('exit codes: usage errors 2, server errors 1, unreachable control plane 3', async () => {
    assert.equal((await act(['tokens', 'revoke'], env)).code, 2);
    assert.equal((await act(['keys', 'frobnicate'], env)).code, 2);
    assert.equal((await act(['keys', 'list', '--bogus', 'x'], env)).code, 2);
    const wrongKey = await act(['keys', 'list'], { ...env, ACT_KEY: 'wrong-key-123456789' });
    assert.equal(wrongKey.code, 1);
    assert.match(wrongKey.stderr, /HTTP 401/);
    assert.equal((await act(['keys', 'list'], { ...env, ACT_URL: 'http://127.0.0.1:1' })).code, 3);
    assert.equal((await act(['control-plane', '--http-addr', 'nonsense'])).code, 2);
    assert.equal((await act(['no-such-command'])).code, 2);
  });

  it('--help lists every flag and environment variable of both processes', async () => {
    for (const [cmd, specs] of [
      ['control-plane', CONTROL_PLANE_OPTIONS],
      ['sidecar', SIDECAR_OPTIONS],
    ] as const) {
      const h = await act([cmd, '--help']);
      assert.equal(h.code, 0);
      for (const s of Object.values(specs)) {
        assert.ok(h.stdout.includes(s.flag), `${cmd} --help lacks ${s.flag}`);
        assert.ok(h.stdout.includes(s.env), `${cmd} --help lacks ${s.env}`);
      }
    }
    const readme = readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
    for (const s of [...Object.values(CONTROL_PLANE_OPTIONS), ...Object.values(SIDECAR_OPTIONS)]) {
      assert.ok(readme.includes(s.env), `README does not document ${s.env}`);
    }
  });
});
