import assert from 'node:assert/strict';
import { ActError } from '../../../src/common/errors';
import type { Policy } from '../../../src/gen/act/v1/admin';
import { compilePolicy, validatePolicyInput, type PolicyInput } from '../../../src/policy';

function seedInput(): PolicyInput {
  return {
    name: 'Customer Support Policy',
    description: 'tier-1 support',
    capabilities: [
      'read:customer_profile',
      'read:order_history',
      'create:support_ticket',
      'update:ticket_status',
    ],
    constraints: {
      max_actions_per_day: 1000,
      allowed_hours: '09:00-17:00 UTC',
      rate_limit: '100 per minute',
      timezone: '',
    },
    conditions: [],
    approval_rules: [
      { expression: 'context.amount > 1000', actions: ['refund:*'], description: 'big refunds' },
    ],
  };
}

function policy(over: Partial<Policy> = {}): Policy {
  return { policy_id: 'policy_1', version: 3, created_at: '', updated_at: '', ...seedInput(), ...over };
}

function failsOn(field: string, f: () => unknown, re: RegExp = /./): void {
  assert.throws(
    f,
    (e: unknown) =>
      e instanceof ActError && e.code === 'INVALID_ARGUMENT' && e.field === field && re.test(e.message),
    field,
  );
}

describe('policy/compile', () => {
  it("compiles the seed's Customer Support Policy", () => {
    const c = compilePolicy(policy());
    assert.equal(c.id, 'policy_1');
    assert.equal(c.version, 3);
    assert.deepEqual(
      c.capabilities.map((x) => x.raw),
      seedInput().capabilities,
    );
    assert.equal(c.maxActionsPerDay, 1000);
    assert.deepEqual([c.rateLimit?.limit, c.rateLimit?.periodMs], [100, 60_000]);
    assert.equal(c.allowedHours?.timeZone, 'UTC');
    assert.equal(c.dayTimeZone, 'UTC');
    assert.equal(c.approvalRules.length, 1);
    assert.equal(c.conditions.length, 0);
  });

  it('empty constraints mean unlimited; dayTimeZone falls back timezone → allowed_hours zone → UTC', () => {
    const none = compilePolicy(policy({ constraints: undefined }));
    assert.deepEqual(
      [none.maxActionsPerDay, none.allowedHours, none.rateLimit, none.dayTimeZone],
      [undefined, undefined, undefined, 'UTC'],
    );
    const zero = compilePolicy(
      policy({ constraints: { max_actions_per_day: 0, allowed_hours: '', rate_limit: '', timezone: '' } }),
    );
    assert.equal(zero.maxActionsPerDay, undefined);
    const fromHours = compilePolicy(
      policy({
        constraints: {
          max_actions_per_day: 5,
          allowed_hours: 'Mon-Fri 09:00-17:00 Europe/Berlin',
          rate_limit: '',
          timezone: '',
        },
      }),
    );
    assert.equal(fromHours.dayTimeZone, 'Europe/Berlin');
    const explicit = compilePolicy(
      policy({
        constraints: {
          max_actions_per_day: 5,
          allowed_hours: '09:00-17:00 Europe/Berlin',
          rate_limit: '',
          timezone: 'Asia/Tokyo',
        },
      }),
    );
    assert.equal(explicit.dayTimeZone, 'Asia/Tokyo');
  });

  it('reports the field at fault', () => {
    failsOn('capabilities[1]', () => compilePolicy(policy({ capabilities: ['read:x', 'nope'] })));
    const c = (over: Partial<NonNullable<Policy['constraints']>>) => ({
      max_actions_per_day: 0,
      allowed_hours: '',
      rate_limit: '',
      timezone: '',
      ...over,
    });
    failsOn('constraints.allowed_hours', () =>
      compilePolicy(policy({ constraints: c({ allowed_hours: 'whenever' }) })),
    );
    failsOn(
      'constraints.rate_limit',
      () => compilePolicy(policy({ constraints: c({ rate_limit: 'lots' }) })),
      /100 per minute/,
    );
    failsOn('constraints.timezone', () =>
      compilePolicy(policy({ constraints: c({ timezone: 'Moon/Base' }) })),
    );
    failsOn('constraints.max_actions_per_day', () =>
      compilePolicy(policy({ constraints: c({ max_actions_per_day: 1.5 }) })),
    );
    failsOn('approval_rules[0].expression', () =>
      compilePolicy(policy({ approval_rules: [{ expression: 'x >', actions: [], description: '' }] })),
    );
    failsOn('conditions[0].actions[1]', () =>
      compilePolicy(
        policy({ conditions: [{ expression: 'true', actions: ['read:x', 'READ'], description: '' }] }),
      ),
    );
  });

  it('validatePolicyInput enforces size bounds and uniqueness', () => {
    validatePolicyInput(seedInput());
    failsOn('name', () => validatePolicyInput({ ...seedInput(), name: '' }));
    failsOn('name', () => validatePolicyInput({ ...seedInput(), name: 'n'.repeat(201) }));
    failsOn('description', () => validatePolicyInput({ ...seedInput(), description: 'd'.repeat(2001) }));
    failsOn('capabilities', () => validatePolicyInput({ ...seedInput(), capabilities: [] }), /1-256/);
    failsOn('capabilities', () =>
      validatePolicyInput({
        ...seedInput(),
        capabilities: Array.from({ length: 257 }, (_, i) => `read:t${i}`),
      }),
    );
    failsOn(
      'capabilities[2]',
      () => validatePolicyInput({ ...seedInput(), capabilities: ['read:a', 'read:b', 'read:a'] }),
      /duplicate/,
    );
    const rules = Array.from({ length: 33 }, () => ({ expression: 'true', actions: [], description: '' }));
    failsOn('conditions', () => validatePolicyInput({ ...seedInput(), conditions: rules }));
    failsOn('approval_rules', () => validatePolicyInput({ ...seedInput(), approval_rules: rules }));
    failsOn('conditions[0].expression', () =>
      validatePolicyInput({
        ...seedInput(),
        conditions: [{ expression: 'nope == 1', actions: [], description: '' }],
      }),
    );
  });
});
