/**
 * Property: attenuation never widens rights. For random policies, a random
 * attenuation of a token and random checks, whatever the child token is allowed
 * the parent token is allowed too (same world, same time, fresh counters).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decide, InMemoryCounters } from '../../../src/decision';
import { VerificationCache } from '../../../src/token';
import { buildWorld, type CaseFile } from '../../support/decision-fixture';

const verbs = ['read', 'write', 'delete', '*', 're*'];
const types = ['customer_profile', 'order', 'ticket', '*', 'cust*'];
const patterns = [undefined, 'c_*', 'c_1', '*', 'eu_*'];

const capability = fc
  .tuple(fc.constantFrom(...verbs), fc.constantFrom(...types), fc.constantFrom(...patterns))
  .map(([v, t, p]) => (p === undefined ? `${v}:${t}` : `${v}:${t}:${p}`));
const action = fc.tuple(
  fc.constantFrom('read', 'write', 'delete', 'reply'),
  fc.constantFrom('customer_profile', 'order', 'ticket', 'customer'),
);
const resource = fc.constantFrom('', 'c_1', 'c_2', 'eu_7', 'x');

describe('decide(): attenuation never widens rights (property)', () => {
  it('child ALLOW implies parent ALLOW for random policies, attenuations and checks', () => {
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
              assert.equal(
                parent.decision,
                'ALLOW',
                `child allowed ${verb}:${type} on "${res}" but parent ${parent.reasonCode}`,
              );
            }
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
