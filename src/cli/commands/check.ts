/**
 * `act check`: asks whether a token may do an action, at the control plane
 * (POST /api/enforcement/check with the API key, or the token itself as bearer)
 * or at a sidecar's loopback REST API (--sidecar). Exit 0 for ALLOW, 4 for DENY
 * and APPROVAL_REQUIRED (whose approval id is printed).
 */
import { Option, type Command } from 'commander';
import type { Kit } from '../context';
import { contextValue, jsonObject, required } from '../context';
import { EXIT } from '../errors';
import type { Json } from './shared';

export const DEFAULT_SIDECAR_URL = 'http://127.0.0.1:8710';

/** "in 6h 52m" from now to an RFC 3339 time. */
export function until(iso: string, now = Date.now()): string {
  const ms = Date.parse(iso) - now;
  if (!Number.isFinite(ms)) return '';
  if (ms <= 0) return 'now';
  const m = Math.ceil(ms / 60_000);
  const d = Math.floor(m / 1440);
  const h = Math.floor((m % 1440) / 60);
  const min = m % 60;
  return `in ${d ? `${d}d ` : ''}${h || d ? `${h}h ` : ''}${min}m`;
}

function retryText(ms: number): string {
  return ms < 60_000 ? `${Math.ceil(ms / 1000)} s` : until(new Date(Date.now() + ms).toISOString());
}

/** The human lines for a check's answer. */
export function renderDecision(r: Json, resource: string): string {
  const lines = [
    `${r.decision ?? (r.allowed ? 'ALLOW' : 'DENY')}  ${r.action}${resource ? ` on ${resource}` : ''}`,
  ];
  lines.push(`  reason:     ${r.reason} (${r.reason_code})`);
  const d = (r.details as Json | undefined) ?? {};
  if (d.missing_capability) lines.push(`  missing:    ${d.missing_capability}`);
  if (d.next_allowed_at)
    lines.push(`  opens at:   ${d.next_allowed_at} (${until(d.next_allowed_at as string)})`);
  else if (d.retry_after_ms) lines.push(`  retry in:   ${retryText(Number(d.retry_after_ms))}`);
  if (
    d.remaining_daily_budget !== undefined &&
    d.remaining_daily_budget !== null &&
    d.remaining_daily_budget >= 0
  )
    lines.push(`  today left: ${d.remaining_daily_budget}`);
  if (d.rule) lines.push(`  rule:       ${d.rule}${d.policy_id ? ` (${d.policy_id})` : ''}`);
  if (r.approval_id) {
    lines.push(`  approval:   ${r.approval_id}`);
    if (r.decision === 'APPROVAL_REQUIRED')
      lines.push(
        `  next:       an approver runs \`act approvals approve ${r.approval_id}\`;`,
        `              then repeat this check, adding --approval-id ${r.approval_id}`,
        `              (\`act approvals wait ${r.approval_id}\` waits for the decision)`,
      );
  }
  lines.push(`  audit:      ${r.audit_id} (policy revision ${r.policy_revision})`);
  return lines.join('\n') + '\n';
}

export function registerCheck(program: Command, k: Kit): void {
  program
    .command('check')
    .description('check whether a token may perform an action (POST /api/enforcement/check)')
    .addOption(new Option('--token <token>', 'the ACT token (act_…)').env('ACT_TOKEN'))
    .option('--action <action>', 'verb:resource_type, e.g. read:customer_profile (required)')
    .option('--resource <resource>', 'the resource, e.g. customer_54321')
    .option('--context <json>', 'context object as JSON, e.g. \'{"ip":"10.0.1.50"}\'', jsonObject)
    .option(
      '--ctx <key=value>',
      'one context entry (repeatable; JSON values such as 5000 or true are parsed)',
      contextValue,
    )
    .option('--approval-id <id>', 'present an approved approval (after APPROVAL_REQUIRED)')
    .addOption(
      new Option(
        '--sidecar [url]',
        `ask a sidecar's loopback REST API instead (default ${DEFAULT_SIDECAR_URL})`,
      ).env('ACT_SIDECAR_URL'),
    )
    .addHelpText(
      'after',
      `
Without --sidecar the control plane answers (authenticated with --key/ACT_KEY if
set, else with the token itself). Exit status: 0 ALLOW, 4 DENY or
APPROVAL_REQUIRED, 1 an error answer, 3 unreachable.

Examples:
  act check --token "$TOKEN" --action read:customer_profile --resource customer_54321 \\
    --ctx ip=10.0.1.50 --ctx "reason=User inquiry about order status"
  act check --sidecar --token "$TOKEN" --action create:transaction --ctx amount=5000`,
    )
    .action(
      k.action(async (c, o: Json) => {
        const token = required(o.token as string | undefined, '--token (or ACT_TOKEN)');
        const body: Json = { token, action: required(o.action, '--action') };
        if (o.resource !== undefined) body.resource = o.resource;
        const context = {
          ...((o.context as Json | undefined) ?? {}),
          ...((o.ctx as Json | undefined) ?? {}),
        };
        if (Object.keys(context).length) body.context = context;
        if (o.approvalId) body.approval_id = o.approvalId;
        let r: Json;
        if (o.sidecar !== undefined) {
          const raw = o.sidecar === true ? DEFAULT_SIDECAR_URL : (o.sidecar as string);
          const from = c.cmd.getOptionValueSource('sidecar') === 'env' ? 'ACT_SIDECAR_URL' : '--sidecar';
          r = await c.sidecar(raw, from).json('POST', '/api/enforcement/check', { body, auth: 'none' });
        } else {
          const api = c.api();
          const auth = api.conn.key !== undefined ? ('key' as const) : { bearer: token, what: 'the token' };
          r = await api.json('POST', '/api/enforcement/check', { body, auth });
        }
        if (c.out.json) await c.out.printJson(r);
        else if (c.out.quiet) await c.out.say(`${r.decision}${r.approval_id ? ` ${r.approval_id}` : ''}\n`);
        else {
          await c.out.say(renderDecision(r, (o.resource as string) ?? ''));
        }
        return r.allowed === true && (r.decision ?? 'ALLOW') === 'ALLOW' ? EXIT.OK : EXIT.DENIED;
      }),
    );
}
