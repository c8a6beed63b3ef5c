/** Policy layer: capability grammar, constraints, CEL rules, policy compilation. Pure. */
export type {
  Action,
  AllowedHours,
  Capability,
  CompiledPolicy,
  CompiledRule,
  RateLimit,
  RuleInput,
} from './types';
export {
  MAX_ACTION_LENGTH,
  MAX_PART_LENGTH,
  MAX_PATTERN_LENGTH,
  capabilityCovers,
  capabilityMatches,
  coversAll,
  parseAction,
  parseCapability,
} from './capability';
export { hasDotSegment } from './glob';
export {
  MAX_COUNT,
  dayKey,
  msUntilNextDay,
  parseAllowedHours,
  parseRateLimit,
  parseTimeZone,
  validateMaxPerDay,
} from './constraints';
export { MAX_EXPRESSION_LENGTH, compileRule } from './cel';
export { POLICY_LIMITS, compilePolicy, validatePolicyInput, type PolicyInput } from './compile';
