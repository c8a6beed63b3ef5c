import type { Environment } from '@marcbachmann/cel-js';
import { invalid } from '../common/errors';
import { parseCapability } from './capability';
import type { CompiledRule, RuleInput } from './types';

/** Longest accepted CEL expression (characters). */
export const MAX_EXPRESSION_LENGTH = 4096;

let env: Environment | undefined;

/**
 * The shared CEL environment: four declared variables, nothing else. Built lazily once
 * because building one is costly; it is immutable after registration, so sharing is safe.
 * The library itself is loaded here too, on the first rule compiled: a process whose
 * policies have no CEL rules (most sidecars) never loads it (~17 ms of a cold start).
 */
function environment(): Environment {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  env ??= new (require('@marcbachmann/cel-js') as typeof import('@marcbachmann/cel-js')).Environment({
    // Bounds keep a hostile expression from costing much at compile or evaluation time.
    limits: {
      maxAstNodes: 2048,
      maxDepth: 64,
      maxListElements: 512,
      maxMapEntries: 256,
      maxCallArguments: 16,
    },
  })
    .registerVariable('action', 'string')
    .registerVariable('resource', 'string')
    .registerVariable('context', 'map')
    .registerVariable('agent', 'map');
  return env;
}

function message(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  // The library's messages carry a source excerpt after the first line; keep the summary.
  return e.message.split('\n')[0] ?? e.message;
}

/**
 * Compiles a CEL rule once (per policy revision). Variables: `action` (string),
 * `resource` (string), `context` (map from the request), `agent` (map: `id`, `metadata`).
 * Syntax errors, unknown variables, statically wrong types and a statically non-boolean
 * result fail here. At evaluation, a runtime error (missing key, type mismatch) or a
 * non-boolean result is returned as an Error (callers fail closed).
 * @param field the rule's request path, e.g. "conditions[0]".
 * @throws ActError INVALID_ARGUMENT on `${field}.expression` or `${field}.actions[i]`.
 */
export function compileRule(
  rule: { expression: string; actions: string[]; description: string },
  field: string,
): CompiledRule {
  const expression = typeof rule.expression === 'string' ? rule.expression : '';
  const ef = `${field}.expression`;
  if (expression.trim().length === 0)
    throw invalid(ef, 'expression is empty; write a CEL expression that returns bool');
  if (expression.length > MAX_EXPRESSION_LENGTH) {
    throw invalid(ef, `expression is ${expression.length} chars; at most ${MAX_EXPRESSION_LENGTH}`);
  }
  const e = environment();
  let checked: ReturnType<Environment['check']>;
  try {
    checked = e.check(expression);
  } catch (err) {
    throw invalid(ef, `invalid CEL: ${message(err)}`);
  }
  if (!checked.valid) throw invalid(ef, `invalid CEL: ${message(checked.error)}`);
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    throw invalid(ef, `CEL expression must return bool, it returns ${String(checked.type)}`);
  }
  let program: (ctx: RuleInput) => unknown;
  try {
    program = e.parse(expression) as (ctx: RuleInput) => unknown;
  } catch (err) {
    throw invalid(ef, `invalid CEL: ${message(err)}`);
  }
  const actions = (rule.actions ?? []).map((a, i) => parseCapability(a, `${field}.actions[${i}]`));
  return {
    expression,
    description: rule.description ?? '',
    actions,
    evaluate(input: RuleInput): boolean | Error {
      let out: unknown;
      try {
        out = program(input);
      } catch (err) {
        return err instanceof Error ? err : new Error(String(err));
      }
      if (typeof out === 'boolean') return out;
      return new Error(`CEL expression returned ${out === null ? 'null' : typeof out}, not bool`);
    },
  };
}
