import assert from 'node:assert/strict';
import { ActError } from '../../../src/common/errors';
import { compileRule, type RuleInput } from '../../../src/policy';

function input(context: Record<string, unknown>, over: Partial<RuleInput> = {}): RuleInput {
  return {
    action: 'create:transaction',
    resource: 'acct_eu_42',
    context,
    agent: { id: 'agent_12345', metadata: { team: 'customer-success', environment: 'production' } },
    ...over,
  };
}

function rule(expression: string, actions: string[] = []) {
  return compileRule({ expression, actions, description: 'd' }, 'approval_rules[0]');
}

function compileFails(expression: string, field: string, re: RegExp, actions: string[] = []): void {
  assert.throws(
    () => compileRule({ expression, actions, description: '' }, 'conditions[3]'),
    (e: unknown) =>
      e instanceof ActError && e.code === 'INVALID_ARGUMENT' && e.field === field && re.test(e.message),
    expression,
  );
}

describe('policy/cel', () => {
  it("the seed's approval examples", () => {
    const big = rule('context.amount > 1000');
    assert.equal(big.evaluate(input({ amount: 1500 })), true);
    assert.equal(big.evaluate(input({ amount: 1000 })), false);
    assert.equal(big.evaluate(input({ amount: 1000.01 })), true);
    const prod = rule('context.environment == "production"');
    assert.equal(prod.evaluate(input({ environment: 'production' })), true);
    assert.equal(prod.evaluate(input({ environment: 'staging' })), false);
  });

  it('JSON numbers (doubles) compare with integer and double literals', () => {
    const le = rule('context.amount <= 1000');
    for (const [amount, want] of [
      [999, true],
      [1000, true],
      [1000.5, false],
      [-3, true],
      [1e12, false],
    ] as const) {
      assert.equal(le.evaluate(input({ amount })), want, String(amount));
    }
    assert.equal(rule('context.amount == 1000').evaluate(input({ amount: 1000 })), true);
    assert.equal(rule('context.amount > 999.5').evaluate(input({ amount: 1000 })), true);
    assert.equal(rule('context.count in [1, 2, 3]').evaluate(input({ count: 2 })), true);
    assert.equal(rule('int(context.amount) % 2 == 0').evaluate(input({ amount: 42 })), true);
    assert.equal(rule('context.amount * 2.0 > 1000.0').evaluate(input({ amount: 600 })), true);
  });

  it('strings, lists, resource, action and agent', () => {
    const cases: [string, boolean][] = [
      ['resource.startsWith("acct_eu_")', true],
      ['resource.endsWith("_42") && resource.contains("eu")', true],
      ['resource.matches("^acct_(eu|us)_[0-9]+$")', true],
      ['action == "create:transaction"', true],
      ['context.environment in ["staging", "dev"]', false],
      ['"vip" in context.tags', true],
      ['context.tags.exists(t, t.startsWith("v"))', true],
      ['size(context.tags) == 2', true],
      ['agent.id == "agent_12345" && agent.metadata.team == "customer-success"', true],
      ['has(context.ticket) || context.reason.lowerAscii().contains("order")', true],
      ['context.ip.startsWith("10.")', true],
    ];
    const ctx = {
      environment: 'production',
      tags: ['vip', 'eu'],
      reason: 'User inquiry about Order status',
      ip: '10.0.1.50',
    };
    for (const [e, want] of cases) assert.equal(rule(e).evaluate(input(ctx)), want, e);
  });

  it('compile errors carry the field and say what is wrong', () => {
    compileFails('context.amount >', 'conditions[3].expression', /invalid CEL/);
    compileFails('amount > 1000', 'conditions[3].expression', /Unknown variable: amount/);
    compileFails('resource + 1 > 2', 'conditions[3].expression', /invalid CEL/);
    compileFails('resource.size()', 'conditions[3].expression', /must return bool, it returns int/);
    compileFails('"x"', 'conditions[3].expression', /must return bool/);
    compileFails('', 'conditions[3].expression', /empty/);
    compileFails('true || '.repeat(600) + 'true', 'conditions[3].expression', /at most 4096/);
    compileFails('true', 'conditions[3].actions[1]', /verb:resource_type/, ['read:x', 'bad']);
  });

  it('evaluation errors and non-boolean results are returned as Errors', () => {
    const missing = rule('context.amount > 1000');
    assert.ok(missing.evaluate(input({})) instanceof Error);
    assert.ok(missing.evaluate(input({ amount: '1500' })) instanceof Error);
    assert.ok(missing.evaluate(input({ amount: null })) instanceof Error);
    const dyn = rule('context.flag');
    assert.equal(dyn.evaluate(input({ flag: true })), true);
    assert.ok(dyn.evaluate(input({ flag: 'yes' })) instanceof Error);
    assert.ok(rule('context.amount + 1 > 2').evaluate(input({ amount: 5 })) instanceof Error); // double + int: no overload
    assert.ok(rule('context.a / 0 == 1').evaluate(input({ a: 1 })) instanceof Error);
  });

  it('keeps description and parsed actions; empty actions = all', () => {
    const r = compileRule(
      { expression: 'true', actions: ['create:transaction', 'refund:*'], description: 'Big payments' },
      'approval_rules[1]',
    );
    assert.equal(r.description, 'Big payments');
    assert.deepEqual(
      r.actions.map((a) => a.raw),
      ['create:transaction', 'refund:*'],
    );
    assert.deepEqual(rule('true').actions, []);
  });
});
