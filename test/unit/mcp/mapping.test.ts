/**
 * MCP ⇄ ACT mapping: actions always fit the grammar; the resource and context come from the
 * arguments the rule names; redaction happens in the context (so in the audit record), never in
 * what the upstream gets; the arguments hash binds an approval to the exact arguments; argument
 * names such as __proto__ stay data.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseMcpConfig, type ToolRule } from '../../../src/mcp/config';
import {
  argumentsHash,
  defaultToolAction,
  REDACTED,
  sanitizeName,
  toolCheck,
} from '../../../src/mcp/mapping';
import { getAt, parsePointer, replaceAt, setAt } from '../../../src/mcp/pointer';
import { parseAction } from '../../../src/policy';

function rule(r: Record<string, unknown>): ToolRule {
  const c = parseMcpConfig({ servers: { s: { url: 'http://a/', tools: { t: r } } } }, {}, { wrapper: false });
  return c.servers[0]!.tools.get('t')!;
}

describe('MCP mapping', () => {
  it('default actions always parse, whatever the server and tool names (property)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,31}$/),
        fc.string({ minLength: 1, maxLength: 128 }),
        (server, tool) => {
          const a = defaultToolAction(server, tool);
          assert.ok(parseAction(a), `${JSON.stringify(tool)} → ${a}`);
          assert.equal(a, defaultToolAction(server, tool), 'deterministic');
        },
      ),
      { numRuns: 500 },
    );
  });

  it('sanitises: lower case, [a-z0-9_.-], long names cut with a hash so they stay distinct', () => {
    assert.equal(defaultToolAction('billing', 'create_transaction'), 'call:billing.create_transaction');
    assert.equal(defaultToolAction('everything', 'get-sum'), 'call:everything.get-sum');
    assert.equal(sanitizeName('getTiny Image!'), 'gettiny_image_');
    const long1 = sanitizeName('x'.repeat(80) + 'a');
    const long2 = sanitizeName('x'.repeat(80) + 'b');
    assert.equal(long1.length, 64);
    assert.notEqual(long1, long2);
  });

  it('resource from a JSON pointer; numbers as text; missing or non-scalar → ""', () => {
    const r = rule({ action: 'create:transaction', resource: '/account/id' });
    assert.equal(toolCheck('s', 't', r, { account: { id: 'acct_1' } }).resource, 'acct_1');
    assert.equal(toolCheck('s', 't', r, { account: { id: 42 } }).resource, '42');
    assert.equal(toolCheck('s', 't', r, { account: {} }).resource, '');
    assert.equal(
      toolCheck('s', 't', r, { account: { id: ['a', 'b'] } }).resource,
      '',
      'a list is no resource',
    );
    assert.equal(toolCheck('s', 't', r, {}).action, 'create:transaction');
  });

  it('context: all arguments by default, the listed ones otherwise, redacted ones replaced; the upstream arguments untouched', () => {
    const args = { amount: 5000, card: { number: '4111', cvc: '123' }, memo: 'hi' };
    const all = toolCheck('billing', 'pay', rule({ redact: ['/card/number', '/card/cvc'] }), args);
    assert.deepEqual(all.context.arguments, {
      amount: 5000,
      card: { number: REDACTED, cvc: REDACTED },
      memo: 'hi',
    });
    assert.deepEqual(all.context.mcp, { server: 'billing', tool: 'pay' });
    assert.equal(args.card.number, '4111', 'the arguments themselves are never changed');
    const some = toolCheck(
      'billing',
      'pay',
      rule({ context: ['/amount', '/card/number'], redact: ['/card/number'] }),
      args,
    );
    assert.deepEqual(some.context.arguments, { amount: 5000, card: { number: REDACTED } });
    const none = toolCheck('billing', 'pay', rule({ context: 'none' }), args);
    assert.deepEqual(none.context.arguments, {});
    assert.equal(
      none.context.arguments_sha256,
      all.context.arguments_sha256,
      'the hash covers all arguments either way',
    );
  });

  it('long strings are shortened in the context but bound by the hash', () => {
    const big = 'x'.repeat(5000);
    const c = toolCheck('s', 't', rule({}), { content: big });
    assert.equal((c.context.arguments as { content: string }).content, '[5000 characters omitted]');
    const d = toolCheck('s', 't', rule({}), { content: big + 'y' });
    assert.notEqual(c.context.arguments_sha256, d.context.arguments_sha256);
  });

  it('the arguments hash ignores key order and tells every other difference apart', () => {
    assert.equal(argumentsHash({ a: 1, b: [1, 2] }), argumentsHash({ b: [1, 2], a: 1 }));
    assert.notEqual(argumentsHash({ a: 1 }), argumentsHash({ a: 2 }));
    assert.notEqual(argumentsHash({ a: 1 }), argumentsHash({ a: '1' }));
    assert.notEqual(argumentsHash({ a: [1, 2] }), argumentsHash({ a: [2, 1] }));
    assert.match(argumentsHash({}), /^[0-9a-f]{64}$/);
  });

  it('__proto__ and constructor as argument names stay data', () => {
    const args = JSON.parse(
      '{"__proto__": {"polluted": true}, "constructor": {"prototype": {"x": 1}}, "ok": 1}',
    ) as Record<string, unknown>;
    const c = toolCheck('s', 't', rule({ redact: ['/__proto__/polluted'] }), args);
    const ctx = c.context.arguments as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(ctx), Object.prototype);
    assert.deepEqual(Object.keys(ctx).sort(), ['__proto__', 'constructor', 'ok']);
    assert.deepEqual(Object.getOwnPropertyDescriptor(ctx, '__proto__')!.value, { polluted: REDACTED });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const picked = toolCheck('s', 't', rule({ context: ['/__proto__/polluted'] }), args).context
      .arguments as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(picked), Object.prototype);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
});

describe('JSON pointers (RFC 6901)', () => {
  const doc = { foo: ['bar', 'baz'], '': 0, 'a/b': 1, 'm~n': 8, ' ': 7 };
  it('resolves the RFC examples', () => {
    assert.deepEqual(getAt(doc, parsePointer('/foo')), ['bar', 'baz']);
    assert.equal(getAt(doc, parsePointer('/foo/0')), 'bar');
    assert.equal(getAt(doc, parsePointer('/')), 0);
    assert.equal(getAt(doc, parsePointer('/a~1b')), 1);
    assert.equal(getAt(doc, parsePointer('/m~0n')), 8);
    assert.equal(getAt(doc, parsePointer('/ ')), 7);
    assert.equal(getAt(doc, parsePointer('/foo/01')), undefined, 'no leading zeros');
    assert.equal(getAt(doc, parsePointer('/foo/-')), undefined);
    assert.equal(getAt(doc, parsePointer('/toString')), undefined, 'own properties only');
  });
  it('refuses malformed pointers', () => {
    assert.throws(() => parsePointer('foo'), /starts with \//);
    assert.throws(() => parsePointer('/a~'), /~/);
    assert.throws(() => parsePointer('/a~2'), /~/);
  });
  it('sets and replaces without touching prototypes', () => {
    const o: Record<string, unknown> = {};
    setAt(o, ['a', 'b'], 1);
    assert.deepEqual(o, { a: { b: 1 } });
    assert.equal(replaceAt(o, ['a', 'b'], 2), true);
    assert.equal(replaceAt(o, ['a', 'c'], 2), false, 'only what exists');
    const arr = { xs: [1, 2] };
    assert.equal(replaceAt(arr, ['xs', '1'], 9), true);
    assert.deepEqual(arr, { xs: [1, 9] });
    assert.equal(replaceAt(arr, ['xs', '5'], 9), false);
  });
});
