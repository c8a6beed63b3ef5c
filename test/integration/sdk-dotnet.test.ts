/**
 * The C# SDK (clients/dotnet, namespace ActPlatform.SDK) compiled with Debian's Mono `mcs`
 * (installed here with apt-get when missing and running as root; otherwise the suite fails,
 * it never skips): the library with warnings as errors and only assemblies .NET has too, its
 * test program against a real control plane and sidecar (agents, policies and tokens made here
 * over REST) and a scripted HTTP server, and the product description's C# example run against
 * `npm start` (scripts/start.js).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { exportNdjson } from '../support/control-plane-helpers';
import { SidecarFixture, waitFor } from '../support/sidecar-helpers';
import {
  MONO_PACKAGES,
  ROOT,
  ensureDebianPackages,
  runProgram,
  seedAgentAtDemo,
  startDemo,
  startSdkWorld,
  type Demo,
  type SdkWorld,
} from '../support/sdk-world';

const CS_DIR = path.join(ROOT, 'clients/dotnet');
const SOURCES = readdirSync(path.join(CS_DIR, 'src'))
  .filter((f) => f.endsWith('.cs'))
  .sort()
  .map((f) => path.join(CS_DIR, 'src', f));

/** Namespaces the library may use: all in netstandard2.0 and in Mono. */
const PORTABLE_NAMESPACES = new Set([
  'System',
  'System.Collections',
  'System.Collections.Generic',
  'System.Diagnostics',
  'System.Globalization',
  'System.IO',
  'System.Net',
  'System.Net.Http',
  'System.Net.Http.Headers',
  'System.Reflection',
  'System.Runtime.Serialization',
  'System.Runtime.Serialization.Json',
  'System.Text',
  'System.Threading',
  'System.Threading.Tasks',
]);

async function mcs(args: string[]): Promise<void> {
  const r = await runProgram('mcs', args, { cwd: CS_DIR });
  assert.equal(r.code, 0, `mcs ${args.join(' ')}\n${r.stdout}${r.stderr}`);
  // -warnaserror+ makes warnings fail; anything else printed is worth seeing.
  assert.equal(`${r.stdout}${r.stderr}`.trim(), '', `mcs printed:\n${r.stdout}${r.stderr}`);
}

function auditOf(demo: Demo, agentId: string): Promise<any[]> {
  return waitFor(`audit records of ${agentId}`, async () => {
    const recs = await exportNdjson(demo.api, `agent_id=${agentId}`);
    return recs.length > 0 ? recs : undefined;
  });
}

