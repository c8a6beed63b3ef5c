/**
 * The package as a user installs it: `npm pack`, `npm install` of the tarball
 * into an empty project, then `act version` through the package's bin link
 * (which needs dist/bin/act.js in the tarball, executable, with one shebang).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/processes';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');

describe('the packed act package', function () {
  this.timeout(300_000);
  const tmp = tempDir('cli-pack');
  after(() => tmp.remove());

  it('dist/bin/act.js is executable and starts with exactly one shebang', () => {
    const bin = path.join(ROOT, 'dist/bin/act.js');
    assert.ok((statSync(bin).mode & 0o111) !== 0, 'execute bit');
    const text = readFileSync(bin, 'utf8');
    assert.ok(text.startsWith('#!/usr/bin/env node\n'));
    assert.equal(text.match(/^#!/gm)?.length, 1);
  });

  it('npm pack, npm install <tarball>, then act version and act help through the bin link', async () => {
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', tmp.dir], {
      cwd: ROOT,
      maxBuffer: 64 * 1024 * 1024,
    });
    const [info] = JSON.parse(stdout) as { filename: string; files: { path: string; mode: number }[] }[];
    const binEntry = info!.files.find((f) => f.path === 'dist/bin/act.js');
    assert.ok(binEntry, 'the tarball holds dist/bin/act.js');
    assert.ok((binEntry.mode & 0o111) !== 0, 'packed with its execute bit');
    assert.ok(info!.files.some((f) => f.path === 'dist/gen/act.binpb'));
    assert.equal(
      info!.files.some((f) => f.path.startsWith('test/') || f.path.startsWith('src/')),
      false,
    );

    const app = path.join(tmp.dir, 'app');
    await run('mkdir', ['-p', app]);
    writeFileSync(
      path.join(app, 'package.json'),
      JSON.stringify({ name: 'app', version: '1.0.0', private: true }),
    );
    // From npm's cache where it can (npm ci filled it); the registry otherwise.
    await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--prefer-offline', path.join(tmp.dir, info!.filename)],
      {
        cwd: app,
        maxBuffer: 64 * 1024 * 1024,
      },
    );
    const link = path.join(app, 'node_modules/.bin/act');
    const version = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;
    // run the link itself: the kernel reads the shebang (no `node` in front)
    const v = await run(link, ['version'], { cwd: app });
    assert.equal(v.stdout, `${version}\n`);
    const h = await run(link, ['help'], { cwd: app });
    assert.match(h.stdout, /^Usage: act <command>/);
    const cp = await run(link, ['control-plane', '--help'], { cwd: app });
    assert.match(cp.stdout, /--http-addr/);
  });
});
