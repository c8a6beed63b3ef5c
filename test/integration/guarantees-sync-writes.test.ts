/**
 * What a SIDECAR key may write over Sync (issue item 4), against a real control plane, with a
 * raw Sync stream playing the sidecar: records about agents outside the key's scope, under the
 * control plane's own chain, with a wrong hash or a broken link, or under a sidecar id another
 * key holds, are refused with an AuditReject (or the stream is refused) and nothing is stored;
 * no audit record, in scope or not, changes an approval's state.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import type { AuditRecord } from '../../src/gen/act/v1/admin';
import { Decision, ReasonCode } from '../../src/gen/act/v1/decision';
import { BudgetKind, SyncServiceClient } from '../../src/gen/act/v1/sync';
import type { Rest } from '../support/control-plane-helpers';
import { exportNdjson } from '../support/control-plane-helpers';
import {
  RawSync,
  approvalStatus,
  auditVerify,
  centralCheck,
  recordFor,
  requestAndApprove,
  sealChain,
} from '../support/guarantees';
import type { ControlPlaneProcess } from '../support/processes';
import { SidecarFixture, restClient } from '../support/sidecar-helpers';

const PERMISSION_DENIED = 7;

describe('guarantees: a SIDECAR key writes only its own chain, for its own agents (item 4)', function () {
  this.timeout(60_000);
  const fx = new SidecarFixture();
  let cp: ControlPlaneProcess;
  let api: Rest;
  const A = { agentId: '', tokenId: '', approvalId: '', key: '' };
  const B = { agentId: '', key: '' };
  const streams: RawSync[] = [];
  /** Chain heads of the sources this test wrote, as the control plane acknowledged them. */
  const heads = new Map<string, { seq: number; hash: string }>();

  const open = (key: string, sidecarId: string, agentIds: string[], previous: string[] = []) => {
    const s = new RawSync(cp.grpcPort, key, {
      sidecar_id: sidecarId,
      agent_ids: agentIds,
      previous_sidecar_ids: previous,
    });
    streams.push(s);
    return s;
  };

  /** Records sealed onto the acknowledged head of `source`. */
  const next = (source: string, records: AuditRecord[]): AuditRecord[] => {
    const h = heads.get(source) ?? { seq: 0, hash: '' };
    return sealChain(source, records, h.seq, h.hash);
  };
  const acked = (records: AuditRecord[]) => {
    const last = records[records.length - 1]!;
    heads.set(last.source, { seq: last.seq, hash: last.hash });
  };

  async function stored(ids: string[]): Promise<string[]> {
    const all = new Set((await exportNdjson(api)).map((r) => r.audit_id as string));
    return ids.filter((id) => all.has(id));
  }

  /** A record that says A's approval was used to allow a check (what used to mark it USED). */
  const useOfAsApproval = () =>
    recordFor({
      agent_id: A.agentId,
      token_id: A.tokenId,
      approval_id: A.approvalId,
      decision: Decision.ALLOW,
      reason_code: ReasonCode.GRANTED,
      context: { amount: 1500 },
    });

  before(async function () {
    cp = await fx.controlPlane(fx.dir('gsw-cp'));
    api = restClient(cp.url, cp.adminKey);
    const a = await fx.createAgent(api, { name: 'agent A' });
    const b = await fx.createAgent(api, { name: 'agent B' });
    A.agentId = a.agent_id;
    B.agentId = b.agent_id;
    const policy = await fx.createPolicy(api, {
      name: 'transfers',
      capabilities: ['create:transaction'],
      approval_rules: ['context.amount > 1000'],
    });
    const tok = await fx.issue(api, A.agentId, [policy.policy_id]);
    A.tokenId = tok.token_id;
    A.approvalId = (
      await requestAndApprove(api, centralCheck(api), {
        token: tok.token,
        action: 'create:transaction',
        resource: 'acct_1',
        context: { amount: 1500 },
      })
    ).approvalId;
    for (const [who, agentId] of [
      [A, A.agentId],
      [B, B.agentId],
    ] as const) {
      const r = await api('POST', '/api/api-keys', {
        name: `sidecar key for ${agentId}`,
        role: 'SIDECAR',
        agent_ids: [agentId],
      });
      assert.equal(r.status, 201, r.text);
      who.key = r.body.secret as string;
      fx.secrets.push(who.key);
    }
  });

  after(async function () {
    for (const s of streams) s.close();
    await fx.teardown();
  });

  it("item 4: a key scoped to agent B ships a record about agent A naming A's approved approval: AuditReject, nothing stored, the approval stays APPROVED; the stream stays open", async function () {
    const s = open(B.key, 'gsw-b', [B.agentId]);
    assert.deepEqual(await s.ready(), { kind: 'live' });
    const forged = next('gsw-b', [useOfAsApproval()]);
    const answer = await s.sendBatch('forged-1', forged);
    assert.equal(answer.kind, 'reject', JSON.stringify(answer));
    assert.match((answer as { reason: string }).reason, /outside this sidecar's scope/);
    assert.deepEqual(await stored(forged.map((r) => r.audit_id)), []);
    assert.equal(await approvalStatus(api, A.approvalId), 'APPROVED');

    // The same stream still ships what it may: a record about B.
    const fine = next('gsw-b', [recordFor({ agent_id: B.agentId })]);
    assert.deepEqual(await s.sendBatch('fine-1', fine), { kind: 'ack', stored: 1 });
    acked(fine);
    assert.deepEqual(await stored(fine.map((r) => r.audit_id)), [fine[0]!.audit_id]);
  });

  it('item 4: a record about agent A in a batch of B records: the whole batch is refused', async function () {
    const s = open(B.key, 'gsw-b', [B.agentId]);
    assert.deepEqual(await s.ready(), { kind: 'live' });
    const batch = next('gsw-b', [
      recordFor({ agent_id: B.agentId }),
      recordFor({ agent_id: A.agentId }),
      recordFor({ agent_id: B.agentId }),
    ]);
    const answer = await s.sendBatch('mixed-1', batch);
    assert.equal(answer.kind, 'reject', JSON.stringify(answer));
    assert.equal((answer as { auditId: string }).auditId, batch[1]!.audit_id, 'the refusal names the record');
    assert.deepEqual(await stored(batch.map((r) => r.audit_id)), []);
  });

  it("item 4: the key may not say Hello as the control plane's own chain (control-plane, control-plane:<replica>, or as an earlier id)", async function () {
    for (const [id, previous] of [
      ['control-plane', []],
      ['control-plane:r1', []],
      ['gsw-b2', ['control-plane']],
    ] as const) {
      const s = open(B.key, id, [B.agentId], [...previous]);
      const answer = await s.ready();
      assert.equal(answer.kind, 'error', `${id} ${JSON.stringify(previous)}: ${JSON.stringify(answer)}`);
      assert.equal((answer as { code: number }).code, PERMISSION_DENIED, JSON.stringify(answer));
      assert.match((answer as { details: string }).details, /reserved/);
    }
  });

  it("item 4: records with source control-plane (seq 999999) on a sidecar's stream are refused; the control plane's chain verifies", async function () {
    // The control plane's own chain has records (central checks made in `before`).
    const own = (await exportNdjson(api)).filter((r) => r.source === 'control-plane');
    assert.ok(own.length > 0);
    const s = open(B.key, 'gsw-b', [B.agentId]);
    assert.deepEqual(await s.ready(), { kind: 'live' });
    const forged = sealChain('control-plane', [recordFor({ agent_id: B.agentId })], 999998, 'f'.repeat(64));
    assert.equal(forged[0]!.seq, 999999);
    const answer = await s.sendBatch('cp-chain-1', forged);
    assert.equal(answer.kind, 'reject', JSON.stringify(answer));
    assert.match((answer as { reason: string }).reason, /not this stream's sidecar id/);
    assert.deepEqual(await stored([forged[0]!.audit_id]), []);
    const out = await auditVerify(cp);
    assert.match(out, /^ok +control-plane: \d+ records/m, out);
    assert.match(out, / 0 problems$/m, out);
  });

  it('item 4: a record whose hash does not match it (wrong, or empty) is refused; nothing of its batch is stored', async function () {
    const s = open(B.key, 'gsw-b', [B.agentId]);
    assert.deepEqual(await s.ready(), { kind: 'live' });
    for (const spoil of [
      (r: AuditRecord) => void (r.hash = r.hash.replace(/^./, (c) => (c === '0' ? '1' : '0'))),
      (r: AuditRecord) => void (r.hash = ''),
      // Sealed, then edited: the hash no longer covers what is shipped.
      (r: AuditRecord) => void (r.decision = Decision.DENY),
    ]) {
      const batch = next('gsw-b', [recordFor({ agent_id: B.agentId }), recordFor({ agent_id: B.agentId })]);
      spoil(batch[1]!);
      const answer = await s.sendBatch(`bad-hash-${batch[0]!.seq}-${Math.random()}`, batch);
      assert.equal(answer.kind, 'reject', JSON.stringify(answer));
      assert.match((answer as { reason: string }).reason, /hash does not match/);
      assert.deepEqual(await stored(batch.map((r) => r.audit_id)), []);
    }
  });

  it('item 4: a broken link is refused: prev_hash not the head, or a seq at or before the head that is not stored', async function () {
    const s = open(B.key, 'gsw-b', [B.agentId]);
    assert.deepEqual(await s.ready(), { kind: 'live' });
    // A head to link to.
    const first = next('gsw-b', [recordFor({ agent_id: B.agentId }), recordFor({ agent_id: B.agentId })]);
    assert.deepEqual(await s.sendBatch('link-head', first), { kind: 'ack', stored: 2 });
    acked(first);
    const head = heads.get('gsw-b')!;
    const cases: [string, AuditRecord[]][] = [
      // Correctly hashed, but linked to a hash that is not the head's.
      ['prev_hash', sealChain('gsw-b', [recordFor({ agent_id: B.agentId })], head.seq, 'a'.repeat(64))],
      // A second record for an existing seq (rewriting history).
      ['rewrite', sealChain('gsw-b', [recordFor({ agent_id: B.agentId })], head.seq - 1, 'b'.repeat(64))],
    ];
    for (const [what, batch] of cases) {
      const answer = await s.sendBatch(`link-${what}`, batch);
      assert.equal(answer.kind, 'reject', `${what}: ${JSON.stringify(answer)}`);
      assert.match(
        (answer as { reason: string }).reason,
        what === 'prev_hash' ? /prev_hash does not link/ : /at or before the chain head/,
      );
      assert.deepEqual(await stored(batch.map((r) => r.audit_id)), [], what);
    }
    // Within one batch: the second record links to something else.
    const pair = next('gsw-b', [recordFor({ agent_id: B.agentId }), recordFor({ agent_id: B.agentId })]);
    const resealed = sealChain('gsw-b', [pair[1]!], pair[0]!.seq, 'c'.repeat(64));
    const answer = await s.sendBatch('link-in-batch', [pair[0]!, resealed[0]!]);
    assert.equal(answer.kind, 'reject', JSON.stringify(answer));
    assert.deepEqual(await stored(pair.map((r) => r.audit_id)), []);
  });

  it('item 4: a sidecar id used by one key is refused to another (as its id, and as an earlier id)', async function () {
    const mine = open(A.key, 'gsw-shared', [A.agentId]);
    assert.deepEqual(await mine.ready(), { kind: 'live' });
    for (const [id, previous] of [
      ['gsw-shared', []],
      ['gsw-b3', ['gsw-shared']],
    ] as const) {
      const theirs = open(B.key, id, [B.agentId], [...previous]);
      const answer = await theirs.ready();
      assert.equal(answer.kind, 'error', `${id} ${JSON.stringify(previous)}: ${JSON.stringify(answer)}`);
      assert.equal((answer as { code: number }).code, PERMISSION_DENIED);
      assert.match((answer as { details: string }).details, /belongs to another API key/);
    }
    // Still refused after the owner's stream is gone (the binding is stored, not per stream).
    mine.close();
    const later = open(B.key, 'gsw-shared', [B.agentId]);
    const answer = await later.ready();
    assert.equal(answer.kind, 'error', JSON.stringify(answer));
    assert.equal((answer as { code: number }).code, PERMISSION_DENIED);

    // An id whose key was deleted may be taken over by another key.
    const made = await api('POST', '/api/api-keys', {
      name: 'short-lived',
      role: 'SIDECAR',
      agent_ids: [B.agentId],
    });
    assert.equal(made.status, 201, made.text);
    fx.secrets.push(made.body.secret);
    const first = open(made.body.secret as string, 'gsw-orphan', [B.agentId]);
    assert.deepEqual(await first.ready(), { kind: 'live' });
    first.close();
    const del = await api('DELETE', `/api/api-keys/${made.body.api_key.api_key_id}`);
    assert.equal(del.status, 200, del.text);
    const heir = open(B.key, 'gsw-orphan', [B.agentId]);
    assert.deepEqual(await heir.ready(), { kind: 'live' });
    // ... and is then bound to it.
    const third = open(A.key, 'gsw-orphan', [A.agentId]);
    const refused = await third.ready();
    assert.equal(refused.kind, 'error', JSON.stringify(refused));
    assert.equal((refused as { code: number }).code, PERMISSION_DENIED);
  });

  it('item 4 (attack): two keys racing to say Hello first under a new sidecar id: only one gets a stream', async function () {
    const doubles: string[] = [];
    for (let round = 0; round < 10; round++) {
      const id = `gsw-race-${round}`;
      const pair = [open(A.key, id, [A.agentId]), open(B.key, id, [B.agentId])];
      const answers = await Promise.all(pair.map((s) => s.ready()));
      const live = answers.filter((x) => x.kind === 'live').length;
      if (live !== 1) doubles.push(`${id}: ${JSON.stringify(answers)}`);
      for (const s of pair) s.close();
    }
    assert.deepEqual(doubles, [], 'both keys got a stream for one sidecar id');
  });

  it('item 4: an in-scope record that names an approved approval is stored and does not change it (audit reports uses, never makes them)', async function () {
    const s = open(A.key, 'gsw-a', [A.agentId]);
    assert.deepEqual(await s.ready(), { kind: 'live' });
    const rec = next('gsw-a', [useOfAsApproval()]);
    assert.deepEqual(await s.sendBatch('use-claim-1', rec), { kind: 'ack', stored: 1 });
    acked(rec);
    assert.deepEqual(await stored([rec[0]!.audit_id]), [rec[0]!.audit_id]);
    assert.equal(await approvalStatus(api, A.approvalId), 'APPROVED');
  });

  it("item 4: a key scoped to agent B cannot use, ask for or lease for agent A over Sync's calls, nor use A's approval by naming B", async function () {
    const client = new SyncServiceClient(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${B.key}`);
    type Unary = (
      req: unknown,
      md: grpc.Metadata,
      cb: (err: grpc.ServiceError | null, res: unknown) => void,
    ) => void;
    const call = <T>(method: string, req: unknown): Promise<{ err?: grpc.ServiceError; res?: T }> =>
      new Promise((resolve) => {
        const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
        fn(req, md, (err, res) => resolve(err ? { err } : { res: res as T }));
      });
    try {
      const consume = {
        approval_id: A.approvalId,
        token_id: A.tokenId,
        action: 'create:transaction',
        resource: 'acct_1',
        request_hash: (await api('GET', `/api/approvals/${A.approvalId}`)).body.request_hash,
        source: 'gsw-b',
        audit_id: recordFor({ agent_id: A.agentId }).audit_id,
        not_after_ms: 0,
      };
      const asA = await call('consumeApproval', { ...consume, agent_id: A.agentId });
      assert.equal(asA.err?.code, PERMISSION_DENIED, JSON.stringify(asA));
      const asB = await call<{ consumed: boolean; reason: string }>('consumeApproval', {
        ...consume,
        agent_id: B.agentId,
      });
      assert.equal(asB.res?.consumed, false, JSON.stringify(asB));
      assert.match(asB.res!.reason, /different request/);
      const ask = await call('requestApproval', {
        source: 'gsw-b',
        audit_id: consume.audit_id,
        agent_id: A.agentId,
        token_id: A.tokenId,
        action: 'create:transaction',
        resource: 'acct_9',
        context: { amount: 5 },
        policy_id: 'policy_whatever',
        rule: 'x',
      });
      assert.equal(ask.err?.code, PERMISSION_DENIED, JSON.stringify(ask));
      const lease = await call('leaseBudget', {
        source: 'gsw-b',
        agent_id: A.agentId,
        policy_id: 'policy_whatever',
        kind: BudgetKind.DAILY,
        want: 100,
      });
      assert.equal(lease.err?.code, PERMISSION_DENIED, JSON.stringify(lease));
      const release = await call('releaseBudget', {
        source: 'gsw-b',
        returns: [
          {
            lease_id: 'lease_x',
            agent_id: A.agentId,
            policy_id: 'policy_whatever',
            window: '2026-01-01',
            unused: 5,
          },
        ],
      });
      assert.equal(release.err?.code, PERMISSION_DENIED, JSON.stringify(release));
      assert.equal(await approvalStatus(api, A.approvalId), 'APPROVED');
    } finally {
      client.close();
    }
  });

  it('item 6 (attack): a release gives back only what its lease still holds — a made-up lease id, a second release, or more than was granted returns nothing extra', async function () {
    // A daily budget of 3 for agent A, spent through A's own key over the Sync calls.
    const policy = await fx.createPolicy(api, {
      name: 'three a day',
      capabilities: ['read:report'],
      constraints: { max_actions_per_day: 3 },
    });
    const client = new SyncServiceClient(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${A.key}`);
    type Unary = (
      req: unknown,
      md: grpc.Metadata,
      cb: (err: grpc.ServiceError | null, res: unknown) => void,
    ) => void;
    const call = <T>(method: string, req: unknown): Promise<T> =>
      new Promise((resolve, reject) => {
        const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
        fn(req, md, (err, res) => (err ? reject(err) : resolve(res as T)));
      });
    type Grant = { lease_id: string; granted: number; window: string; remaining: number };
    const lease = () =>
      call<Grant>('leaseBudget', {
        source: 'gsw-a',
        agent_id: A.agentId,
        policy_id: policy.policy_id,
        kind: BudgetKind.DAILY,
        want: 10,
      });
    const release = (leaseId: string, window: string, unused: number) =>
      call<{ returned: number }>('releaseBudget', {
        source: 'gsw-a',
        returns: [{ lease_id: leaseId, agent_id: A.agentId, policy_id: policy.policy_id, window, unused }],
      });
    try {
      const grants: Grant[] = [];
      for (let g = await lease(); g.granted > 0; g = await lease()) grants.push(g);
      assert.equal(
        grants.reduce((n, g) => n + g.granted, 0),
        3,
        'the whole day leased out, never more',
      );
      const day = grants[0]!.window;
      assert.deepEqual(await release('lease_madeup0000000000000000', day, 1000), { returned: 0 });
      assert.equal((await lease()).granted, 0, 'a made-up release freed nothing');
      const first = grants[0]!;
      assert.deepEqual(await release(first.lease_id, day, 1000), { returned: first.granted });
      assert.deepEqual(await release(first.lease_id, day, 1000), { returned: 0 }, 'a lease gives back once');
      const again = await lease();
      assert.equal(again.granted, first.granted, 'exactly the returned units can be leased again');
      assert.equal((await lease()).granted, 0);
    } finally {
      client.close();
    }
  });

  it('every stored chain still verifies', async function () {
    const out = await auditVerify(cp);
    assert.match(out, /^ok +gsw-b: \d+ records/m, out);
    assert.match(out, / 0 problems$/m, out);
  });
});
