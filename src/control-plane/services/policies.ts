/**
 * Policies: named, versioned capability sets with constraints, conditions and approval rules.
 * An update is a new version that applies to live tokens at once (they name policies).
 */
import type { Clock } from '../../common/clock';
import { ActError, invalid, notFound } from '../../common/errors';
import { newSortableId } from '../../common/ids';
import { Policy, PolicyConstraints, Rule, type CreatePolicyRequest } from '../../gen/act/v1/admin';
import { compilePolicy, validatePolicyInput } from '../../policy';
import { idx } from '../../store/records';
import type { Store } from '../../store/types';
import { filteredPage, type Page } from '../paging';
import { LIMITS, formatTime, optionalString, rejectUnknown, requireId, requireString } from '../validate';

type Json = Record<string, unknown>;

export interface ListPoliciesInput {
  limit?: unknown;
  cursor?: unknown;
  nameContains: string;
}

const POLICY_FIELDS = ['name', 'description', 'capabilities', 'constraints', 'conditions', 'approval_rules'];
const CONSTRAINT_FIELDS = ['max_actions_per_day', 'allowed_hours', 'rate_limit', 'timezone'];

/** Validates a policy definition (create, or the full new definition of an update). */
export function parsePolicyInput(body: Json, extra: readonly string[] = []): CreatePolicyRequest {
  rejectUnknown(body, [...POLICY_FIELDS, ...extra]);
  const name = requireString(body.name, 'name', { min: 1, max: LIMITS.name }).trim();
  if (name === '') throw invalid('name', 'name is required');
  const description = optionalString(body.description, 'description', LIMITS.description);
  if (!Array.isArray(body.capabilities))
    throw invalid('capabilities', 'capabilities must be an array such as ["read:customer_profile"]');
  const capabilities = body.capabilities.map((c, i) =>
    requireString(c, `capabilities[${i}]`, { min: 1, max: 512 }),
  );
  const input = {
    name,
    description,
    capabilities,
    constraints: parseConstraints(body.constraints),
    conditions: parseRules(body.conditions, 'conditions'),
    approval_rules: parseRules(body.approval_rules, 'approval_rules'),
  };
  validatePolicyInput(input);
  return input;
}

export function parseListPolicies(q: Json): ListPoliciesInput {
  return {
    limit: q.limit,
    cursor: q.cursor,
    nameContains: optionalString(q.name_contains, 'name_contains', LIMITS.name).toLowerCase(),
  };
}

function parseConstraints(v: unknown): PolicyConstraints {
  if (v === undefined || v === null) return PolicyConstraints.fromPartial({});
  if (typeof v !== 'object' || Array.isArray(v))
    throw invalid('constraints', 'constraints must be an object');
  const c = v as Json;
  rejectUnknown(c, CONSTRAINT_FIELDS, 'constraints.');
  const max = c.max_actions_per_day;
  if (
    max !== undefined &&
    max !== null &&
    (typeof max !== 'number' || !Number.isInteger(max) || max < 0 || max > 1e9)
  ) {
    throw invalid(
      'constraints.max_actions_per_day',
      'max_actions_per_day must be an integer from 0 (unlimited) to 1000000000',
    );
  }
  return PolicyConstraints.fromPartial({
    max_actions_per_day: (max as number | undefined) ?? 0,
    allowed_hours: optionalString(c.allowed_hours, 'constraints.allowed_hours', 200),
    rate_limit: optionalString(c.rate_limit, 'constraints.rate_limit', 100),
    timezone: optionalString(c.timezone, 'constraints.timezone', 100),
  });
}

