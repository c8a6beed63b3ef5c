/**
 * Start-up failures of `act control-plane` and `act sidecar` are one human line
 * on stderr that names the setting to change (no grpc-js line, no JSON log
 * with a stack), with a non-zero exit: ports in use for each listener, a
 * missing sidecar key, bad TLS files, bad values, an unusable data directory.
 */
import assert from 'node:assert/strict';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import selfsigned from 'selfsigned';
import { tempDir, TEST_ADMIN_KEY } from '../support/processes';
import { freePort } from '../support/sidecar-helpers';
import { cleanEnv, runAct, type ActResult } from './cli-helpers';

/** Holds a TCP port busy on 127.0.0.1 for the test. */
async function occupy(): Promise<{ port: number; close(): Promise<void> }> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return { port: (s.address() as net.AddressInfo).port, close: () => new Promise((r) => s.close(() => r())) };
}

/** Exactly one line on stderr, nothing on stdout. */
function oneLine(r: ActResult): string {
  assert.equal(r.stdout, '', `stdout: ${r.stdout}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`);
  assert.doesNotMatch(lines[0]!, /^\{|^E |stack|at .*\.js:\d+/);
  return lines[0]!;
}

describe('act control-plane / act sidecar start-up errors', function () {
  this.timeout(60_000);
  const tmp = tempDir('cli-startup');
  let env: Record<string, string>;
  let certs: { cert: string; key: string; otherKey: string; notPem: string };
  let n = 0;
  let lastDir = '';
  const dataDir = () => (lastDir = path.join(tmp.dir, `data-${++n}`));
  const cp = (args: string[], extra: Record<string, string> = {}) =>
    runAct(
      ['control-plane', '--data-dir', dataDir(), ...args],
      {
        ...env,
        ACT_ADMIN_KEY: TEST_ADMIN_KEY,
        ACT_HTTP_ADDR: '127.0.0.1:0',
        ACT_GRPC_ADDR: '127.0.0.1:0',
        ...extra,
      },
      { timeoutMs: 20_000 },
    );
  const sidecar = async (args: string[], extra: Record<string, string> = {}) =>
    runAct(
      ['sidecar', '--data-dir', dataDir(), '--control-plane', `127.0.0.1:${await freePort()}`, ...args],
      {
        ...env,
        ACT_SIDECAR_KEY: 'some-sidecar-key-0123456789',
        ACT_SIDECAR_HTTP_ADDR: '127.0.0.1:0',
        ACT_SIDECAR_GRPC_ADDR: '127.0.0.1:0',
        ...extra,
      },
      { timeoutMs: 20_000 },
    );

  before(async () => {
    env = cleanEnv(tmp.dir);
    const gen = () =>
      selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
        notAfterDate: new Date(Date.now() + 86_400_000),
        keyType: 'ec',
        curve: 'P-256',
      });
    const [a, b] = await Promise.all([gen(), gen()]);
    certs = {
      cert: path.join(tmp.dir, 'tls.crt'),
      key: path.join(tmp.dir, 'tls.key'),
      otherKey: path.join(tmp.dir, 'other.key'),
      notPem: path.join(tmp.dir, 'not.pem'),
    };
    writeFileSync(certs.cert, a.cert);
    writeFileSync(certs.key, a.private, { mode: 0o600 });
    writeFileSync(certs.otherKey, b.private, { mode: 0o600 });
    writeFileSync(certs.notPem, 'hello\n');
  });
  after(() => tmp.remove());

  it('control plane: a gRPC or REST port in use names --grpc-addr or --http-addr', async () => {
    const busy = await occupy();
    try {
      const g = await cp(['--grpc-addr', `127.0.0.1:${busy.port}`]);
      assert.equal(g.code, 1);
      assert.equal(
        oneLine(g),
        `act control-plane: cannot listen on 127.0.0.1:${busy.port} (address in use): set --grpc-addr/ACT_GRPC_ADDR`,
      );
      assert.throws(() => statSync(lastDir), 'nothing written to disk before the port failed');
      const h = await cp([], { ACT_HTTP_ADDR: `127.0.0.1:${busy.port}` });
      assert.equal(h.code, 1);
      assert.equal(
        oneLine(h),
        `act control-plane: cannot listen on 127.0.0.1:${busy.port} (address in use): set --http-addr/ACT_HTTP_ADDR`,
      );
    } finally {
      await busy.close();
    }
  });

  it('control plane: the webhook port in use names --webhook-addr', async () => {
    const busy = await occupy();
    try {
      const r = await cp([
        '--webhook-addr',
        `127.0.0.1:${busy.port}`,
        '--webhook-tls-cert',
        certs.cert,
        '--webhook-tls-key',
        certs.key,
        '--sidecar-image',
        'act:test',
        '--sidecar-control-plane',
        'act.act-system.svc:8701',
      ]);
      assert.equal(r.code, 1);
      assert.equal(
        oneLine(r),
        `act control-plane: cannot listen on 127.0.0.1:${busy.port} (address in use): set --webhook-addr/ACT_WEBHOOK_ADDR`,
      );
    } finally {
      await busy.close();
    }
  });

  it('sidecar: the decision gRPC or REST port in use names its flag and variable', async () => {
    const busy = await occupy();
    try {
      const g = await sidecar(['--grpc-addr', `127.0.0.1:${busy.port}`]);
      assert.equal(g.code, 1);
      assert.equal(
        oneLine(g),
        `act sidecar: cannot listen on 127.0.0.1:${busy.port} (address in use): set --grpc-addr/ACT_SIDECAR_GRPC_ADDR`,
      );
      const h = await sidecar([], { ACT_SIDECAR_HTTP_ADDR: `127.0.0.1:${busy.port}` });
      assert.equal(h.code, 1);
      assert.equal(
        oneLine(h),
        `act sidecar: cannot listen on 127.0.0.1:${busy.port} (address in use): set --http-addr/ACT_SIDECAR_HTTP_ADDR`,
      );
    } finally {
      await busy.close();
    }
  });

  it('sidecar: a missing key says which flag and how to create one (exit 2, nothing written)', async () => {
    const dir = path.join(tmp.dir, 'sidecar-nokey');
    const r = await runAct(
      ['sidecar', '--data-dir', dir, '--http-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0'],
      env,
      { timeoutMs: 20_000 },
    );
    assert.equal(r.code, 2);
    assert.equal(
      oneLine(r),
      'act sidecar: no API key for the Sync stream to the control plane: set --sidecar-key/ACT_SIDECAR_KEY to a key with the SIDECAR role (create one with `act api-keys create --name NAME --role SIDECAR`)',
    );
    assert.throws(() => statSync(dir), 'the data dir was not created');
  });

  it('bad TLS files: missing, not PEM, a key of another certificate, one without the other (exit 2)', async () => {
    const cases: [string[], string][] = [
      [
        ['--tls-cert', path.join(tmp.dir, 'nope.crt'), '--tls-key', certs.key],
        `act control-plane: cannot read ${path.join(tmp.dir, 'nope.crt')} (no such file or directory): set --tls-cert/ACT_TLS_CERT`,
      ],
      [
        ['--tls-cert', certs.notPem, '--tls-key', certs.key],
        `act control-plane: ${certs.notPem} is not a PEM certificate: set --tls-cert/ACT_TLS_CERT`,
      ],
      [
        ['--tls-cert', certs.cert, '--tls-key', certs.notPem],
        `act control-plane: ${certs.notPem} is not a PEM private key: set --tls-key/ACT_TLS_KEY`,
      ],
      [
        ['--tls-cert', certs.cert, '--tls-key', certs.otherKey],
        `act control-plane: ${certs.otherKey} is not the private key of ${certs.cert}: set --tls-cert/ACT_TLS_CERT and --tls-key/ACT_TLS_KEY to a matching pair`,
      ],
      [
        ['--tls-cert', certs.cert],
        'act control-plane: set both --tls-cert/ACT_TLS_CERT and --tls-key/ACT_TLS_KEY, or neither',
      ],
    ];
    for (const [args, line] of cases) {
      const r = await cp(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(oneLine(r), line);
    }
    const ca = await sidecar(['--tls-ca', path.join(tmp.dir, 'nope-ca.pem')]);
    assert.equal(ca.code, 2);
    assert.equal(
      oneLine(ca),
      `act sidecar: cannot read ${path.join(tmp.dir, 'nope-ca.pem')} (no such file or directory): set --tls-ca/ACT_TLS_CA`,
    );
  });

  it('bad values are reported together, each with its flag and variable (exit 2)', async () => {
    const r = await runAct(['control-plane', '--http-addr', 'nonsense', '--max-body-bytes', '-1'], env, {
      timeoutMs: 20_000,
    });
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^act control-plane: invalid configuration:\n {2}- --http-addr \/ ACT_HTTP_ADDR: expected host:port such as 127\.0\.0\.1:8700, got "nonsense"\n {2}- --max-body-bytes \/ ACT_MAX_BODY_BYTES: expected a positive integer/,
    );
    const s = await runAct(['sidecar'], { ...env, ACT_STALE_AFTER: 'soon' }, { timeoutMs: 20_000 });
    assert.equal(s.code, 2);
    assert.match(s.stderr, /--stale-after \/ ACT_STALE_AFTER: expected a duration/);
    const unknown = await runAct(['sidecar', '--stale-afterr', '1s'], env, { timeoutMs: 20_000 });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option --stale-afterr/);
  });

  it('an unusable data directory names --data-dir; other refusals are one line too', async () => {
    const file = path.join(tmp.dir, 'a-file');
    writeFileSync(file, 'x');
    const r = await runAct(
      [
        'control-plane',
        '--http-addr',
        '127.0.0.1:0',
        '--grpc-addr',
        '127.0.0.1:0',
        '--data-dir',
        path.join(file, 'sub'),
      ],
      { ...env, ACT_ADMIN_KEY: TEST_ADMIN_KEY },
      { timeoutMs: 20_000 },
    );
    assert.equal(r.code, 1);
    assert.match(
      oneLine(r),
      new RegExp(
        `^act control-plane: cannot use the data directory ${file}/sub \\(a parent is not a directory: .*\\): set --data-dir/ACT_DATA_DIR$`,
      ),
    );
    mkdirSync(path.join(tmp.dir, 'ok-dir'));
    // PostgreSQL without a key-encryption key: refused before connecting, naming the setting.
    const url = 'postgres://act:s3cret-pw@127.0.0.1:1/act';
    const noKek = await cp([], { ACT_DATABASE_URL: url });
    assert.equal(noKek.code, 1);
    assert.match(
      oneLine(noKek),
      /^act control-plane: with PostgreSQL the signing keys are sealed under a key-encryption key .*: set --key-encryption-key\/ACT_KEY_ENCRYPTION_KEY/,
    );
    // A database that cannot be reached: the setting is named, the URL (a secret) is not printed.
    const pg = await cp([], {
      ACT_DATABASE_URL: url,
      ACT_KEY_ENCRYPTION_KEY: Buffer.alloc(32, 7).toString('base64'),
    });
    assert.equal(pg.code, 1);
    assert.match(
      oneLine(pg),
      /^act control-plane: cannot open the PostgreSQL store: .*: set --database-url\/ACT_DATABASE_URL$/,
    );
    assert.ok(!pg.stderr.includes('s3cret-pw') && !pg.stdout.includes('s3cret-pw'), pg.stderr);
    const nonLoop = await sidecar(['--grpc-addr', '0.0.0.0:0']);
    assert.equal(nonLoop.code, 1);
    assert.match(
      oneLine(nonLoop),
      /^act sidecar: 0\.0\.0\.0:0 is not a loopback address; .*: set --grpc-addr\/ACT_SIDECAR_GRPC_ADDR$/,
    );
  });
});
