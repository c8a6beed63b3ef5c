/**
 * The Python SDK (clients/python, package act_sdk) under Debian's /usr/bin/python3 with
 * python3-grpcio and python3-protobuf (installed here with apt-get when missing and
 * running as root; otherwise the suite fails, it never skips): its unit tests against a
 * scripted gRPC server, its live tests against a real control plane and sidecar (the
 * agents, policies and tokens made here over REST), and the product description's
 * Python example run against `npm start` (scripts/start.js).
 */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { exportNdjson } from '../support/control-plane-helpers';
import { SidecarFixture, waitFor } from '../support/sidecar-helpers';
import {
  PYTHON,
  PYTHON_PACKAGES,
  ROOT,
  assertUnittestPassed,
  ensureDebianPackages,
  runProgram,
  seedAgentAtDemo,
  startDemo,
  startSdkWorld,
  type Demo,
  type SdkWorld,
} from '../support/sdk-world';

const PY_DIR = path.join(ROOT, 'clients/python');

function python(args: string[], env: Record<string, string> = {}) {
  return runProgram(PYTHON, args, {
    cwd: PY_DIR,
    env: { PYTHONPATH: PY_DIR, PYTHONDONTWRITEBYTECODE: '1', ...env },
  });
}

/** The audit records of an agent at the demo's control plane, once the sidecar shipped at least one. */
function auditOf(demo: Demo, agentId: string): Promise<any[]> {
  return waitFor(`audit records of ${agentId}`, async () => {
    const recs = await exportNdjson(demo.api, `agent_id=${agentId}`);
    return recs.length > 0 ? recs : undefined;
  });
}

