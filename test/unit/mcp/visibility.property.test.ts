/**
 * Property: tools/list hides only what no call could ever be allowed. For random policies,
 * attenuations and checks, whenever decide() gets past the capability match (ALLOW, an approval,
 * a condition or a budget deny) the action is visible; whenever the action is hidden, decide()
 * denies it. And revoked, expired or disabled tokens see nothing.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decide, InMemoryCounters } from '../../../src/decision';
import { visibility } from '../../../src/mcp/visibility';
import { VerificationCache } from '../../../src/token';
import { buildWorld, type CaseFile } from '../../support/decision-fixture';

const verbs = ['call', 'read', 'write', '*', 're*'];
const types = ['billing.create_transaction', 'mcp_file', 'files.read_text_file', '*', 'billing.*', 'mcp_*'];
const patterns = [undefined, '*', '**', '/tmp/**', '/tmp/*', 'acct_*'];
const capability = fc
  .tuple(fc.constantFrom(...verbs), fc.constantFrom(...types), fc.constantFrom(...patterns))
  .map(([v, t, p]) => (p === undefined ? `${v}:${t}` : `${v}:${t}:${p}`));
const action = fc
  .tuple(
    fc.constantFrom('call', 'read', 'write', 'reply'),
    fc.constantFrom(
      'billing.create_transaction',
      'billing.refund',
      'mcp_file',
      'files.read_text_file',
      'other',
    ),
  )
  .map(([v, t]) => `${v}:${t}`);
const resource = fc.constantFrom('', 'acct_1', '/tmp/a', '/tmp/a/b', '/etc/x', '/tmp/../etc');

const NOW = '2026-03-02T10:00:00Z';

function world(capsA: string[], capsB: string[], attenuation: string[] | undefined) {
  const file: CaseFile = {
    note: 'property',
    now: NOW,
    agents: [{ id: 'agent_prop' }, { id: 'agent_off', status: 'DISABLED' }],
    policies: [
      {
        policy_id: 'policy_a',
        name: 'A',
        capabilities: [...new Set(capsA)],
        conditions: [{ expression: 'context.arguments.amount <= 100' }],
      },
      {
        policy_id: 'policy_b',
        name: 'B',
        capabilities: [...new Set(capsB)],
        approval_rules: [{ expression: 'context.arguments.amount > 10' }],
      },
    ],
    tokens: {
      parent: { agent_id: 'agent_prop', policy_ids: ['policy_a', 'policy_b'] },
      child: { parent: 'parent', ...(attenuation ? { attenuation } : {}) },
      revoked: { agent_id: 'agent_prop', policy_ids: ['policy_a', 'policy_b'], revoked: true },
      expired: {
        agent_id: 'agent_prop',
        policy_ids: ['policy_a', 'policy_b'],
        expires_at: '2026-03-01T00:00:00Z',
      },
      disabled: { agent_id: 'agent_off', policy_ids: ['policy_a', 'policy_b'] },
      tampered: { agent_id: 'agent_prop', policy_ids: ['policy_a', 'policy_b'], tamper: true },
      nopolicy: { agent_id: 'agent_prop', policy_ids: ['policy_gone'] },
    },
    cases: [],
  };
  return buildWorld(file);
}

describe('MCP tools/list visibility (property)', () => {
  it('whatever decide() gets past the capability match is visible; whatever is hidden is denied', () => {
    let visibleAllowed = 0;
    let hidden = 0;
    fc.assert(
      fc.property(
        fc.array(capability, { minLength: 1, maxLength: 4 }),
        fc.array(capability, { minLength: 1, maxLength: 4 }),
        fc.option(fc.array(capability, { minLength: 0, maxLength: 3 }), { nil: undefined }),
        fc.array(fc.tuple(action, resource, fc.integer({ min: 0, max: 200 })), {
          minLength: 1,
          maxLength: 8,
        }),
        (capsA, capsB, attenuation, checks) => {
          const w = world(capsA, capsB, attenuation);
          const verifier = new VerificationCache(10);
          const nowMs = Date.parse(NOW);
          for (const name of ['parent', 'child']) {
            const token = w.tokens.get(name)!;
            const vis = visibility(w.view, verifier, token, nowMs);
            for (const [act, res, amount] of checks) {
              const d = decide(
                { token, action: act, resource: res, context: { arguments: { amount } } },
                { view: w.view, verifier, counters: new InMemoryCounters(), nowMs, requestHash: () => '' },
              );
              const past =
                d.reasonCode !== 'CAPABILITY_NOT_GRANTED' && d.reasonCode !== 'RESOURCE_PATH_INVALID';
              if (past) {
                assert.ok(
                  vis.mayEverAllow(act),
                  `${name}: ${act} on "${res}" was ${d.reasonCode} but hidden`,
                );
                if (d.decision === 'ALLOW') visibleAllowed++;
              }
              if (!vis.mayEverAllow(act)) {
                hidden++;
                assert.notEqual(d.decision, 'ALLOW', `${name}: ${act} hidden but allowed on "${res}"`);
                assert.notEqual(d.decision, 'APPROVAL_REQUIRED');
              }
            }
          }
        },
      ),
      { numRuns: 300 },
    );
    assert.ok(
      visibleAllowed > 20 && hidden > 20,
      `too few cases: ${visibleAllowed} allowed, ${hidden} hidden`,
    );
  });

  it('is not too strict: a capability with a resource pattern still shows its action (the pattern is decided per call)', () => {
    const w = world(['call:billing.create_transaction'], ['read:mcp_file:/tmp/**'], undefined);
    const vis = visibility(w.view, new VerificationCache(10), w.tokens.get('parent')!, Date.parse(NOW));
    assert.equal(vis.mayEverAllow('call:billing.create_transaction'), true);
    assert.equal(vis.mayEverAllow('read:mcp_file'), true, 'a pattern is decided per call, not at listing');
    assert.equal(vis.mayEverAllow('write:mcp_file'), false);
    assert.equal(vis.mayEverAllow('call:billing.refund'), false);
    assert.equal(vis.mayEverAllow('not an action'), false);
  });

  it('attenuation narrows what is visible', () => {
    const w = world(
      ['call:billing.*', 'read:*'],
      ['write:mcp_file'],
      ['call:billing.create_transaction:acct_*'],
    );
    const vis = visibility(w.view, new VerificationCache(10), w.tokens.get('child')!, Date.parse(NOW));
    assert.equal(vis.mayEverAllow('call:billing.create_transaction'), true);
    assert.equal(vis.mayEverAllow('call:billing.refund'), false);
    assert.equal(vis.mayEverAllow('write:mcp_file'), false);
  });

  it('revoked, expired, tampered, disabled-agent and policy-less tokens see nothing; an empty replica shows nothing', () => {
    const w = world(['*:*'], ['*:*'], undefined);
    const verifier = new VerificationCache(10);
    const nowMs = Date.parse(NOW);
    assert.equal(visibility(w.view, verifier, w.tokens.get('parent')!, nowMs).mayEverAllow('call:x'), true);
    for (const t of ['revoked', 'expired', 'tampered', 'disabled', 'nopolicy'])
      assert.equal(visibility(w.view, verifier, w.tokens.get(t)!, nowMs).mayEverAllow('call:x'), false, t);
    assert.equal(visibility(w.view, verifier, 'act_garbage', nowMs).mayEverAllow('call:x'), false);
    const empty = { ...w.view, revision: 0 };
    assert.equal(visibility(empty, verifier, w.tokens.get('parent')!, nowMs).mayEverAllow('call:x'), false);
  });
});
