import type { Policy } from '../gen/act/v1/admin';

/** A parsed capability, "verb:resource_type[:resource_pattern]". */
export interface Capability {
  /** The text as written. */
  raw: string;
  verb: string;
  type: string;
  /** Resource glob; undefined = any resource. */
  pattern: string | undefined;
}

/** A parsed action, "verb:resource_type" (what a check asks for). */
export interface Action {
  verb: string;
  type: string;
}

/** "N per second|minute|hour|day". */
export interface RateLimit {
  limit: number;
  periodMs: number;
  raw: string;
}

/** Allowed hours such as "Mon-Fri 09:00-17:00 Europe/Berlin". */
export interface AllowedHours {
  raw: string;
  timeZone: string;
  /** Whether the instant falls in an allowed window. */
  contains(nowMs: number): boolean;
  /** The next instant >= nowMs at which a window is open (nowMs itself when inside). */
  nextOpen(nowMs: number): number;
}

/** Variables a CEL rule sees. */
export interface RuleInput {
  action: string;
  resource: string;
  context: Record<string, unknown>;
  agent: { id: string; metadata: Record<string, string> };
}

/** A CEL expression compiled once per policy revision. */
export interface CompiledRule {
  expression: string;
  description: string;
  /** Capabilities the rule applies to; empty = every action. */
  actions: Capability[];
  /** True/false, or an Error when evaluation fails (missing field, type mismatch, non-bool). */
  evaluate(input: RuleInput): boolean | Error;
}

/** A policy ready for decisions: everything parsed and compiled. */
export interface CompiledPolicy {
  id: string;
  name: string;
  version: number;
  capabilities: Capability[];
  conditions: CompiledRule[];
  approvalRules: CompiledRule[];
  maxActionsPerDay: number | undefined;
  allowedHours: AllowedHours | undefined;
  rateLimit: RateLimit | undefined;
  /** Time zone of the daily maximum's day boundary. */
  dayTimeZone: string;
  /** The source definition. */
  source: Policy;
}
