/** `act tokens create|list|get|revoke|attenuate`. */
import { Option, type Command } from 'commander';
import type { Kit } from '../context';
import type { Ctx } from '../context';
import { durationArg, durationMs, keyValue, list, required, seg, timeArg } from '../context';
import { UsageError } from '../errors';
import { parseToken } from '../../token/codec';
import { listItems, pagingOptions, printList, printOne, propagationLine, type Json } from './shared';

const infoFields = (t: Json): [string, unknown][] => [
  ['token_id', t.token_id],
  ['agent_id', t.agent_id],
  ['policy_ids', t.policy_ids],
  ['attenuation', t.attenuated ? t.attenuation : 'none'],
  ['parent_token_id', t.parent_token_id],
  ['issued_at', t.issued_at],
  ['expires_at', t.expires_at],
  ['revoked', t.revoked ? `yes, at ${t.revoked_at}` : 'no'],
  ['metadata', t.metadata],
  ['key_id', t.key_id],
];

/** The answer of create and attenuate: the token (a secret) and what it grants. */
async function printIssued(c: Ctx, t: Json): Promise<void> {
  if (c.out.json) return c.out.printJson(t);
  if (c.out.quiet) return c.out.say(`${t.token}\n`);
  await c.out.fields([
    ['token_id', t.token_id],
    ['agent_id', t.agent_id],
    ['policy_ids', t.policy_ids],
    ['parent_token_id', t.parent_token_id],
    ['expires_at', t.expires_at],
    ['capabilities', ((t.capabilities as string[]) ?? []).join(', ')],
    ['token', t.token],
  ]);
  c.out.note('The token is a secret: hand it to the agent (e.g. as ACT_TOKEN). `-q` prints only the token.');
}

/**
 * A token id, or a token string whose id is read from its claims locally (the
 * token itself is never sent: only its id goes into the request path).
 */
export function tokenId(v: string): string {
  if (!v.startsWith('act_')) return v;
  const p = parseToken(v);
  if ('error' in p)
    throw new UsageError(
      `that is not a valid ACT token (${p.error}); give its id (tok_…) or the whole token`,
    );
  return p.claims.token_id;
}

function expiryOptions(cmd: Command, what: string): Command {
  return cmd
    .addOption(
      new Option('--expires-in <duration>', `lifetime, e.g. 8h, 30d (${what})`)
        .argParser(durationArg)
        .conflicts('expiresAt'),
    )
    .addOption(new Option('--expires-at <time>', 'expiry, RFC 3339 (e.g. 2030-01-31T23:59:59Z)'))
    .option('--metadata <key=value>', 'issuer metadata (repeatable), e.g. issued_by=alice', keyValue);
}

function expiry(o: Json): string | undefined {
  if (o.expiresIn)
    return new Date(Date.now() + durationMs(o.expiresIn as string)).toISOString().replace(/\.\d{3}Z$/, 'Z');
  if (o.expiresAt) {
    if (Number.isNaN(Date.parse(o.expiresAt as string)))
      throw new UsageError(`--expires-at: expected an RFC 3339 time, got ${JSON.stringify(o.expiresAt)}`);
    return o.expiresAt as string;
  }
  return undefined;
}

