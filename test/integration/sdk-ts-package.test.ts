/**
 * `@act-platform/sdk` as a user gets it: `npm pack` of packages/sdk installed into a temporary
 * project (its other dependencies from the npm cache the repository's install filled, else the
 * registry), the product description's TypeScript example nearly verbatim in an ES-module half and
 * a CommonJS half, each type-checked and compiled with `tsc` against the packed .d.ts files, then
 * run against a real control plane and sidecar.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { exportNdjson, SEED, type Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import { SidecarFixture, restClient, waitFor, waitSynced } from '../support/sidecar-helpers';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
const SDK = path.join(ROOT, 'packages/sdk');
const TSC = path.join(ROOT, 'node_modules/typescript/bin/tsc');
const NPM_OPTS = ['--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'];

/** The version the repository installed, so the temp project reuses the npm cache. */
const installed = (name: string): string =>
  (
    JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as {
      version: string;
    }
  ).version;

/** The description's example (ESM and CJS share it; only `where` differs). */
function example(where: string): string {
  return `import express, { type NextFunction, type Request, type Response } from 'express';
import { ACTClient, ACTUnavailableError, type Decision } from '@act-platform/sdk';
import { actExpress } from '@act-platform/sdk/express';

declare global {
  namespace Express {
    interface Request {
      user?: { id: string };
    }
  }
}

const act = new ACTClient({ token: process.env.ACT_TOKEN });
// Middleware for API routes
async function actAuthMiddleware(req: Request<{ resourceId: string }>, res: Response, next: NextFunction) {
  const allowed = await act.checkPermission({
    action: req.route.action,
    resource: req.params.resourceId,
    context: { ip: req.ip, user: req.user }
  });
  if (allowed) {
    next(); // Permission granted
  } else {
    res.status(403).json({ error: 'Agent not authorized' });
  }
}

// Types the packed .d.ts files must enforce (tsc fails if any of these stops being an error).
async function typesOnly(): Promise<void> {
  const b: boolean = await act.checkPermission({ action: 'read:customer_profile' });
  const d: Decision = await act.check({ action: 'read:customer_profile' });
  const code: 'GRANTED' | string = d.reasonCode;
  // @ts-expect-error the positional form is gone
  await act.checkPermission('read:customer_profile', { resource: 'customer_1' });
  // @ts-expect-error checkPermission resolves to a boolean, not a decision
  (await act.checkPermission({ action: 'read:x' })).allowed;
  // @ts-expect-error unknown field
  await act.check({ action: 'read:x', resourceId: 'c1' });
  void [b, code];
}
void typesOnly;

const app = express();
app.use((req, _res, next) => {
  req.user = { id: 'user_${where}' };
  next();
});
const read = app.route('/customers/:resourceId') as ReturnType<typeof app.route> & { action?: string };
read.action = 'read:customer_profile';
read.get(actAuthMiddleware, (_req, res) => { res.json({ ok: true }); });
const del = app.route('/accounts/:resourceId') as ReturnType<typeof app.route> & { action?: string };
del.action = 'delete:customer_account';
del.get(actAuthMiddleware, (_req, res) => { res.json({ ok: true }); });
app.get(
  '/adapter/:id',
  actExpress<Request<{ id: string }>>({ client: act, action: 'read:customer_profile', resource: (req) => req.params.id }),
  (_req, res) => { res.json({ ok: true }); },
);

const server = app.listen(0, '127.0.0.1', async () => {
  const port = (server.address() as { port: number }).port;
  const status = async (p: string) => (await fetch(\`http://127.0.0.1:\${port}\${p}\`)).status;
  const down = new ACTClient({ address: '127.0.0.1:1', maxAttempts: 1 });
  let unavailable = 'resolved';
  try {
    await down.checkPermission({ action: 'read:customer_profile' });
  } catch (err) {
    unavailable = err instanceof ACTUnavailableError ? 'ACTUnavailableError' : String(err);
  }
  down.close();
  const out = {
    entry: ENTRY,
    allowed: await status('/customers/customer_54321'),
    denied: await status('/accounts/customer_54321'),
    adapter: await status('/adapter/customer_54321'),
    unavailable,
  };
  act.close();
  server.close();
  console.log(JSON.stringify(out));
});
`;
}

