/**
 * The CLI's grammar and its errors, as a new user meets them: help for every
 * noun and verb, suggestions, each error message with its exit code, the URL
 * and key resolution (flags > env > config file) and `act login`.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../../src/cli/program';
import { CONTROL_PLANE_OPTIONS } from '../../src/control-plane/config';
import { SIDECAR_OPTIONS } from '../../src/sidecar/config';
import { startControlPlane, tempDir, type ControlPlaneProcess } from '../support/processes';
import { freePort } from '../support/sidecar-helpers';
import { cleanEnv, json, runAct } from './cli-helpers';

const NOUNS = ['agents', 'policies', 'tokens', 'approvals', 'audit', 'keys', 'api-keys', 'sidecars'];

describe('act CLI usage and errors', function () {
  this.timeout(120_000);
  const tmp = tempDir('cli-usage');
  let cp: ControlPlaneProcess;
  let base: Record<string, string>;

  before(async () => {
    cp = await startControlPlane(path.join(tmp.dir, 'cp'));
    base = cleanEnv(path.join(tmp.dir, 'home'));
    mkdirSync(base.HOME!, { recursive: true });
  });
  after(async () => {
    await cp?.stop();
    tmp.remove();
  });

  it('act help lists every command, the exit codes, the environment and the config file', async () => {
    const h = await runAct(['help'], base);
    assert.equal(h.code, 0);
    for (const n of [...NOUNS, 'check', 'login', 'control-plane', 'sidecar', 'version'])
      assert.match(h.stdout, new RegExp(`^  ${n}\\b`, 'm'), `act help lacks ${n}`);
    for (const code of ['0', '1', '2', '3', '4']) assert.match(h.stdout, new RegExp(`^  ${code}  \\S`, 'm'));
    for (const s of ['ACT_URL', 'ACT_KEY', 'ACT_CONFIG', '~/.config/act/config.json', 'APPROVAL_REQUIRED'])
      assert.ok(h.stdout.includes(s), `act help lacks ${s}`);
    assert.deepEqual((await runAct(['--help'], base)).stdout, h.stdout);
    const bare = await runAct([], base);
    assert.equal(bare.code, 2);
    assert.ok(bare.stderr.includes('Usage: act <command>'));
    const v = await runAct(['version'], base);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
    assert.equal((await runAct(['--version'], base)).stdout, v.stdout);
  });

  it('act <noun> --help and act <noun> <verb> --help for every noun and verb; a bare noun lists its verbs (exit 2)', async () => {
    const program = buildProgram({}, { code: 0 });
    const tree = program.commands.filter((c) => !['help', 'version'].includes(c.name()));
    assert.deepEqual(tree.map((c) => c.name()).sort(), [...NOUNS, 'check', 'login'].sort());
    for (const noun of tree) {
      const verbs = noun.commands.filter((c: Command) => c.name() !== 'help');
      const h = await runAct([noun.name(), '--help'], base);
      assert.equal(h.code, 0, `${noun.name()} --help: ${h.stderr}`);
      assert.match(h.stdout, new RegExp(`^Usage: act ${noun.name()} `));
      assert.ok(h.stdout.includes('--json'), `${noun.name()} --help shows the global options`);
      for (const verb of verbs) {
        assert.match(
          h.stdout,
          new RegExp(`^  ${verb.name()}\\b`, 'm'),
          `${noun.name()} --help lacks ${verb.name()}`,
        );
        const vh = await runAct([noun.name(), verb.name(), '--help'], base);
        assert.equal(vh.code, 0, `${noun.name()} ${verb.name()} --help`);
        assert.match(vh.stdout, new RegExp(`^Usage: act ${noun.name()} ${verb.name()}\\b`));
        const flat = (t: string) => t.replace(/\s+/g, ' ');
        assert.ok(
          flat(vh.stdout).includes(flat(verb.description())),
          `${noun.name()} ${verb.name()} --help lacks its description`,
        );
        assert.equal(vh.stderr, '');
      }
      if (verbs.length > 0) {
        const bare = await runAct([noun.name()], base);
        assert.equal(bare.code, 2, `bare ${noun.name()}`);
        for (const verb of verbs) assert.match(bare.stderr, new RegExp(`^  ${verb.name()}\\b`, 'm'));
        assert.equal(bare.stdout, '');
      }
    }
  });

  it('act control-plane --help and act sidecar --help list every flag and variable; the README names each variable', async () => {
    for (const [cmd, specs] of [
      ['control-plane', CONTROL_PLANE_OPTIONS],
      ['sidecar', SIDECAR_OPTIONS],
    ] as const) {
      const h = await runAct([cmd, '--help'], base);
      assert.equal(h.code, 0);
      for (const s of Object.values(specs)) {
        assert.ok(h.stdout.includes(s.flag), `${cmd} --help lacks ${s.flag}`);
        assert.ok(h.stdout.includes(s.env), `${cmd} --help lacks ${s.env}`);
      }
    }
    const readme = readFileSync(path.join(__dirname, '../../README.md'), 'utf8');
    for (const s of [...Object.values(CONTROL_PLANE_OPTIONS), ...Object.values(SIDECAR_OPTIONS)])
      assert.ok(readme.includes(s.env), `README does not document ${s.env}`);
  });

  it('suggests the command or option meant (exit 2, nothing sent)', async () => {
    const cases: [string[], RegExp][] = [
      [['agnets', 'list'], /unknown command 'agnets'\n\(Did you mean agents\?\)/],
      [['agents', 'lsit'], /unknown command 'lsit'\n\(Did you mean list\?\)/],
      [['keys', 'rotat'], /Did you mean rotate\?/],
      [['agents', 'create', '--nmae', 'x'], /unknown option '--nmae'\n\(Did you mean --name\?\)/],
      [['tokens', 'create', '--agnet', 'agent_x'], /Did you mean --agent\?/],
      [['audit', 'export', '--fromat', 'csv'], /Did you mean --format\?/],
      [['control-plan'], /Did you mean control-plane\?/],
      [
        ['audit', 'export', '--format', 'xml'],
        /argument 'xml' is invalid\. Allowed choices are csv, json, ndjson/,
      ],
      [['agents', 'list', '--limit', 'many'], /expected a positive integer/],
      [['tokens', 'revoke', '--wait', 'soon', 'tok_x'], /expected a duration/],
      [['agents', 'get'], /missing required argument 'agent-id'/],
    ];
    for (const [args, re] of cases) {
      const r = await runAct(args, { ...base, ACT_URL: 'http://127.0.0.1:9', ACT_KEY: 'k' });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.doesNotMatch(r.stderr, /cannot reach/, `${args.join(' ')} sent a request`);
    }
  });

  it('a missing key names --key, ACT_KEY and act login; a wrong key says so (401 → exit 1)', async () => {
    const none = await runAct(['agents', 'list'], { ...base, ACT_URL: cp.url });
    assert.equal(none.code, 2);
    assert.equal(
      none.stderr,
      'act: no API key: pass --key KEY, set ACT_KEY, or save one with `act login --url URL --key KEY`\n',
    );
    const wrong = await runAct(['agents', 'list'], {
      ...base,
      ACT_URL: cp.url,
      ACT_KEY: 'wrong-key-123456789',
    });
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      /^act: HTTP 401 UNAUTHENTICATED: .* — the API key from ACT_KEY was not accepted; check --key \/ ACT_KEY, or run `act login/,
    );
    // ACT_ADMIN_KEY is the last resort of the environment
    assert.equal(
      (await runAct(['agents', 'list'], { ...base, ACT_URL: cp.url, ACT_ADMIN_KEY: cp.adminKey })).code,
      0,
    );
  });

  it('a URL that does not parse is a usage error (2), distinct from an unreachable control plane (3)', async () => {
    const env = { ...base, ACT_KEY: cp.adminKey };
    const noScheme = await runAct(['--url', `127.0.0.1:${cp.httpPort}`, 'agents', 'list'], env);
    assert.equal(noScheme.code, 2);
    assert.equal(
      noScheme.stderr,
      `act: --url: "127.0.0.1:${cp.httpPort}" is not a URL; expected http://host:port (did you mean http://127.0.0.1:${cp.httpPort}?)\n`,
    );
    const host = await runAct(['agents', 'list'], { ...env, ACT_URL: 'localhost:8700' });
    assert.equal(host.code, 2);
    assert.match(
      host.stderr,
      /^act: ACT_URL: "localhost:8700" is not an http:\/\/ or https:\/\/ URL \(did you mean http:\/\/localhost:8700\?\)/,
    );
    assert.equal((await runAct(['agents', 'list', '--url', 'http://user:pw@127.0.0.1:1'], env)).code, 2);
    const port = await freePort();
    const down = await runAct(['agents', 'list', '--url', `http://127.0.0.1:${port}`], env);
    assert.equal(down.code, 3);
    assert.equal(
      down.stderr,
      `act: cannot reach the control plane at http://127.0.0.1:${port} (connection refused); is it running? set --url/ACT_URL (now from --url)\n`,
    );
    const side = await runAct(
      ['check', '--sidecar', `http://127.0.0.1:${port}`, '--token', 'act_x.y', '--action', 'read:x'],
      env,
    );
    assert.equal(side.code, 3);
    assert.match(side.stderr, /cannot reach the sidecar at .* set --sidecar\/ACT_SIDECAR_URL/);
    // a trailing slash is fine
    assert.equal((await runAct(['agents', 'list', '--url', `${cp.url}/`], env)).code, 0);
  });

  it('an id from the command line stays one path segment (no route traversal)', async () => {
    const env = { ...base, ACT_URL: cp.url, ACT_KEY: cp.adminKey };
    const before = (await runAct(['keys', 'list', '-q'], env)).stdout;
    for (const id of ['../keys/rotate', '..%2Fkeys%2Frotate', 'x?y=1', '../../api/keys/rotate#']) {
      const r = await runAct(['agents', 'disable', id], env);
      assert.equal(r.code, 1, `${id}: ${r.stdout}`);
      assert.match(r.stderr, /HTTP (400|404) /);
    }
    assert.equal((await runAct(['keys', 'list', '-q'], env)).stdout, before, 'no key was rotated');
  });

  it('act login checks the key and writes the config file with mode 0600; flags > env > config', async () => {
    const home = path.join(tmp.dir, 'login-home');
    const env = cleanEnv(home);
    const file = path.join(home, '.config', 'act', 'config.json');

    const bad = await runAct(['login', '--url', cp.url, '--key', 'not-the-key-0123456789'], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /HTTP 401/);
    assert.throws(() => statSync(file), 'nothing saved for a wrong key');
    const port = await freePort();
    assert.equal(
      (await runAct(['login', '--url', `http://127.0.0.1:${port}`, '--key', cp.adminKey], env)).code,
      3,
    );

    const ok = await runAct(['login', '--url', cp.url, '--key', '-'], env, { input: `${cp.adminKey}\n` });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, `saved ${cp.url} and the API key in ${file} (mode 0600)\n`);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(path.dirname(file)).mode & 0o777, 0o700);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { url: cp.url, key: cp.adminKey });
    assert.equal(
      ok.stdout.includes(cp.adminKey) || ok.stderr.includes(cp.adminKey),
      false,
      'the key is not echoed',
    );

    // config alone
    assert.equal((await runAct(['agents', 'list'], env)).code, 0);
    // env beats config: a wrong ACT_KEY fails although the file holds a good key
    const envWins = await runAct(['agents', 'list'], { ...env, ACT_KEY: 'wrong-key-123456789' });
    assert.equal(envWins.code, 1);
    assert.match(envWins.stderr, /the API key from ACT_KEY/);
    // the flag beats env
    assert.equal(
      (await runAct(['agents', 'list', '--key', cp.adminKey], { ...env, ACT_KEY: 'wrong-key-123456789' }))
        .code,
      0,
    );
    // same for the URL: env over config, flag over env
    const downUrl = `http://127.0.0.1:${port}`;
    assert.equal((await runAct(['agents', 'list'], { ...env, ACT_URL: downUrl })).code, 3);
    assert.equal((await runAct(['agents', 'list', '--url', cp.url], { ...env, ACT_URL: downUrl })).code, 0);
    // ACT_CONFIG and --config choose another file
    const other = path.join(tmp.dir, 'other.json');
    writeFileSync(other, JSON.stringify({ url: downUrl }), { mode: 0o600 });
    const viaEnv = await runAct(['agents', 'list'], { ...env, ACT_CONFIG: other });
    assert.equal(viaEnv.code, 2, 'the other file has no key');
    assert.equal((await runAct(['agents', 'list', '--config', other], env)).code, 2);
    writeFileSync(other, JSON.stringify({ url: cp.url, key: cp.adminKey }), { mode: 0o600 });
    assert.equal((await runAct(['agents', 'list', '--config', other], env)).code, 0);

    // a key file others can read gets a warning; a broken file is a usage error
    chmodSync(other, 0o644);
    const warn = await runAct(['agents', 'list', '--config', other], env);
    assert.equal(warn.code, 0);
    assert.match(warn.stderr, /holds an API key and other users can read it; chmod 600 it/);
    writeFileSync(other, '{"url": ');
    const broken = await runAct(['agents', 'list', '--config', other], env);
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /other\.json is not valid JSON/);
    assert.equal(json(await runAct(['agents', 'list', '--json'], env)).agents.length >= 0, true);
  });
});