describe('Python SDK (act_sdk) against a live sidecar', function () {
  this.timeout(240_000);
  const fx = new SidecarFixture();
  let world: SdkWorld;

  before(async function () {
    this.timeout(900_000); // apt-get on a fresh machine
    ensureDebianPackages(PYTHON_PACKAGES);
    world = await startSdkWorld(fx, 'py');
  });

  after(async function () {
    await fx.teardown();
  });

  it('the checked-in stubs are what scripts/gen-python.js makes from the contract today', async function () {
    const out = fx.dir('py-gen');
    const r = await runProgram(process.execPath, [path.join(ROOT, 'scripts/gen-python.js')], {
      env: { ACT_GEN_PYTHON_OUT: out },
    });
    assert.equal(r.code, 0, r.stderr);
    const checkedIn = path.join(PY_DIR, 'act_sdk/_proto');
    const files = readdirSync(out).sort();
    assert.deepEqual(files, ['__init__.py', 'decision_pb2.py', 'decision_pb2_grpc.py']);
    for (const f of files) {
      assert.equal(
        readFileSync(path.join(checkedIn, f), 'utf8'),
        readFileSync(path.join(out, f), 'utf8'),
        `${f} is stale: run npm run gen`,
      );
    }
  });

  it('unit tests: arguments, fail-closed answers, typed errors, retries, deadlines, the stream, @require (scripted gRPC server)', async function () {
    const r = await python(['-m', 'unittest', 'discover', '-v', '-s', 'tests', '-p', 'test_*_unit.py']);
    assertUnittestPassed(r, 50);
  });

  it('live tests: the seed check allowed and denied and audited, unix socket, bad tokens and input, unreachable sidecar, revocation, approval_id, @require, threads', async function () {
    const r = await python(
      ['-m', 'unittest', 'discover', '-v', '-s', 'tests', '-p', 'test_live.py'],
      world.env,
    );
    assertUnittestPassed(r, 13);
  });

  it('live tests: wait_for_approval over WaitForApproval, then the approval presented once', async function () {
    const r = await python(
      ['-m', 'unittest', 'discover', '-v', '-s', 'tests', '-p', 'test_live_wait.py'],
      world.env,
    );
    assertUnittestPassed(r, 4);
  });

  it('pyproject.toml builds a wheel (offline) with the stubs, and the installed package checks at the sidecar', async function () {
    // Built from a copy: setuptools writes build/ and *.egg-info next to pyproject.toml.
    const src = path.join(fx.dir('py-wheel-src'), 'python');
    cpSync(PY_DIR, src, { recursive: true, filter: (f) => !f.includes('__pycache__') });
    const dist = fx.dir('py-wheel-dist');
    const build = await runProgram(
      PYTHON,
      [
        '-c',
        'import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))',
        dist,
      ],
      { cwd: src },
    );
    assert.equal(build.code, 0, build.stderr);
    const wheel = build.stdout.trim().split('\n').pop()!;
    assert.match(wheel, /^act_sdk-0\.1\.0-py3-none-any\.whl$/);
    // "Install" it the way pip does for a pure-Python wheel: unpack onto a path of its own.
    const site = fx.dir('py-wheel-site');
    const unzip = await runProgram(PYTHON, ['-m', 'zipfile', '-e', path.join(dist, wheel), site]);
    assert.equal(unzip.code, 0, unzip.stderr);
    const files = (await runProgram(PYTHON, ['-m', 'zipfile', '-l', path.join(dist, wheel)])).stdout;
    for (const f of [
      'act_sdk/_proto/decision_pb2.py',
      'act_sdk/_proto/decision_pb2_grpc.py',
      'act_sdk/py.typed',
    ])
      assert.ok(files.includes(f), `${f} in the wheel:\n${files}`);
    assert.doesNotMatch(files, /tests\/|examples\//, 'tests and examples stay out of the wheel');
    const use = await runProgram(
      PYTHON,
      [
        '-c',
        'import act_sdk, sys; print(act_sdk.__file__); d = act_sdk.ACTClient().check_permission("read:customer_profile"); print(bool(d), d.reason_code)',
      ],
      { cwd: site, env: { ...world.env, PYTHONPATH: site, PYTHONDONTWRITEBYTECODE: '1' } },
    );
    assert.equal(use.code, 0, use.stderr);
    const [file, answer] = use.stdout.trim().split('\n');
    assert.ok(file!.startsWith(site), `imported from the installed copy: ${file}`);
    assert.equal(answer, 'True GRANTED');
  });

  it('no token or key in any process log after the SDK tests', function () {
    fx.assertNoSecretsInLogs(world.cp.adminKey);
  });

  describe("the description's Python example against npm start", function () {
    let demo: Demo;
    const example = path.join(PY_DIR, 'examples/support_agent.py');

    before(async function () {
      this.timeout(120_000);
      demo = await startDemo(fx, 'py');
    });

    it('allowed: fetches and processes customer_123, and the check is audited', async function () {
      const { token, agentId } = await seedAgentAtDemo(fx, demo);
      const r = await python([example], { ACT_TOKEN: token, ACT_SIDECAR_GRPC_ADDR: demo.sidecarGrpc });
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.equal(r.stdout, 'processed customer_123 (gold)\n');
      const [rec] = await auditOf(demo, agentId);
      assert.equal(rec.action, 'read:customer_profile');
      assert.equal(rec.resource, 'customer_123');
      assert.equal(rec.decision, 'ALLOW');
    });

    it('denied: raises PermissionError("Agent not authorized for this action") and processes nothing', async function () {
      const { token, agentId } = await seedAgentAtDemo(
        fx,
        demo,
        ['create:support_ticket'],
        'Ticket-only Agent',
      );
      const r = await python([example], { ACT_TOKEN: token, ACT_SIDECAR_GRPC_ADDR: demo.sidecarGrpc });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /PermissionError: Agent not authorized for this action\s*$/);
      const [rec] = await auditOf(demo, agentId);
      assert.equal(rec.decision, 'DENY');
      assert.equal(rec.reason_code, 'CAPABILITY_NOT_GRANTED');
    });

    it('no sidecar: raises ACTUnavailableError and processes nothing', async function () {
      const { token } = await seedAgentAtDemo(fx, demo, ['read:customer_profile'], 'Orphan Agent');
      const r = await python([example], { ACT_TOKEN: token, ACT_SIDECAR_GRPC_ADDR: world.closedAddr });
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        /act_sdk\.errors\.ACTUnavailableError: ACT sidecar at 127\.0\.0\.1:\d+ unavailable/,
      );
      assert.equal(r.stderr.includes(token), false, 'the token is not in the error');
    });
  });
});
