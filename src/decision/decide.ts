/**
 * The decision engine: a pure function from (request, state, time, counters) to a
 * decision. No I/O, no clock, no logger. Checks run in DESIGN.md's order and the
 * first failure wins; deny is the default.
 */
import { DEFAULT_REASON_TEXT, type DecisionKind, type ReasonCode } from '../common/reasons';
import {
  capabilityMatches,
  dayKey,
  hasDotSegment,
  msUntilNextDay,
  parseAction,
  parseCapability,
} from '../policy';
import type { Action, Capability, CompiledPolicy, CompiledRule, RuleInput } from '../policy/types';
import type { TokenClaims } from '../token/types';
import type {
  AgentView,
  CounterUpdate,
  DecideDeps,
  DecisionDetails,
  DecisionRequest,
  DecisionResult,
} from './types';

const NO_USAGE: CounterUpdate[] = [];

export function decide(req: DecisionRequest, deps: DecideDeps): DecisionResult {
  const { view, nowMs } = deps;

  const verified = deps.verifier.verify(req.token, view.publicKey);
  if (!verified.ok)
    return deny(
      verified.reason,
      undefined,
      [],
      `${DEFAULT_REASON_TEXT[verified.reason]}: ${verified.detail}`,
    );
  const claims = verified.claims;

  if (claims.not_before_ms > nowMs) {
    return deny('TOKEN_NOT_YET_VALID', claims, [], undefined, {
      retry_after_ms: claims.not_before_ms - nowMs,
      next_allowed_at: new Date(claims.not_before_ms).toISOString(),
    });
  }
  if (claims.expires_at_ms <= nowMs) {
    return deny(
      'TOKEN_EXPIRED',
      claims,
      [],
      `Token expired at ${new Date(claims.expires_at_ms).toISOString()}`,
    );
  }
  if (view.isRevoked(claims.token_id)) return deny('TOKEN_REVOKED', claims, []);
  for (const ancestor of claims.ancestor_token_ids) {
    if (view.isRevoked(ancestor)) {
      return deny('TOKEN_REVOKED', claims, [], `Token revoked through its ancestor ${ancestor}`);
    }
  }

  const agent = view.agent(claims.agent_id);
  if (agent === undefined) return deny('AGENT_UNKNOWN', claims, []);
  if (agent.status !== 'ACTIVE') return deny('AGENT_DISABLED', claims, []);

  if (deps.stale === true) return deny('REPLICA_STALE', claims, []);

  const policies: CompiledPolicy[] = [];
  for (const id of claims.policy_ids) {
    const p = view.policy(id);
    if (p !== undefined) policies.push(p);
  }
  const policyIds = policies.map((p) => p.id);
  if (policies.length === 0) return deny('POLICY_UNKNOWN', claims, policyIds);

  // `public/../secret` must not pass for `public/*`; no pattern ever sees such a resource.
  if (hasDotSegment(req.resource)) return deny('RESOURCE_PATH_INVALID', claims, policyIds);

  const action = parseAction(req.action);
  const missing = { missing_capability: req.action };
  if (action === undefined) return deny('CAPABILITY_NOT_GRANTED', claims, policyIds, undefined, missing);
  if (!attenuationAllows(claims, action, req.resource)) {
    return deny(
      'CAPABILITY_NOT_GRANTED',
      claims,
      policyIds,
      'Capability not granted in token (attenuated)',
      missing,
    );
  }

  // Several policies may grant the action: allowed when one passes all its
  // constraints. Otherwise report the policy that got furthest.
  let best: Outcome | undefined;
  let input: RuleInput | undefined;
  for (const policy of policies) {
    if (!grants(policy, action, req.resource)) continue;
    input ??= { action: req.action, resource: req.resource, context: req.context, agent: agentVars(agent) };
    const outcome = evaluatePolicy(policy, action, req, input, claims, deps);
    if (outcome.stage === STAGE_ALLOW) return finish(outcome, claims, policyIds);
    if (best === undefined || outcome.stage > best.stage) best = outcome;
  }
  if (best === undefined) return deny('CAPABILITY_NOT_GRANTED', claims, policyIds, undefined, missing);
  return finish(best, claims, policyIds);
}

// How far a policy got; a higher stage wins when no policy allows.
const STAGE_CONDITION = 1;
const STAGE_HOURS = 2;
const STAGE_RATE = 3;
const STAGE_DAILY = 4;
const STAGE_APPROVAL = 5;
const STAGE_ALLOW = 6;

interface Outcome {
  stage: number;
  decision: DecisionKind;
  reasonCode: ReasonCode;
  reason: string;
  details: DecisionDetails;
  usage: CounterUpdate[];
  approvalRequest?: { policyId: string; rule: string };
  approvalId?: string;
  approvalNote?: string;
}

