/** API keys: bearer credentials with a role; stored as SHA-256 only, the secret shown once. */
import type { Clock } from '../../common/clock';
import { ActError, invalid } from '../../common/errors';
import { isId, newId } from '../../common/ids';
import { ApiKey, Role } from '../../gen/act/v1/admin';
import type { ApiKeyRecord, RoleName } from '../../store/records';
import type { Store } from '../../store/types';
import { newApiKeySecret, sha256, type Principal } from '../auth';
import { LIMITS, rejectUnknown, requireString } from '../validate';

type Json = Record<string, unknown>;

export interface CreateApiKeyInput {
  name: string;
  role: RoleName;
  agentIds: string[];
}

export function parseRole(v: unknown): RoleName {
  const s =
    typeof v === 'string' ? v.toLowerCase() : typeof v === 'number' ? (Role[v] ?? '').toLowerCase() : '';
  if (s === 'admin' || s === 'approver' || s === 'auditor' || s === 'sidecar') return s;
  throw invalid('role', 'role must be one of ADMIN, APPROVER, AUDITOR, SIDECAR');
}

export function parseCreateApiKey(body: Json): CreateApiKeyInput {
  rejectUnknown(body, ['name', 'role', 'agent_ids']);
  const name = requireString(body.name, 'name', { min: 1, max: LIMITS.name }).trim();
  if (name === '') throw invalid('name', 'name must be 1-200 characters');
  const role = parseRole(body.role);
  const ids = body.agent_ids ?? [];
  if (!Array.isArray(ids)) throw invalid('agent_ids', 'agent_ids must be an array of agent ids');
  if (ids.length > 0 && role !== 'sidecar')
    throw invalid('agent_ids', 'agent_ids applies to SIDECAR keys only');
  if (ids.length > 10_000) throw invalid('agent_ids', 'agent_ids may list at most 10000 agents');
  ids.forEach((a, i) => {
    if (!isId(a, 'agent')) throw invalid(`agent_ids[${i}]`, `agent_ids[${i}] is not an agent id`);
  });
  return { name, role, agentIds: ids as string[] };
}

export function apiKeyMessage(r: ApiKeyRecord): ApiKey {
  return ApiKey.fromPartial({
    api_key_id: r.api_key_id,
    name: r.name,
    role: Role[r.role.toUpperCase() as keyof typeof Role],
    created_at: new Date(r.created_at_ms).toISOString(),
    agent_ids: r.agent_ids ?? [],
  });
}

export class ApiKeyService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async create(i: CreateApiKeyInput): Promise<{ api_key: ApiKey; secret: string }> {
    const id = newId('ak');
    const secret = newApiKeySecret(id);
    const record: ApiKeyRecord = {
      api_key_id: id,
      name: i.name,
      role: i.role,
      secret_sha256: sha256(secret),
      created_at_ms: this.clock(),
      ...(i.agentIds.length > 0 ? { agent_ids: i.agentIds } : {}),
    };
    await this.store.write(async (w) => w.put('apikeys', id, record));
    return { api_key: apiKeyMessage(record), secret };
  }

  async list(): Promise<ApiKey[]> {
    const rows = await this.store.read((r) => r.scan<ApiKeyRecord>('apikeys', { limit: 10_000 }));
    return rows.map((r) => apiKeyMessage(r.value));
  }

  async revoke(id: unknown, who: Principal): Promise<{ id: string; deleted: boolean; revision: number }> {
    const keyId = typeof id === 'string' ? id : '';
    if (keyId === who.api_key_id)
      throw new ActError('FAILED_PRECONDITION', 'an API key cannot revoke itself', { field: 'api_key_id' });
    await this.store.write(async (w) => {
      if (keyId === '' || !(await w.get('apikeys', keyId)))
        throw new ActError('NOT_FOUND', `API key ${JSON.stringify(keyId.slice(0, 80))} not found`, {
          field: 'api_key_id',
        });
      w.del('apikeys', keyId);
    });
    return { id: keyId, deleted: true, revision: 0 };
  }
}
