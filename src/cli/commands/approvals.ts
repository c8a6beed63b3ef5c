/** `act approvals list|get|approve|deny|wait`: human decisions on APPROVAL_REQUIRED checks. */
import { Option, type Command } from 'commander';
import type { Kit } from '../context';
import type { Ctx } from '../context';
import { durationArg, durationMs, seg } from '../context';
import { EXIT } from '../errors';
import { listItems, pagingOptions, printList, printOne, type Json } from './shared';

const STATUSES = ['PENDING', 'APPROVED', 'DENIED', 'EXPIRED', 'USED'];

const fields = (a: Json): [string, unknown][] => {
  const out: [string, unknown][] = [
    ['approval_id', a.approval_id],
    ['status', a.status],
    ['agent', a.agent_name ? `${a.agent_id} (${a.agent_name})` : a.agent_id],
    ['token_id', a.token_id],
    ['action', a.action],
    ['resource', a.resource],
    ['context', a.context],
    ['rule', a.rule],
    ['policy_id', a.policy_id],
    ['created_at', a.created_at],
    ['expires_at', a.expires_at],
  ];
  if (a.resolved_by) out.push(['resolved_by', a.resolved_by], ['resolved_at', a.resolved_at]);
  if (a.comment) out.push(['comment', a.comment]);
  if (a.used_at) out.push(['used_at', a.used_at]);
  out.push(['audit_id', a.audit_id]);
  return out;
};

async function printApproval(c: Ctx, a: Json): Promise<void> {
  await printOne(c, a, 'approval_id', fields(a));
}

export function registerApprovals(program: Command, k: Kit): void {
  const approvals = program
    .command('approvals')
    .description("human approvals for checks that a policy's approval rule stopped (approver role)");

  pagingOptions(
    approvals
      .command('list')
      .description('list approval requests, newest first (GET /api/approvals)')
      .addOption(new Option('--status <status>', 'only this status').choices(STATUSES))
      .option('--agent <agent-id>', "only this agent's requests"),
  ).action(
    k.action(async (c, o: Json) => {
      const r = await listItems(c, '/api/approvals', 'approvals', { status: o.status, agent_id: o.agent }, o);
      await printList(
        c,
        'approvals',
        r,
        'approval_id',
        ['APPROVAL_ID', 'STATUS', 'AGENT_ID', 'ACTION', 'RESOURCE', 'RULE', 'EXPIRES'],
        (a) => [a.approval_id, a.status, a.agent_id, a.action, a.resource, a.rule, a.expires_at],
      );
    }),
  );

  approvals
    .command('get')
    .description('show one approval request with its context (GET /api/approvals/{id})')
    .argument('<approval-id>', 'approval_…')
    .action(
      k.action(async (c, id: string) =>
        printApproval(c, await c.api().json('GET', `/api/approvals/${seg(id)}`)),
      ),
    );

  for (const verb of ['approve', 'deny'] as const)
    approvals
      .command(verb)
      .description(
        verb === 'approve'
          ? "approve a pending request: the agent's repeated check (with --approval-id) is allowed once"
          : 'deny a pending request',
      )
      .argument('<approval-id>', 'approval_…')
      .option('--comment <text>', 'recorded with the decision')
      .action(
        k.action(async (c, id: string, o: Json) => {
          const body: Json = {};
          if (o.comment !== undefined) body.comment = o.comment;
          await printApproval(c, await c.api().json('POST', `/api/approvals/${seg(id)}/${verb}`, { body }));
        }),
      );

  approvals
    .command('wait')
    .description('wait until a request is decided (GET /api/approvals/{id}/wait); exit 0 only when APPROVED')
    .argument('<approval-id>', 'approval_…')
    .option('--timeout <duration>', 'give up after this long', durationArg, '30s')
    .option('--token <token>', 'authenticate as the agent with its ACT token instead of an API key')
    .addHelpText(
      'after',
      '\nExit status: 0 APPROVED, 4 DENIED, EXPIRED or USED, or still PENDING at the timeout.\n\nExample (an agent script):\n  act approvals wait approval_… --token "$TOKEN" --timeout 5m && \\\n    act check --token "$TOKEN" --action create:transaction --ctx amount=5000 --approval-id approval_…',
    )
    .action(
      k.action(async (c, id: string, o: Json) => {
        const api = c.api();
        const auth = o.token ? { bearer: o.token as string, what: 'the token' } : ('key' as const);
        const deadline = Date.now() + durationMs(o.timeout as string);
        let a: Json;
        // The server may end a long poll before our timeout (its own cap): ask again until ours passes.
        for (;;) {
          // At most 900 s a poll: the control plane's longest wait.
          const left = Math.min(900, Math.max(1, Math.ceil((deadline - Date.now()) / 1000)));
          a = await api.json('GET', `/api/approvals/${seg(id)}/wait`, {
            query: { timeout: `${left}s` },
            auth,
          });
          if (a.decided === true || Date.now() >= deadline - 500) break;
        }
        if (c.out.json) await c.out.printJson(a);
        else if (c.out.quiet) await c.out.say(`${a.status}\n`);
        else if (a.decided !== true)
          await c.out.say(
            `${a.approval_id ?? id} is still ${a.status} after ${o.timeout} (expires at ${a.expires_at})\n`,
          );
        else
          await c.out.say(
            `${a.approval_id ?? id} ${a.status}${a.resolved_by ? ` by ${a.resolved_by}` : ''}${a.comment ? `: ${a.comment}` : ''}\n` +
              (a.status === 'APPROVED'
                ? `  repeat the check with --approval-id ${a.approval_id ?? id} (allowed once)\n`
                : ''),
          );
        return a.status === 'APPROVED' ? EXIT.OK : EXIT.DENIED;
      }),
    );
}