function evaluatePolicy(
  policy: CompiledPolicy,
  action: Action,
  req: DecisionRequest,
  input: RuleInput,
  claims: TokenClaims,
  deps: DecideDeps,
): Outcome {
  const nowMs = deps.nowMs;
  const policyId = policy.id;

  for (const rule of policy.conditions) {
    if (!ruleApplies(rule, action, req.resource)) continue;
    const r = rule.evaluate(input);
    if (r !== true) {
      const why = r instanceof Error ? `could not be evaluated (${r.message.split('\n')[0]})` : 'is false';
      return {
        stage: STAGE_CONDITION,
        ...denial('CONDITION_FAILED', `Policy condition ${ruleLabel(rule)} ${why}`),
        details: { policy_id: policyId, rule: rule.expression },
      };
    }
  }

  const hours = policy.allowedHours;
  if (hours !== undefined && !hours.contains(nowMs)) {
    const next = hours.nextOpen(nowMs);
    return {
      stage: STAGE_HOURS,
      ...denial('OUTSIDE_ALLOWED_HOURS', `Outside allowed hours (${hours.raw})`),
      details: {
        policy_id: policyId,
        retry_after_ms: next - nowMs,
        next_allowed_at: new Date(next).toISOString(),
      },
    };
  }

  const counterKey = `${claims.agent_id}|${policyId}`;
  const usage: CounterUpdate[] = [];
  const details: DecisionDetails = { policy_id: policyId };

  const rate = policy.rateLimit;
  if (rate !== undefined) {
    const c = deps.counters.rate(counterKey, rate, nowMs);
    if (!c.ok) {
      const retry = c.retryAfterMs;
      const d: DecisionDetails = { policy_id: policyId, remaining_rate: 0 };
      if (retry > 0) d.retry_after_ms = retry;
      return {
        stage: STAGE_RATE,
        ...denial(
          'RATE_LIMITED',
          `Rate limit exceeded (${rate.raw})${retry > 0 ? `; retry in ${retry} ms` : ''}`,
        ),
        details: d,
      };
    }
    usage.push({ kind: 'rate', key: counterKey, atMs: nowMs, rate });
    details.remaining_rate = c.remaining;
  }

  const max = policy.maxActionsPerDay;
  if (max !== undefined && max > 0) {
    const day = dayKey(nowMs, policy.dayTimeZone);
    const untilTomorrow = msUntilNextDay(nowMs, policy.dayTimeZone);
    const c = deps.counters.daily(counterKey, day, max, nowMs);
    if (!c.ok) {
      const retry = c.retryAfterMs > 0 ? Math.min(c.retryAfterMs, untilTomorrow) : untilTomorrow;
      return {
        stage: STAGE_DAILY,
        ...denial('DAILY_LIMIT_EXCEEDED', `Daily limit of ${max} actions reached`),
        details: { policy_id: policyId, retry_after_ms: retry, remaining_daily_budget: 0 },
      };
    }
    usage.push({ kind: 'daily', key: counterKey, day, max, expiresAtMs: nowMs + untilTomorrow });
    details.remaining_daily_budget = c.remaining;
  }

  for (const rule of policy.approvalRules) {
    if (!ruleApplies(rule, action, req.resource)) continue;
    // An approval rule that cannot be evaluated requires approval (fail closed).
    const r = rule.evaluate(input);
    if (r === false) continue;
    const ask = { policyId, rule: rule.description || rule.expression };
    const approval = presentedApproval(req, claims, deps);
    if (approval.state === 'APPROVED') {
      return {
        stage: STAGE_ALLOW,
        decision: 'ALLOW',
        reasonCode: 'GRANTED',
        reason: `Token valid, capability granted; approved by a human (${req.approvalId})`,
        details,
        usage,
        approvalId: req.approvalId as string,
        approvalRequest: ask,
      };
    }
    if (approval.state === 'DENIED') {
      return {
        stage: STAGE_APPROVAL,
        ...denial('APPROVAL_DENIED', `Approval ${req.approvalId} was denied`),
        details: { policy_id: policyId, rule: rule.expression },
      };
    }
    const base: Outcome = {
      stage: STAGE_APPROVAL,
      decision: 'APPROVAL_REQUIRED',
      reasonCode: 'APPROVAL_REQUIRED_BY_POLICY',
      reason: `Human approval required: ${ruleLabel(rule)}`,
      details: { policy_id: policyId, rule: rule.expression },
      usage: NO_USAGE,
    };
    if (approval.state === 'PENDING') return { ...base, approvalId: req.approvalId as string };
    if (approval.note === undefined) return { ...base, approvalRequest: ask };
    return {
      ...base,
      reason: `${base.reason}; ${approval.note}, so this is a new request`,
      details: { ...base.details, presented_approval_id: req.approvalId as string },
      approvalRequest: ask,
      approvalNote: approval.note,
    };
  }

  return {
    stage: STAGE_ALLOW,
    decision: 'ALLOW',
    reasonCode: 'GRANTED',
    reason: DEFAULT_REASON_TEXT.GRANTED,
    details,
    usage,
  };
}

