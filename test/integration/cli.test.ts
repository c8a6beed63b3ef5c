/**
 * Every `act <noun> <verb>` against a real control plane and sidecar: human
 * tables, --json that parses, -q ids, the exit codes of check and approvals,
 * the audit export (files, formats, a closed pipe) and hash-chain verification.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { ACT_BIN, restClient, type ControlPlaneProcess, type SidecarProcess } from '../support/processes';
import { SidecarFixture, waitFor, waitSynced } from '../support/sidecar-helpers';
import { cleanEnv, json, runAct } from './cli-helpers';

describe('act CLI commands', function () {
  this.timeout(120_000);
  const fx = new SidecarFixture();
  let cp: ControlPlaneProcess;
  let sc: SidecarProcess;
  let env: Record<string, string>;
  let tmp: string;
  const act = (
    args: string[],
    extra: Record<string, string> = {},
    o: { input?: string; cwd?: string } = {},
  ) => runAct(args, { ...env, ...extra }, o);
  before(async () => {
    tmp = fx.dir('cli-cmds');
    cp = await fx.controlPlane(path.join(tmp, 'cp'));
    sc = await fx.sidecar(cp, path.join(tmp, 'sc'), { sidecarId: 'cli-sidecar' });
    env = { ...cleanEnv(tmp), ACT_URL: cp.url, ACT_KEY: cp.adminKey };
  });
  after(() => fx.teardown());

  let agentId: string;
  let policyId: string;
  let token: string;
  let tokenId: string;

  it('agents create|list|get|update|disable|enable: tables by default, --json parses, -q prints ids', async () => {
    const created = await act([
      'agents',
      'create',
      '--name',
      'Customer Support Agent',
      '--description',
      'Handles tier-1 customer inquiries',
      '--metadata',
      'team=customer-success',
      '--metadata',
      'environment=production',
      '--json',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const a = json(created);
    assert.match(a.agent_id, /^agent_/);
    assert.deepEqual(a.metadata, { team: 'customer-success', environment: 'production' });
    agentId = a.agent_id;

    const table = await act(['agents', 'list']);
    assert.equal(table.code, 0, table.stderr);
    const [head, ...rows] = table.stdout.trimEnd().split('\n');
    assert.match(head!, /^AGENT_ID\s+NAME\s+STATUS\s+CREATED\s+DESCRIPTION$/);
    assert.ok(
      rows.some((r) => r.startsWith(agentId) && r.includes('Customer Support Agent') && r.includes('ACTIVE')),
    );
    assert.deepEqual((await act(['agents', 'list', '-q'])).stdout.trim().split('\n'), [agentId]);
    assert.equal(json(await act(['agents', 'list', '--json'])).agents[0].agent_id, agentId);

    const got = await act(['agents', 'get', agentId]);
    assert.match(got.stdout, /^agent_id:\s+agent_/m);
    assert.match(got.stdout, /^metadata:\s+\{"team":"customer-success","environment":"production"\}$/m);

    const upd = json(await act(['agents', 'update', agentId, '--description', 'tier 1 and 2', '--json']));
    assert.equal(upd.description, 'tier 1 and 2');
    assert.deepEqual(upd.metadata, a.metadata, 'metadata untouched without --metadata');
    assert.equal((await act(['agents', 'update', agentId])).code, 2, 'nothing to change is a usage error');

    assert.equal(json(await act(['agents', 'disable', agentId, '--json'])).status, 'DISABLED');
    const dis = await act(['agents', 'list', '--status', 'DISABLED', '-q']);
    assert.equal(dis.stdout.trim(), agentId);
    assert.equal(json(await act(['agents', 'enable', agentId, '--json'])).status, 'ACTIVE');
    assert.equal((await act(['agents', 'list', '--status', 'DISABLED', '-q'])).stdout, '');
  });

  it('policies create from flags, from a YAML file, from JSON on stdin; list, get, update, delete', async () => {
    const flags = await act([
      'policies',
      'create',
      '--name',
      'Customer Support Policy',
      '--capability',
      'read:customer_profile,read:order_history',
      '--capability',
      'create:support_ticket',
      '--max-actions-per-day',
      '1000',
      '--rate-limit',
      '100 per minute',
      '--json',
    ]);
    assert.equal(flags.code, 0, flags.stderr);
    const p = json(flags);
    assert.deepEqual(p.capabilities, [
      'read:customer_profile',
      'read:order_history',
      'create:support_ticket',
    ]);
    assert.equal(p.constraints.max_actions_per_day, 1000);
    assert.equal(p.constraints.rate_limit, '100 per minute');
    policyId = p.policy_id;

    const yamlFile = path.join(tmp, 'billing.yaml');
    writeFileSync(
      yamlFile,
      [
        'name: Billing',
        'capabilities: [create:transaction, "read:account_balance"]',
        'constraints:',
        '  allowed_hours: "Mon-Fri 09:00-17:00 Europe/Berlin"',
        'approval_rules:',
        '  - expression: context.amount > 1000',
        '    actions: [create:transaction]',
        '    description: transactions over $1000',
        '',
      ].join('\n'),
    );
    const fromYaml = json(await act(['policies', 'create', '--file', yamlFile, '--json']));
    assert.equal(fromYaml.name, 'Billing');
    assert.equal(fromYaml.constraints.allowed_hours, 'Mon-Fri 09:00-17:00 Europe/Berlin');
    assert.deepEqual(fromYaml.approval_rules[0].actions, ['create:transaction']);

    const stdin = await act(
      ['policies', 'create', '-f', '-', '--name', 'From stdin', '-q'],
      {},
      {
        input: JSON.stringify({ name: 'overridden by --name', capabilities: ['read:*'] }),
      },
    );
    assert.equal(stdin.code, 0, stdin.stderr);
    const stdinId = stdin.stdout.trim();
    assert.match(stdinId, /^policy_/);
    assert.equal(json(await act(['policies', 'get', stdinId, '--json'])).name, 'From stdin');

    const list = await act(['policies', 'list']);
    assert.match(list.stdout.split('\n')[0]!, /^POLICY_ID\s+NAME\s+VERSION\s+CAPABILITIES\s+CONSTRAINTS$/);
    assert.match(
      list.stdout,
      /Customer Support Policy\s+1\s+read:customer_profile,read:order_history,create:support_ticket\s+max_actions_per_day=1000; rate_limit=100 per minute/,
    );

    // paging: one page and a hint on stderr, or every page with --all
    const all = (await act(['policies', 'list', '-q'])).stdout.trim().split('\n');
    assert.ok(all.length >= 3);
    const one = await act(['policies', 'list', '--limit', '1']);
    assert.equal(one.stdout.trim().split('\n').length, 2, 'header and one row');
    const cursor = /^more: add --cursor (\S+) \(or --all\)$/m.exec(one.stderr)?.[1];
    assert.ok(cursor, one.stderr);
    const second = await act(['policies', 'list', '--limit', '1', '--cursor', cursor, '-q']);
    assert.equal(second.stdout.trim(), all[1]);
    assert.deepEqual(
      (await act(['policies', 'list', '--limit', '1', '--all', '-q'])).stdout.trim().split('\n'),
      all,
    );
    assert.equal(
      json(await act(['policies', 'list', '--limit', '1', '--all', '--json'])).policies.length,
      all.length,
    );

    // update from flags keeps what the flags do not name
    const upd = json(await act(['policies', 'update', policyId, '--rate-limit', '50 per minute', '--json']));
    assert.equal(upd.version, 2);
    assert.equal(upd.constraints.rate_limit, '50 per minute');
    assert.equal(upd.constraints.max_actions_per_day, 1000);
    assert.deepEqual(upd.capabilities, p.capabilities);
    const human = await act(['policies', 'get', policyId]);
    assert.match(human.stdout, /^version:\s+2$/m);
    assert.match(human.stdout, /^rate_limit:\s+50 per minute$/m);

    // a bad value is the server's error (exit 1, with the field); a bad file is a usage error (exit 2)
    const bad = await act(['policies', 'update', policyId, '--rate-limit', 'lots']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^act: HTTP 400 INVALID_ARGUMENT: .*\(field constraints\.rate_limit\)/m);
    assert.equal(json(await act(['policies', 'get', policyId, '--json'])).version, 2, 'nothing written');
    writeFileSync(path.join(tmp, 'broken.yaml'), 'name: [unclosed\n');
    const broken = await act(['policies', 'create', '--file', path.join(tmp, 'broken.yaml')]);
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /broken\.yaml is not valid YAML/);
    const missing = await act(['policies', 'create', '--name', 'no caps']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing required option --capability/);

    const del = await act(['policies', 'delete', stdinId]);
    assert.equal(del.stdout, `deleted ${stdinId}\n`);
    assert.equal((await act(['policies', 'get', stdinId])).code, 1);
  });

  it('tokens create|list|get|attenuate|revoke: -q prints the token; the token string stands for its id', async () => {
    const created = await act([
      'tokens',
      'create',
      '--agent',
      agentId,
      '--policy',
      policyId,
      '--expires-in',
      '30d',
      '--metadata',
      'issued_by=admin@company.com',
      '--json',
    ]);
    assert.equal(created.code, 0, created.stderr);
    const t = json(created);
    assert.match(t.token, /^act_/);
    const days = (Date.parse(t.expires_at) - Date.now()) / 86_400_000;
    assert.ok(days > 29.9 && days <= 30, `expires in ${days} days`);
    token = t.token;
    tokenId = t.token_id;
    fx.secrets.push(token);

    const q = await act(['tokens', 'create', '--agent', agentId, '--policy', policyId, '-q']);
    assert.match(q.stdout, /^act_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/);
    fx.secrets.push(q.stdout.trim());

    const list = await act(['tokens', 'list', '--agent', agentId]);
    assert.match(list.stdout.split('\n')[0]!, /^TOKEN_ID\s+AGENT_ID\s+POLICIES\s+EXPIRES\s+STATE\s+PARENT$/);
    assert.ok(list.stdout.includes(tokenId));
    assert.equal(list.stdout.includes('act_'), false, 'a list never shows token strings');

    const byToken = json(await act(['tokens', 'get', token, '--json']));
    assert.equal(byToken.token_id, tokenId);
    assert.equal((await act(['tokens', 'get', 'act_garbage.x'])).code, 2);

    const child = json(
      await act([
        'tokens',
        'attenuate',
        tokenId,
        '--capability',
        'read:customer_profile',
        '--expires-in',
        '1h',
        '--json',
      ]),
    );
    assert.equal(child.parent_token_id, tokenId);
    assert.deepEqual(child.capabilities, ['read:customer_profile']);
    fx.secrets.push(child.token);
    const wider = await act(['tokens', 'attenuate', tokenId, '--capability', 'delete:*']);
    assert.equal(wider.code, 1, 'attenuation never widens');

    // revoke the child by its token string: only the child
    const rv = await act(['tokens', 'revoke', child.token, '--reason', 'cli test']);
    assert.equal(rv.code, 0, rv.stderr);
    assert.match(rv.stdout, new RegExp(`^revoked ${child.token_id} \\(revision \\d+\\)\\n$`));
    assert.equal(json(await act(['tokens', 'get', child.token_id, '--json'])).revoked, true);
    assert.equal(json(await act(['tokens', 'get', tokenId, '--json'])).revoked, false);
  });

  it('check at the control plane and at the sidecar: exit 0 ALLOW, 4 DENY, 4 APPROVAL_REQUIRED with the approval id', async () => {
    const allow = await act([
      'check',
      '--token',
      token,
      '--action',
      'read:customer_profile',
      '--resource',
      'customer_54321',
      '--ctx',
      'ip=10.0.1.50',
    ]);
    assert.equal(allow.code, 0, allow.stdout + allow.stderr);
    assert.match(
      allow.stdout,
      /^ALLOW {2}read:customer_profile on customer_54321\n {2}reason: .*\(GRANTED\)/,
    );

    const deny = await act(['check', '--token', token, '--action', 'delete:customer_account', '--json']);
    assert.equal(deny.code, 4);
    const d = json(deny);
    assert.equal(d.decision, 'DENY');
    assert.equal(d.details.missing_capability, 'delete:customer_account');

    // without a key the token itself authenticates at the control plane
    const noKey = await act(['check', '--token', token, '--action', 'read:order_history'], { ACT_KEY: '' });
    assert.equal(noKey.code, 0, noKey.stderr);
    // ACT_TOKEN instead of --token
    assert.equal((await act(['check', '--action', 'read:order_history'], { ACT_TOKEN: token })).code, 0);

    await waitSynced(cp, sc);
    const side = await act(
      ['check', '--sidecar', sc.url, '--token', token, '--action', 'read:customer_profile', '--json'],
      { ACT_KEY: '' },
    );
    assert.equal(side.code, 0, side.stderr);
    const s = json(side);
    assert.equal(s.allowed, true);
    const rec = await waitFor("the sidecar's audit record at the control plane", async () => {
      const r = await act(['audit', 'query', '--json', '--limit', '50']);
      return (json(r).records as any[]).find((x) => x.audit_id === s.audit_id);
    });
    assert.equal(rec.source, 'cli-sidecar');
    const sideDeny = await act(['check', '--sidecar', sc.url, '--token', token, '--action', 'delete:x']);
    assert.equal(sideDeny.code, 4);
    assert.match(sideDeny.stdout, /^DENY {2}delete:x\n/);

    // approval required: exit 4, the id printed, approve, the repeated check is allowed once
    const billing = json(await act(['policies', 'list', '--name-contains', 'billing', '--json'])).policies[0];
    const payTok = json(
      await act(['tokens', 'create', '--agent', agentId, '--policy', billing.policy_id, '--json']),
    );
    fx.secrets.push(payTok.token);
    const ask = [
      'check',
      '--token',
      payTok.token,
      '--action',
      'create:transaction',
      '--resource',
      'acct_1',
      '--ctx',
      'amount=5000',
    ];
    const hours = await act([...ask, '--json']);
    // Billing allows Mon-Fri 09:00-17:00 Europe/Berlin only: outside those hours the answer is a DENY first.
    const h = json(hours);
    if (h.decision === 'DENY') {
      assert.equal(h.reason_code, 'OUTSIDE_ALLOWED_HOURS');
      assert.equal(hours.code, 4);
      return;
    }
    assert.equal(hours.code, 4);
    assert.equal(h.decision, 'APPROVAL_REQUIRED');
    const human = await act(ask);
    assert.equal(human.code, 4);
    assert.match(human.stdout, /^APPROVAL_REQUIRED {2}create:transaction on acct_1$/m);
    const approvalId = /approval:\s+(approval_\S+)/.exec(human.stdout)![1]!;
    assert.match(human.stdout, new RegExp(`act approvals approve ${approvalId}`));
    assert.equal((await act(['approvals', 'approve', approvalId, '--comment', 'ok'])).code, 0);
    const granted = await act([...ask, '--approval-id', approvalId]);
    assert.equal(granted.code, 0, granted.stdout);
  });

  it('approvals list|get|approve|deny on a policy without hours; a denied request stays denied', async () => {
    const pay = json(
      await act([
        'policies',
        'create',
        '--name',
        'Payments',
        '--capability',
        'create:transaction',
        '--approval-rule',
        'context.amount > 1000',
        '--json',
      ]),
    );
    const tok = json(
      await act(['tokens', 'create', '--agent', agentId, '--policy', pay.policy_id, '--json']),
    );
    fx.secrets.push(tok.token);
    const ask = (amount: number) =>
      act([
        'check',
        '--token',
        tok.token,
        '--action',
        'create:transaction',
        '--resource',
        'acct_9',
        '--ctx',
        `amount=${amount}`,
        '--json',
      ]);
    assert.equal((await ask(10)).code, 0, 'under the threshold: no approval');
    const first = json(await ask(5000));
    assert.equal(first.decision, 'APPROVAL_REQUIRED');
    const second = json(await ask(7000));

    const list = await act(['approvals', 'list', '--status', 'PENDING']);
    assert.match(
      list.stdout.split('\n')[0]!,
      /^APPROVAL_ID\s+STATUS\s+AGENT_ID\s+ACTION\s+RESOURCE\s+RULE\s+EXPIRES$/,
    );
    assert.ok(list.stdout.includes(first.approval_id) && list.stdout.includes(second.approval_id));
    const got = await act(['approvals', 'get', first.approval_id]);
    assert.match(got.stdout, /^context:\s+\{"amount":5000\}$/m);
    assert.match(got.stdout, /^status:\s+PENDING$/m);

    const approved = json(
      await act(['approvals', 'approve', first.approval_id, '--comment', 'verified', '--json']),
    );
    assert.equal(approved.status, 'APPROVED');
    assert.equal(approved.comment, 'verified');
    const denied = await act(['approvals', 'deny', second.approval_id]);
    assert.match(denied.stdout, /^status:\s+DENIED$/m);
    const again = await act(['approvals', 'approve', second.approval_id]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /FAILED_PRECONDITION: .*DENIED, not PENDING/);

    // an agent cannot drive the approver's terminal with escape sequences in what it asks
    const evil = json(
      await act([
        'check',
        '--token',
        tok.token,
        '--action',
        'create:transaction',
        '--resource',
        'acct\u001b[2J\u001b]0;x\u0007',
        '--ctx',
        'amount=9999',
        '--ctx',
        'note=\u001b[1A\u001b[2Kapproved',
        '--json',
      ]),
    );
    for (const args of [
      ['approvals', 'get', evil.approval_id],
      ['approvals', 'list'],
      ['audit', 'query', '--limit', '3'],
    ]) {
      const r = await act(args);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        // eslint-disable-next-line no-control-regex -- looking for control characters
        /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/.test(r.stdout),
        false,
        `${args.join(' ')} wrote a control character`,
      );
      assert.ok(r.stdout.includes('acct\\u001b[2J'), 'shown escaped');
    }

    const use = (id: string, amount: number) =>
      act([
        'check',
        '--token',
        tok.token,
        '--action',
        'create:transaction',
        '--resource',
        'acct_9',
        '--ctx',
        `amount=${amount}`,
        '--approval-id',
        id,
      ]);
    assert.equal((await use(first.approval_id, 5000)).code, 0);
    assert.equal((await use(first.approval_id, 5000)).code, 4, 'a grant is used once');
    assert.equal((await use(second.approval_id, 7000)).code, 4, 'a denied request is not allowed');
  });

  it('approvals wait: exit 4 while pending at the timeout, exit 0 once approved (long poll, agent token as bearer)', async () => {
    const pay = json(await act(['policies', 'list', '--name-contains', 'payments', '--json'])).policies[0];
    const tok = json(
      await act(['tokens', 'create', '--agent', agentId, '--policy', pay.policy_id, '--json']),
    );
    fx.secrets.push(tok.token);
    const ask = json(
      await act([
        'check',
        '--token',
        tok.token,
        '--action',
        'create:transaction',
        '--ctx',
        'amount=2000',
        '--json',
      ]),
    );
    const pending = await act(['approvals', 'wait', ask.approval_id, '--timeout', '1s']);
    assert.equal(pending.code, 4);
    assert.match(pending.stdout, /is still PENDING after 1s/);
    const waiting = act(['approvals', 'wait', ask.approval_id, '--timeout', '30s', '--token', tok.token], {
      ACT_KEY: '',
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await act(['approvals', 'approve', ask.approval_id])).code, 0);
    const done = await waiting;
    assert.equal(done.code, 0, done.stdout + done.stderr);
    assert.match(done.stdout, /APPROVED by /);
  });

  it('tokens revoke --wait and policies update --wait show which sidecars applied the change', async () => {
    const tok = json(await act(['tokens', 'create', '--agent', agentId, '--policy', policyId, '--json']));
    fx.secrets.push(tok.token);
    await waitSynced(cp, sc);
    const r = await act(['tokens', 'revoke', tok.token_id, '--wait', '5s']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^propagation: applied 1 of 1 sidecar \(revision \d+, waited \d+ ms\)$/m);
    const p = await act(['policies', 'update', policyId, '--rate-limit', '60 per minute', '--wait', '5s']);
    assert.match(p.stdout, /^propagation:\s+applied 1 of 1 sidecar/m);
  });

  it('sidecars list: connected sidecars, applied revision, lag', async () => {
    const r = await act(['sidecars', 'list']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout.split('\n')[0]!,
      /^SIDECAR_ID\s+CONNECTED\s+APPLIED\s+LAG\s+LAST_CONTACT\s+AGENTS\s+VERSION$/,
    );
    assert.match(r.stdout, /^cli-sidecar\s+yes\s+\d+/m);
    assert.equal(json(await act(['sidecars', 'list', '--json'])).sidecars[0].sidecar_id, 'cli-sidecar');
  });

  it('keys list|rotate, api-keys create|list|delete; a key of another role gets 403 with a hint', async () => {
    const rotated = json(await act(['keys', 'rotate', '--json']));
    assert.equal(rotated.active, true);
    const keys = await act(['keys', 'list']);
    assert.match(keys.stdout.split('\n')[0]!, /^KEY_ID\s+ACTIVE\s+CREATED\s+PUBLIC_KEY$/);
    assert.match(keys.stdout, new RegExp(`^${rotated.key_id}\\s+yes`, 'm'));
    // old tokens keep verifying
    assert.equal((await act(['check', '--token', token, '--action', 'read:customer_profile'])).code, 0);

    const created = await act(['api-keys', 'create', '--name', 'auditor', '--role', 'auditor']);
    assert.equal(created.code, 0, created.stderr);
    const secret = /^secret:\s+(\S+)$/m.exec(created.stdout)![1]!;
    const id = /^api_key_id:\s+(\S+)$/m.exec(created.stdout)![1]!;
    assert.match(created.stderr, /shown once/);
    fx.secrets.push(secret);
    assert.match((await act(['api-keys', 'list'])).stdout, new RegExp(`^${id}\\s+auditor\\s+AUDITOR`, 'm'));
    assert.equal((await act(['api-keys', 'list'])).stdout.includes(secret), false);

    const forbidden = await act(['agents', 'list'], { ACT_KEY: secret });
    assert.equal(forbidden.code, 1);
    assert.match(
      forbidden.stderr,
      /HTTP 403 PERMISSION_DENIED: .* — the API key from ACT_KEY may not GET \/api\/agents/,
    );
    assert.equal(
      (await act(['audit', 'query', '--limit', '1'], { ACT_KEY: secret })).code,
      0,
      'auditor reads audit',
    );

    const bad = await act(['api-keys', 'create', '--name', 'x', '--role', 'root']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Allowed choices are ADMIN, APPROVER, AUDITOR, SIDECAR/);
    assert.equal((await act(['api-keys', 'delete', id])).stdout, `deleted ${id}\n`);
    assert.equal((await act(['audit', 'query'], { ACT_KEY: secret })).code, 1, 'a deleted key is refused');
  });

  it('audit query|export|verify: formats, filters, files, JSON-array exports, a tampered export fails', async () => {
    const q = await act(['audit', 'query', '--agent', agentId, '--decision', 'DENY', '--limit', '5']);
    assert.equal(q.code, 0, q.stderr);
    assert.match(
      q.stdout.split('\n')[0]!,
      /^TIME\s+DECISION\s+REASON_CODE\s+AGENT_ID\s+ACTION\s+RESOURCE\s+SOURCE\s+AUDIT_ID$/,
    );
    for (const line of q.stdout.trim().split('\n').slice(1)) assert.match(line, /\sDENY\s/);
    const qj = json(await act(['audit', 'query', '--since', '1h', '--json']));
    assert.ok(qj.records.length > 0);

    const csv = await act(['audit', 'export', '--format', 'csv']);
    assert.match(csv.stdout.split('\n')[0]!, /^audit_id,time,source,seq,/);
    const nd = (await act(['audit', 'export'])).stdout.trim().split('\n');
    const arr = json(await act(['audit', 'export', '--format', 'json']));
    assert.equal(arr.length, nd.length);

    // --output: the file, no progress line off a terminal, no partial file left
    const file = path.join(tmp, 'out', '..', 'trail.json');
    const toFile = await act(['audit', 'export', '--format', 'json', '--output', file]);
    assert.equal(toFile.code, 0, toFile.stderr);
    assert.equal(toFile.stdout, '');
    assert.equal(toFile.stderr, '', 'quiet when stderr is not a terminal');
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).length, arr.length);
    assert.equal(statSync(file).mode & 0o077, 0, 'audit data is not world-readable');
    assert.equal(existsSync(`${file}.partial`), false);
    const noDir = await act(['audit', 'export', '--output', path.join(tmp, 'no', 'such', 'dir', 'x.csv')]);
    assert.equal(noDir.code, 2);
    assert.match(noDir.stderr, /cannot write .*x\.csv/);

    const live = await act(['audit', 'verify']);
    assert.equal(live.code, 0, live.stdout + live.stderr);
    assert.match(live.stdout, /^ok {3}control-plane: \d+ records/m);
    assert.match(live.stdout, /^ok {3}cli-sidecar: \d+ records/m);
    const fromJson = await act(['audit', 'verify', '--file', file]);
    assert.equal(fromJson.code, 0, fromJson.stdout + fromJson.stderr);
    assert.match(fromJson.stdout, new RegExp(`^${arr.length} records, 2 sources, 0 problems$`, 'm'));

    const ndFile = path.join(tmp, 'trail.ndjson');
    const rec = JSON.parse(nd[0]!);
    rec.resource = 'tampered';
    writeFileSync(ndFile, [JSON.stringify(rec), ...nd.slice(1)].join('\n') + '\n');
    const bad = await act(['audit', 'verify', '--file', ndFile]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /hash does not match content/);
    const tamperedArray = path.join(tmp, 'tampered.json');
    writeFileSync(tamperedArray, JSON.stringify([rec, ...arr.slice(1)]));
    assert.equal(
      (await act(['audit', 'verify', '--file', tamperedArray])).code,
      1,
      'a JSON array is verified too',
    );

    const csvFile = path.join(tmp, 'trail.csv');
    writeFileSync(csvFile, csv.stdout);
    const wrong = await act(['audit', 'verify', '--file', csvFile]);
    assert.equal(wrong.code, 2);
    assert.match(wrong.stderr, /is a CSV export, which cannot be verified/);
    writeFileSync(path.join(tmp, 'cut.ndjson'), nd[0]! + '\n' + nd[1]!.slice(0, 20) + '\n');
    const cut = await act(['audit', 'verify', '--file', path.join(tmp, 'cut.ndjson')]);
    assert.equal(cut.code, 2);
    assert.match(cut.stderr, /line 2 is not JSON \(a truncated export\?\)/);
  });

  it('audit follow prints new records as they arrive (NDJSON with --json)', async () => {
    const child = spawn(process.execPath, [ACT_BIN, 'audit', 'follow', '--agent', agentId, '--json'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const lines = createInterface({ input: child.stdout! });
      const first = new Promise<any>((resolve) => lines.once('line', (l) => resolve(JSON.parse(l))));
      // the stream is open once the note is on stderr
      await new Promise<void>((resolve) => child.stderr!.once('data', () => resolve()));
      const c = json(
        await act([
          'check',
          '--token',
          token,
          '--action',
          'read:customer_profile',
          '--resource',
          'followed',
          '--json',
        ]),
      );
      const seen = await first;
      assert.equal(seen.audit_id, c.audit_id);
      assert.equal(seen.resource, 'followed');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });

  it('act audit export | head -2 ends quietly with status 0 (EPIPE), also for a large export', async () => {
    // enough records that the export outlives the pipe buffer
    const api = restClient(cp.url, cp.adminKey);
    for (let i = 0; i < 12; i++) {
      const items = Array.from({ length: 100 }, (_, j) => ({
        action: 'read:customer_profile',
        resource: `c_${i}_${j}`,
      }));
      const r = await api('POST', '/api/enforcement/check-batch', { token, items });
      assert.equal(r.status, 200, r.text);
    }
    const sh = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(
        'bash',
        ['-c', `set -o pipefail; "${process.execPath}" "${ACT_BIN}" audit export --format csv | head -2`],
        {
          env,
        },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.once('close', (code) => resolve({ code, stdout, stderr }));
    });
    assert.equal(sh.stderr, '', 'no EPIPE stack trace');
    assert.equal(sh.code, 0, 'pipefail: act itself exited 0');
    assert.equal(sh.stdout.split('\n').length, 3);
    assert.match(sh.stdout, /^audit_id,time,source/);
  });

  it('audit export --output on a terminal shows a progress line on stderr (under a pty from script(1))', async () => {
    const file = path.join(tmp, 'tty.csv');
    const out = await new Promise<string>((resolve) => {
      const child = spawn(
        'script',
        [
          '-qec',
          `"${process.execPath}" "${ACT_BIN}" audit export --format csv --output "${file}"`,
          '/dev/null',
        ],
        {
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let text = '';
      child.stdout.on('data', (d) => (text += d));
      child.stderr.on('data', (d) => (text += d));
      child.once('close', () => resolve(text));
    });
    const rows = readFileSync(file, 'utf8').trim().split('\n').length - 1;
    assert.ok(rows > 1000);
    assert.match(
      out,
      new RegExp(`exporting to ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ${rows} records, [\\d.]+ KiB`),
    );
  });

  it("agents delete revokes the agent's tokens", async () => {
    const del = await act(['agents', 'delete', agentId]);
    assert.equal(del.code, 0, del.stderr);
    assert.match(del.stdout, new RegExp(`^deleted ${agentId}; revoked \\d+ token\\(s\\): .*${tokenId}`));
    const after = json(await act(['check', '--token', token, '--action', 'read:customer_profile', '--json']));
    assert.equal(after.allowed, false);
    fx.assertNoSecretsInLogs(cp.adminKey);
  });
});
