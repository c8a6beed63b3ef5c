/**
 * Verification happens once per distinct token: this bounded map from the exact
 * token string to its verified claims makes the hot path a map lookup.
 */
import type { KeyObject } from 'node:crypto';
import { verifyToken } from './codec';
import { MAX_TOKEN_LENGTH, type PublicKeyLookup, type TokenClaims, type VerifyResult } from './types';

interface Entry {
  claims: TokenClaims;
  /** The key that verified the signature; a different key under the same id forces re-verification. */
  key: KeyObject;
}

/**
 * A bounded LRU cache of successful verifications. Failures are never cached (a key
 * may arrive through sync a moment later). Cached claims are deep-frozen because they
 * are shared between callers.
 */
export class VerificationCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;

  /** @param maxEntries upper bound on cached tokens (default 100 000). */
  constructor(maxEntries = 100_000) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be >= 1');
    this.maxEntries = maxEntries;
  }

  /** Same contract as {@link verifyToken}, but a previously verified token skips the signature check. */
  verify(token: unknown, lookup: PublicKeyLookup): VerifyResult {
    // Reject huge strings before hashing them into the map.
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return verifyToken(token, lookup);
    const hit = this.entries.get(token);
    if (hit !== undefined) {
      const key = lookup(hit.claims.key_id);
      // A removed key must stop verifying even for cached tokens.
      if (key === undefined) {
        return {
          ok: false,
          reason: 'UNKNOWN_KEY',
          detail: `unknown key ${hit.claims.key_id}`,
          claims: hit.claims,
        };
      }
      if (key === hit.key || key.equals(hit.key)) {
        this.entries.delete(token); // refresh recency (Map keeps insertion order)
        this.entries.set(token, hit);
        return { ok: true, claims: hit.claims };
      }
      this.entries.delete(token); // key material changed under the same id: verify afresh
    }
    const result = verifyToken(token, lookup);
    if (result.ok) {
      const key = lookup(result.claims.key_id);
      if (key !== undefined) this.insert(token, { claims: deepFreeze(result.claims), key });
    }
    return result;
  }

  /** Drops every entry (e.g. after a key set change, though lookups already guard that). */
  clear(): void {
    this.entries.clear();
  }

  /** Number of cached tokens. */
  get size(): number {
    return this.entries.size;
  }

  private insert(token: string, entry: Entry): void {
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(token, entry);
  }
}

function deepFreeze(c: TokenClaims): TokenClaims {
  Object.freeze(c.policy_ids);
  Object.freeze(c.attenuation);
  Object.freeze(c.ancestor_token_ids);
  Object.freeze(c.metadata);
  return Object.freeze(c);
}
