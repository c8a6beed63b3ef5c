import { invalid } from '../common/errors';
import type { Policy, PolicyConstraints, Rule } from '../gen/act/v1/admin';
import { parseCapability } from './capability';
import { compileRule } from './cel';
import { parseAllowedHours, parseRateLimit, parseTimeZone, validateMaxPerDay } from './constraints';
import type { AllowedHours, Capability, CompiledPolicy, CompiledRule, RateLimit } from './types';

/** Bounds on a policy definition (see proto/act/v1/admin.proto). */
export const POLICY_LIMITS = {
  nameMax: 200,
  descriptionMax: 2000,
  capabilitiesMax: 256,
  rulesMax: 32,
} as const;

/** The user-editable part of a policy (CreatePolicyRequest). */
export interface PolicyInput {
  name: string;
  description: string;
  capabilities: string[];
  constraints?: PolicyConstraints | undefined;
  conditions: Rule[];
  approval_rules: Rule[];
}

interface Parts {
  capabilities: Capability[];
  conditions: CompiledRule[];
  approvalRules: CompiledRule[];
  maxActionsPerDay: number | undefined;
  allowedHours: AllowedHours | undefined;
  rateLimit: RateLimit | undefined;
  dayTimeZone: string;
}

function compileParts(p: PolicyInput): Parts {
  const capabilities = (p.capabilities ?? []).map((c, i) => parseCapability(c, `capabilities[${i}]`));
  const c = p.constraints;
  const max = c ? validateMaxPerDay(c.max_actions_per_day ?? 0, 'constraints.max_actions_per_day') : 0;
  const allowedHours = c?.allowed_hours
    ? parseAllowedHours(c.allowed_hours, 'constraints.allowed_hours')
    : undefined;
  const rateLimit = c?.rate_limit ? parseRateLimit(c.rate_limit, 'constraints.rate_limit') : undefined;
  const tz = c?.timezone ? parseTimeZone(c.timezone, 'constraints.timezone') : undefined;
  return {
    capabilities,
    conditions: (p.conditions ?? []).map((r, i) => compileRule(r, `conditions[${i}]`)),
    approvalRules: (p.approval_rules ?? []).map((r, i) => compileRule(r, `approval_rules[${i}]`)),
    maxActionsPerDay: max > 0 ? max : undefined,
    allowedHours,
    rateLimit,
    dayTimeZone: tz ?? allowedHours?.timeZone ?? 'UTC',
  };
}

/**
 * Parses and compiles a stored policy for decisions (once per policy revision).
 * Size bounds are the control plane's job ({@link validatePolicyInput}); this checks grammar.
 * @throws ActError INVALID_ARGUMENT with the field at fault, e.g. "capabilities[1]",
 * "constraints.allowed_hours", "approval_rules[0].expression", "conditions[0].actions[1]".
 */
export function compilePolicy(p: Policy): CompiledPolicy {
  const parts = compileParts(p);
  return { id: p.policy_id, name: p.name, version: p.version, ...parts, source: p };
}

/**
 * Validates a policy definition on create/update: name 1-200 chars, description at most
 * 2000, 1-256 distinct capabilities, at most 32 conditions and 32 approval rules, and
 * everything parsable (capabilities, constraints, time zone, CEL).
 * @throws ActError INVALID_ARGUMENT with the field at fault.
 */
export function validatePolicyInput(input: PolicyInput): void {
  const name = input.name ?? '';
  if (name.trim().length === 0 || name.length > POLICY_LIMITS.nameMax) {
    throw invalid('name', `name must be 1-${POLICY_LIMITS.nameMax} characters`);
  }
  if ((input.description ?? '').length > POLICY_LIMITS.descriptionMax) {
    throw invalid('description', `description must be at most ${POLICY_LIMITS.descriptionMax} characters`);
  }
  const caps = input.capabilities ?? [];
  if (caps.length === 0 || caps.length > POLICY_LIMITS.capabilitiesMax) {
    throw invalid(
      'capabilities',
      `a policy needs 1-${POLICY_LIMITS.capabilitiesMax} capabilities; got ${caps.length}`,
    );
  }
  const seen = new Map<string, number>();
  caps.forEach((c, i) => {
    const prev = seen.get(c);
    if (prev !== undefined)
      throw invalid(
        `capabilities[${i}]`,
        `duplicate capability ${JSON.stringify(c)} (also capabilities[${prev}])`,
      );
    seen.set(c, i);
  });
  for (const key of ['conditions', 'approval_rules'] as const) {
    const n = (input[key] ?? []).length;
    if (n > POLICY_LIMITS.rulesMax) throw invalid(key, `at most ${POLICY_LIMITS.rulesMax} ${key}; got ${n}`);
  }
  compileParts(input);
}
