/**
 * Hostile check requests (issue items 5 and 12), at a real sidecar and the control plane: a
 * resource built to make a glob backtrack does not stall checks or the health probe; a context
 * too large or nested too deep is refused with INVALID_ARGUMENT over gRPC as over REST; and a
 * resource with a `..` segment is not granted by a pattern it seems to match.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { ReasonCode, type CheckPermissionResponse } from '../../src/gen/act/v1/decision';
import type { Rest } from '../support/control-plane-helpers';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import {
  SidecarFixture,
  grpcCheck,
  percentiles,
  restCheck,
  restClient,
  waitSynced,
} from '../support/sidecar-helpers';

describe('guarantees: hostile check requests (items 5, 12)', function () {
  const fx = new SidecarFixture();
  let cp: ControlPlaneProcess;
  let api: Rest;
  let sc: SidecarProcess;
  let token = '';

  /** A gRPC check at the control plane (authorized by the token itself). */
  function cpGrpcCheck(req: Record<string, unknown>): Promise<CheckPermissionResponse> {
    const client = fx.decisionClient(`127.0.0.1:${cp.grpcPort}`);
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    return new Promise((resolve, reject) =>
      client.checkPermission(
        { token, action: '', resource: '', approval_id: '', ...req } as never,
        md,
        { deadline: Date.now() + 20_000 },
        (err, res) => (err ? reject(err) : resolve(res!)),
      ),
    );
  }
  const scGrpcCheck = (req: Record<string, unknown>) =>
    grpcCheck(fx.decisionClient(`127.0.0.1:${sc.grpcPort}`), { token, action: '', ...req });

  /** Resolves with the gRPC error a call failed with (fails the test if it succeeded). */
  async function grpcError(p: Promise<unknown>): Promise<grpc.ServiceError> {
    try {
      const r = await p;
      assert.fail(`expected an error, got ${JSON.stringify(r).slice(0, 300)}`);
    } catch (err) {
      if (err instanceof assert.AssertionError) throw err;
      return err as grpc.ServiceError;
    }
  }

  before(async function () {
    this.timeout(60_000);
    cp = await fx.controlPlane(fx.dir('gin-cp'));
    api = restClient(cp.url, cp.adminKey);
    token = (
      await fx.agentWithToken(api, 'input agent', [
        'read:blob:*_*_*_*.pdf',
        'read:file:public/*',
        'read:report',
      ])
    ).token;
    sc = await fx.sidecar(cp, fx.dir('gin-sc'), { sidecarId: 'gin-sc' });
    await sc.waitForLog('sync live');
    await waitSynced(cp, sc);
  });

  after(async function () {
    await fx.teardown();
  });

  // ---- item 5 ------------------------------------------------------------------------------

  it('item 5: read:blob:*_*_*_*.pdf against 1024-character resources of underscores: 40 checks at once at the sidecar and the control plane, /healthz answering throughout (measured)', async function () {
    const miss = '_'.repeat(1024);
    const hit = `${'_'.repeat(1020)}.pdf`;
    const points = [
      ['sidecar', (b: Record<string, unknown>) => restCheck(sc, b)],
      ['control plane', (b: Record<string, unknown>) => api('POST', '/api/enforcement/check', b)],
    ] as const;
    let done = false;
    const health: number[] = [];
    const probe = async (url: string) => {
      while (!done) {
        const t = performance.now();
        const r = await fetch(`${url}/healthz`);
        assert.equal(r.status, 200);
        await r.text();
        health.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const probes = [probe(sc.url), probe(cp.url)];
    const times: number[] = [];
    const started = performance.now();
    const results = await Promise.all(
      points.flatMap(([where, check]) =>
        Array.from({ length: 20 }, async (_, i) => {
          const t = performance.now();
          const r = await check({ token, action: 'read:blob', resource: i % 2 === 0 ? miss : hit });
          times.push(performance.now() - t);
          return { where, i, r };
        }),
      ),
    );
    const total = performance.now() - started;
    done = true;
    await Promise.all(probes);
    const c = percentiles(times);
    const h = percentiles(health);
    console.log(
      `      40 checks in ${total.toFixed(0)} ms (per check median ${c.median.toFixed(1)} ms, max ${c.max.toFixed(1)} ms); ` +
        `${health.length} /healthz answers, median ${h.median.toFixed(1)} ms, max ${h.max.toFixed(1)} ms`,
    );
    for (const { where, i, r } of results) {
      assert.equal(r.status, 200, r.text);
      if (i % 2 === 0) {
        assert.equal(r.body.decision, 'DENY', `${where}: ${r.text}`);
        assert.equal(r.body.reason_code, 'CAPABILITY_NOT_GRANTED', `${where}: ${r.text}`);
      } else {
        assert.equal(r.body.decision, 'ALLOW', `${where}: ${r.text}`);
      }
    }
    assert.ok(health.length >= 2, 'the health probe answered during the burst');
  });

  // ---- item 12 -----------------------------------------------------------------------------

  it('item 12: a 1.2 MB context over gRPC is INVALID_ARGUMENT at the sidecar and the control plane, like REST', async function () {
    const context = { blob: 'x'.repeat(1_200_000) };
    for (const [where, call] of [
      ['sidecar', scGrpcCheck],
      ['control plane', cpGrpcCheck],
    ] as const) {
      const err = await grpcError(call({ action: 'read:report', context }));
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${where}: ${err.code} ${err.details}`);
      assert.match(err.details, /context must be at most 16384 bytes/, where);
    }
    // Just over the bound, too (REST and gRPC alike).
    const over = { blob: 'x'.repeat(16_400) };
    const err = await grpcError(scGrpcCheck({ action: 'read:report', context: over }));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    const rest = await restCheck(sc, { token, action: 'read:report', context: over });
    assert.equal(rest.status, 400, rest.text);
    assert.equal(rest.body.error.field, 'context');
  });

  it('item 12: a context nested 40 levels over gRPC is INVALID_ARGUMENT (not INTERNAL) at the sidecar and the control plane, like REST', async function () {
    let context: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 40; i++) context = { n: context };
    for (const [where, call] of [
      ['sidecar', scGrpcCheck],
      ['control plane', cpGrpcCheck],
    ] as const) {
      const err = await grpcError(call({ action: 'read:report', context }));
      assert.equal(
        err.code,
        grpc.status.INVALID_ARGUMENT,
        `${where}: ${grpc.status[err.code]} ${err.details}`,
      );
    }
    for (const url of [sc.url, cp.url]) {
      const r = await restClient(url, url === cp.url ? cp.adminKey : undefined)(
        'POST',
        '/api/enforcement/check',
        { token, action: 'read:report', context },
      );
      assert.equal(r.status, 400, r.text);
      assert.equal(r.body.error.code, 'INVALID_ARGUMENT');
    }
    // The process is fine afterwards.
    const ok = await scGrpcCheck({ action: 'read:report' });
    assert.equal(ok.reason_code, ReasonCode.GRANTED);
  });

  it('item 12: read:file:public/* does not grant public/../secret/key (RESOURCE_PATH_INVALID), nor other dot segments; public/a.txt is granted', async function () {
    const points = [
      ['sidecar', (b: Record<string, unknown>) => restCheck(sc, b)],
      ['control plane', (b: Record<string, unknown>) => api('POST', '/api/enforcement/check', b)],
    ] as const;
    for (const [where, check] of points) {
      for (const resource of ['public/../secret/key', 'public/..', 'public/./key', 'public/x/../../secret']) {
        const r = await check({ token, action: 'read:file', resource });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.allowed, false, `${where} ${resource}: ${r.text}`);
        assert.equal(r.body.reason_code, 'RESOURCE_PATH_INVALID', `${where} ${resource}: ${r.text}`);
      }
      const g = await scGrpcCheck({ action: 'read:file', resource: 'public/../secret/key' });
      assert.equal(g.reason_code, ReasonCode.RESOURCE_PATH_INVALID);
      const fine = await check({ token, action: 'read:file', resource: 'public/a.txt' });
      assert.equal(fine.body.decision, 'ALLOW', `${where}: ${fine.text}`);
    }
  });
});