describe('@act-platform/sdk packed and installed: ESM and CommonJS, type-checked, against a live sidecar', function () {
  this.timeout(180_000);
  const fx = new SidecarFixture();
  let cp: ControlPlaneProcess;
  let api: Rest;
  let sc: SidecarProcess;
  let agentId: string;
  let token: string;
  let project: string;

  before(async function () {
    cp = await fx.controlPlane(fx.dir('sdkp-cp'));
    api = restClient(cp.url, cp.adminKey);
    sc = await fx.sidecar(cp, fx.dir('sdkp-sc'), { sidecarId: 'sc-sdk-pack' });
    const a = await fx.agentWithToken(api, 'sdk-pack-agent');
    agentId = a.agentId;
    token = a.token;

    project = fx.dir('sdkp-project');
    // prepack builds the package, so the tarball is never a stale dist/.
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', project], { cwd: SDK });
    const packed = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
    const files = packed[0]!.files.map((f) => f.path).sort();
    assert.ok(files.includes('dist/esm/index.js') && files.includes('dist/cjs/index.d.ts'), files.join('\n'));
    assert.ok(files.includes('README.md'));
    assert.ok(!files.some((f) => f.startsWith('src/') || f.endsWith('.map')), files.join('\n'));
    writeFileSync(
      path.join(project, 'package.json'),
      JSON.stringify({
        name: 'act-sdk-example',
        private: true,
        dependencies: {
          '@act-platform/sdk': `file:./${packed[0]!.filename}`,
          express: installed('express'),
        },
        devDependencies: {
          '@types/express': installed('@types/express'),
          '@types/node': installed('@types/node'),
        },
      }),
    );
    await run('npm', ['install', ...NPM_OPTS], { cwd: project });
    await waitSynced(cp, sc);
  });

  after(async function () {
    await fx.teardown();
  });

  it('installs only its runtime dependencies (@grpc/grpc-js, @bufbuild/protobuf) and no framework', function () {
    const pkg = JSON.parse(
      readFileSync(path.join(project, 'node_modules/@act-platform/sdk/package.json'), 'utf8'),
    ) as { dependencies: Record<string, string> };
    assert.deepEqual(Object.keys(pkg.dependencies).sort(), ['@bufbuild/protobuf', '@grpc/grpc-js']);
    const top = readdirSync(path.join(project, 'node_modules'));
    for (const framework of ['fastify', '@langchain']) assert.ok(!top.includes(framework), framework);
  });

  for (const kind of ['esm', 'cjs'] as const) {
    it(`${kind === 'esm' ? 'ES module' : 'CommonJS'}: tsc type-checks the example, and it runs against the sidecar`, async function () {
      const dir = path.join(project, kind);
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        path.join(dir, 'package.json'),
        JSON.stringify({ type: kind === 'esm' ? 'module' : 'commonjs' }),
      );
      writeFileSync(
        path.join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'ES2022',
            module: 'NodeNext',
            moduleResolution: 'NodeNext',
            strict: true,
            esModuleInterop: true,
            // The packed .d.ts files are checked too: a broken declaration fails here.
            skipLibCheck: false,
            types: ['node'],
            outDir: 'out',
          },
          files: ['app.ts'],
        }),
      );
      const entry =
        kind === 'esm' ? "import.meta.resolve('@act-platform/sdk')" : "require.resolve('@act-platform/sdk')";
      writeFileSync(path.join(dir, 'app.ts'), `${example(kind)}\nconst ENTRY = ${entry};\n`);
      await run(process.execPath, [TSC, '-p', dir], { cwd: dir }).catch((err: { stdout?: string }) => {
        throw new Error(`tsc failed:\n${err.stdout ?? String(err)}`);
      });
      const { stdout } = await run(process.execPath, [path.join(dir, 'out/app.js')], {
        cwd: dir,
        env: { ...process.env, ACT_TOKEN: token, ACT_SIDECAR_GRPC_ADDR: `127.0.0.1:${sc.grpcPort}` },
      });
      const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
      assert.match(String(out.entry), new RegExp(`node_modules/@act-platform/sdk/dist/${kind}/index\\.js$`));
      assert.deepEqual(
        { allowed: out.allowed, denied: out.denied, adapter: out.adapter, unavailable: out.unavailable },
        { allowed: 200, denied: 403, adapter: 200, unavailable: 'ACTUnavailableError' },
      );
      // The audit trail holds the real action and the example's context.
      const rec = await waitFor('the example check in the audit trail', async () =>
        (await exportNdjson(api, `agent_id=${agentId}`)).find(
          (r) => r.context?.user?.id === `user_${kind}` && r.action === SEED.deniedAction,
        ),
      );
      assert.equal(rec.decision, 'DENY');
      assert.equal(rec.resource, 'customer_54321');
    });
  }

  it('every subpath export resolves in both module systems', async function () {
    const subpaths = ['', '/express', '/fastify', '/langchain'].map((s) => `@act-platform/sdk${s}`);
    const { stdout: cjs } = await run(
      process.execPath,
      ['-e', `console.log(JSON.stringify(${JSON.stringify(subpaths)}.map((s) => require.resolve(s))))`],
      { cwd: project },
    );
    const { stdout: esm } = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `console.log(JSON.stringify(${JSON.stringify(subpaths)}.map((s) => import.meta.resolve(s))))`,
      ],
      { cwd: project },
    );
    const rel = (xs: string[]) => xs.map((x) => x.replace(/^.*node_modules\/@act-platform\/sdk\//, ''));
    assert.deepEqual(rel(JSON.parse(cjs) as string[]), [
      'dist/cjs/index.js',
      'dist/cjs/adapters/express.js',
      'dist/cjs/adapters/fastify.js',
      'dist/cjs/adapters/langchain.js',
    ]);
    assert.deepEqual(rel(JSON.parse(esm) as string[]), [
      'dist/esm/index.js',
      'dist/esm/adapters/express.js',
      'dist/esm/adapters/fastify.js',
      'dist/esm/adapters/langchain.js',
    ]);
  });
});
