import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decide, InMemoryCounters, type DecisionRequest } from '../../../src/decision';
import { Agent, AgentStatus, Approval, Policy } from '../../../src/gen/act/v1/admin';
import { ApprovalStatus } from '../../../src/gen/act/v1/decision';
import type { Change } from '../../../src/gen/act/v1/sync';
import { TokenClaims } from '../../../src/gen/act/v1/token';
import { LmdbReplica } from '../../../src/replica';
import { generateSigningKey, signToken, VerificationCache, type SigningKeyPair } from '../../../src/token';

const NOW = Date.parse('2026-03-02T10:00:00Z');
const DAY = 86_400_000;

const agent = (id: string, status = AgentStatus.ACTIVE, metadata: Record<string, string> = {}): Change => ({
  kind: { $case: 'agent', value: Agent.fromPartial({ agent_id: id, name: id, status, metadata }) },
});
const policy = (
  id: string,
  version: number,
  capabilities: string[],
  extra: Partial<Policy> = {},
): Change => ({
  kind: {
    $case: 'policy',
    value: Policy.fromPartial({ policy_id: id, name: id, version, capabilities, ...extra }),
  },
});
const revocation = (tokenId: string, expiresAtMs = NOW + DAY, agentId = 'agent_a'): Change => ({
  kind: {
    $case: 'revocation',
    value: { token_id: tokenId, revoked_at_ms: NOW, expires_at_ms: expiresAtMs, agent_id: agentId },
  },
});
const publicKey = (k: SigningKeyPair): Change => ({
  kind: {
    $case: 'public_key',
    value: { key_id: k.keyId, public_key: Buffer.from(k.publicKeyRaw), created_at_ms: k.createdAtMs },
  },
});
const approval = (id: string, tokenId: string, status = ApprovalStatus.PENDING): Change => ({
  kind: {
    $case: 'approval',
    value: Approval.fromPartial({
      approval_id: id,
      status,
      token_id: tokenId,
      action: 'create:transaction',
      resource: 'tx_1',
      expires_at: new Date(NOW + 3_600_000).toISOString(),
    }),
  },
});
const del = (kind: 'agent_deleted' | 'policy_deleted' | 'public_key_deleted', id: string): Change => ({
  kind: { $case: kind, value: id },
});

