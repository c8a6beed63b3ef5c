/**
 * Budgets under attack (issue items 6 and 7), with a real control plane and real sidecars: a
 * daily maximum is one budget per agent and policy however many enforcement points spend it
 * (two sidecars and central checks, one after another and all at once); a rate limit stays
 * within its stated bound (src/enforce/budgets.ts: at most 2N − 1 + ⌈N/10⌉ in any window of one
 * period, fleet-wide — one GCRA limiter's 2N − 1, plus the slices' tenth-of-a-period life); and counts survive a SIGKILL of a sidecar and a restart (SIGTERM or
 * SIGKILL) of the control plane.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import type { Rest } from '../support/control-plane-helpers';
import { centralCheck, tally, type CheckAt, type CheckResult } from '../support/guarantees';
import type { ControlPlaneProcess, SidecarProcess } from '../support/processes';
import {
  SidecarFixture,
  freePort,
  restCheck,
  restClient,
  waitFor,
  waitSynced,
} from '../support/sidecar-helpers';

describe('guarantees: one budget per agent and policy, fleet-wide, across restarts (items 6-7)', function () {
  this.timeout(60_000);
  const fx = new SidecarFixture();
  let cpDir: string;
  let cpPort: number;
  let cp: ControlPlaneProcess;
  let api: Rest;
  let sc1: SidecarProcess;
  let sc2: SidecarProcess;
  let agents = 0;

  const at =
    (sc: { url: string }): CheckAt =>
    (body) =>
      restCheck(sc, body);
  const central: CheckAt = (body) => centralCheck(api)(body);

  async function startCp(): Promise<void> {
    cp = await fx.controlPlane(cpDir, {}, ['--grpc-addr', `127.0.0.1:${cpPort}`]);
    api = restClient(cp.url, cp.adminKey);
  }

  /** A fresh agent whose one policy has these constraints; resolves once every sidecar has it. */
  async function budgeted(constraints: Record<string, unknown>): Promise<string> {
    const a = await fx.createAgent(api, { name: `budget agent ${++agents}` });
    const p = await fx.createPolicy(api, {
      name: `budget policy ${agents}`,
      capabilities: ['read:report'],
      constraints,
    });
    const token = (await fx.issue(api, a.agent_id, [p.policy_id])).token as string;
    for (const sc of [sc1, sc2]) if (sc.child.exitCode === null) await waitSynced(cp, sc);
    return token;
  }

  const read = (token: string, i: number) => ({ token, action: 'read:report', resource: `r${i}` });

  /** `rounds` rounds of one check at each point, one after another. */
  async function roundRobin(token: string, points: CheckAt[], rounds: number): Promise<CheckResult[]> {
    const out: CheckResult[] = [];
    for (let i = 0; i < rounds; i++) for (const check of points) out.push(await check(read(token, i)));
    return out;
  }

  const allowed = (rs: CheckResult[]) => rs.filter((r) => r.body?.decision === 'ALLOW').length;

  before(async function () {
    cpDir = fx.dir('gbu-cp');
    cpPort = await freePort();
    await startCp();
    sc1 = await fx.sidecar(cp, fx.dir('gbu-sc1'), { sidecarId: 'gbu-sc1' });
    sc2 = await fx.sidecar(cp, fx.dir('gbu-sc2'), { sidecarId: 'gbu-sc2' });
    await sc1.waitForLog('sync live');
    await sc2.waitForLog('sync live');
  });

  after(async function () {
    await fx.teardown();
  });

  // ---- item 6 ------------------------------------------------------------------------------

  it('item 6: max_actions_per_day 3, checked in turn at a sidecar, a second sidecar and the control plane: exactly 3 allowed', async function () {
    const token = await budgeted({ max_actions_per_day: 3 });
    const rs = await roundRobin(token, [at(sc1), at(sc2), central], 4);
    const seq = rs.map((r) => (r.body.decision === 'ALLOW' ? 'A' : r.body.reason_code)).join(' ');
    console.log(`      sc1 sc2 cp × 4: ${seq}`);
    assert.equal(allowed(rs), 3, seq);
    for (const r of rs)
      assert.ok(
        r.body.decision === 'ALLOW' || r.body.reason_code === 'DAILY_LIMIT_EXCEEDED',
        `an honest denial says the budget is spent: ${r.text}`,
      );
  });

  it('item 6: max_actions_per_day 3, 10 checks at once at each of the three points: never more than 3 allowed, exactly 3 once the points have spent what they hold', async function () {
    const token = await budgeted({ max_actions_per_day: 3 });
    const points = [at(sc1), at(sc2), central];
    const burst = await Promise.all(
      points.flatMap((check) => Array.from({ length: 10 }, (_, i) => check(read(token, i)))),
    );
    const later = await roundRobin(token, points, 3);
    console.log(
      `      burst: ${JSON.stringify(tally(burst))}; then in turn: ${JSON.stringify(tally(later))}`,
    );
    assert.ok(allowed(burst) <= 3, JSON.stringify(tally(burst)));
    assert.equal(
      allowed(burst) + allowed(later),
      3,
      JSON.stringify({ burst: tally(burst), later: tally(later) }),
    );
  });

  it('item 6: rate_limit "5 per minute" at two sidecars and the control plane at once: within the stated bound (2·5 − 1 + ⌈5/10⌉ in a minute; from idle, the burst of 5)', async function () {
    const token = await budgeted({ rate_limit: '5 per minute' });
    const points = [at(sc1), at(sc2), central];
    const started = Date.now();
    const burst = await Promise.all(
      points.flatMap((check) => Array.from({ length: 10 }, (_, i) => check(read(token, i)))),
    );
    const later = await roundRobin(token, points, 3);
    const elapsed = Date.now() - started;
    const n = allowed(burst) + allowed(later);
    console.log(
      `      ${n} allowed in ${elapsed} ms: burst ${JSON.stringify(tally(burst))}, then ${JSON.stringify(tally(later))}`,
    );
    assert.ok(elapsed < 60_000, 'the checks fit in one period of the limit');
    // From idle within one minute: the burst (5) and the spaced units that came due (one per
    // 12 s), and never above the stated bound for any window of one period.
    assert.ok(n <= 5 + Math.floor(elapsed / 12_000) + 1, `${n} allowed in ${elapsed} ms for "5 per minute"`);
    assert.ok(n <= 2 * 5 - 1 + Math.ceil(5 / 10), `${n} over the stated bound`);
    assert.ok(n >= 1);
    for (const r of [...burst, ...later])
      assert.ok(r.body.decision === 'ALLOW' || r.body.reason_code === 'RATE_LIMITED', r.text);
  });

  it('item 6: rate_limit "3 per second" hammered for 2.5 s at two sidecars and the control plane: the fleet admits no more than one limiter would (N + W/T)', async function () {
    const token = await budgeted({ rate_limit: '3 per second' });
    const points = [at(sc1), at(sc2), central];
    const rs: CheckResult[] = [];
    const started = performance.now();
    const until = started + 2500;
    // Two loops per point, each checking as fast as answers come back.
    await Promise.all(
      [...points, ...points].map(async (check, w) => {
        for (let i = 0; performance.now() < until; i++) rs.push(await check(read(token, w * 1000 + i)));
      }),
    );
    const windowMs = performance.now() - started;
    const n = allowed(rs);
    // Every ALLOW spends a unit the ledger granted, and the ledger is one GCRA: from idle it grants
    // N at once and then one per T = period / N, so at most N + W/T over W (+1 for rounding).
    const bound = 3 + Math.floor(windowMs / (1000 / 3)) + 1;
    console.log(
      `      ${rs.length} checks in ${windowMs.toFixed(0)} ms: ${n} allowed (one limiter: at most ${bound}; per point it would be ${3 * bound})`,
    );
    assert.ok(n <= bound, `${n} allowed in ${windowMs.toFixed(0)} ms for "3 per second" fleet-wide`);
    assert.ok(n >= 3, 'the burst is admitted');
    for (const r of rs)
      assert.ok(r.body.decision === 'ALLOW' || r.body.reason_code === 'RATE_LIMITED', r.text);
  });

  // ---- item 7 ------------------------------------------------------------------------------

  it('item 7: three allowed at a sidecar, SIGKILL, restart on the same data dir: the 4th is denied (DAILY_LIMIT_EXCEEDED), there and centrally', async function () {
    const dir = fx.dir('gbu-sc3');
    let sc3 = await fx.sidecar(cp, dir, { sidecarId: 'gbu-sc3' });
    await sc3.waitForLog('sync live');
    const token = await budgeted({ max_actions_per_day: 3 });
    await waitSynced(cp, sc3);
    for (let i = 0; i < 3; i++) {
      const r = await at(sc3)(read(token, i));
      assert.equal(r.body.decision, 'ALLOW', r.text);
    }
    await sc3.kill();
    sc3 = await fx.sidecar(cp, dir, { sidecarId: 'gbu-sc3' });
    await sc3.waitForLog('sync live');
    const fourth = await at(sc3)(read(token, 3));
    assert.equal(fourth.body.allowed, false, fourth.text);
    assert.equal(fourth.body.reason_code, 'DAILY_LIMIT_EXCEEDED', fourth.text);
    const there = await central(read(token, 4));
    assert.equal(there.body.reason_code, 'DAILY_LIMIT_EXCEEDED', there.text);
  });

  for (const how of ['SIGTERM', 'SIGKILL'] as const) {
    it(`item 7: three allowed centrally, the control plane restarted (${how}): the 4th is denied, centrally and at the sidecars`, async function () {
      const token = await budgeted({ max_actions_per_day: 3 });
      for (let i = 0; i < 3; i++) {
        const r = await central(read(token, i));
        assert.equal(r.body.decision, 'ALLOW', r.text);
      }
      if (how === 'SIGTERM') assert.equal(await cp.stop(), 0);
      else await cp.kill();
      await startCp();
      const fourth = await central(read(token, 3));
      assert.equal(fourth.body.allowed, false, fourth.text);
      assert.equal(fourth.body.reason_code, 'DAILY_LIMIT_EXCEEDED', fourth.text);
      for (const sc of [sc1, sc2]) {
        const r = await waitFor('an answer from a synced sidecar', async () => {
          const x = await at(sc)(read(token, 5));
          return x.body?.reason_code === 'BUDGET_UNAVAILABLE' ? undefined : x;
        });
        assert.equal(r.body.reason_code, 'DAILY_LIMIT_EXCEEDED', r.text);
      }
    });
  }

  it('no line of any output contains a token or the admin key', function () {
    fx.assertNoSecretsInLogs(cp.adminKey);
  });
});
