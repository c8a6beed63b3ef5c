import { invalid } from '../common/errors';
import { compileGlob, globCovers, globMatch, intern, type Glob } from './glob';
import type { Action, Capability } from './types';

/** Max length of a verb or resource type. */
export const MAX_PART_LENGTH = 64;
/** Max length of a resource pattern. */
export const MAX_PATTERN_LENGTH = 256;
/** Max length of an action string ("verb:type"). */
export const MAX_ACTION_LENGTH = 256;

const PART_RE = /^[a-z0-9_.*-]{1,64}$/;
const PATTERN_RE = /^[A-Za-z0-9_.*/-]{1,256}$/;
const ACTION_PART_RE = /^[a-z0-9_.-]{1,64}$/;

/** A parsed capability with its globs compiled once. */
class ParsedCapability implements Capability {
  readonly verbGlob: Glob;
  readonly typeGlob: Glob;
  readonly patternGlob: Glob | undefined;
  constructor(
    readonly raw: string,
    readonly verb: string,
    readonly type: string,
    readonly pattern: string | undefined,
  ) {
    this.verbGlob = compileGlob(verb, false);
    this.typeGlob = compileGlob(type, false);
    this.patternGlob = pattern === undefined ? undefined : compileGlob(pattern, true);
  }
}

// Capabilities built elsewhere (plain objects) get their globs compiled once here.
const foreign = new WeakMap<Capability, ParsedCapability>();

function compiled(cap: Capability): ParsedCapability {
  if (cap instanceof ParsedCapability) return cap;
  let p = foreign.get(cap);
  if (p === undefined) {
    p = new ParsedCapability(cap.raw, cap.verb, cap.type, cap.pattern);
    foreign.set(cap, p);
  }
  return p;
}

const GRAMMAR =
  'must look like "verb:resource_type[:resource_pattern]" (verb and type: 1-64 of [a-z0-9_.-] or *; pattern: 1-256 of [A-Za-z0-9_./-] or *)';

/**
 * Parses "verb:resource_type[:resource_pattern]". In the verb and type `*` matches any
 * run of characters; in the pattern `*` stays within one `/`-separated segment and `**`
 * crosses segments (see glob.ts).
 * @throws ActError INVALID_ARGUMENT on `field` when the text does not fit the grammar.
 */
export function parseCapability(s: string, field = 'capability'): Capability {
  if (typeof s !== 'string' || s.length === 0) throw invalid(field, `capability is empty; it ${GRAMMAR}`);
  if (s.length > 2 * MAX_PART_LENGTH + MAX_PATTERN_LENGTH + 2) {
    throw invalid(field, `capability is too long (${s.length} chars); it ${GRAMMAR}`);
  }
  const first = s.indexOf(':');
  if (first < 0) throw invalid(field, `capability ${JSON.stringify(s)} has no ':'; it ${GRAMMAR}`);
  const second = s.indexOf(':', first + 1);
  const verb = s.slice(0, first);
  const type = second < 0 ? s.slice(first + 1) : s.slice(first + 1, second);
  const pattern = second < 0 ? undefined : s.slice(second + 1);
  if (!PART_RE.test(verb)) throw invalid(field, `capability ${JSON.stringify(s)}: bad verb; it ${GRAMMAR}`);
  if (!PART_RE.test(type))
    throw invalid(field, `capability ${JSON.stringify(s)}: bad resource type; it ${GRAMMAR}`);
  if (pattern !== undefined && !PATTERN_RE.test(pattern)) {
    throw invalid(field, `capability ${JSON.stringify(s)}: bad resource pattern; it ${GRAMMAR}`);
  }
  return new ParsedCapability(s, verb, type, pattern);
}

// Actions repeat (a deployment has a few hundred at most): parse each once and hand out a
// frozen Action with internalized parts, so matching compares pointers. Bounded; cleared when full.
const MAX_CACHED_ACTIONS = 4096;
const actions = new Map<string, Action>();

/**
 * Parses an action "verb:resource_type" (no wildcards, no pattern, at most 256 chars).
 * The returned object is shared and frozen.
 * @returns undefined when the text is not a valid action.
 */
export function parseAction(s: string): Action | undefined {
  if (typeof s !== 'string' || s.length > MAX_ACTION_LENGTH) return undefined;
  const hit = actions.get(s);
  if (hit !== undefined) return hit;
  const i = s.indexOf(':');
  if (i < 0) return undefined;
  const verb = s.slice(0, i);
  const type = s.slice(i + 1);
  if (!ACTION_PART_RE.test(verb) || !ACTION_PART_RE.test(type)) return undefined;
  const action: Action = Object.freeze({ verb: intern(verb), type: intern(type) });
  if (actions.size >= MAX_CACHED_ACTIONS) actions.clear();
  actions.set(s, action);
  return action;
}

/**
 * Whether `cap` grants `action` on `resource`. A capability without a pattern matches
 * any resource (also ''); one with a pattern never matches the empty resource. Time is
 * linear in the resource's length (glob.ts). Dot segments are not this function's
 * concern: decide() denies them before matching.
 */
export function capabilityMatches(cap: Capability, action: Action, resource: string): boolean {
  const c = compiled(cap);
  if (!globMatch(c.verbGlob, action.verb) || !globMatch(c.typeGlob, action.type)) return false;
  if (c.patternGlob === undefined) return true;
  return resource.length > 0 && globMatch(c.patternGlob, resource);
}

/**
 * Whether everything `inner` grants, `outer` grants too (attenuation check), under the
 * same glob rules as matching. Conservative: may answer false for some covered pairs,
 * never true wrongly.
 */
export function capabilityCovers(outer: Capability, inner: Capability): boolean {
  if (!globCovers(outer.verb, inner.verb, false) || !globCovers(outer.type, inner.type, false)) return false;
  if (outer.pattern === undefined) return true;
  // inner without a pattern also matches '' (and anything), which a pattern never does.
  if (inner.pattern === undefined) return false;
  return globCovers(outer.pattern, inner.pattern, true);
}

/**
 * Whether `cap` (capability text) is covered by one of `rights`. `rights` undefined
 * means unrestricted (true); an unparsable `cap` is never covered.
 */
export function coversAll(rights: Capability[] | undefined, cap: string): boolean {
  if (rights === undefined) return true;
  let parsed: Capability;
  try {
    parsed = parseCapability(cap);
  } catch {
    return false;
  }
  for (const r of rights) if (capabilityCovers(r, parsed)) return true;
  return false;
}
