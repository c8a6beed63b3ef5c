/**
 * Several control-plane replicas on one PostgreSQL (a real cluster started for this file), with
 * sidecars on different replicas: what must be shared is shared — the change feed (a revocation
 * through one replica denies at a sidecar on another, and at another replica's central checks),
 * the audit feed (follow on one replica shows records stored through another), approvals (a grant
 * is used once across replicas and sidecars), budgets (one daily maximum across replicas), the first
 * admin key and the first signing key (replicas started together on an empty database make one
 * each). Faults: a replica SIGKILLed under sidecar load (its sidecars move to another replica, every
 * answered decision is stored exactly once, the chains verify), and PostgreSQL restarted under load.
 */
import assert from 'node:assert/strict';
import { Client as pgClient } from 'pg';
import { startPostgresCluster, type PostgresCluster } from '../support/postgres';
import { auditVerify, centralCheck, type CheckResult } from '../support/guarantees';
import { exportNdjson, type Rest } from '../support/control-plane-helpers';
import { spawnAct, type ControlPlaneProcess, type SidecarProcess } from '../support/processes';
import {
  SidecarFixture,
  freePorts,
  restCheck,
  restClient,
  sleep,
  waitFor,
  waitSpoolDrained,
} from '../support/sidecar-helpers';

const KEK = Buffer.alloc(32, 0x5a).toString('base64');

