/**
 * The Dockerfile: `dockerfile-utils lint` clean (it exits 0 on warnings, so any output fails),
 * and the properties the chart and the webhook rely on (non-root uid 10001, entrypoint, probe
 * script, a build context that holds what the Dockerfile copies). No image is built here: CI has
 * no container registry to pull the node base image from (see the README's Kubernetes section).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROBE_SCRIPT, SIDECAR_UID } from '../../src/webhook/inject';
import { ROOT, find, render } from './chart';

const BIN = path.join(ROOT, 'node_modules/.bin/dockerfile-utils');
const lint = (file: string) => spawnSync(BIN, ['lint', file], { encoding: 'utf8' });

describe('Dockerfile', () => {
  const text = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'));

  it('is clean under dockerfile-utils lint (no output at all)', () => {
    const r = lint(path.join(ROOT, 'Dockerfile'));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
  });

  it('lint does report problems (the check above is not vacuous)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'act-dockerfile-'));
    try {
      writeFileSync(
        path.join(dir, 'Dockerfile'),
        'FROM node:20\nMAINTAINER me\nEXPOSE 99999\nCMD node a.js\nCMD node b.js\n',
      );
      const r = lint(path.join(dir, 'Dockerfile'));
      assert.notEqual(r.stdout + r.stderr, '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is multi-stage: npm ci and build, then prune dev dependencies; small Node 20 runtime', () => {
    const froms = instructions.filter((l) => /^FROM /.test(l));
    assert.equal(froms.length, 2);
    assert.match(text, /ARG NODE_IMAGE=\S*node:20[.\d]*-bookworm-slim/);
    assert.match(text, /RUN npm ci /);
    assert.match(text, /npm run build/);
    assert.match(text, /npm prune --omit=dev/);
  });

  it('runs as the non-root uid the chart and the injected sidecar declare', () => {
    const user = instructions.filter((l) => /^USER /.test(l)).at(-1);
    assert.equal(user, `USER ${SIDECAR_UID}:${SIDECAR_UID}`);
    const dep = find<any>(render(), 'Deployment');
    assert.equal(dep.spec.template.spec.securityContext.runAsUser, SIDECAR_UID);
  });

  it('has a HEALTHCHECK and an entrypoint that exist in the build output', () => {
    assert.match(
      text,
      /HEALTHCHECK [^\n]*\n\s*CMD \["node", "\/app\/dist\/webhook\/grpc-health-probe\.js", "--auto"\]/,
    );
    assert.match(text, /ENTRYPOINT \["node", "\/app\/dist\/bin\/act\.js"\]/);
    assert.match(text, /CMD \["control-plane"\]/);
    assert.ok(existsSync(path.join(ROOT, 'src/webhook/grpc-health-probe.ts')));
    assert.ok(existsSync(path.join(ROOT, 'src/bin/act.ts')));
    assert.equal(PROBE_SCRIPT, '/app/dist/webhook/grpc-health-probe.js');
  });

  it('.dockerignore keeps exactly what the build stage copies', () => {
    const ignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8');
    const kept = ignore
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1));
    const copied = instructions
      .filter((l) => /^COPY /.test(l) && !l.includes('--from'))
      .flatMap((l) => l.split(/\s+/).slice(1, -1));
    for (const c of copied) assert.ok(kept.includes(c) || kept.includes(`${c}/**`), `${c} is ignored`);
    assert.match(ignore, /^\*\*$/m);
  });
});