describe('C# SDK (ActPlatform.SDK) on Mono against a live sidecar', function () {
  this.timeout(240_000);
  const fx = new SidecarFixture();
  let world: SdkWorld;
  let out: string;
  let dll: string;

  before(async function () {
    this.timeout(900_000); // apt-get on a fresh machine
    ensureDebianPackages(MONO_PACKAGES);
    world = await startSdkWorld(fx, 'cs');
    out = fx.dir('cs-build');
    dll = path.join(out, 'ActPlatform.SDK.dll');
  });

  after(async function () {
    await fx.teardown();
  });

  it('the library compiles with warnings as errors, XML docs, and only System.Net.Http and System.Runtime.Serialization', async function () {
    await mcs([
      '-target:library',
      `-out:${dll}`,
      `-doc:${path.join(out, 'ActPlatform.SDK.xml')}`,
      '-warnaserror+',
      '-r:System.Net.Http',
      '-r:System.Runtime.Serialization',
      ...SOURCES,
    ]);
    const docs = readFileSync(path.join(out, 'ActPlatform.SDK.xml'), 'utf8');
    for (const member of [
      'T:ActPlatform.SDK.ACTClient',
      'M:ActPlatform.SDK.ACTClient.CheckPermissionAsync',
      'P:ActPlatform.SDK.PermissionResult.Allowed',
    ])
      assert.ok(docs.includes(member), `${member} documented`);
  });

  it('the library uses only namespaces present in netstandard2.0 and Mono, and the .csproj builds those sources', function () {
    for (const file of SOURCES) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^using ([\w.]+);/gm))
        assert.ok(PORTABLE_NAMESPACES.has(m[1]!), `${path.basename(file)} uses ${m[1]}`);
      const code = text.replace(/\/\/.*$/gm, ''); // the comments say why these are not used
      assert.doesNotMatch(code, /System\.Text\.Json|JavaScriptSerializer|System\.Web/, path.basename(file));
      assert.match(text, /^namespace ActPlatform\.SDK$/m, path.basename(file));
    }
    const csproj = readFileSync(path.join(CS_DIR, 'ActPlatform.SDK.csproj'), 'utf8');
    assert.match(csproj, /<TargetFramework>netstandard2\.0<\/TargetFramework>/);
    assert.match(csproj, /<Compile Include="src\/\*\*\/\*\.cs" \/>/);
  });

  it('tests: the seed check allowed and denied and audited, Context of every kind, bad input, unreachable sidecar, revocation, approvals, concurrency, and a scripted server', async function () {
    const exe = path.join(out, 'SdkTests.exe');
    await mcs([
      '-target:exe',
      `-out:${exe}`,
      `-r:${dll}`,
      '-r:System.Net.Http',
      '-r:System.Web.Extensions',
      '-r:Microsoft.CSharp',
      '-r:System.Core',
      path.join(CS_DIR, 'tests/SdkTests.cs'),
    ]);
    const r = await runProgram('mono', [exe], { cwd: out, env: world.env });
    const text = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.code, 0, text);
    const summary = /^(\d+) passed, (\d+) failed$/m.exec(r.stdout);
    assert.ok(summary, text);
    assert.equal(Number(summary[2]), 0, text);
    assert.ok(Number(summary[1]) >= 20, text);
    assert.doesNotMatch(r.stdout, /^not ok/m, text);
  });

  it('no token or key in any process log after the SDK tests', function () {
    fx.assertNoSecretsInLogs(world.cp.adminKey);
  });

  describe("the description's C# example against npm start", function () {
    let demo: Demo;
    let exe: string;

    before(async function () {
      this.timeout(120_000);
      demo = await startDemo(fx, 'cs');
      exe = path.join(out, 'SupportTicket.exe');
      await mcs(['-target:exe', `-out:${exe}`, `-r:${dll}`, path.join(CS_DIR, 'examples/SupportTicket.cs')]);
    });

    it('allowed: creates the ticket, and the check is audited with its anonymous Context', async function () {
      const { token, agentId } = await seedAgentAtDemo(fx, demo);
      const r = await runProgram('mono', [exe], {
        cwd: out,
        env: { ACT_TOKEN: token, ACT_SIDECAR_HTTP_ADDR: demo.sidecarHttp },
      });
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.equal(
        r.stdout,
        'created support ticket: { subject = Order status, customerId = customer_123 }\n',
      );
      const [rec] = await auditOf(demo, agentId);
      assert.equal(rec.action, 'create:support_ticket');
      assert.equal(rec.resource, 'ticket_system');
      assert.equal(rec.decision, 'ALLOW');
      assert.deepEqual(rec.context, { userId: 'user_123', reason: 'Customer inquiry' });
    });

    it('denied: throws UnauthorizedAccessException with the reason and creates nothing', async function () {
      const { token, agentId } = await seedAgentAtDemo(
        fx,
        demo,
        ['read:customer_profile'],
        'Read-only Agent',
      );
      const r = await runProgram('mono', [exe], {
        cwd: out,
        env: { ACT_TOKEN: token, ACT_SIDECAR_HTTP_ADDR: demo.sidecarHttp },
      });
      assert.notEqual(r.code, 0, r.stdout);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /System\.UnauthorizedAccessException: Capability not granted in token/);
      const [rec] = await auditOf(demo, agentId);
      assert.equal(rec.decision, 'DENY');
    });

    it('no sidecar: throws ACTUnavailableException and creates nothing', async function () {
      const { token } = await seedAgentAtDemo(fx, demo, ['create:support_ticket'], 'Orphan Agent');
      const r = await runProgram('mono', [exe], {
        cwd: out,
        env: { ACT_TOKEN: token, ACT_SIDECAR_HTTP_ADDR: world.closedAddr },
      });
      assert.notEqual(r.code, 0, r.stdout);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        /ActPlatform\.SDK\.ACTUnavailableException: ACT sidecar at http:\/\/127\.0\.0\.1:\d+\/ unavailable/,
      );
      assert.equal(r.stderr.includes(token), false, 'the token is not in the error');
    });
  });
});
