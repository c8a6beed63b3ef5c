import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { TokenClaims } from '../../../src/gen/act/v1/token';
import {
  MAX_TOKEN_LENGTH,
  generateSigningKey,
  parseToken,
  signToken,
  verifyToken,
  type VerifyResult,
} from '../../../src/token';
import { NOW, baseClaims, claimsArb, lookupFor, tokenFromBytes } from './helpers';

const key = generateSigningKey(NOW);
const lookup = lookupFor(key);

/** Total: a result, never an exception, and never ok. */
function assertRejected(token: unknown, reasons = ['MALFORMED_TOKEN', 'BAD_SIGNATURE', 'UNKNOWN_KEY']): void {
  let r: VerifyResult;
  try {
    r = verifyToken(token, lookup);
  } catch (e) {
    assert.fail(`verifyToken threw: ${String(e)}`);
  }
  assert.equal(r.ok, false);
  if (!r.ok) assert.ok(reasons.includes(r.reason), r.reason);
}

describe('token codec', () => {
  it('sign → verify round-trips random claims', () => {
    fc.assert(
      fc.property(claimsArb(key.keyId), (claims) => {
        const token = signToken(claims, key);
        assert.ok(token.startsWith('act_'));
        assert.ok(token.length <= MAX_TOKEN_LENGTH);
        const r = verifyToken(token, lookup);
        assert.ok(r.ok, r.ok ? '' : r.detail);
        assert.deepEqual(r.claims, claims);
      }),
      { numRuns: 200 },
    );
  });

  const token = signToken(
    baseClaims(key, { attenuated: true, attenuation: ['a.b:c'], metadata: { k: 'v' } }),
    key,
  );

  it('rejects every single flipped bit in the token bytes', () => {
    const bytes = Buffer.from(token, 'latin1');
    for (let i = 0; i < bytes.length; i++) {
      for (let b = 0; b < 8; b++) {
        const copy = Buffer.from(bytes);
        copy[i]! ^= 1 << b;
        assertRejected(copy.toString('latin1'));
      }
    }
  });

  it('rejects a random flipped bit in tokens over random claims (property)', () => {
    fc.assert(
      fc.property(claimsArb(key.keyId), fc.nat(), fc.nat({ max: 7 }), (claims, i, b) => {
        const bytes = Buffer.from(signToken(claims, key), 'latin1');
        bytes[i % bytes.length]! ^= 1 << b;
        assertRejected(bytes.toString('latin1'));
      }),
      { numRuns: 300 },
    );
  });

  it('rejects any single replaced, inserted or deleted character (property)', () => {
    const pos = fc.nat({ max: token.length });
    const ch = fc.oneof(
      fc.constantFrom(...'AQgw-_.=+/ a0\0é'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    );
    fc.assert(
      fc.property(fc.constantFrom('replace', 'insert', 'delete'), pos, ch, (op, i, c) => {
        const at = Math.min(i, token.length - 1);
        const mutated =
          op === 'insert'
            ? token.slice(0, i) + c + token.slice(i)
            : op === 'delete'
              ? token.slice(0, at) + token.slice(at + 1)
              : token.slice(0, at) + c + token.slice(at + 1);
        fc.pre(mutated !== token);
        assertRejected(mutated);
      }),
      { numRuns: 3000 },
    );
  });

  it('returns MALFORMED_TOKEN for garbage of any shape without throwing', () => {
    fc.assert(
      fc.property(fc.anything(), (x) => assertRejected(x, ['MALFORMED_TOKEN'])),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => assertRejected(s, ['MALFORMED_TOKEN'])),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 80 }), (a, b) =>
        assertRejected(
          `act_${Buffer.from(a).toString('base64url')}.${Buffer.from(b).toString('base64url')}`,
          ['MALFORMED_TOKEN'],
        ),
      ),
      { numRuns: 500 },
    );
    const [claimsPart, sigPart] = token.slice(4).split('.') as [string, string];
    for (const g of [
      null,
      undefined,
      42,
      {},
      [],
      Buffer.from(token),
      '',
      'act_',
      'act_.',
      '.',
      'x'.repeat(1024 * 1024),
      'act_' + 'A'.repeat(MAX_TOKEN_LENGTH),
      'ACT_' + token.slice(4),
      'tok_' + token.slice(4),
      token.slice(4),
      `act_${claimsPart}=.${sigPart}`,
      `act_${claimsPart}.${sigPart}==`,
      `act_${claimsPart}.${sigPart}.`,
      `act_${claimsPart}..${sigPart}`,
      `act_.${sigPart}`,
      `act_${claimsPart}.`,
      `act_${claimsPart}.${sigPart}AA`,
      `act_${claimsPart}.${sigPart.slice(0, -2)}`,
      ` ${token}`,
      `${token}\n`,
    ]) {
      assertRejected(g, ['MALFORMED_TOKEN']);
    }
  });

  it('rejects claims that break the format rules even when properly signed', () => {
    const bad: Partial<TokenClaims>[] = [
      { version: 2 },
      { version: 0 },
      { key_id: '' },
      { token_id: '' },
      { agent_id: '' },
      { agent_id: 'a'.repeat(81) },
      { policy_ids: [] },
      { policy_ids: Array.from({ length: 33 }, (_, i) => `policy_${i}`) },
      { attenuated: true, attenuation: Array.from({ length: 257 }, (_, i) => `c${i}`) },
      { attenuated: false, attenuation: ['x'] },
      { ancestor_token_ids: Array.from({ length: 33 }, (_, i) => `tok_${i}`), parent_token_id: 'tok_32' },
      { parent_token_id: 'tok_x' },
      { ancestor_token_ids: ['tok_x'], parent_token_id: 'tok_y' },
      { expires_at_ms: 0 },
      { expires_at_ms: -5 },
      { metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v'])) },
    ];
    for (const over of bad) {
      const claims = baseClaims(key, over);
      const r = verifyToken(tokenFromBytes(TokenClaims.encode(claims).finish(), key), lookup);
      assert.equal(r.ok ? 'ok' : r.reason, 'MALFORMED_TOKEN', JSON.stringify(over).slice(0, 80));
      assert.throws(() => signToken(claims, key), { name: 'ActError', code: 'INVALID_ARGUMENT' });
    }
  });

  it('rejects non-canonical claims bytes (unknown field, trailing bytes, duplicate field)', () => {
    const bytes = TokenClaims.encode(baseClaims(key)).finish();
    const variants = [
      Buffer.concat([bytes, Buffer.from([0x78, 0x01])]), // unknown field 15 varint
      Buffer.concat([bytes, Buffer.from([0x08, 0x01])]), // duplicate version
      Buffer.concat([Buffer.from([0x08, 0x81, 0x00]), bytes.subarray(2)]), // over-long varint for version
      Buffer.concat([bytes, Buffer.from([0x00])]), // trailing zero
    ];
    for (const v of variants) {
      const t = tokenFromBytes(v, key);
      const p = parseToken(t);
      assert.ok('error' in p, 'expected parse error');
      assertRejected(t, ['MALFORMED_TOKEN']);
    }
  });

  it('UNKNOWN_KEY for an unknown key id, with the claims', () => {
    const r = verifyToken(token, () => undefined);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.reason, 'UNKNOWN_KEY');
      assert.equal(r.claims?.token_id, 'tok_abc');
    }
  });

  it('BAD_SIGNATURE for a signature by another key under the same key id', () => {
    const other = { ...generateSigningKey(NOW), keyId: key.keyId };
    const forged = signToken(baseClaims(key), other);
    const r = verifyToken(forged, lookup);
    assert.equal(r.ok ? 'ok' : r.reason, 'BAD_SIGNATURE');
  });

  it('BAD_SIGNATURE when the lookup returns a non-Ed25519 key', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const r = verifyToken(token, () => ec);
    assert.equal(r.ok ? 'ok' : r.reason, 'BAD_SIGNATURE');
  });

  it('domain separation: a signature over the bare claims bytes is rejected', () => {
    const bytes = TokenClaims.encode(baseClaims(key)).finish();
    assert.ok(verifyToken(tokenFromBytes(bytes, key, true), lookup).ok);
    const r = verifyToken(tokenFromBytes(bytes, key, false), lookup);
    assert.equal(r.ok ? 'ok' : r.reason, 'BAD_SIGNATURE');
  });

  it('signToken refuses claims that would not round-trip', () => {
    const meta = JSON.parse('{"__proto__":"x"}') as Record<string, string>;
    assert.throws(() => signToken(baseClaims(key, { metadata: meta }), key), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => signToken(baseClaims(key, { agent_id: 'a\uD800' }), key), {
      code: 'INVALID_ARGUMENT',
    });
  });
});
