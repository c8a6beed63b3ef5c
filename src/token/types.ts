import type { KeyObject } from 'node:crypto';
import type { TokenClaims } from '../gen/act/v1/token';

export type { TokenClaims };

/** Token format version carried in claims.version. */
export const TOKEN_VERSION = 1;
/** The prefix every token string starts with (secret scanners look for it). */
export const TOKEN_PREFIX = 'act_';
/** Domain separation: the signed message is this + the claims bytes. */
export const SIGNING_DOMAIN = 'act-token-v1\0';
/** Upper bound on a token string's length; longer input is MALFORMED_TOKEN without decoding. */
export const MAX_TOKEN_LENGTH = 8192;

/** Finds a verification key by id (public keys reach sidecars through sync). */
export type PublicKeyLookup = (keyId: string) => KeyObject | undefined;

/** An Ed25519 signing key with its id. */
export interface SigningKeyPair {
  keyId: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Raw 32-byte public key, for sync and the keys API. */
  publicKeyRaw: Uint8Array;
  createdAtMs: number;
}

export type TokenFailure = 'MALFORMED_TOKEN' | 'UNKNOWN_KEY' | 'BAD_SIGNATURE';

/** Verification outcome: claims, or the first failing reason (never an exception). */
export type VerifyResult =
  | { ok: true; claims: TokenClaims }
  | { ok: false; reason: TokenFailure; detail: string; claims?: TokenClaims };
