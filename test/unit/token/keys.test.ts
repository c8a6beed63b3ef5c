import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import nacl from 'tweetnacl';
import { toBase64Url } from '../../../src/common/base64url';
import { TokenClaims } from '../../../src/gen/act/v1/token';
import {
  exportPrivateKey,
  generateSigningKey,
  importPrivateKey,
  parseToken,
  publicKeyFromRaw,
  rawPublicKey,
  signToken,
  signingMessage,
  verifyToken,
} from '../../../src/token';
import { NOW, baseClaims, lookupFor } from './helpers';

describe('token keys', () => {
  it('generates an Ed25519 key with an id and a 32-byte raw public key', () => {
    const k = generateSigningKey(NOW);
    assert.match(k.keyId, /^key_[0-9a-z]+$/);
    assert.equal(k.createdAtMs, NOW);
    assert.equal(k.publicKeyRaw.byteLength, 32);
    assert.deepEqual(rawPublicKey(k.privateKey), k.publicKeyRaw);
    assert.ok(publicKeyFromRaw(k.publicKeyRaw).equals(k.publicKey));
  });

  it('round-trips the private key through PKCS8 PEM', () => {
    const k = generateSigningKey(NOW);
    const pem = exportPrivateKey(k.privateKey);
    assert.match(pem, /BEGIN PRIVATE KEY/);
    const back = importPrivateKey(pem);
    const token = signToken(baseClaims(k), { ...k, privateKey: back });
    assert.ok(verifyToken(token, lookupFor(k)).ok);
  });

  it('rejects bad key material with INVALID_ARGUMENT', () => {
    assert.throws(() => publicKeyFromRaw(new Uint8Array(31)), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => importPrivateKey('not a pem'), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => exportPrivateKey(generateSigningKey(NOW).publicKey), { code: 'INVALID_ARGUMENT' });
  });
});

describe('tweetnacl cross-check', () => {
  it('every node:crypto token signature verifies under tweetnacl', () => {
    for (let i = 0; i < 5; i++) {
      const k = generateSigningKey(NOW);
      const token = signToken(baseClaims(k, { token_id: `tok_${i}`, metadata: { i: String(i) } }), k);
      const p = parseToken(token);
      assert.ok(!('error' in p));
      const msg = signingMessage(p.claimsBytes);
      assert.ok(nacl.sign.detached.verify(msg, p.signature, k.publicKeyRaw));
      // and the domain prefix is load-bearing for the second implementation too
      assert.equal(nacl.sign.detached.verify(p.claimsBytes, p.signature, k.publicKeyRaw), false);
    }
  });

  it('a token signed by tweetnacl verifies with verifyToken', () => {
    for (let i = 0; i < 5; i++) {
      const pair = nacl.sign.keyPair();
      assert.equal(pair.secretKey.byteLength, 64);
      const keyId = `key_nacl${i}`;
      const pub = publicKeyFromRaw(pair.publicKey);
      const claims = baseClaims({ keyId } as never, { token_id: `tok_n${i}` });
      const bytes = TokenClaims.encode(claims).finish();
      const sig = nacl.sign.detached(signingMessage(bytes), pair.secretKey);
      const token = `act_${toBase64Url(bytes)}.${toBase64Url(sig)}`;
      const r = verifyToken(token, (id) => (id === keyId ? pub : undefined));
      assert.ok(r.ok, r.ok ? '' : r.detail);
      assert.deepEqual(r.claims, claims);
      // node:crypto's signature over the same message from the same seed is identical (deterministic Ed25519)
      const seed = pair.secretKey.subarray(0, 32);
      const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
      const priv = importPrivateKey(
        `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64')}\n-----END PRIVATE KEY-----\n`,
      );
      assert.deepEqual(new Uint8Array(sign(null, signingMessage(bytes), priv)), sig);
    }
  });
});