describe('LmdbReplica', () => {
  let base: string;
  const opened: LmdbReplica[] = [];
  let n = 0;

  before(() => {
    base = mkdtempSync(join(tmpdir(), 'act-replica-'));
  });
  after(async () => {
    await Promise.all(opened.map((r) => r.close()));
    rmSync(base, { recursive: true, force: true });
  });

  /** Opens a replica (a fresh directory unless one is given); closed in `after`. */
  function openReplica(dataDir = join(base, `r${n++}`)): { r: LmdbReplica; dataDir: string } {
    const r = LmdbReplica.open({ dataDir });
    opened.push(r);
    return { r, dataDir };
  }

  async function snapshot(r: LmdbReplica, revision: number, storeId: string, ...chunks: Change[][]) {
    r.beginSnapshot(revision, storeId);
    for (const c of chunks) r.snapshotChunk(c);
    await r.commitSnapshot();
  }

  it('creates its directory with mode 0700 and starts empty at revision 0', () => {
    const { r, dataDir } = openReplica(join(base, 'nested', 'dir'));
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    assert.equal(r.revision, 0);
    assert.equal(r.storeId, '');
    assert.equal(r.lastContactMs, 0);
    assert.deepEqual(r.dump(), {
      agentIds: [],
      policyIds: [],
      revokedTokenIds: [],
      keyIds: [],
      approvalIds: [],
    });
  });

  describe('snapshots', () => {
    it('serves the old state until a chunked snapshot commits, then only the new one', async () => {
      const { r } = openReplica();
      const k1 = generateSigningKey(NOW);
      await snapshot(
        r,
        5,
        'store-1',
        [agent('agent_a'), agent('agent_old'), policy('policy_old', 1, ['read:doc'])],
        [revocation('tok_old'), publicKey(k1), approval('approval_old', 'tok_x')],
      );
      assert.equal(r.revision, 5);
      assert.equal(r.storeId, 'store-1');
      // Warm the caches so the commit must invalidate them.
      assert.ok(r.agent('agent_old'));
      assert.equal(r.policy('policy_old')?.version, 1);
      assert.ok(r.publicKey(k1.keyId));

      const k2 = generateSigningKey(NOW);
      r.beginSnapshot(9, 'store-2');
      r.snapshotChunk([agent('agent_a', AgentStatus.DISABLED), agent('agent_new')]);
      r.snapshotChunk([policy('policy_new', 3, ['write:doc']), revocation('tok_new')]);
      r.snapshotChunk([publicKey(k2), approval('approval_new', 'tok_y')]);

      // Not committed: the old state is still served, from disk and from the caches.
      assert.equal(r.revision, 5);
      assert.equal(r.storeId, 'store-1');
      assert.ok(r.agent('agent_old'));
      assert.equal(r.agent('agent_new'), undefined);
      assert.equal(r.agent('agent_a')?.status, 'ACTIVE');
      assert.ok(r.isRevoked('tok_old'));
      assert.equal(r.isRevoked('tok_new'), false);

      await r.commitSnapshot();
      assert.equal(r.revision, 9);
      assert.equal(r.storeId, 'store-2');
      assert.equal(r.agent('agent_old'), undefined);
      assert.equal(r.agent('agent_a')?.status, 'DISABLED');
      assert.ok(r.agent('agent_new'));
      assert.equal(r.policy('policy_old'), undefined);
      assert.equal(r.policy('policy_new')?.version, 3);
      assert.equal(r.publicKey(k1.keyId), undefined);
      assert.ok(r.publicKey(k2.keyId));
      assert.equal(r.isRevoked('tok_old'), false);
      assert.ok(r.isRevoked('tok_new'));
      assert.equal(r.approval('approval_old'), undefined);
      assert.equal(r.approval('approval_new')?.tokenId, 'tok_y');
      assert.deepEqual(r.dump(), {
        agentIds: ['agent_a', 'agent_new'],
        policyIds: ['policy_new'],
        revokedTokenIds: ['tok_new'],
        keyIds: [k2.keyId],
        approvalIds: ['approval_new'],
      });
    });

    it('applies a snapshot at a lower revision (a new control-plane store)', async () => {
      const { r } = openReplica();
      await snapshot(r, 100, 'store-1', [agent('agent_a')]);
      await snapshot(r, 3, 'store-2', [agent('agent_b')]);
      assert.equal(r.revision, 3);
      assert.equal(r.storeId, 'store-2');
      assert.deepEqual(r.dump().agentIds, ['agent_b']);
    });

    it('leaves the old state when a snapshot change throws, and discards that snapshot', async () => {
      const { r } = openReplica();
      await snapshot(r, 2, 'store-1', [agent('agent_a'), revocation('tok_1')]);
      r.beginSnapshot(7, 'store-1');
      r.snapshotChunk([agent('agent_b'), agent('')]);
      await assert.rejects(r.commitSnapshot(), /agent\.agent_id/);
      assert.equal(r.revision, 2);
      assert.deepEqual(r.dump().agentIds, ['agent_a']);
      assert.ok(r.isRevoked('tok_1'));
      await assert.rejects(r.commitSnapshot(), /without beginSnapshot/);
      assert.throws(() => r.snapshotChunk([]), /without beginSnapshot/);
    });

    it('keeps a scoped replica to what it was sent (stats)', async () => {
      const { r } = openReplica();
      const k = generateSigningKey(NOW);
      await snapshot(r, 1, 's', [
        agent('agent_a'),
        policy('policy_a', 1, ['read:doc']),
        revocation('tok_a1'),
        revocation('tok_a2'),
        publicKey(k),
      ]);
      const s = r.stats();
      assert.deepEqual(
        {
          agents: s.agents,
          policies: s.policies,
          revocations: s.revocations,
          keys: s.keys,
          approvals: s.approvals,
        },
        { agents: 1, policies: 1, revocations: 2, keys: 1, approvals: 0 },
      );
      assert.equal(r.agent('agent_b'), undefined);
      assert.equal(r.dump().agentIds.includes('agent_b'), false);
    });
  });

  describe('deltas', () => {
    it('upserts and deletes every entity kind and bumps the revision', async () => {
      const { r } = openReplica();
      await snapshot(r, 1, 's', [agent('agent_a')]);
      const k = generateSigningKey(NOW);

      await r.applyDelta(2, [
        agent('agent_b', AgentStatus.ACTIVE, { team: 'billing' }),
        policy('policy_p', 1, ['read:doc']),
        revocation('tok_r'),
        publicKey(k),
        approval('approval_1', 'tok_t'),
        {
          kind: {
            $case: 'token_issued',
            value: { token_id: 't', agent_id: 'a', policy_ids: [], expires_at_ms: 0 },
          },
        },
        {},
      ]);
      assert.equal(r.revision, 2);
      assert.deepEqual(r.agent('agent_b'), {
        id: 'agent_b',
        status: 'ACTIVE',
        metadata: { team: 'billing' },
      });
      assert.equal(r.policy('policy_p')?.version, 1);
      assert.ok(r.isRevoked('tok_r'));
      assert.ok(r.publicKey(k.keyId)?.equals(k.publicKey));
      assert.deepEqual(r.approval('approval_1'), {
        id: 'approval_1',
        status: 'PENDING',
        tokenId: 'tok_t',
        action: 'create:transaction',
        resource: 'tx_1',
        requestHash: '',
        expiresAtMs: NOW + 3_600_000,
      });

      // Cached reads must follow later deltas.
      const v1 = r.policy('policy_p');
      await r.applyDelta(3, [
        agent('agent_b', AgentStatus.DISABLED),
        policy('policy_p', 2, ['read:doc', 'write:doc']),
        approval('approval_1', 'tok_t', ApprovalStatus.APPROVED),
      ]);
      assert.equal(r.revision, 3);
      assert.equal(r.agent('agent_b')?.status, 'DISABLED');
      const v2 = r.policy('policy_p');
      assert.equal(v2?.version, 2);
      assert.notEqual(v2, v1);
      assert.deepEqual(
        v2?.capabilities.map((c) => c.raw),
        ['read:doc', 'write:doc'],
      );
      assert.equal(r.approval('approval_1')?.status, 'APPROVED');

      // The same version sent again keeps its compilation.
      await r.applyDelta(4, [policy('policy_p', 2, ['read:doc', 'write:doc'])]);
      assert.equal(r.policy('policy_p'), v2);

      await r.applyDelta(5, [
        del('agent_deleted', 'agent_b'),
        del('policy_deleted', 'policy_p'),
        del('public_key_deleted', k.keyId),
      ]);
      assert.equal(r.revision, 5);
      assert.equal(r.agent('agent_b'), undefined);
      assert.equal(r.policy('policy_p'), undefined);
      assert.equal(r.publicKey(k.keyId), undefined);
      assert.deepEqual(r.dump().agentIds, ['agent_a']);
    });

    it('treats a policy that does not compile and a key that does not parse as absent', async () => {
      const { r } = openReplica();
      await r.applyDelta(1, [
        policy('policy_bad', 1, ['not a capability']),
        {
          kind: {
            $case: 'public_key',
            value: { key_id: 'key_bad', public_key: Buffer.alloc(5), created_at_ms: 0 },
          },
        },
      ]);
      assert.equal(r.revision, 1);
      assert.equal(r.policy('policy_bad'), undefined);
      assert.equal(r.policy('policy_bad'), undefined);
      assert.equal(r.publicKey('key_bad'), undefined);
      await r.applyDelta(2, [policy('policy_bad', 2, ['read:doc'])]);
      assert.equal(r.policy('policy_bad')?.version, 2);
    });

    it('ignores deltas at or below the current revision', async () => {
      const { r } = openReplica();
      await r.applyDelta(4, [agent('agent_a')]);
      await r.applyDelta(4, [agent('agent_b')]);
      await r.applyDelta(2, [del('agent_deleted', 'agent_a')]);
      assert.equal(r.revision, 4);
      assert.deepEqual(r.dump().agentIds, ['agent_a']);
    });

    it('applies nothing when a change throws mid-delta', async () => {
      const { r } = openReplica();
      await snapshot(r, 10, 's', [agent('agent_a'), policy('policy_p', 1, ['read:doc'])]);
      const before = r.dump();
      assert.equal(r.agent('agent_a')?.status, 'ACTIVE');
      await assert.rejects(
        r.applyDelta(11, [
          agent('agent_a', AgentStatus.DISABLED),
          agent('agent_b'),
          revocation('tok_1'),
          del('policy_deleted', 'policy_p'),
          {
            kind: {
              $case: 'revocation',
              value: { token_id: '', revoked_at_ms: 0, expires_at_ms: 0, agent_id: '' },
            },
          },
        ]),
        /revocation\.token_id/,
      );
      assert.equal(r.revision, 10);
      assert.deepEqual(r.dump(), before);
      assert.equal(r.agent('agent_a')?.status, 'ACTIVE');
      assert.equal(r.isRevoked('tok_1'), false);
      assert.equal(r.policy('policy_p')?.version, 1);
      // The write chain survives the failure.
      await r.applyDelta(11, [agent('agent_b')]);
      assert.equal(r.revision, 11);
      assert.deepEqual(r.dump().agentIds, ['agent_a', 'agent_b']);
    });

    it('prunes revocations past their expiry, keeping those with an unknown expiry', async () => {
      const { r } = openReplica();
      await r.applyDelta(1, [
        revocation('tok_old', NOW - 1),
        revocation('tok_live', NOW + DAY),
        revocation('tok_unknown', 0),
      ]);
      assert.equal(await r.pruneRevocations(NOW), 1);
      assert.deepEqual(r.dump().revokedTokenIds, ['tok_live', 'tok_unknown']);
    });
  });

  describe('restart', () => {
    it('keeps revision, store id, last contact and entities across a reopen', async () => {
      const { r, dataDir } = openReplica();
      const k = generateSigningKey(NOW);
      await snapshot(r, 7, 'store-x', [agent('agent_a'), policy('policy_p', 4, ['read:doc']), publicKey(k)]);
      await r.applyDelta(8, [revocation('tok_r')]);
      r.touch(NOW);
      r.touch(NOW + 300); // within a second: kept in memory, persisted on close
      assert.equal(r.lastContactMs, NOW + 300);
      await r.close();

      const { r: again } = openReplica(dataDir);
      assert.equal(again.revision, 8);
      assert.equal(again.storeId, 'store-x');
      assert.equal(again.lastContactMs, NOW + 300);
      assert.ok(again.agent('agent_a'));
      assert.equal(again.policy('policy_p')?.version, 4);
      assert.ok(again.publicKey(k.keyId));
      assert.ok(again.isRevoked('tok_r'));
      // The next delta continues from the persisted revision.
      await again.applyDelta(8, [agent('agent_stale')]);
      assert.equal(again.agent('agent_stale'), undefined);
    });

    it('rejects writes after close', async () => {
      const { r } = openReplica();
      await r.close();
      await assert.rejects(r.applyDelta(1, []), /closed/);
      assert.throws(() => r.beginSnapshot(1, 's'), /closed/);
      await r.close(); // idempotent
    });
  });

  describe('decide() against the replica', () => {
    const key = generateSigningKey(NOW - DAY);
    let r: LmdbReplica;
    const verifier = new VerificationCache(100);
    const counters = new InMemoryCounters();

    function token(tokenId: string, agentId: string, policyIds: string[], signer = key): string {
      return signToken(
        TokenClaims.fromPartial({
          version: 1,
          key_id: signer.keyId,
          token_id: tokenId,
          agent_id: agentId,
          policy_ids: policyIds,
          issued_at_ms: NOW - DAY,
          not_before_ms: NOW - DAY,
          expires_at_ms: NOW + DAY,
        }),
        signer,
      );
    }
    function check(tok: string, action = 'read:customer_profile', context: Record<string, unknown> = {}) {
      const req: DecisionRequest = { token: tok, action, resource: 'cust_1', context };
      const res = decide(req, { view: r, verifier, counters, nowMs: NOW, stale: false });
      counters.apply(res.usage);
      return res.reasonCode;
    }

    before(async () => {
      ({ r } = openReplica());
      await snapshot(
        r,
        1,
        's',
        [publicKey(key), agent('agent_a'), agent('agent_off', AgentStatus.DISABLED)],
        [
          policy('policy_support', 1, ['read:customer_profile'], {
            constraints: { max_actions_per_day: 2, rate_limit: '', allowed_hours: '', timezone: '' },
          }),
          policy('policy_billing', 1, ['create:transaction'], {
            approval_rules: [{ expression: 'context.amount > 1000', actions: [], description: 'large' }],
          }),
        ],
      );
    });

    it('gives the expected reason codes', async () => {
      assert.equal(check(token('tok_ok', 'agent_a', ['policy_support'])), 'GRANTED');
      assert.equal(
        check(token('tok_ok', 'agent_a', ['policy_support']), 'delete:customer_profile'),
        'CAPABILITY_NOT_GRANTED',
      );
      assert.equal(check(token('tok_off', 'agent_off', ['policy_support'])), 'AGENT_DISABLED');
      assert.equal(check(token('tok_who', 'agent_zzz', ['policy_support'])), 'AGENT_UNKNOWN');
      assert.equal(check(token('tok_nopol', 'agent_a', ['policy_missing'])), 'POLICY_UNKNOWN');
      assert.equal(
        check(token('tok_bill', 'agent_a', ['policy_billing']), 'create:transaction', { amount: 5000 }),
        'APPROVAL_REQUIRED_BY_POLICY',
      );
      const stranger = generateSigningKey(NOW);
      assert.equal(check(token('tok_stranger', 'agent_a', ['policy_support'], stranger)), 'UNKNOWN_KEY');

      const revoked = token('tok_rev', 'agent_a', ['policy_support']);
      assert.equal(check(revoked), 'GRANTED');
      await r.applyDelta(2, [revocation('tok_rev')]);
      assert.equal(check(revoked), 'TOKEN_REVOKED');

      // Two allowed today: the daily maximum is reached.
      assert.equal(check(token('tok_ok', 'agent_a', ['policy_support'])), 'DAILY_LIMIT_EXCEEDED');

      // A delta takes effect on the next check.
      await r.applyDelta(3, [agent('agent_off', AgentStatus.ACTIVE), del('public_key_deleted', key.keyId)]);
      assert.equal(check(token('tok_off', 'agent_off', ['policy_support'])), 'UNKNOWN_KEY');
      await r.applyDelta(4, [publicKey(key), policy('policy_support', 2, ['read:customer_profile'])]);
      assert.equal(check(token('tok_off', 'agent_off', ['policy_support'])), 'GRANTED');
    });
  });
});
