/**
 * Audit shipping under attack (issue items 8 and 10), with a real control plane (stopped and
 * restarted on its port) and real sidecars: records left by an earlier sidecar id ship under
 * their own chain; a batch the control plane refuses for good pauses shipping with growing
 * intervals, says so (metric, /readyz), and causes no reconnect storm; on SIGTERM a sidecar keeps
 * shipping until its spool is empty or --drain-timeout passes, counts and logs what is left, and
 * a second sidecar on the same node volume ships a stopped one's leftovers under their own chain.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Rest } from '../support/control-plane-helpers';
import { auditVerify, logLines } from '../support/guarantees';
import type { ControlPlaneProcess } from '../support/processes';
import {
  SidecarFixture,
  auditByIds,
  freePort,
  metric,
  restCheck,
  restClient,
  sleep,
  waitFor,
  waitSpoolDrained,
  waitSynced,
} from '../support/sidecar-helpers';

describe('guarantees: audit ships, under its own chain, through id changes, refusals and shutdown (items 8, 10)', function () {
  this.timeout(60_000);
  const fx = new SidecarFixture();
  let cpDir: string;
  let cpPort: number;
  let cp: ControlPlaneProcess | undefined;
  let api: Rest;
  let adminKey = '';
  const A = { agentId: '', token: '' };
  const B = { agentId: '', token: '' };
  /** An unscoped SIDECAR key (a sidecar id belongs to the key that used it first). */
  let sidecarKey = '';

  async function startCp(): Promise<ControlPlaneProcess> {
    cp = await fx.controlPlane(cpDir, {}, ['--grpc-addr', `127.0.0.1:${cpPort}`]);
    api = restClient(cp.url, cp.adminKey);
    adminKey = cp.adminKey;
    return cp;
  }

  async function stopCp(): Promise<void> {
    assert.equal(await cp!.stop(), 0);
  }

  const cpAddr = () => ({ grpcPort: cpPort, adminKey: sidecarKey });

  /** `n` allowed checks at a sidecar; resolves with their audit ids. */
  async function checks(
    sc: { url: string },
    who: { token: string },
    n: number,
    tag: string,
  ): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await restCheck(sc, { token: who.token, action: 'read:report', resource: `${tag}-${i}` });
      assert.equal(r.body?.decision, 'ALLOW', r.text);
      ids.push(r.body.audit_id as string);
    }
    return ids;
  }

  /** Every id is stored once at the control plane, under `source`. */
  async function storedUnder(ids: string[], source: string): Promise<void> {
    const found = await auditByIds(api);
    for (const id of ids) {
      assert.equal(found.get(id)?.length, 1, `${id} stored once`);
      assert.equal(found.get(id)![0].source, source, id);
    }
  }

  before(async function () {
    cpDir = fx.dir('gas-cp');
    cpPort = await freePort();
    await startCp();
    const policy = await fx.createPolicy(api, { name: 'reports', capabilities: ['read:report'] });
    for (const who of [A, B]) {
      const agent = await fx.createAgent(api, { name: who === A ? 'agent A' : 'agent B' });
      who.agentId = agent.agent_id;
      who.token = (await fx.issue(api, agent.agent_id, [policy.policy_id])).token;
    }
    const k = await api('POST', '/api/api-keys', { name: 'sidecars', role: 'SIDECAR' });
    assert.equal(k.status, 201, k.text);
    sidecarKey = k.body.secret as string;
    fx.secrets.push(sidecarKey);
  });

  after(async function () {
    await fx.teardown();
  });

  // ---- item 8 ------------------------------------------------------------------------------

  it('item 8: records left unshipped under one sidecar id, restarted on the same data dir with another: old records ship under their chain, new ones under the new id, audit verify passes, no reconnect storm', async function () {
    const dir = fx.dir('gas-idchange');
    const first = await fx.sidecar(cpAddr(), dir, { sidecarId: 'gas-first' });
    await first.waitForLog('sync live');
    await waitSynced(cp!, first);
    await stopCp();
    const old = await checks(first, A, 8, 'before');
    assert.equal(await metric(first.url, 'act_audit_spool_depth'), 8);
    await first.kill();

    await startCp();
    const second = await fx.sidecar(cpAddr(), dir, { sidecarId: 'gas-second' });
    await second.waitForLog('sync live');
    const fresh = await checks(second, A, 3, 'after');
    const drained = await waitSpoolDrained(second, 15_000).then(
      () => true,
      () => false,
    );
    await sleep(2000); // a stream that keeps failing would show here
    const reconnects = logLines(second, 'sync disconnected').length;
    const depth = await metric(second.url, 'act_audit_spool_depth');
    console.log(`      ${depth} of 11 records unshipped after the wait; ${reconnects} reconnects`);
    assert.ok(drained, `spool not drained within 15 s (${reconnects} reconnects)`);
    assert.equal(reconnects, 0, 'the sidecar did not reconnect');
    assert.equal(await metric(second.url, 'act_audit_rejected_batches_total'), 0);
    await storedUnder(old, 'gas-first');
    await storedUnder(fresh, 'gas-second');
    const out = await auditVerify(cp!);
    assert.match(out, /^ok +gas-first: 8 records/m, out);
    assert.match(out, /^ok +gas-second: 3 records/m, out);
    assert.match(out, / 0 problems$/m, out);
  });

  it('item 8: a batch the control plane refuses for good (records about an agent the sidecar no longer serves): shipping pauses 1 s, 2 s, 4 s…, metric and /readyz say so, no reconnects, checks still answered', async function () {
    const dir = fx.dir('gas-refused');
    const wide = await fx.sidecar(cpAddr(), dir, { sidecarId: 'gas-narrowed' });
    await wide.waitForLog('sync live');
    await waitSynced(cp!, wide);
    await stopCp();
    const aboutB = await checks(wide, B, 3, 'b');
    await wide.kill();
    await startCp();
    // Same key and id, now serving only A: the spooled records about B are outside its scope.
    const narrow = await fx.sidecar(cpAddr(), dir, { sidecarId: 'gas-narrowed', agentIds: A.agentId });
    await narrow.waitForLog('sync live');
    const refusals = await waitFor(
      'three refusals',
      async () => {
        const l = logLines(narrow, /audit batch refused by the control plane/);
        return l.length >= 3 ? l : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    const pauses = refusals.map((l) => Number(l.retry_in_ms));
    const readyz = (await (await fetch(`${narrow.url}/readyz`)).json()) as any;
    console.log(
      `      pauses after each refusal: ${pauses.join(', ')} ms; /readyz audit: ${JSON.stringify(readyz.audit)}`,
    );
    assert.deepEqual(pauses.slice(0, 3), [1000, 2000, 4000]);
    assert.match(String(refusals[0]!.reason), /outside this sidecar's scope/);
    assert.equal(await metric(narrow.url, 'act_audit_shipping_blocked'), 1);
    const rejected = (await metric(narrow.url, 'act_audit_rejected_batches_total')) ?? 0;
    assert.ok(rejected >= 3 && rejected <= 4, `refused batches ${rejected}`);
    assert.equal(readyz.audit.shipping, 'blocked');
    assert.match(readyz.audit.reason, /outside this sidecar's scope/);
    assert.equal(logLines(narrow, 'sync disconnected').length, 0, 'no reconnect storm');
    const r = await restCheck(narrow, { token: A.token, action: 'read:report', resource: 'still' });
    assert.equal(r.body.decision, 'ALLOW', r.text);
    const found = await auditByIds(api);
    assert.deepEqual(
      aboutB.filter((id) => found.has(id)),
      [],
      'nothing of the refused batch was stored',
    );
    await narrow.kill(); // its spool cannot drain; SIGTERM would wait the whole drain window
  });

  // ---- item 10 -----------------------------------------------------------------------------

  it('item 10: SIGTERM with the control plane down, back within the drain window: every record ships before the sidecar exits 0', async function () {
    const sc = await fx.sidecar(cpAddr(), fx.dir('gas-drain'), { sidecarId: 'gas-drain' });
    await sc.waitForLog('sync live');
    await waitSynced(cp!, sc);
    await stopCp();
    const ids = await checks(sc, A, 20, 'drain');
    assert.equal(await metric(sc.url, 'act_audit_spool_depth'), 20);
    const exited = sc.stop();
    await sleep(1000);
    assert.equal(sc.child.exitCode, null, 'still draining a second after SIGTERM');
    await startCp();
    assert.equal(await exited, 0);
    assert.ok(logLines(sc, 'audit spool drained').length === 1, sc.output.slice(-5).join('\n'));
    assert.equal(logLines(sc, 'sidecar stopped')[0]?.spool_depth, 0);
    await storedUnder(ids, 'gas-drain');
  });

  it('item 10: SIGTERM with the control plane gone for good: --drain-timeout 1s, then exit 0 with the records left counted and logged (kept for a restart on the same dir)', async function () {
    const dir = fx.dir('gas-deadline');
    const sc = await fx.sidecar(cpAddr(), dir, {
      sidecarId: 'gas-deadline',
      args: ['--drain-timeout', '1s'],
    });
    await sc.waitForLog('sync live');
    await waitSynced(cp!, sc);
    await stopCp();
    const ids = await checks(sc, A, 5, 'deadline');
    const t0 = Date.now();
    assert.equal(await sc.stop(), 0);
    const waited = Date.now() - t0;
    const left = logLines(sc, /audit records not shipped before the drain deadline/);
    console.log(`      exited ${waited} ms after SIGTERM; ${JSON.stringify(left[0])}`);
    assert.equal(left.length, 1);
    assert.equal(left[0]!.unshipped, 5);
    assert.equal(logLines(sc, 'sidecar stopped')[0]?.spool_depth, 5);
    assert.ok(waited >= 1000, `exited ${waited} ms after SIGTERM, before the drain deadline`);

    await startCp();
    const again = await fx.sidecar(cpAddr(), dir, { sidecarId: 'gas-deadline' });
    await waitSpoolDrained(again, 15_000);
    await storedUnder(ids, 'gas-deadline');
  });

  it("item 10: spools on a shared node volume: a second sidecar for the same agents ships a stopped one's leftovers under their own chain; one for other agents leaves them alone", async function () {
    const node = fx.dir('gas-node');
    const spoolArgs = (name: string) => [
      '--audit-spool-dir',
      path.join(node, name),
      '--audit-spool-adopt',
      node,
      '--drain-timeout',
      '1s',
    ];
    const first = await fx.sidecar(cpAddr(), fx.dir('gas-pod1'), {
      sidecarId: 'gas-pod1',
      agentIds: A.agentId,
      args: spoolArgs('pod1'),
    });
    await first.waitForLog('sync live');
    await waitSynced(cp!, first);
    await stopCp();
    const ids = await checks(first, A, 10, 'pod1');
    assert.equal(await first.stop(), 0);
    assert.equal(logLines(first, /audit records not shipped before the drain deadline/)[0]?.unshipped, 10);
    await startCp();

    // A sidecar for B only: not its agents, not its spool.
    const other = await fx.sidecar(cpAddr(), fx.dir('gas-pod2'), {
      sidecarId: 'gas-pod2',
      agentIds: B.agentId,
      args: spoolArgs('pod2'),
    });
    await other.waitForLog('sync live');
    assert.equal(logLines(other, /adopted the audit spool/).length, 0);
    assert.equal(await metric(other.url, 'act_audit_adopted_spools'), 0);

    const heir = await fx.sidecar(cpAddr(), fx.dir('gas-pod3'), {
      sidecarId: 'gas-pod3',
      agentIds: A.agentId,
      args: spoolArgs('pod3'),
    });
    const adopted = await heir.waitForLog(/adopted the audit spool/);
    assert.equal(adopted.sidecar_id, 'gas-pod1');
    assert.equal(adopted.records, 10);
    await waitSpoolDrained(heir, 15_000);
    await storedUnder(ids, 'gas-pod1');
    const own = await checks(heir, A, 2, 'pod3');
    await waitSpoolDrained(heir, 15_000);
    await storedUnder(own, 'gas-pod3');
    const out = await auditVerify(cp!);
    assert.match(out, /^ok +gas-pod1: 10 records/m, out);
    assert.match(out, /^ok +gas-pod3: 2 records/m, out);
    assert.match(out, / 0 problems$/m, out);
  });

  it('no line of any output contains a token or a key', function () {
    fx.assertNoSecretsInLogs(adminKey);
  });
});