describe('control-plane replicas on PostgreSQL', function () {
  this.timeout(240_000);
  const fx = new SidecarFixture();
  let pg: PostgresCluster;
  let url: string;
  const cps: ControlPlaneProcess[] = [];
  const ports: number[] = [];
  const apis: Rest[] = [];
  let agentId = '';
  let policyId = '';

  const env = () => ({ ACT_DATABASE_URL: url, ACT_KEY_ENCRYPTION_KEY: KEK });

  async function replica(i: number, args: string[] = []): Promise<ControlPlaneProcess> {
    const cp = await fx.controlPlane(fx.dir(`rpl-cp${i}`), { ...env(), ACT_REPLICA_ID: `cp${i}` }, [
      '--grpc-addr',
      `127.0.0.1:${ports[i]}`,
      ...args,
    ]);
    cps[i] = cp;
    apis[i] = restClient(cp.url, cp.adminKey);
    return cp;
  }

  /** A sidecar that knows several replicas (tried in order, failing over). */
  async function sidecar(name: string, replicas: number[], agents = agentId): Promise<SidecarProcess> {
    const sc = await fx.sidecar(cps[replicas[0]!]!, fx.dir(`rpl-${name}`), {
      sidecarId: `rpl-${name}`,
      agentIds: agents,
      args: ['--control-plane', replicas.map((i) => `127.0.0.1:${ports[i]}`).join(',')],
    });
    await sc.waitForLog('sync live');
    return sc;
  }

  const revisionOf = async (api: Rest) => Number((await api('GET', '/api/sidecars')).body.revision);

  before(async function () {
    this.timeout(120_000);
    pg = await startPostgresCluster();
    url = await pg.createDatabase();
    ports.push(...(await freePorts(3)));
    await Promise.all([0, 1, 2].map((i) => replica(i)));
    const a = await fx.createAgent(apis[0]!, { name: 'replicated agent' });
    agentId = a.agent_id;
    policyId = (
      await fx.createPolicy(apis[1]!, {
        name: 'replicated policy',
        capabilities: ['read:report', 'create:transaction'],
        approval_rules: [{ expression: 'context.amount > 1000', actions: ['create:transaction'] }],
      })
    ).policy_id;
  });

  after(async function () {
    await fx.teardown();
    await pg?.stop();
  });

  it('replicas started at the same moment on an empty database make one admin key and one signing key', async function () {
    const empty = await pg.createDatabase();
    const procs = [0, 1, 2].map((i) => {
      const p = spawnAct(
        [
          'control-plane',
          '--http-addr',
          '127.0.0.1:0',
          '--grpc-addr',
          '127.0.0.1:0',
          '--data-dir',
          fx.dir(`rpl-boot${i}`),
        ],
        { ACT_DATABASE_URL: empty, ACT_KEY_ENCRYPTION_KEY: KEK, ACT_ADMIN_KEY: '' },
      );
      fx.procs.push(p);
      return p;
    });
    const ready = await Promise.all(procs.map((p) => p.waitForLog('control plane listening', 60_000)));
    const printed = procs.flatMap((p) =>
      p.output.flatMap((l, n) =>
        l.includes('ACT admin API key (shown once') ? [p.output[n + 2]!.trim()] : [],
      ),
    );
    assert.equal(printed.length, 1, `admin keys printed: ${printed.length}`);
    const keyIds = new Set<string>();
    for (const r of ready) {
      const api = restClient(`http://127.0.0.1:${r.http_port}`, printed[0]!);
      const keys = await api('GET', '/api/keys');
      assert.equal(keys.status, 200, keys.text);
      assert.equal(keys.body.keys.length, 1, keys.text);
      keyIds.add(keys.body.keys[0].key_id);
      const apiKeys = await api('GET', '/api/api-keys');
      assert.equal(apiKeys.body.api_keys.filter((k: any) => k.role === 'ADMIN').length, 1, apiKeys.text);
    }
    assert.equal(keyIds.size, 1, 'every replica signs with the one key');
    // A token issued through one replica verifies at another (the same keys, from the database).
    const api0 = restClient(`http://127.0.0.1:${ready[0]!.http_port}`, printed[0]!);
    const api2 = restClient(`http://127.0.0.1:${ready[2]!.http_port}`, printed[0]!);
    const ag = await fx.createAgent(api0, { name: 'boot agent' });
    const pol = await fx.createPolicy(api0, { name: 'boot policy', capabilities: ['read:x'] });
    const tok = await fx.issue(api0, ag.agent_id, [pol.policy_id]);
    const c = await centralCheck(api2)({ token: tok.token, action: 'read:x' });
    assert.equal(c.body.decision, 'ALLOW', c.text);
    // A rotation through one replica is what the next token through another is signed with.
    const rot = await api2('POST', '/api/keys/rotate');
    assert.equal(rot.status, 201, rot.text);
    const keys0 = (await api0('GET', '/api/keys')).body.keys;
    assert.equal(keys0.find((k: any) => k.active).key_id, rot.body.key_id);
    for (const p of procs) await p.stop();
  });

  it('the control plane refuses PostgreSQL without a key-encryption key, in one line naming the setting', async function () {
    const p = spawnAct(
      [
        'control-plane',
        '--http-addr',
        '127.0.0.1:0',
        '--grpc-addr',
        '127.0.0.1:0',
        '--data-dir',
        fx.dir('rpl-nokek'),
      ],
      { ACT_DATABASE_URL: url, ACT_KEY_ENCRYPTION_KEY: '' },
    );
    fx.procs.push(p);
    const code = await new Promise<number | null>((r) => p.child.once('exit', (c) => r(c)));
    assert.notEqual(code, 0);
    assert.ok(
      p.output.some((l) => /key-encryption key/.test(l) && /ACT_KEY_ENCRYPTION_KEY/.test(l)),
      p.output.join('\n'),
    );
  });

  it('a revocation through replica A denies at a sidecar on replica C and at central checks on B', async function () {
    const tok = await fx.issue(apis[0]!, agentId, [policyId]);
    const onC = await sidecar('on-c', [2]);
    const check = { token: tok.token, action: 'read:report' };
    await waitFor('ALLOW at the sidecar on C', async () =>
      (await restCheck(onC, check)).body.decision === 'ALLOW' ? true : undefined,
    );
    assert.equal((await centralCheck(apis[1]!)(check)).body.decision, 'ALLOW');
    const rev = await apis[0]!('POST', `/api/tokens/${tok.token_id}/revoke?wait=5s`, {});
    assert.equal(rev.status, 200, rev.text);
    // The receipt from A counts the sidecar connected to C (the registry is shared).
    assert.ok(rev.body.propagation.total >= 1, rev.text);
    assert.equal(rev.body.propagation.complete, true, rev.text);
    assert.equal((await restCheck(onC, check)).body.reason_code, 'TOKEN_REVOKED');
    await waitFor('TOKEN_REVOKED centrally on B', async () =>
      (await centralCheck(apis[1]!)(check)).body.reason_code === 'TOKEN_REVOKED' ? true : undefined,
    );
    await onC.stop();
  });

  it('a replica with --database-listen false holds no LISTEN connection and still follows: a revocation through A denies at its sidecar and centrally', async function () {
    const listeners = async () => {
      const c = new pgClient({ connectionString: url });
      await c.connect();
      try {
        const r = await c.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'act-store-listen'",
        );
        return (r.rows[0] as { n: number }).n;
      } finally {
        await c.end();
      }
    };
    const before = await listeners();
    assert.ok(before >= 3, `the three replicas listen (${before})`);
    ports[3] = (await freePorts(1))[0]!;
    const d = await replica(3, ['--database-listen', 'false']);
    assert.equal(await listeners(), before, 'the poll-only replica opened no LISTEN connection');
    const tok = await fx.issue(apis[0]!, agentId, [policyId]);
    const onD = await sidecar('on-d', [3]);
    const check = { token: tok.token, action: 'read:report' };
    await waitFor('ALLOW at the sidecar on D', async () =>
      (await restCheck(onD, check)).body.decision === 'ALLOW' ? true : undefined,
    );
    const rev = await apis[0]!('POST', `/api/tokens/${tok.token_id}/revoke?wait=5s`, {});
    assert.equal(rev.status, 200, rev.text);
    assert.equal(rev.body.propagation.complete, true, rev.text);
    assert.equal((await restCheck(onD, check)).body.reason_code, 'TOKEN_REVOKED');
    await waitFor('TOKEN_REVOKED centrally on D', async () =>
      (await centralCheck(apis[3]!)(check)).body.reason_code === 'TOKEN_REVOKED' ? true : undefined,
    );
    await onD.stop();
    await d.stop();
    // The later tests are about A, B and C (the restart test checks that every replica in cps lives).
    cps.splice(3);
    apis.splice(3);
  });

  it('GET /api/audit/follow on replica B shows records stored through replica A', async function () {
    const tok = await fx.issue(apis[0]!, agentId, [policyId]);
    const ac = new AbortController();
    const res = await fetch(`${cps[1]!.url}/api/audit/follow?agent_id=${agentId}`, {
      headers: { authorization: `Bearer ${cps[1]!.adminKey}` },
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const want = (await centralCheck(apis[0]!)({ token: tok.token, action: 'read:report' })).body.audit_id;
    let text = '';
    const seen = await waitFor('the record on B’s follow stream', async () => {
      const { value } = await reader.read();
      text += new TextDecoder().decode(value);
      return text.includes(want) ? true : undefined;
    });
    assert.equal(seen, true);
    ac.abort();
  });

  it('an approval is used once across the replicas and a sidecar, all presenting it at once', async function () {
    const tok = await fx.issue(apis[0]!, agentId, [policyId]);
    const body = {
      token: tok.token,
      action: 'create:transaction',
      resource: 'acct_r',
      context: { amount: 5000 },
    };
    const asked = await centralCheck(apis[0]!)(body);
    assert.equal(asked.body.decision, 'APPROVAL_REQUIRED', asked.text);
    const id = asked.body.approval_id as string;
    const ok = await apis[2]!('POST', `/api/approvals/${id}/approve`, {});
    assert.equal(ok.status, 200, ok.text);
    const sc = await sidecar('approvals', [1]);
    await waitFor('the approval synced to the sidecar', async () => {
      const r = await restClient(sc.url)('GET', `/api/approvals/${id}/wait?timeout=1s`, undefined, {
        authorization: `Bearer ${tok.token}`,
      });
      return r.body?.status === 'APPROVED' ? true : undefined;
    });
    const present = { ...body, approval_id: id };
    const rs: CheckResult[] = await Promise.all([
      ...[0, 1, 2].flatMap((i) => [centralCheck(apis[i]!)(present), centralCheck(apis[i]!)(present)]),
      restCheck(sc, present),
      restCheck(sc, present),
    ]);
    const allowed = rs.filter((r) => r.body.decision === 'ALLOW');
    assert.equal(
      allowed.length,
      1,
      JSON.stringify(rs.map((r) => `${r.body.decision}/${r.body.reason_code}`)),
    );
    const a = (await apis[1]!('GET', `/api/approvals/${id}`)).body;
    assert.equal(a.status, 'USED');
    assert.equal(a.used_audit_id, allowed[0]!.body.audit_id);
    await sc.stop();
  });

  it('a daily maximum is one budget across the replicas: max 3 admits exactly 3 through A, B and C at once', async function () {
    const p = await fx.createPolicy(apis[0]!, {
      name: 'three a day (replicas)',
      capabilities: ['read:report'],
      constraints: { max_actions_per_day: 3 },
    });
    const tok = await fx.issue(apis[1]!, agentId, [p.policy_id]);
    const rs = await Promise.all(
      Array.from({ length: 12 }, (_, n) =>
        centralCheck(apis[n % 3]!)({ token: tok.token, action: 'read:report' }),
      ),
    );
    const n = rs.filter((r) => r.body.decision === 'ALLOW').length;
    assert.equal(n, 3, JSON.stringify(rs.map((r) => r.body.reason_code)));
  });

  it('replica A SIGKILLed under sidecar load: its sidecars move to B, every answered decision is stored exactly once, the chains verify', async function () {
    const tok = await fx.issue(apis[0]!, agentId, [policyId]);
    const sc = await sidecar('failover', [0, 1]);
    assert.match(
      String(sc.output.find((l) => l.includes('"sync live"'))),
      new RegExp(`127.0.0.1:${ports[0]}`),
    );
    const answered: string[] = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        const r = await restCheck(sc, { token: tok.token, action: 'read:report', resource: `r${i}` });
        if (r.status === 200) answered.push(r.body.audit_id as string);
      }
    })();
    await sleep(500);
    await cps[0]!.kill();
    const moved = await sc
      .waitForLog(/sync live/, 30_000)
      .then(() =>
        waitFor('the sidecar live on B', async () =>
          sc.output.some((l) => l.includes('"sync live"') && l.includes(`127.0.0.1:${ports[1]}`))
            ? true
            : undefined,
        ),
      );
    assert.equal(moved, true);
    await sleep(500);
    stop = true;
    await load;
    assert.ok(answered.length > 10, `answered ${answered.length}`);
    await waitSpoolDrained(sc);
    const stored = new Map<string, number>();
    for (const r of await exportNdjson(apis[1]!, `agent_id=${agentId}`))
      stored.set(r.audit_id, (stored.get(r.audit_id) ?? 0) + 1);
    for (const id of answered) assert.equal(stored.get(id), 1, `${id} stored ${stored.get(id) ?? 0} times`);
    const verify = await auditVerify(cps[1]!);
    assert.match(verify, / 0 problems/, verify);
    await replica(0); // back for the tests after this one
    await sc.stop();
  });

  it('PostgreSQL restarted under load: replicas and sidecars recover, nothing acknowledged is lost', async function () {
    const tok = await fx.issue(apis[1]!, agentId, [policyId]);
    const sc = await sidecar('pg-restart', [2, 1]);
    const answeredAtSidecar: string[] = [];
    const answeredCentrally: string[] = [];
    const dropped: string[] = [];
    const refused: string[] = [];
    let stop = false;
    const atSidecar = (async () => {
      for (let i = 0; !stop; i++) {
        const r = await restCheck(sc, { token: tok.token, action: 'read:report', resource: `s${i}` });
        if (r.status === 200) answeredAtSidecar.push(r.body.audit_id as string);
        await sleep(5);
      }
    })();
    const central = (async () => {
      for (let i = 0; !stop; i++) {
        // Every request is answered (503 while the database is away), never dropped.
        const r = await centralCheck(apis[1]!)({
          token: tok.token,
          action: 'read:report',
          resource: `c${i}`,
        }).catch(
          (e: Error) => (
            dropped.push(`${e.message}: ${String((e.cause as Error | undefined)?.message)}`),
            undefined
          ),
        );
        if (r?.status === 200) answeredCentrally.push(r.body.audit_id as string);
        else if (r) refused.push(`${r.status} ${r.body?.error?.code}`);
        await sleep(20);
      }
    })();
    await sleep(500);
    await pg.restart();
    await sleep(1500);
    stop = true;
    await Promise.all([atSidecar, central]);
    // Every replica rode it out (none exited) and writes work again on each.
    for (const cp of cps)
      assert.equal(cp.child.exitCode, null, `a replica exited:\n${cp.output.slice(-30).join('\n')}`);
    // What could not be audited meanwhile was refused as unavailable, nothing else.
    assert.deepEqual(
      [...new Set(refused)].filter((r) => r !== '503 UNAVAILABLE'),
      [],
      refused.join(', '),
    );
    assert.deepEqual(dropped, [], `requests dropped:\n${cps[1]!.output.slice(-30).join('\n')}`);
    for (const api of apis) {
      const w = await waitFor('a write after the restart', async () => {
        const r = await api('POST', '/api/agents', { name: `after restart ${Math.random()}` });
        return r.status === 201 ? r : undefined;
      });
      assert.equal(w.status, 201);
    }
    await waitSpoolDrained(sc);
    const stored = new Map<string, number>();
    for (const r of await exportNdjson(apis[0]!, `agent_id=${agentId}`))
      stored.set(r.audit_id, (stored.get(r.audit_id) ?? 0) + 1);
    console.log(
      `      answered during the restart: ${answeredAtSidecar.length} at the sidecar, ${answeredCentrally.length} centrally (${refused.length} refused 503)`,
    );
    assert.ok(answeredAtSidecar.length > 0 && answeredCentrally.length > 0);
    for (const id of [...answeredAtSidecar, ...answeredCentrally])
      assert.equal(stored.get(id), 1, `${id} stored ${stored.get(id) ?? 0} times`);
    await sc.stop();
    assert.ok((await revisionOf(apis[2]!)) > 0);
  });
});
