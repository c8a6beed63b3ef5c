/** Agents: the identities tokens are issued to. Deleting one revokes its tokens. */
import type { Clock } from '../../common/clock';
import { ActError, invalid, notFound } from '../../common/errors';
import { newSortableId } from '../../common/ids';
import { Agent, AgentStatus } from '../../gen/act/v1/admin';
import { idx } from '../../store/records';
import type { Store } from '../../store/types';
import { filteredPage, parseEnumFilter, scanAll, type Page } from '../paging';
import {
  LIMITS,
  formatTime,
  optionalString,
  rejectUnknown,
  requireId,
  requireString,
  validateMetadata,
} from '../validate';
import type { TokenService } from './tokens';

type Json = Record<string, unknown>;

export interface CreateAgentInput {
  name: string;
  description: string;
  metadata: Record<string, string>;
}

export interface UpdateAgentInput {
  agentId: string;
  description: string | undefined;
  metadata: Record<string, string> | undefined;
}

export interface ListAgentsInput {
  limit?: unknown;
  cursor?: unknown;
  status: AgentStatus | undefined;
  nameContains: string;
}

export function parseCreateAgent(body: Json): CreateAgentInput {
  rejectUnknown(body, ['name', 'description', 'metadata']);
  const name = requireString(body.name, 'name', { min: 1, max: LIMITS.name }).trim();
  if (name === '') throw invalid('name', 'name is required');
  return {
    name,
    description: optionalString(body.description, 'description', LIMITS.description),
    metadata: validateMetadata(body.metadata),
  };
}

export function parseUpdateAgent(id: unknown, body: Json): UpdateAgentInput {
  const agentId = requireId(id, 'agent', 'agent_id');
  for (const k of Object.keys(body)) {
    if (!['description', 'metadata', 'agent_id'].includes(k)) {
      if (['name', 'status', 'created_at', 'updated_at'].includes(k))
        throw invalid(k, `${k} cannot be changed (changeable: description, metadata)`);
      rejectUnknown({ [k]: true }, ['description', 'metadata']);
    }
  }
  return {
    agentId,
    description:
      body.description === undefined
        ? undefined
        : optionalString(body.description, 'description', LIMITS.description),
    metadata: body.metadata === undefined ? undefined : validateMetadata(body.metadata),
  };
}

export function parseListAgents(q: Json): ListAgentsInput {
  return {
    limit: q.limit,
    cursor: q.cursor,
    status: parseEnumFilter(q.status, AgentStatus, 'status'),
    nameContains: optionalString(q.name_contains, 'name_contains', LIMITS.name).toLowerCase(),
  };
}

export class AgentService {
  constructor(
    private readonly store: Store,
    private readonly tokens: TokenService,
    private readonly clock: Clock,
  ) {}

  async create(i: CreateAgentInput): Promise<Agent> {
    const now = formatTime(this.clock());
    const agent = Agent.fromPartial({
      agent_id: newSortableId('agent', this.clock()),
      name: i.name,
      description: i.description,
      metadata: i.metadata,
      status: AgentStatus.ACTIVE,
      created_at: now,
      updated_at: now,
    });
    await this.store.write(async (w) => {
      if (await w.get('index', idx.agentName(i.name))) {
        throw new ActError('ALREADY_EXISTS', `an agent named ${JSON.stringify(i.name)} already exists`, {
          field: 'name',
        });
      }
      w.put('agents', agent.agent_id, agent);
      w.put('index', idx.agentName(i.name), agent.agent_id);
      w.emit({ kind: { $case: 'agent', value: agent } });
    });
    return agent;
  }

  async get(id: unknown): Promise<Agent> {
    const agentId = requireId(id, 'agent', 'agent_id');
    const a = await this.store.read((r) => r.get<Agent>('agents', agentId));
    if (!a) throw notFound('agent', agentId, 'agent_id');
    return a;
  }

  list(i: ListAgentsInput): Promise<Page<Agent>> {
    return this.store.read((r) =>
      filteredPage<Agent>(
        r,
        'agents',
        i,
        (a) =>
          (i.status === undefined || a.status === i.status) &&
          (i.nameContains === '' || a.name.toLowerCase().includes(i.nameContains)),
      ),
    );
  }

  update(i: UpdateAgentInput): Promise<Agent> {
    return this.mutate(i.agentId, (a) => {
      if (i.description !== undefined) a.description = i.description;
      if (i.metadata !== undefined) a.metadata = i.metadata;
    });
  }

  setStatus(id: unknown, enabled: boolean): Promise<Agent> {
    const agentId = requireId(id, 'agent', 'agent_id');
    return this.mutate(agentId, (a) => {
      a.status = enabled ? AgentStatus.ACTIVE : AgentStatus.DISABLED;
    });
  }

  /** Deletes an agent and revokes all its tokens (and their descendants). */
  async delete(
    id: unknown,
  ): Promise<{ id: string; deleted: boolean; revoked_token_ids: string[]; revision: number }> {
    const agentId = requireId(id, 'agent', 'agent_id');
    const { result, revision } = await this.store.write(async (w) => {
      const a = await w.get<Agent>('agents', agentId);
      if (!a) throw notFound('agent', agentId, 'agent_id');
      const prefix = idx.agentTokenPrefix(agentId);
      const revoked: string[] = [];
      for (const k of await scanAll(w, 'index', prefix))
        revoked.push(...(await this.tokens.revokeTree(w, k.slice(prefix.length), 'agent deleted')));
      w.del('agents', agentId);
      w.del('index', idx.agentName(a.name));
      w.emit({ kind: { $case: 'agent_deleted', value: agentId } });
      return revoked;
    });
    return { id: agentId, deleted: true, revoked_token_ids: result, revision };
  }

  private async mutate(agentId: string, fn: (a: Agent) => void): Promise<Agent> {
    const { result } = await this.store.write(async (w) => {
      const a = await w.get<Agent>('agents', agentId);
      if (!a) throw notFound('agent', agentId, 'agent_id');
      const next = Agent.fromPartial(a);
      fn(next);
      next.updated_at = formatTime(this.clock());
      w.put('agents', agentId, next);
      w.emit({ kind: { $case: 'agent', value: next } });
      return next;
    });
    return result;
  }
}
