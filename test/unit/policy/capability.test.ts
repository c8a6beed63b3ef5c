import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ActError } from '../../../src/common/errors';
import {
  capabilityCovers,
  capabilityMatches,
  coversAll,
  parseAction,
  parseCapability,
  type Action,
} from '../../../src/policy';

import { refGlob } from './glob-reference';

/** The reference semantics: verb and type without path rules, the pattern with them. */
function naiveMatches(cap: string, action: Action, resource: string): boolean {
  const [verb, type, ...rest] = cap.split(':');
  const pattern = rest.length ? rest.join(':') : undefined;
  if (!refGlob(verb!, action.verb, false) || !refGlob(type!, action.type, false)) return false;
  return pattern === undefined || (resource !== '' && refGlob(pattern, resource, true));
}

function act(s: string): Action {
  const a = parseAction(s);
  assert.ok(a, s);
  return a;
}

describe('policy/capability', () => {
  it('accepts the grammar', () => {
    for (const s of [
      'read:customer_profile',
      'read:*',
      '*:*',
      'create:support_ticket',
      'read:customer_*:cust_eu_*',
      'read:file:/srv/Data/*.csv',
      'use:zendesk.api-v2',
      'r*d:t*e:*',
      'read:x:ABC-123',
    ]) {
      const c = parseCapability(s);
      assert.equal(c.raw, s);
    }
    const c = parseCapability('read:customer_*:cust_eu_*');
    assert.deepEqual([c.verb, c.type, c.pattern], ['read', 'customer_*', 'cust_eu_*']);
    assert.equal(parseCapability('read:x').pattern, undefined);
  });

  it('rejects bad capabilities with the field and the grammar', () => {
    for (const s of [
      '',
      'read',
      ':x',
      'read:',
      'read:x:',
      'Read:x',
      'read:X',
      'read:x y',
      'read:x:a b',
      'read:x:a:b',
      'a'.repeat(65) + ':x',
      'read:x:' + 'a'.repeat(257),
      'read:x/y',
      'rëad:x',
    ]) {
      assert.throws(
        () => parseCapability(s, 'capabilities[2]'),
        (e: unknown) =>
          e instanceof ActError &&
          e.code === 'INVALID_ARGUMENT' &&
          e.field === 'capabilities[2]' &&
          /verb:resource_type/.test(e.message),
        s,
      );
    }
  });

  it('parses actions strictly', () => {
    assert.deepEqual(parseAction('read:customer_profile'), { verb: 'read', type: 'customer_profile' });
    for (const s of [
      'read',
      'read:*',
      '*:x',
      'read:x:y',
      'Read:x',
      '',
      ':',
      'read:',
      'a:' + 'b'.repeat(300),
    ]) {
      assert.equal(parseAction(s), undefined, s);
    }
  });

  it('matches a table of capabilities, actions and resources', () => {
    const table: [string, string, string, boolean][] = [
      ['read:customer_profile', 'read:customer_profile', 'customer_54321', true],
      ['read:customer_profile', 'read:customer_profile', '', true],
      ['read:customer_profile', 'read:order_history', 'x', false],
      ['read:customer_profile', 'update:customer_profile', 'x', false],
      ['read:*', 'read:anything', 'x', true],
      ['*:*', 'delete:customer_account', '', true],
      ['read:customer_*', 'read:customer_profile', '', true],
      ['read:customer_*', 'read:customer_', '', true],
      ['read:customer_*', 'read:customers', '', false],
      ['*_read:x', 'bulk_read:x', '', true],
      ['r*d:x', 'read:x', '', true],
      ['r*d:x', 'rd:x', '', true],
      ['r*d:x', 'reads:x', '', false],
      ['read:customer_profile:customer_*', 'read:customer_profile', 'customer_54321', true],
      ['read:customer_profile:customer_*', 'read:customer_profile', 'order_1', false],
      ['read:customer_profile:customer_*', 'read:customer_profile', '', false],
      ['read:customer_profile:*', 'read:customer_profile', '', false],
      ['read:customer_profile:*', 'read:customer_profile', 'a', true],
      ['read:file:/srv/*.csv', 'read:file', '/srv/a.csv', true],
      ['read:file:/srv/*.csv', 'read:file', '/srv/a/b.csv', false],
      ['read:file:/srv/**.csv', 'read:file', '/srv/a/b.csv', true],
      ['read:file:/srv/**/*.csv', 'read:file', '/srv/b.csv', true],
      ['read:file:/srv/*.csv', 'read:file', '/srv/a.csvx', false],
      ['read:file:public/*', 'read:file', 'public/../secret/key', false],
      // Matching is textual: a `**` spans '..' too. decide() denies dot segments first.
      ['read:file:public/**', 'read:file', 'public/../secret/key', true],
      ['read:*', 'read:a', 'x/y', true],
      ['read:x:*', 'read:x', 'a/b', false],
      ['read:x:**', 'read:x', 'a/b', true],
      ['read:file:a.b', 'read:file', 'axb', false],
      ['read:x:*eu*', 'read:x', 'cust_eu_1', true],
      ['read:x:*eu*', 'read:x', 'cust_us_1', false],
      ['read:x:a*b*c', 'read:x', 'abc', true],
      ['read:x:a*b*c', 'read:x', 'a\nb\nc', true],
    ];
    for (const [cap, a, resource, want] of table) {
      assert.equal(
        capabilityMatches(parseCapability(cap), act(a), resource),
        want,
        `${cap} ${a} ${resource}`,
      );
    }
  });

  it('matches plain Capability objects too', () => {
    const cap = { raw: 'read:c*', verb: 'read', type: 'c*', pattern: undefined };
    assert.equal(capabilityMatches(cap, act('read:cust'), ''), true);
    assert.equal(capabilityMatches(cap, act('read:order'), ''), false);
  });

  it('the hand-found attack: four stars against hundreds of underscores', () => {
    const cap = parseCapability('read:blob:*_*_*_*.pdf');
    const a = act('read:blob');
    for (const n of [560, 600, 1024, 10_000]) {
      assert.equal(capabilityMatches(cap, a, '_'.repeat(n)), false, `${n} underscores`);
      assert.equal(capabilityMatches(cap, a, '_'.repeat(n - 4) + '.pdf'), true, `${n - 4} + .pdf`);
      assert.equal(capabilityMatches(cap, a, '_'.repeat(n - 5) + '/.pdf'), false, `${n - 5} + /.pdf`);
    }
  });

  const part = fc.stringMatching(/^[ab*]{1,6}$/);
  const word = fc.stringMatching(/^[ab]{1,7}$/);
  const pathPart = fc.stringMatching(/^[ab/*]{1,7}$/);
  const resource = fc.stringMatching(/^[ab/]{0,8}$/);

  it('property: agrees with a naive glob matcher', () => {
    fc.assert(
      fc.property(
        part,
        part,
        fc.option(pathPart, { nil: undefined }),
        word,
        word,
        resource,
        (v, t, p, av, at, r) => {
          const raw = p === undefined ? `${v}:${t}` : `${v}:${t}:${p}`;
          const a = { verb: av, type: at };
          assert.equal(
            capabilityMatches(parseCapability(raw), a, r),
            naiveMatches(raw, a, r),
            `${raw} ${av}:${at} ${r}`,
          );
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('covers: a table', () => {
    const yes = [
      ['*:*', 'read:x:y'],
      ['read:*', 'read:customer_*'],
      ['read:customer_*', 'read:customer_profile:a*'],
      ['read:x', 'read:x:a'],
      ['read:x:a*', 'read:x:ab*'],
      ['read:x:*a*', 'read:x:b*a*c'],
      ['read:x:*', 'read:x:abc'],
      ['read:file:docs/**', 'read:file:docs/*/x'],
      ['read:file:docs/**/*.pdf', 'read:file:docs/2024/**/*.pdf'],
      ['read:*', 'read:**'],
    ];
    const no = [
      ['read:x', 'write:x'],
      ['read:customer_*', 'read:*'],
      ['read:x:a*', 'read:x'],
      ['read:x:*', 'read:x'],
      ['read:x:ab*', 'read:x:a*'],
      ['read:x:a', 'read:x:*'],
      ['read:file:docs/*', 'read:file:docs/**'],
      ['read:file:docs/*', 'read:file:docs/*/x'],
      ['read:file:docs/**/*.pdf', 'read:file:docs/**'],
    ];
    for (const [o, i] of yes)
      assert.equal(capabilityCovers(parseCapability(o!), parseCapability(i!)), true, `${o} ⊇ ${i}`);
    for (const [o, i] of no)
      assert.equal(capabilityCovers(parseCapability(o!), parseCapability(i!)), false, `${o} ⊉ ${i}`);
  });

  it('property: covers(a, b) implies every match of b is a match of a', () => {
    fc.assert(
      fc.property(
        fc.tuple(part, part, fc.option(pathPart, { nil: undefined })),
        fc.tuple(part, part, fc.option(pathPart, { nil: undefined })),
        fc.array(fc.tuple(word, word, resource), { minLength: 20, maxLength: 40 }),
        (ao, bo, samples) => {
          const a = parseCapability(ao[2] === undefined ? `${ao[0]}:${ao[1]}` : ao.join(':'));
          // Besides the random b, check a narrowed copy of a (each * -> a*): a covered pair every run.
          const b = parseCapability(bo[2] === undefined ? `${bo[0]}:${bo[1]}` : bo.join(':'));
          for (const inner of [b, parseCapability(a.raw.replace(/\*/g, 'a*'))]) {
            if (!capabilityCovers(a, inner)) continue;
            for (const [v, t, r] of samples) {
              const x = { verb: v, type: t };
              if (capabilityMatches(inner, x, r))
                assert.ok(capabilityMatches(a, x, r), `${a.raw} ⊇ ${inner.raw} but ${v}:${t} ${r}`);
            }
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('coversAll: undefined rights are unrestricted; otherwise one right must cover', () => {
    const rights = ['read:*', 'write:ticket:t_*'].map((s) => parseCapability(s));
    assert.equal(coversAll(undefined, 'delete:x'), true);
    assert.equal(coversAll(rights, 'read:customer'), true);
    assert.equal(coversAll(rights, 'write:ticket:t_1'), true);
    assert.equal(coversAll(rights, 'write:ticket'), false);
    assert.equal(coversAll(rights, 'not a capability'), false);
    assert.equal(coversAll([], 'read:x'), false);
  });
});
