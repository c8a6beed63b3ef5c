/**
 * Token wire form: `act_` + base64url(claims) + `.` + base64url(signature), where the
 * signature is Ed25519 over SIGNING_DOMAIN + claims bytes. Parsing is strict so that
 * every valid token has exactly one string form, and total: malformed input of any
 * shape yields a value, never an exception.
 */
import { sign, verify } from 'node:crypto';
import { fromBase64Url, toBase64Url } from '../common/base64url';
import { ActError } from '../common/errors';
import { TokenClaims } from '../gen/act/v1/token';
import {
  MAX_TOKEN_LENGTH,
  SIGNING_DOMAIN,
  TOKEN_PREFIX,
  TOKEN_VERSION,
  type PublicKeyLookup,
  type SigningKeyPair,
  type VerifyResult,
} from './types';

/** Length of an Ed25519 signature. */
export const SIGNATURE_LENGTH = 64;

/** Bounds on claims fields (the 8 KiB string bound caps the rest). */
export const CLAIMS_LIMITS = {
  maxIdLength: 80,
  maxPolicyIds: 32,
  maxAttenuation: 256,
  maxAncestors: 32,
  maxMetadataEntries: 32,
} as const;

const DOMAIN_BYTES = Buffer.from(SIGNING_DOMAIN, 'utf8');

/** A token split into its verified-shape parts (signature not yet checked). */
export interface ParsedToken {
  claims: TokenClaims;
  claimsBytes: Uint8Array;
  signature: Uint8Array;
}

/** The exact bytes a signature covers: domain prefix, then claims bytes. */
export function signingMessage(claimsBytes: Uint8Array): Buffer {
  return Buffer.concat([DOMAIN_BYTES, claimsBytes]);
}

/**
 * Checks claims against the format rules (version, required ids, bounds, lineage).
 * Returns a short description of the first problem, or undefined when valid.
 */
export function validateClaims(c: TokenClaims): string | undefined {
  const L = CLAIMS_LIMITS;
  if (c.version !== TOKEN_VERSION) return `unsupported version ${c.version}`;
  for (const [name, v] of [
    ['key_id', c.key_id],
    ['token_id', c.token_id],
    ['agent_id', c.agent_id],
  ] as const) {
    if (v.length === 0) return `${name} is empty`;
    if (v.length > L.maxIdLength) return `${name} too long`;
  }
  if (c.parent_token_id.length > L.maxIdLength) return 'parent_token_id too long';
  if (c.policy_ids.length === 0) return 'no policy_ids';
  if (c.policy_ids.length > L.maxPolicyIds) return 'too many policy_ids';
  if (c.policy_ids.some((p) => p.length === 0 || p.length > L.maxIdLength)) return 'bad policy id';
  if (c.attenuation.length > L.maxAttenuation) return 'too many attenuation entries';
  // Why: entries without the flag would be silently ignored; refuse the ambiguity.
  if (!c.attenuated && c.attenuation.length > 0) return 'attenuation entries without attenuated flag';
  if (c.ancestor_token_ids.length > L.maxAncestors) return 'too many ancestor_token_ids';
  if (c.ancestor_token_ids.some((a) => a.length === 0 || a.length > L.maxIdLength)) return 'bad ancestor id';
  // Lineage must be self-consistent: the parent is the last ancestor.
  const last = c.ancestor_token_ids[c.ancestor_token_ids.length - 1] ?? '';
  if (c.parent_token_id !== last) return 'parent_token_id does not match ancestor_token_ids';
  for (const [name, t] of [
    ['issued_at_ms', c.issued_at_ms],
    ['not_before_ms', c.not_before_ms],
    ['expires_at_ms', c.expires_at_ms],
  ] as const) {
    if (!Number.isSafeInteger(t) || t < 0) return `${name} out of range`;
  }
  if (c.expires_at_ms <= 0) return 'expires_at_ms missing';
  if (Object.keys(c.metadata).length > L.maxMetadataEntries) return 'too many metadata entries';
  return undefined;
}

/**
 * Encodes and signs claims into a token string.
 * @throws ActError INVALID_ARGUMENT when the claims break the format rules or have no
 *   canonical encoding (so the issuer never hands out a token verifiers would reject).
 */