/**
 * The state of an approval presented with the request, if it is bound to exactly this request
 * (token, action, resource and the hash of the context the approver saw); otherwise NONE with a
 * note saying why, for the reason text.
 */
function presentedApproval(
  req: DecisionRequest,
  claims: TokenClaims,
  deps: DecideDeps,
): { state: 'APPROVED' | 'DENIED' | 'PENDING' | 'NONE'; note?: string } {
  const id = req.approvalId;
  if (!id) return { state: 'NONE' };
  const a = deps.view.approval(id);
  if (a === undefined) return { state: 'NONE', note: `approval ${id} is unknown` };
  if (
    a.tokenId !== claims.token_id ||
    a.action !== req.action ||
    a.resource !== req.resource ||
    a.requestHash === '' ||
    deps.requestHash === undefined ||
    a.requestHash !== deps.requestHash()
  ) {
    return { state: 'NONE', note: `approval ${id} was granted for a different request` };
  }
  if (a.status === 'DENIED') return { state: 'DENIED' };
  if (a.status === 'USED') return { state: 'NONE', note: `approval ${id} was already used` };
  if (a.status === 'EXPIRED' || a.expiresAtMs <= deps.nowMs)
    return { state: 'NONE', note: `approval ${id} expired at ${new Date(a.expiresAtMs).toISOString()}` };
  if (a.status === 'APPROVED') return { state: 'APPROVED' };
  return { state: 'PENDING' };
}

function grants(policy: CompiledPolicy, action: Action, resource: string): boolean {
  for (const cap of policy.capabilities) if (capabilityMatches(cap, action, resource)) return true;
  return false;
}

/** Attenuation narrows: the action must also match one of the token's own capabilities. */
function attenuationAllows(claims: TokenClaims, action: Action, resource: string): boolean {
  if (!claims.attenuated) return true;
  for (const cap of attenuatedCaps(claims)) if (capabilityMatches(cap, action, resource)) return true;
  return false;
}

function ruleApplies(rule: CompiledRule, action: Action, resource: string): boolean {
  if (rule.actions.length === 0) return true;
  for (const cap of rule.actions) if (capabilityMatches(cap, action, resource)) return true;
  return false;
}

function ruleLabel(rule: CompiledRule): string {
  return rule.description ? `"${rule.description}"` : `\`${rule.expression}\``;
}

function agentVars(agent: AgentView): RuleInput['agent'] {
  return { id: agent.id, metadata: agent.metadata };
}

function denial(
  code: ReasonCode,
  reason: string,
): Pick<Outcome, 'decision' | 'reasonCode' | 'reason' | 'usage'> {
  return { decision: 'DENY', reasonCode: code, reason, usage: NO_USAGE };
}

function deny(
  code: ReasonCode,
  claims: TokenClaims | undefined,
  policyIds: string[],
  reason?: string,
  details: DecisionDetails = {},
): DecisionResult {
  return {
    decision: 'DENY',
    reasonCode: code,
    reason: reason ?? DEFAULT_REASON_TEXT[code],
    details,
    claims,
    policyIds,
    usage: NO_USAGE,
  };
}

function finish(o: Outcome, claims: TokenClaims, policyIds: string[]): DecisionResult {
  const r: DecisionResult = {
    decision: o.decision,
    reasonCode: o.reasonCode,
    reason: o.reason,
    details: o.details,
    claims,
    policyIds,
    usage: o.decision === 'ALLOW' ? o.usage : NO_USAGE,
  };
  if (o.approvalRequest !== undefined) r.approvalRequest = o.approvalRequest;
  if (o.approvalId !== undefined) r.approvalId = o.approvalId;
  if (o.approvalNote !== undefined) r.approvalNote = o.approvalNote;
  return r;
}

// Parsed attenuation per claims object: the verification cache hands out the
// same claims object for a token, so this is parsed once per token.
const attenuationCache = new WeakMap<TokenClaims, ReturnType<typeof parseAttenuation>>();

function attenuatedCaps(claims: TokenClaims) {
  let caps = attenuationCache.get(claims);
  if (caps === undefined) {
    caps = parseAttenuation(claims.attenuation);
    attenuationCache.set(claims, caps);
  }
  return caps;
}

/** Unparsable entries are dropped: an attenuation can only narrow, never widen. */
function parseAttenuation(list: string[]): Capability[] {
  const out: Capability[] = [];
  for (const s of list) {
    try {
      out.push(parseCapability(s));
    } catch {
      // skip: validated at issue time; a bad entry grants nothing
    }
  }
  return out;
}
