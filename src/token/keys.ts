/**
 * Ed25519 key handling through node:crypto (OpenSSL): generation, raw public
 * key import/export for sync, and PKCS8 PEM for storing signing keys.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { fromBase64Url, toBase64Url } from '../common/base64url';
import { ActError } from '../common/errors';
import { newId } from '../common/ids';
import type { SigningKeyPair } from './types';

/** Length of a raw Ed25519 public key. */
export const ED25519_PUBLIC_KEY_LENGTH = 32;

/** Generates a fresh Ed25519 signing key with a new `key_…` id; `nowMs` is recorded as its creation time. */
export function generateSigningKey(nowMs: number): SigningKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    keyId: newId('key'),
    privateKey,
    publicKey,
    publicKeyRaw: rawPublicKey(publicKey),
    createdAtMs: nowMs,
  };
}

/**
 * Builds a verification key from raw 32 bytes (the form sync and tweetnacl use).
 * @throws ActError INVALID_ARGUMENT when the input is not 32 bytes or not a valid point encoding.
 */
export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (!(raw instanceof Uint8Array) || raw.byteLength !== ED25519_PUBLIC_KEY_LENGTH) {
    throw new ActError('INVALID_ARGUMENT', 'Ed25519 public key must be 32 bytes', { field: 'public_key' });
  }
  try {
    // JWK is the only raw-bytes import node:crypto offers for OKP keys without hand-built DER.
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: toBase64Url(raw) }, format: 'jwk' });
  } catch (cause) {
    throw new ActError('INVALID_ARGUMENT', 'invalid Ed25519 public key', { field: 'public_key', cause });
  }
}

/** The raw 32-byte form of an Ed25519 public (or private, via its public half) key. */
export function rawPublicKey(k: KeyObject): Uint8Array {
  const pub = k.type === 'private' ? createPublicKey(k) : k;
  assertEd25519(pub);
  const x = pub.export({ format: 'jwk' }).x;
  const raw = typeof x === 'string' ? fromBase64Url(x) : undefined;
  if (raw === undefined || raw.byteLength !== ED25519_PUBLIC_KEY_LENGTH) {
    throw new ActError('INTERNAL', 'could not export raw Ed25519 public key');
  }
  return new Uint8Array(raw);
}

/** Serialises a signing key as PKCS8 PEM for storage (the store must protect it at rest). */
export function exportPrivateKey(k: KeyObject): string {
  if (k.type !== 'private')
    throw new ActError('INVALID_ARGUMENT', 'not a private key', { field: 'private_key' });
  assertEd25519(k);
  return k.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/**
 * Loads a signing key stored by {@link exportPrivateKey}.
 * @throws ActError INVALID_ARGUMENT when the PEM is unreadable or not Ed25519.
 */
export function importPrivateKey(pem: string): KeyObject {
  let k: KeyObject;
  try {
    k = createPrivateKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new ActError('INVALID_ARGUMENT', 'unreadable private key PEM', { field: 'private_key', cause });
  }
  assertEd25519(k);
  return k;
}

/** Why: a stray RSA/EC key would otherwise fail later, far from its source. */
function assertEd25519(k: KeyObject): void {
  if (k.asymmetricKeyType !== 'ed25519') {
    throw new ActError('INVALID_ARGUMENT', `expected an Ed25519 key, got ${String(k.asymmetricKeyType)}`, {
      field: 'key',
    });
  }
}
