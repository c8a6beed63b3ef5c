/**
 * Property: attenuation never widens rights. For random policies, a random
 * attenuation of a token and random checks, whatever the child token is allowed
 * the parent token is allowed too (same world, same time, fresh counters).
 * Patterns include path globs (`*` within a segment, `**` across) and resources
 * include paths, empty segments and dot segments.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decide, InMemoryCounters } from '../../../src/decision';
import { coversAll, parseCapability } from '../../../src/policy';
import { VerificationCache } from '../../../src/token';
import { buildWorld, type CaseFile } from '../../support/decision-fixture';

const verbs = ['read', 'write', 'delete', '*', 're*'];
const types = ['customer_profile', 'order', 'ticket', '*', 'cust*'];
const patterns = [
  undefined,
  'c_*',
  'c_1',
  '*',
  'eu_*',
  '**',
  'd/*',
  'd/**',
  'd/**/x',
  '**/x',
  '*/x',
  'd/*/x',
  'd/**x',
  'd/x*/**',
];

const capability = fc
  .tuple(fc.constantFrom(...verbs), fc.constantFrom(...types), fc.constantFrom(...patterns))
  .map(([v, t, p]) => (p === undefined ? `${v}:${t}` : `${v}:${t}:${p}`));
const action = fc.tuple(
  fc.constantFrom('read', 'write', 'delete', 'reply'),
  fc.constantFrom('customer_profile', 'order', 'ticket', 'customer'),
);
const resource = fc.constantFrom(
  '',
  'c_1',
  'c_2',
  'eu_7',
  'x',
  'd/a',
  'd/x',
  'd/a/x',
  'd/a/b/x',
  'd//x',
  'd/x1/y',
  'a/x',
  'd/../x',
  'd/./x',
  '..',
);

describe('decide(): attenuation never widens rights (property)', () => {
  it('child ALLOW implies parent ALLOW for random policies, attenuations and checks', () => {
    let childAllowed = 0;
    fc.assert(
      fc.property(
        fc.array(capability, { minLength: 1, maxLength: 4 }),
        fc.array(capability, { minLength: 1, maxLength: 4 }),
        fc.array(capability, { minLength: 0, maxLength: 4 }),
        fc.array(fc.tuple(action, resource), { minLength: 1, maxLength: 8 }),
        (capsA, capsB, attenuation, checks) => {
          const file: CaseFile = {
            note: 'property',
            now: '2026-03-02T10:00:00Z',
            agents: [{ id: 'agent_prop' }],
            policies: [
              { policy_id: 'policy_a', name: 'A', capabilities: [...new Set(capsA)] },
              { policy_id: 'policy_b', name: 'B', capabilities: [...new Set(capsB)] },
            ],
            tokens: {
              parent: { agent_id: 'agent_prop', policy_ids: ['policy_a', 'policy_b'] },
              child: { parent: 'parent', attenuation },
            },
            cases: [],
          };
          const world = buildWorld(file);
          const verifier = new VerificationCache(10);
          const nowMs = Date.parse(file.now);
          for (const [[verb, type], res] of checks) {
            const req = (token: string) => ({ token, action: `${verb}:${type}`, resource: res, context: {} });
            const deps = { view: world.view, verifier, counters: new InMemoryCounters(), nowMs };
            const child = decide(req(world.tokens.get('child')!), deps);
            const parent = decide(req(world.tokens.get('parent')!), deps);
            if (child.decision === 'ALLOW') {
              childAllowed++;
              assert.equal(
                parent.decision,
                'ALLOW',
                `child allowed ${verb}:${type} on "${res}" but parent ${parent.reasonCode}`,
              );
            }
          }
        },
      ),
      { numRuns: 300 },
    );
    assert.ok(childAllowed > 10, `only ${childAllowed} child ALLOWs: the property would prove little`);
  });
  it('a capability that coversAll accepts under a policy never grants more than that policy', () => {
    // The control plane accepts an attenuation entry only when one of the parent's
    // capabilities covers it (capabilityCovers). Give the accepted entries a policy of
    // their own: a token on it must never be allowed what a token on the parent's is not.
    let childAllowed = 0;
    fc.assert(
      fc.property(
        fc.array(capability, { minLength: 1, maxLength: 4 }),
        fc.array(capability, { minLength: 1, maxLength: 8 }),
        fc.array(fc.tuple(action, resource), { minLength: 1, maxLength: 8 }),
        (parentCaps, candidates, checks) => {
          const rights = parentCaps.map((c) => parseCapability(c));
          // Besides random candidates, variants of the parent's own: narrowed ones (often
          // covered) and widened ones (`*` → `**`, a segment dropped: never covered).
          const variants = parentCaps.flatMap((c) => [
            c.replace(/\*\*/g, '*'),
            c.replace(/:d\//, ':d/x'),
            c.replace(/\*+/g, '**'),
            c.replace(/\/\*\*\//, '/'),
            c.replace(/\/x$/, '/**'),
          ]);
          const accepted = [...new Set([...candidates, ...variants])].filter((c) => coversAll(rights, c));
          fc.pre(accepted.length > 0);
          const file: CaseFile = {
            note: 'property',
            now: '2026-03-02T10:00:00Z',
            agents: [{ id: 'agent_prop' }],
            policies: [
              { policy_id: 'policy_parent', name: 'Parent', capabilities: [...new Set(parentCaps)] },
              { policy_id: 'policy_child', name: 'Child', capabilities: accepted },
            ],
            tokens: {
              parent: { agent_id: 'agent_prop', policy_ids: ['policy_parent'] },
              child: { agent_id: 'agent_prop', policy_ids: ['policy_child'] },
            },
            cases: [],
          };
          const world = buildWorld(file);
          const verifier = new VerificationCache(10);
          const nowMs = Date.parse(file.now);
          for (const [[verb, type], res] of checks) {
            const req = (token: string) => ({ token, action: `${verb}:${type}`, resource: res, context: {} });
            const deps = { view: world.view, verifier, counters: new InMemoryCounters(), nowMs };
            const child = decide(req(world.tokens.get('child')!), deps);
            const parent = decide(req(world.tokens.get('parent')!), deps);
            if (child.decision === 'ALLOW') {
              childAllowed++;
              assert.equal(
                parent.decision,
                'ALLOW',
                `${accepted.join(', ')} accepted under ${parentCaps.join(', ')}, ` +
                  `but ${verb}:${type} on "${res}": child ALLOW, parent ${parent.reasonCode}`,
              );
            }
          }
        },
      ),
      { numRuns: 300 },
    );
    assert.ok(childAllowed > 50, `only ${childAllowed} child ALLOWs: the property would prove little`);
  });
});
