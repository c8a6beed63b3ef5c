/**
 * Failure handling with real processes: the control plane SIGKILLed under a
 * sidecar (keeps deciding until --stale-after, then REPLICA_STALE; reconnects by
 * itself when the control plane returns on the same port, and catches up); the
 * sidecar SIGKILLed under a load of concurrent checks at both audit durability
 * levels (every audit id a client received reaches the control plane exactly
 * once, and `act audit verify` passes); SIGTERM exits 0 and loses nothing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import { ReasonCode } from '../../src/gen/act/v1/decision';
import type { Rest } from '../support/control-plane-helpers';
import { ACT_BIN, type ControlPlaneProcess } from '../support/processes';
import {
  SidecarFixture,
  auditByIds,
  freePort,
  grpcCheck,
  metric,
  restCheck,
  restClient,
  sleep,
  waitFor,
  waitSpoolDrained,
  waitSynced,
} from '../support/sidecar-helpers';

const run = promisify(execFile);

describe('sidecar: crashes, restarts and shutdown (real control plane + sidecar)', function () {
  const fx = new SidecarFixture();
  let cpDir: string;
  let cpPort: number;
  let cp: ControlPlaneProcess;
  let api: Rest;

  /** (Re)starts the control plane on its data dir and its fixed gRPC port. */
  async function startCp(): Promise<void> {
    cp = await fx.controlPlane(cpDir, {}, ['--grpc-addr', `127.0.0.1:${cpPort}`]);
    assert.equal(cp.grpcPort, cpPort);
    api = restClient(cp.url, cp.adminKey);
  }

  /** Runs `act audit verify` against the live control plane. */
  async function auditVerify(): Promise<string> {
    const { stdout } = await run(process.execPath, [ACT_BIN, 'audit', 'verify'], {
      env: { ...process.env, ACT_URL: cp.url, ACT_KEY: cp.adminKey },
      timeout: 60_000,
    });
    return stdout;
  }

  before(async function () {
    cpDir = fx.dir('scr-cp');
    cpPort = await freePort();
    await startCp();
  });

  after(async function () {
    await fx.teardown();
  });

  // ------------------------------------------------------------------

  it('control plane SIGKILLed: ALLOW until --stale-after 2s, then REPLICA_STALE; restarted on the same port: the sidecar reconnects and catches up', async function () {
    const a = await fx.agentWithToken(api, 'outage-agent', ['read:customer_profile']);
    const later = await fx.issue(api, a.agentId, [a.policyId]);
    const sc = await fx.sidecar(cp, fx.dir('scr-outage'), {
      sidecarId: 'sc-outage',
      args: ['--stale-after', '2s'],
    });
    await sc.waitForLog('sync live');
    await waitSynced(cp, sc);
    assert.equal(
      (await restCheck(sc, { token: a.token, action: 'read:customer_profile' })).body.allowed,
      true,
    );

    await cp.kill();
    const killedAt = performance.now();
    // Poll: a run of ALLOWs (the replica is fresh), then only REPLICA_STALE.
    const answers: { ms: number; code: string; auditId: string }[] = [];
    for (;;) {
      const r = await restCheck(sc, { token: a.token, action: 'read:customer_profile' });
      assert.equal(r.status, 200, r.text);
      answers.push({ ms: performance.now() - killedAt, code: r.body.reason_code, auditId: r.body.audit_id });
      if (r.body.reason_code === 'REPLICA_STALE') break;
      assert.ok(performance.now() - killedAt < 30_000, 'no REPLICA_STALE within 30 s');
      await sleep(50);
    }
    const firstStale = answers.findIndex((x) => x.code === 'REPLICA_STALE');
    assert.ok(firstStale >= 1, 'the sidecar kept deciding right after the control plane died');
    assert.ok(
      answers.slice(0, firstStale).every((x) => x.code === 'GRANTED'),
      JSON.stringify(answers.map((x) => x.code)),
    );
    for (let i = 0; i < 3; i++) {
      const r = await restCheck(sc, { token: a.token, action: 'read:customer_profile' });
      answers.push({ ms: performance.now() - killedAt, code: r.body.reason_code, auditId: r.body.audit_id });
      assert.equal(r.body.reason_code, 'REPLICA_STALE');
      assert.equal(r.body.allowed, false);
    }
    assert.equal(await metric(sc.url, 'act_replica_stale'), 1);
    assert.equal(await metric(sc.url, 'act_sync_connected'), 0);
    console.log(
      `      control plane killed: ${firstStale} ALLOW answers for ${answers[firstStale - 1]!.ms.toFixed(0)} ms, ` +
        `first REPLICA_STALE ${answers[firstStale]!.ms.toFixed(0)} ms after the kill (--stale-after 2s, heartbeat 1s)`,
    );

    // Same data dir, same gRPC port: the sidecar finds it again by itself.
    const down = performance.now() - killedAt;
    await startCp();
    const restartedAt = performance.now();
    const back = await waitFor(
      'ALLOW again at the sidecar',
      async () => {
        const r = await restCheck(sc, { token: a.token, action: 'read:customer_profile' });
        return r.body.allowed === true ? r.body : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    assert.equal(back.reason_code, 'GRANTED');
    console.log(
      `      control plane down ${down.toFixed(0)} ms; sidecar deciding again ${(performance.now() - restartedAt).toFixed(0)} ms after the restart`,
    );
    assert.equal(sc.child.exitCode, null, 'the sidecar was not restarted');
    assert.ok(sc.output.some((l) => l.includes('sync disconnected')));
    assert.ok(sc.output.filter((l) => l.includes('"sync live"')).length >= 2);

    // A revocation made after the restart reaches it.
    await fx.revoke(api, later.token_id);
    await waitFor('TOKEN_REVOKED after the restart', async () => {
      const r = await restCheck(sc, { token: later.token, action: 'read:customer_profile' });
      return r.body.reason_code === 'TOKEN_REVOKED' ? true : undefined;
    });

    // Decisions made during the outage are shipped once it is over.
    await waitSpoolDrained(sc);
    const found = await auditByIds(api, `agent_id=${a.agentId}`);
    for (const x of answers) assert.equal(found.get(x.auditId)?.length, 1, `${x.auditId} (${x.code})`);
  });

  // ------------------------------------------------------------------

  for (const level of ['disk', 'os'] as const) {
    it(`sidecar SIGKILLed under 16 concurrent gRPC clients (--audit-durability ${level}): every received audit id reaches the control plane exactly once; the chain verifies`, async function () {
      const a = await fx.agentWithToken(api, `load-agent-${level}`, ['read:customer_profile']);
      const dir = fx.dir(`scr-kill-${level}`);
      const sidecarId = `sc-kill-${level}`;
      const sc = await fx.sidecar(cp, dir, { sidecarId, durability: level });
      await sc.waitForLog('sync live');
      await waitSynced(cp, sc);

      const CLIENTS = 16;
      const received: string[] = [];
      const errors: string[] = [];
      const wrong: string[] = [];
      const clients = Array.from({ length: CLIENTS }, () => fx.decisionClient(`127.0.0.1:${sc.grpcPort}`));
      const started = performance.now();
      const workers = clients.map(async (client, c) => {
        for (let n = 0; ; n++) {
          try {
            const r = await grpcCheck(client, {
              token: a.token,
              action: 'read:customer_profile',
              resource: `customer_${c}_${n}`,
              context: { client: c, n },
            });
            received.push(r.audit_id);
            if (r.reason_code !== ReasonCode.GRANTED) wrong.push(ReasonCode[r.reason_code] ?? '?');
          } catch (err) {
            errors.push(String((err as grpc.ServiceError).code ?? err));
            return;
          }
        }
      });
      // Kill it mid-load, once a good number of answers went out.
      await waitFor('answers under load', async () => (received.length >= 1500 ? true : undefined), {
        timeoutMs: 60_000,
        intervalMs: 5,
      });
      await sc.kill();
      const killedAfter = performance.now() - started;
      await Promise.all(workers);
      const receivedAtKill = received.length;
      assert.deepEqual(wrong, [], 'every answer under load was GRANTED');
      assert.equal(new Set(received).size, received.length, 'audit ids are unique');
      assert.equal(errors.length, CLIENTS, 'every client saw the sidecar go away');
      for (const c of clients) c.close();

      const sc2 = await fx.sidecar(cp, dir, { sidecarId, durability: level });
      await waitSpoolDrained(sc2);
      const found = await auditByIds(api, `agent_id=${a.agentId}`);
      const missing = received.filter((id) => !found.has(id));
      const dup = [...found].filter(([, list]) => list.length !== 1).map(([id]) => id);
      console.log(
        `      ${level}: killed after ${killedAfter.toFixed(0)} ms; ${receivedAtKill} checks received by clients, ` +
          `${found.size} records found at the control plane (${found.size - receivedAtKill + missing.length} recorded but never received by a client), ` +
          `${missing.length} missing, ${dup.length} duplicated`,
      );
      assert.deepEqual(missing, []);
      assert.deepEqual(dup, []);
      const records = [...found.values()].map((l) => l[0]);
      assert.ok(records.every((r) => r.source === sidecarId));
      // The chain has no gap: seq 1..n across the crash.
      const seqs = records.map((r) => r.seq as number).sort((x, y) => x - y);
      assert.deepEqual(
        seqs,
        seqs.map((_, i) => i + 1),
      );

      // Decisions after the restart continue the same chain.
      const after = await grpcCheck(fx.decisionClient(`127.0.0.1:${sc2.grpcPort}`), {
        token: a.token,
        action: 'read:customer_profile',
      });
      await waitSpoolDrained(sc2);
      const tail = (await auditByIds(api, `agent_id=${a.agentId}`)).get(after.audit_id)?.[0];
      assert.equal(tail?.seq, seqs.length + 1);

      const out = await auditVerify();
      assert.match(out, new RegExp(`^ok +${sidecarId}: ${seqs.length + 1} records`, 'm'), out);
      assert.match(out, / 0 problems$/m, out);
      assert.equal(await sc2.stop(), 0);
    });
  }

  // ------------------------------------------------------------------

  it('SIGTERM exits 0; records spooled while the control plane was away ship after the restart', async function () {
    const a = await fx.agentWithToken(api, 'sigterm-agent', ['read:customer_profile']);
    const dir = fx.dir('scr-term');
    const sc = await fx.sidecar(cp, dir, { sidecarId: 'sc-term' });
    await sc.waitForLog('sync live');
    await waitSynced(cp, sc);

    // Nowhere to ship to: the records stay in the spool.
    assert.equal(await cp.stop(), 0);
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) {
      const r = await restCheck(sc, { token: a.token, action: 'read:customer_profile', context: { i } });
      assert.equal(r.body.allowed, true, r.text);
      ids.push(r.body.audit_id);
    }
    assert.equal(await metric(sc.url, 'act_audit_spool_depth'), 50);
    assert.equal(await sc.stop(), 0, 'SIGTERM exits 0');
    const stopped = await sc.waitForLog('sidecar stopped');
    assert.equal(stopped.spool_depth, 50);

    await startCp();
    const sc2 = await fx.sidecar(cp, dir, { sidecarId: 'sc-term' });
    await waitSpoolDrained(sc2);
    const found = await auditByIds(api, `agent_id=${a.agentId}`);
    for (const id of ids) assert.equal(found.get(id)?.length, 1, id);
    assert.equal(found.size, 50);
    assert.equal(await sc2.stop(), 0);
    const out = await auditVerify();
    assert.match(out, /^ok +sc-term: 50 records/m, out);
    assert.match(out, / 0 problems$/m, out);
  });

  it('no line of sidecar or control-plane output contains a token', function () {
    fx.assertNoSecretsInLogs(cp.adminKey);
  });
});