export function signToken(claims: TokenClaims, key: SigningKeyPair): string {
  const problem = validateClaims(claims);
  if (problem !== undefined) throw new ActError('INVALID_ARGUMENT', `invalid claims: ${problem}`);
  const claimsBytes = TokenClaims.encode(claims).finish();
  const signature = sign(null, signingMessage(claimsBytes), key.privateKey);
  const token = `${TOKEN_PREFIX}${toBase64Url(claimsBytes)}.${toBase64Url(signature)}`;
  // Why: round-trip through the verifier's parser catches non-canonical claims
  // (e.g. metadata keys like "__proto__" or lone surrogates) at issue time.
  const parsed = parseToken(token);
  if ('error' in parsed) throw new ActError('INVALID_ARGUMENT', `claims do not round-trip: ${parsed.error}`);
  if (!sameClaims(parsed.claims, claims)) throw new ActError('INVALID_ARGUMENT', 'claims do not round-trip');
  return token;
}

/** Field-wise equality; catches values the encoder silently rewrites (lone surrogates → U+FFFD). */
function sameClaims(a: TokenClaims, b: TokenClaims): boolean {
  const sameList = (x: readonly string[], y: readonly string[]) =>
    x.length === y.length && x.every((v, i) => v === y[i]);
  const ma = Object.entries(a.metadata);
  const mb = Object.entries(b.metadata);
  return (
    a.version === b.version &&
    a.key_id === b.key_id &&
    a.token_id === b.token_id &&
    a.agent_id === b.agent_id &&
    a.parent_token_id === b.parent_token_id &&
    a.issued_at_ms === b.issued_at_ms &&
    a.not_before_ms === b.not_before_ms &&
    a.expires_at_ms === b.expires_at_ms &&
    a.attenuated === b.attenuated &&
    sameList(a.policy_ids, b.policy_ids) &&
    sameList(a.attenuation, b.attenuation) &&
    sameList(a.ancestor_token_ids, b.ancestor_token_ids) &&
    ma.length === mb.length &&
    ma.every(([k, v]) => b.metadata[k] === v && Object.prototype.hasOwnProperty.call(b.metadata, k))
  );
}

/** Splits and decodes a token without checking its signature. Returns `{ error }` for any bad input. */
export function parseToken(token: unknown): ParsedToken | { error: string } {
  if (typeof token !== 'string') return { error: 'token is not a string' };
  if (token.length > MAX_TOKEN_LENGTH) return { error: 'token too long' };
  if (!token.startsWith(TOKEN_PREFIX)) return { error: 'missing act_ prefix' };
  const dot = token.indexOf('.');
  if (dot < 0 || dot !== token.lastIndexOf('.')) return { error: 'expected exactly one "."' };
  const claimsPart = token.slice(TOKEN_PREFIX.length, dot);
  const sigPart = token.slice(dot + 1);
  if (claimsPart.length === 0) return { error: 'empty claims' };
  const claimsBytes = fromBase64Url(claimsPart);
  const signature = fromBase64Url(sigPart);
  if (claimsBytes === undefined) return { error: 'claims are not canonical base64url' };
  if (signature === undefined) return { error: 'signature is not canonical base64url' };
  if (signature.byteLength !== SIGNATURE_LENGTH) return { error: 'signature must be 64 bytes' };
  let claims: TokenClaims;
  let reencoded: Uint8Array;
  try {
    claims = TokenClaims.decode(claimsBytes);
    reencoded = TokenClaims.encode(claims).finish();
  } catch {
    return { error: 'claims do not decode' };
  }
  // Canonical form: rejects unknown fields, duplicates, trailing bytes, bad UTF-8,
  // and bit flips that still decode, so one claims value has one byte form.
  if (!claimsBytes.equals(reencoded)) return { error: 'claims are not in canonical encoding' };
  const problem = validateClaims(claims);
  if (problem !== undefined) return { error: problem };
  return { claims, claimsBytes, signature };
}

/**
 * Parses a token, finds its key and checks the Ed25519 signature. Never throws.
 * Does not check time bounds or revocation (the decision layer does, with its clock).
 */
export function verifyToken(token: unknown, lookup: PublicKeyLookup): VerifyResult {
  const parsed = parseToken(token);
  if ('error' in parsed) return { ok: false, reason: 'MALFORMED_TOKEN', detail: parsed.error };
  const { claims, claimsBytes, signature } = parsed;
  // A throwing lookup is a store fault, not a bad token: let it propagate.
  const key = lookup(claims.key_id);
  if (key === undefined) {
    return { ok: false, reason: 'UNKNOWN_KEY', detail: `unknown key ${claims.key_id}`, claims };
  }
  let good = false;
  try {
    // Why the type check: verify(null, …) with an RSA key would pick a default digest.
    good = key.asymmetricKeyType === 'ed25519' && verify(null, signingMessage(claimsBytes), key, signature);
  } catch {
    good = false;
  }
  if (!good) return { ok: false, reason: 'BAD_SIGNATURE', detail: 'signature does not verify', claims };
  return { ok: true, claims };
}
