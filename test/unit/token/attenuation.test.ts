import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  attenuateClaims,
  effectiveAttenuation,
  generateSigningKey,
  MAX_DELEGATION_DEPTH,
  signToken,
  verifyToken,
  type CoversFn,
  type TokenClaims,
} from '../../../src/token';
import { NOW, baseClaims, lookupFor } from './helpers';

/** Exact-string subset: an unattenuated parent covers anything. */
const exact: CoversFn = (rights, cap) => rights === undefined || rights.includes(cap);

describe('token attenuation', () => {
  const key = generateSigningKey(NOW);
  const root = baseClaims(key, { token_id: 'tok_root' });
  const opts = (over: Partial<Parameters<typeof attenuateClaims>[1]> = {}) => ({
    tokenId: 'tok_child',
    keyId: key.keyId,
    nowMs: NOW + 1000,
    capabilities: ['files.read'],
    covers: exact,
    ...over,
  });

  it('a child narrows its parent and records lineage', () => {
    const child = attenuateClaims(root, opts({ capabilities: ['files.read', 'files.list'] }));
    assert.equal(child.attenuated, true);
    assert.deepEqual(effectiveAttenuation(child), ['files.read', 'files.list']);
    assert.equal(effectiveAttenuation(root), undefined);
    assert.equal(child.parent_token_id, 'tok_root');
    assert.deepEqual(child.ancestor_token_ids, ['tok_root']);
    assert.deepEqual(child.policy_ids, root.policy_ids);
    assert.equal(child.expires_at_ms, root.expires_at_ms);
    assert.equal(child.issued_at_ms, NOW + 1000);
    assert.ok(verifyToken(signToken(child, key), lookupFor(key)).ok);

    const grandchild = attenuateClaims(child, opts({ tokenId: 'tok_gc', capabilities: ['files.list'] }));
    assert.deepEqual(grandchild.ancestor_token_ids, ['tok_root', 'tok_child']);
    assert.throws(() => attenuateClaims(grandchild, opts({ capabilities: ['files.list', 'files.read'] })), {
      code: 'INVALID_ARGUMENT',
      field: 'capabilities[1]',
    });
  });

  it('an empty capability list is allowed and grants nothing', () => {
    const child = attenuateClaims(root, opts({ capabilities: [] }));
    assert.deepEqual(effectiveAttenuation(child), []);
  });

  it('expiry can shorten but never extend', () => {
    const shorter = attenuateClaims(root, opts({ expiresAtMs: root.expires_at_ms - 10 }));
    assert.equal(shorter.expires_at_ms, root.expires_at_ms - 10);
    assert.throws(() => attenuateClaims(root, opts({ expiresAtMs: root.expires_at_ms + 1 })), {
      code: 'INVALID_ARGUMENT',
      field: 'expires_at',
    });
    assert.throws(() => attenuateClaims(root, opts({ expiresAtMs: NOW })), { field: 'expires_at' });
  });

  it('limits delegation depth', () => {
    let t: TokenClaims = root;
    for (let i = 0; i < MAX_DELEGATION_DEPTH; i++) t = attenuateClaims(t, opts({ tokenId: `tok_d${i}` }));
    assert.equal(t.ancestor_token_ids.length, MAX_DELEGATION_DEPTH);
    assert.ok(verifyToken(signToken(t, key), lookupFor(key)).ok);
    assert.throws(() => attenuateClaims(t, opts({ tokenId: 'tok_deep' })), {
      code: 'INVALID_ARGUMENT',
      field: 'token_id',
    });
  });

  it('a child never widens its parent (property, chains of delegation)', () => {
    const cap = fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f');
    fc.assert(
      fc.property(fc.array(fc.array(cap, { maxLength: 6 }), { minLength: 1, maxLength: 8 }), (steps) => {
        let parent: TokenClaims = root;
        steps.forEach((caps, i) => {
          const rights = effectiveAttenuation(parent);
          let child: TokenClaims;
          try {
            child = attenuateClaims(parent, opts({ tokenId: `tok_p${i}`, capabilities: caps }));
          } catch (e) {
            // refused only when some capability really is outside the parent's rights
            assert.ok(rights !== undefined && caps.some((c) => !rights.includes(c)), String(e));
            return;
          }
          const got = effectiveAttenuation(child)!;
          if (rights !== undefined) assert.ok(got.every((c) => rights.includes(c)));
          assert.ok(child.expires_at_ms <= parent.expires_at_ms);
          assert.ok(child.not_before_ms >= parent.not_before_ms);
          parent = child;
        });
      }),
      { numRuns: 300 },
    );
  });
});