function parseRules(v: unknown, field: string): Rule[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v))
    throw invalid(
      field,
      `${field} must be an array of CEL expressions or {expression, actions, description} objects`,
    );
  return v.map((r, i) => {
    if (typeof r === 'string') return Rule.fromPartial({ expression: r });
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      throw invalid(`${field}[${i}]`, `${field}[${i}] must be a string or an object`);
    const o = r as Json;
    rejectUnknown(o, ['expression', 'actions', 'description'], `${field}[${i}].`);
    const actions = o.actions === undefined ? [] : o.actions;
    if (!Array.isArray(actions))
      throw invalid(`${field}[${i}].actions`, 'actions must be an array of capabilities');
    return Rule.fromPartial({
      expression: requireString(o.expression, `${field}[${i}].expression`, { min: 1, max: 4096 }),
      actions: actions.map((a, j) => requireString(a, `${field}[${i}].actions[${j}]`, { min: 1, max: 512 })),
      description: optionalString(o.description, `${field}[${i}].description`, 500),
    });
  });
}

export class PolicyService {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async create(input: CreatePolicyRequest): Promise<Policy> {
    const now = formatTime(this.clock());
    const policy = Policy.fromPartial({
      ...input,
      policy_id: newSortableId('policy', this.clock()),
      version: 1,
      created_at: now,
      updated_at: now,
    });
    compilePolicy(policy); // proves it compiles (CEL, constraints) before anything is written
    await this.store.write(async (w) => {
      if (await w.get('index', idx.policyName(policy.name))) {
        throw new ActError('ALREADY_EXISTS', `a policy named ${JSON.stringify(policy.name)} already exists`, {
          field: 'name',
        });
      }
      w.put('policies', policy.policy_id, policy);
      w.put('index', idx.policyName(policy.name), policy.policy_id);
      w.emit({ kind: { $case: 'policy', value: policy } });
    });
    return policy;
  }

  async get(id: unknown): Promise<Policy> {
    const policyId = requireId(id, 'policy', 'policy_id');
    const p = await this.store.read((r) => r.get<Policy>('policies', policyId));
    if (!p) throw notFound('policy', policyId, 'policy_id');
    return p;
  }

  list(i: ListPoliciesInput): Promise<Page<Policy>> {
    return this.store.read((r) =>
      filteredPage<Policy>(
        r,
        'policies',
        i,
        (p) => i.nameContains === '' || p.name.toLowerCase().includes(i.nameContains),
      ),
    );
  }

  /** Replaces a policy's definition with a new version; live tokens see it at once. */
  async update(id: unknown, input: CreatePolicyRequest): Promise<{ policy: Policy; revision: number }> {
    const policyId = requireId(id, 'policy', 'policy_id');
    const { result, revision } = await this.store.write(async (w) => {
      const old = await w.get<Policy>('policies', policyId);
      if (!old) throw notFound('policy', policyId, 'policy_id');
      const next = Policy.fromPartial({
        ...input,
        policy_id: policyId,
        version: old.version + 1,
        created_at: old.created_at,
        updated_at: formatTime(this.clock()),
      });
      compilePolicy(next);
      if (next.name.toLowerCase() !== old.name.toLowerCase()) {
        if (await w.get('index', idx.policyName(next.name))) {
          throw new ActError('ALREADY_EXISTS', `a policy named ${JSON.stringify(next.name)} already exists`, {
            field: 'name',
          });
        }
        w.del('index', idx.policyName(old.name));
        w.put('index', idx.policyName(next.name), policyId);
      }
      w.put('policies', policyId, next);
      w.emit({ kind: { $case: 'policy', value: next } });
      return next;
    });
    return { policy: result, revision };
  }

  async delete(id: unknown): Promise<{ id: string; deleted: boolean; revision: number }> {
    const policyId = requireId(id, 'policy', 'policy_id');
    const { revision } = await this.store.write(async (w) => {
      const p = await w.get<Policy>('policies', policyId);
      if (!p) throw notFound('policy', policyId, 'policy_id');
      w.del('policies', policyId);
      w.del('index', idx.policyName(p.name));
      w.emit({ kind: { $case: 'policy_deleted', value: policyId } });
    });
    return { id: policyId, deleted: true, revision };
  }
}
