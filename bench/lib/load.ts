/** Runs bench/lib/loadgen.ts in its own process and collects its per-phase results. */
import type { LoadArgs, PhaseResult } from './loadgen';
import type { Scope } from './procs';

export type { LoadArgs, Phase, PhaseResult } from './loadgen';

/** Runs the phases; throws if any call failed or was not allowed. */
export async function runLoad(
  scope: Scope,
  args: LoadArgs,
  name = 'loadgen',
  /** Pin the generator to this CPU (the servers are pinned to another). */
  cpu?: number,
): Promise<PhaseResult[]> {
  const p = scope.helper(name, 'loadgen.ts', args, [], cpu);
  const results: PhaseResult[] = [];
  let fatal: string | undefined;
  p.onJson((rec) => {
    if (rec.type === 'result') results.push(rec as unknown as PhaseResult);
    if (rec.type === 'fatal') fatal = String(rec.error);
  });
  const code = await p.exited;
  if (fatal !== undefined || code !== 0)
    throw new Error(`${name} failed (exit ${code}): ${fatal ?? p.output.slice(-20).join('\n')}`);
  for (const r of results) {
    if (r.errors > 0 || r.not_allowed > 0)
      throw new Error(
        `${name} ${r.phase} against ${args.target}: ${r.errors} errors, ${r.not_allowed} not allowed ` +
          `of ${r.count}: ${r.first_error ?? ''}`,
      );
  }
  return results;
}
