/**
 * API-key authentication and role checks. Keys look like `actk_<id>_<secret>`;
 * the store keeps only SHA-256 of the whole key, compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ActError } from '../common/errors';
import { newId } from '../common/ids';
import type { Clock } from '../common/clock';
import type { Store } from '../store/types';
import type { ApiKeyRecord, RoleName } from '../store/records';

export interface Principal {
  api_key_id: string;
  name: string;
  role: RoleName;
  /** Agents a sidecar key may sync; empty = any. */
  agent_ids: string[];
}

const KEY_RE = /^actk_(ak_[0-9a-z]{26})_[A-Za-z0-9_-]{43}$/;
const BOOTSTRAP_ID = 'ak_bootstrap0000000000000000';

export function sha256(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/** A new key's bearer secret: `actk_<id>_<43 random base64url chars>`. */
export function newApiKeySecret(apiKeyId: string): string {
  return `actk_${apiKeyId}_${randomBytes(32).toString('base64url')}`;
}

export class Auth {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  /**
   * Makes sure an admin key exists. With `adminKey` (ACT_ADMIN_KEY) that key is
   * installed as the bootstrap admin; else, on first start only, a key is created
   * and returned so the caller can print it once.
   */
  async bootstrap(adminKey: string | undefined): Promise<string | undefined> {
    if (adminKey !== undefined) {
      if (adminKey.length < 16 || adminKey.length > 256) {
        throw new ActError('INVALID_ARGUMENT', 'ACT_ADMIN_KEY must be 16-256 characters', {
          field: 'ACT_ADMIN_KEY',
        });
      }
      await this.store.write(async (w) => {
        const rec: ApiKeyRecord = {
          api_key_id: BOOTSTRAP_ID,
          name: 'bootstrap admin (ACT_ADMIN_KEY)',
          role: 'admin',
          secret_sha256: sha256(adminKey),
          created_at_ms: this.clock(),
        };
        const old = await w.get<ApiKeyRecord>('apikeys', BOOTSTRAP_ID);
        if (old?.secret_sha256 !== rec.secret_sha256)
          w.put('apikeys', BOOTSTRAP_ID, old ? { ...rec, created_at_ms: old.created_at_ms } : rec);
      });
      return undefined;
    }
    // Checked and created in one write transaction: replicas starting together on an empty
    // database make one first admin key, not one each.
    const id = newId('ak');
    const secret = newApiKeySecret(id);
    const { result } = await this.store.write(async (w) => {
      const existing = await w.scan<ApiKeyRecord>('apikeys', { limit: 10_000 });
      if (existing.some((row) => row.value.role === 'admin')) return undefined;
      w.put('apikeys', id, {
        api_key_id: id,
        name: 'initial admin',
        role: 'admin',
        secret_sha256: sha256(secret),
        created_at_ms: this.clock(),
      } satisfies ApiKeyRecord);
      return secret;
    });
    return result;
  }

  /** Resolves `Authorization: Bearer <key>`; throws UNAUTHENTICATED. */
  async authenticate(header: string | undefined): Promise<Principal> {
    if (header === undefined || header === '') {
      throw new ActError('UNAUTHENTICATED', 'missing Authorization: Bearer <api key>');
    }
    const m = /^Bearer\s+(\S{1,512})$/i.exec(header);
    if (!m) throw new ActError('UNAUTHENTICATED', 'Authorization must be "Bearer <api key>"');
    const presented = m[1]!;
    const id = KEY_RE.exec(presented)?.[1] ?? BOOTSTRAP_ID;
    const rec = await this.store.read((r) => r.get<ApiKeyRecord>('apikeys', id));
    // Compare hashes in constant time; hash even when there is no record so timing says nothing.
    const want = Buffer.from(rec?.secret_sha256 ?? sha256('\0no key'), 'hex');
    const got = Buffer.from(sha256(presented), 'hex');
    if (!rec || !timingSafeEqual(want, got)) throw new ActError('UNAUTHENTICATED', 'invalid API key');
    return { api_key_id: rec.api_key_id, name: rec.name, role: rec.role, agent_ids: rec.agent_ids ?? [] };
  }
}

/** Who may call an operation: API key roles (admin may do everything), or `check`. */
export type Access = RoleName[] | 'check';

/**
 * Authenticates and authorizes one call. `check` access (a decision) takes an API key of any
 * role, or the ACT token being checked presented as the bearer (the token is itself a
 * credential; then there is no principal).
 */
export async function authorize(
  auth: Auth,
  authorization: string | undefined,
  access: Access,
  token?: unknown,
): Promise<Principal | undefined> {
  if (access === 'check') {
    const bearer = authorization ? /^Bearer\s+(\S+)$/i.exec(authorization)?.[1] : undefined;
    if (bearer !== undefined && bearer.startsWith('act_') && bearer === token) return undefined;
    return auth.authenticate(authorization);
  }
  const who = await auth.authenticate(authorization);
  requireRole(who, ...access);
  return who;
}

/** Throws PERMISSION_DENIED unless the principal has one of the roles (admin may do everything). */
export function requireRole(p: Principal, ...roles: RoleName[]): void {
  if (p.role === 'admin' || roles.includes(p.role)) return;
  throw new ActError(
    'PERMISSION_DENIED',
    `this operation needs the ${roles.join(' or ')} role; the key has role ${p.role}`,
  );
}
