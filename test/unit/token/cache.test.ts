import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { generateSigningKey, signToken, VerificationCache, type PublicKeyLookup } from '../../../src/token';
import { NOW, baseClaims } from './helpers';

describe('VerificationCache', () => {
  const key = generateSigningKey(NOW);
  const keys = new Map<string, KeyObject>();
  let calls = 0;
  const lookup: PublicKeyLookup = (id) => {
    calls++;
    return keys.get(id);
  };
  const token = (i: number) => signToken(baseClaims(key, { token_id: `tok_${i}` }), key);
  beforeEach(() => {
    keys.clear();
    keys.set(key.keyId, key.publicKey);
    calls = 0;
  });

  it('a hit returns the same claims object', () => {
    const c = new VerificationCache();
    const t = token(1);
    const a = c.verify(t, lookup);
    const b = c.verify(t, lookup);
    assert.ok(a.ok && b.ok);
    assert.equal(a.claims, b.claims);
    assert.equal(c.size, 1);
    assert.ok(Object.isFrozen(b.claims) && Object.isFrozen(b.claims.policy_ids));
  });

  it('does not cache failures', () => {
    const c = new VerificationCache();
    const t = token(2);
    keys.clear();
    const r1 = c.verify(t, lookup);
    assert.equal(r1.ok ? 'ok' : r1.reason, 'UNKNOWN_KEY');
    assert.equal(c.size, 0);
    assert.equal(c.verify('act_garbage', lookup).ok, false);
    assert.equal(c.size, 0);
    keys.set(key.keyId, key.publicKey); // the key arrives through sync
    assert.ok(c.verify(t, lookup).ok);
    assert.equal(c.size, 1);
  });

  it('is bounded and evicts the least recently used entry', () => {
    const c = new VerificationCache(3);
    const ts = [0, 1, 2, 3].map(token);
    for (const t of ts.slice(0, 3)) assert.ok(c.verify(t, lookup).ok);
    assert.ok(c.verify(ts[0], lookup).ok); // refresh 0; 1 is now oldest
    assert.ok(c.verify(ts[3], lookup).ok);
    assert.equal(c.size, 3);
    // 0 still cached: a hit only looks up the key once (no re-verify lookup)
    calls = 0;
    c.verify(ts[0], lookup);
    assert.equal(calls, 1);
    // 1 was evicted: verifying again costs a full verify (two lookups) and re-inserts it
    calls = 0;
    c.verify(ts[1], lookup);
    assert.equal(calls, 2);
    assert.equal(c.size, 3);
    c.clear();
    assert.equal(c.size, 0);
  });

  it('a removed key stops cached tokens verifying', () => {
    const c = new VerificationCache();
    const t = token(4);
    assert.ok(c.verify(t, lookup).ok);
    keys.delete(key.keyId);
    const r = c.verify(t, lookup);
    assert.equal(r.ok ? 'ok' : r.reason, 'UNKNOWN_KEY');
    assert.equal(r.claims?.token_id, 'tok_4');
  });

  it('a different key under the same id forces re-verification', () => {
    const c = new VerificationCache();
    const t = token(5);
    assert.ok(c.verify(t, lookup).ok);
    keys.set(key.keyId, generateSigningKey(NOW).publicKey);
    const r = c.verify(t, lookup);
    assert.equal(r.ok ? 'ok' : r.reason, 'BAD_SIGNATURE');
    assert.equal(c.size, 0);
  });

  it('rejects oversized and non-string input without caching', () => {
    const c = new VerificationCache();
    for (const x of ['act_' + 'A'.repeat(10_000), null, 7, {}]) {
      const r = c.verify(x, lookup);
      assert.equal(r.ok ? 'ok' : r.reason, 'MALFORMED_TOKEN');
    }
    assert.equal(c.size, 0);
    assert.equal(calls, 0);
  });
});
