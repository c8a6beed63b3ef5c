/** Shared fixtures for token tests: keys, claims arbitraries, hand-built tokens. */
import { sign } from 'node:crypto';
import fc from 'fast-check';
import { toBase64Url } from '../../../src/common/base64url';
import {
  signingMessage,
  type PublicKeyLookup,
  type SigningKeyPair,
  type TokenClaims,
} from '../../../src/token';

export const NOW = 1_700_000_000_000;

export function lookupFor(...keys: SigningKeyPair[]): PublicKeyLookup {
  const m = new Map(keys.map((k) => [k.keyId, k.publicKey]));
  return (id) => m.get(id);
}

export function baseClaims(key: SigningKeyPair, over: Partial<TokenClaims> = {}): TokenClaims {
  return {
    version: 1,
    key_id: key.keyId,
    token_id: 'tok_abc',
    agent_id: 'agent_abc',
    policy_ids: ['policy_abc'],
    attenuation: [],
    attenuated: false,
    parent_token_id: '',
    ancestor_token_ids: [],
    issued_at_ms: NOW,
    not_before_ms: NOW,
    expires_at_ms: NOW + 3_600_000,
    metadata: {},
    ...over,
  };
}

/** Signs arbitrary bytes as a token, bypassing signToken's checks (to test the parser). */
export function tokenFromBytes(claimsBytes: Uint8Array, key: SigningKeyPair, withDomain = true): string {
  const msg = withDomain ? signingMessage(claimsBytes) : Buffer.from(claimsBytes);
  return `act_${toBase64Url(claimsBytes)}.${toBase64Url(sign(null, msg, key.privateKey))}`;
}

const id = fc.string({ unit: 'binary', minLength: 1, maxLength: 40 });
const text = fc.string({ unit: 'binary', maxLength: 40 });
const time = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

/** Random valid claims signed by `keyId` (sizes kept well under MAX_TOKEN_LENGTH). */
export function claimsArb(keyId: string): fc.Arbitrary<TokenClaims> {
  return fc
    .record({
      token_id: id,
      agent_id: id,
      policy_ids: fc.array(id, { minLength: 1, maxLength: 8 }),
      attenuated: fc.boolean(),
      attenuation: fc.array(text, { maxLength: 10 }),
      ancestor_token_ids: fc.array(id, { maxLength: 6 }),
      issued_at_ms: time,
      not_before_ms: time,
      expires_at_ms: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      metadata: fc.dictionary(
        text.filter((k) => k !== '__proto__'),
        text,
        { maxKeys: 6 },
      ),
    })
    .map((r): TokenClaims => ({
      ...r,
      version: 1,
      key_id: keyId,
      attenuation: r.attenuated ? r.attenuation : [],
      parent_token_id: r.ancestor_token_ids[r.ancestor_token_ids.length - 1] ?? '',
      metadata: { ...r.metadata },
    }));
}
