/**
 * The walkthroughs a new user copies: the one `npm start` prints and the
 * README's "## CLI" block, run as printed with bash against real processes.
 * Both must show an ALLOW at any hour, the seed policy denying outside
 * 09:00-17:00 UTC with when it opens, an approval, a revocation and an export.
 * docs/cli.md must document every command and option the CLI has.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/program';
import { ACT_BIN, type ControlPlaneProcess } from '../support/processes';
import { freePort, SidecarFixture, seedHoursExpectation, waitFor } from '../support/sidecar-helpers';
import { cleanEnv } from './cli-helpers';

const ROOT = path.resolve(__dirname, '../..');

function bash(
  script: string,
  env: Record<string, string>,
  cwd: string,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', script], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.once('close', (code) => resolve({ code, out }));
  });
}

/** What both walkthroughs must show; `seedChecked` says whether the seed-policy token is checked before revocation. */
function assertWalkthrough(out: string, startedAt: string, endedAt: string): void {
  const allows = out.match(/^ALLOW {2}read:customer_profile on customer_54321$/gm) ?? [];
  assert.ok(allows.length >= 1, `no ALLOW at this hour:\n${out}`);
  assert.match(
    out,
    /^DENY {2}delete:customer_account on customer_54321\n {2}reason: .*\(CAPABILITY_NOT_GRANTED\)/m,
  );
  const [a, b] = [seedHoursExpectation(startedAt), seedHoursExpectation(endedAt)];
  if (a.allowed === b.allowed && !a.allowed)
    assert.match(
      out,
      /^DENY {2}read:customer_profile on customer_54321\n {2}reason: .*\(OUTSIDE_ALLOWED_HOURS\)\n {2}opens at: {3}\d{4}-\d\d-\d\dT09:00:00\.000Z \(in /m,
      'outside the hours the seed policy denies and says when it opens',
    );
  if (a.allowed === b.allowed && a.allowed)
    assert.ok(allows.length >= 2, 'in the hours the seed token is allowed too');
  assert.match(out, /^APPROVAL_REQUIRED {2}create:transaction on acct_1\n/m);
  assert.match(out, /^status: +APPROVED$/m);
  assert.match(out, /^ALLOW {2}create:transaction on acct_1\n {2}reason: .*approved by a human/m);
  assert.match(out, /^revoked tok_\w+ \(revision \d+\)$/m);
  assert.match(out, /\(TOKEN_REVOKED\)/);
  assert.match(out, /^\d+ records, \d+ sources, 0 problems$/m);
  assert.doesNotMatch(out, /command not found|unknown option|unknown command|is not a URL|cannot reach/);
}

describe('CLI walkthroughs (npm start, README) and docs/cli.md', function () {
  this.timeout(180_000);
  const fx = new SidecarFixture();
  after(() => fx.teardown());

  it('the walkthrough npm start prints runs as printed and shows an ALLOW at any hour', async () => {
    const dir = fx.dir('cli-start');
    const [http, grpcPort, scHttp, scGrpc] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const env = {
      ...cleanEnv(dir),
      ACT_DATA_DIR: path.join(dir, 'data'),
      ACT_HTTP_ADDR: `127.0.0.1:${http}`,
      ACT_GRPC_ADDR: `127.0.0.1:${grpcPort}`,
      ACT_SIDECAR_HTTP_ADDR: `127.0.0.1:${scHttp}`,
      ACT_SIDECAR_GRPC_ADDR: `127.0.0.1:${scGrpc}`,
    };
    const start = spawn(process.execPath, [path.join(ROOT, 'scripts/start.js')], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let printed = '';
    start.stdout.on('data', (d) => (printed += d));
    let errors = '';
    start.stderr.on('data', (d) => (errors += d));
    const exited = new Promise((r) => start.once('exit', r));
    try {
      await waitFor(
        'the walkthrough',
        async () => {
          if (start.exitCode !== null) throw new Error(`npm start exited: ${errors}`);
          return printed.includes('# --- end ---') ? true : undefined;
        },
        { timeoutMs: 60_000 },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\nstdout:\n${printed}\nstderr:\n${errors}`);
      });
      const script = /# --- walkthrough ---\n([\s\S]*?)# --- end ---/.exec(printed)![1]!;
      assert.ok(script.includes(`export ACT_URL=http://127.0.0.1:${http}`));
      assert.doesNotMatch(script, /20\d\d-\d\d-\d\dT/, 'no hard-coded dates');
      const t0 = new Date().toISOString();
      const r = await bash(script, cleanEnv(dir), dir);
      assertWalkthrough(r.out, t0, new Date().toISOString());
      // the sidecar answered one of them
      assert.match(r.out, /^ALLOW {2}read:customer_profile on customer_54321\n(?: .*\n)*? {2}audit: .*\n/m);
      assert.match(readFileSync(path.join(dir, 'audit.csv'), 'utf8'), /^audit_id,time,source,seq,/);
    } finally {
      start.kill('SIGINT');
      await exited;
    }
  });

  it("the README's CLI block runs as written against a control plane and sidecar", async () => {
    const dir = fx.dir('cli-readme');
    const cp: ControlPlaneProcess = await fx.controlPlane(path.join(dir, 'cp'));
    await fx.sidecar(cp, path.join(dir, 'sc'));
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n## CLI\n'));
    const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
    assert.ok(block.includes('act login --url http://127.0.0.1:8700 --key <admin key>'));
    const script =
      `act() { "${process.execPath}" "${ACT_BIN}" "$@"; }\n` +
      block.replaceAll('http://127.0.0.1:8700', cp.url).replaceAll('<admin key>', cp.adminKey);
    const t0 = new Date().toISOString();
    const r = await bash(script, cleanEnv(dir), dir);
    assertWalkthrough(r.out, t0, new Date().toISOString());
    assert.match(r.out, /^saved http:\/\/127\.0\.0\.1:\d+ and the API key in .*config\.json \(mode 0600\)$/m);
    assert.match(readFileSync(path.join(dir, 'sidecar.key'), 'utf8'), /^actk_/);
    assert.match(readFileSync(path.join(dir, 'audit.csv'), 'utf8'), /^audit_id,time,source,seq,/);
  });

  it('docs/cli.md documents every command, verb and option; the README names every noun', () => {
    const docs = readFileSync(path.join(ROOT, 'docs/cli.md'), 'utf8');
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const program = buildProgram({}, { code: 0 });
    for (const o of program.options)
      assert.ok(docs.includes(o.long!), `docs/cli.md lacks the global ${o.long}`);
    for (const code of ['| 0 |', '| 1 |', '| 2 |', '| 3 |', '| 4 |']) assert.ok(docs.includes(code));
    for (const noun of program.commands.filter((c) => !['help', 'version'].includes(c.name()))) {
      const verbs = noun.commands.filter((c: Command) => c.name() !== 'help');
      assert.ok(readme.includes(`\`${noun.name()}\``), `README's CLI section lacks ${noun.name()}`);
      for (const v of verbs.length ? verbs : [noun]) {
        const name = v === noun ? noun.name() : `${noun.name()} ${v.name()}`;
        const at = docs.search(new RegExp(`^#{3,4} \`act ${name}[\` ]`, 'm'));
        assert.ok(at >= 0, `docs/cli.md has no section for act ${name}`);
        const eol = docs.indexOf('\n', at) + 1;
        const next = docs.slice(eol).search(/^#{3,4} /m);
        const body = docs.slice(at, next < 0 ? undefined : eol + next);
        assert.ok(body.includes(v.description()), `docs for act ${name} lack its description`);
        for (const o of v.options) assert.ok(body.includes(o.long!), `docs for act ${name} lack ${o.long}`);
      }
    }
  });
});