export function registerTokens(program: Command, k: Kit): void {
  const tokens = program
    .command('tokens')
    .description('capability tokens: issue, inspect, revoke, attenuate');

  expiryOptions(
    tokens
      .command('create')
      .description('issue a token for an agent under one or more policies (POST /api/tokens)')
      .option('--agent <agent-id>', 'the agent (required)')
      .option('--policy <policy-id>', 'a policy (repeatable, or comma-separated; required)', list)
      .option('--not-before <time>', 'not valid before this RFC 3339 time', timeArg),
    "default: the control plane's, 24h",
  )
    .addHelpText(
      'after',
      '\nExample:\n  act tokens create --agent agent_… --policy policy_… --expires-in 30d \\\n    --metadata issued_by=admin@company.com --metadata "purpose=Q4 customer support operations"\n  TOKEN=$(act tokens create --agent agent_… --policy policy_… -q)',
    )
    .action(
      k.action(async (c, o: Json) => {
        const body: Json = {
          agent_id: required(o.agent, '--agent'),
          policy_ids: required(o.policy as string[] | undefined, '--policy'),
        };
        const exp = expiry(o);
        if (exp) body.expires_at = exp;
        if (o.notBefore) body.not_before = o.notBefore;
        if (o.metadata) body.metadata = o.metadata;
        await printIssued(c, await c.api().json('POST', '/api/tokens', { body }));
      }),
    );

  pagingOptions(
    tokens
      .command('list')
      .description('list tokens, newest first; live ones unless --include-inactive (GET /api/tokens)')
      .option('--agent <agent-id>', "only this agent's tokens")
      .option('--include-inactive', 'also revoked and expired tokens'),
  ).action(
    k.action(async (c, o: Json) => {
      const r = await listItems(
        c,
        '/api/tokens',
        'tokens',
        { agent_id: o.agent, include_inactive: o.includeInactive ? 'true' : undefined },
        o,
      );
      await printList(
        c,
        'tokens',
        r,
        'token_id',
        ['TOKEN_ID', 'AGENT_ID', 'POLICIES', 'EXPIRES', 'STATE', 'PARENT'],
        (t) => [
          t.token_id,
          t.agent_id,
          t.policy_ids,
          t.expires_at,
          t.revoked
            ? 'revoked'
            : Date.parse(t.expires_at as string) <= Date.now()
              ? 'expired'
              : t.attenuated
                ? 'live (attenuated)'
                : 'live',
          t.parent_token_id,
        ],
      );
    }),
  );

  tokens
    .command('get')
    .description('show one token (never the token string) (GET /api/tokens/{id})')
    .argument('<token>', 'a token id (tok_…) or the token (act_…)')
    .action(
      k.action(async (c, id: string) => {
        const t = await c.api().json('GET', `/api/tokens/${seg(tokenId(id))}`);
        await printOne(c, t, 'token_id', infoFields(t));
      }),
    );

  tokens
    .command('revoke')
    .description('revoke a token and every token derived from it (POST /api/tokens/{id}/revoke)')
    .argument('<token>', 'a token id (tok_…) or the token (act_…)')
    .option('--reason <text>', 'recorded reason')
    .option('--wait <duration>', 'wait until connected sidecars applied it, e.g. 5s', durationArg)
    .action(
      k.action(async (c, id: string, o: Json) => {
        const body: Json = {};
        if (o.reason !== undefined) body.reason = o.reason;
        const r = await c
          .api()
          .json('POST', `/api/tokens/${seg(tokenId(id))}/revoke`, { body, query: { wait: o.wait } });
        if (c.out.json) return c.out.printJson(r);
        const ids = (r.revoked_token_ids as string[]) ?? [];
        if (c.out.quiet) return c.out.say(ids.map((x) => `${x}\n`).join(''));
        await c.out.say(`revoked ${ids.join(', ')} (revision ${r.revision})\n`);
        const prop = propagationLine(r.propagation as Json | undefined);
        if (prop) await c.out.say(`propagation: ${prop}\n`);
        else if (o.wait)
          c.out.note('act: the control plane did not report propagation (it does not support --wait yet)');
      }),
    );

  expiryOptions(
    tokens
      .command('attenuate')
      .description('derive a child token with fewer rights (POST /api/tokens/{id}/attenuate)')
      .argument('<token>', 'the parent: a token id (tok_…) or the token (act_…)')
      .option(
        '--capability <cap>',
        "the child's capabilities, each covered by the parent's (repeatable; required)",
        list,
      )
      .option('--agent <agent-id>', "delegate to another agent (default: the parent's)"),
    "default: the parent's expiry",
  ).action(
    k.action(async (c, id: string, o: Json) => {
      const body: Json = { capabilities: required(o.capability as string[] | undefined, '--capability') };
      const exp = expiry(o);
      if (exp) body.expires_at = exp;
      if (o.agent) body.agent_id = o.agent;
      if (o.metadata) body.metadata = o.metadata;
      await printIssued(c, await c.api().json('POST', `/api/tokens/${seg(tokenId(id))}/attenuate`, { body }));
    }),
  );
}
