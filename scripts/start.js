#!/usr/bin/env node
// `npm start`: runs the demo-ready system on the embedded default (LMDB under
// ./data): a control plane and a sidecar beside it, and prints the admin key
// with a copy-paste walkthrough of the seed's four steps, an approval, a
// revocation and an export, all with the `act` CLI. It shows an ALLOW at any
// hour (a second policy without allowed_hours beside the seed's 09:00-17:00 UTC
// one) and computes every date (`--expires-in 30d`). The demo admin key is kept
// in ./data/demo-admin-key (mode 0600) so every start can print it; set
// ACT_ADMIN_KEY to use your own. Ports: ACT_HTTP_ADDR, ACT_GRPC_ADDR,
// ACT_SIDECAR_HTTP_ADDR, ACT_SIDECAR_GRPC_ADDR.
'use strict';
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dataDir = path.resolve(process.env.ACT_DATA_DIR || path.join(root, 'data'));
fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
const keyFile = path.join(dataDir, 'demo-admin-key');
let adminKey = process.env.ACT_ADMIN_KEY;
if (!adminKey) {
  if (!fs.existsSync(keyFile)) {
    fs.writeFileSync(keyFile, `actk_demo_${crypto.randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  }
  adminKey = fs.readFileSync(keyFile, 'utf8').trim();
}
const httpAddr = process.env.ACT_HTTP_ADDR || '127.0.0.1:8700';
const grpcAddr = process.env.ACT_GRPC_ADDR || '127.0.0.1:8701';
const env = { ...process.env, ACT_DATA_DIR: dataDir, ACT_ADMIN_KEY: adminKey, ACT_HTTP_ADDR: httpAddr, ACT_GRPC_ADDR: grpcAddr };
const act = path.join(root, 'dist/bin/act.js');

const children = [];
function run(name, args, extraEnv = {}) {
  const child = spawn(process.execPath, [act, ...args], { env: { ...env, ...extraEnv }, stdio: ['ignore', 'inherit', 'inherit'] });
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`\n${name} exited (${signal || code}); stopping the demo.`);
      stop(1);
    }
  });
  children.push(child);
  return child;
}

let stopping = false;
function stop(code) {
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 200).unref();
  Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once('exit', r))))).then(() => process.exit(code));
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

run('control plane', ['control-plane']);

const base = `http://${httpAddr}`;
async function waitReady() {
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) return true;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/** The sidecar's own credential (role SIDECAR), created once and kept beside the demo admin key. */
async function sidecarKey() {
  const file = path.join(dataDir, 'demo-sidecar-key');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const r = await fetch(`${base}/api/api-keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'demo sidecar', role: 'SIDECAR' }),
  });
  if (!r.ok) throw new Error(`creating the sidecar key failed: HTTP ${r.status} ${await r.text()}`);
  const { secret } = await r.json();
  fs.writeFileSync(file, secret + '\n', { mode: 0o600 });
  return secret;
}

const sidecarHttp = process.env.ACT_SIDECAR_HTTP_ADDR || '127.0.0.1:8710';
const sidecarGrpc = process.env.ACT_SIDECAR_GRPC_ADDR || '127.0.0.1:8711';

waitReady().then(async (ok) => {
  if (!ok) {
    console.error('control plane did not become ready');
    return stop(1);
  }
  let key;
  try {
    key = await sidecarKey();
  } catch (err) {
    console.error(String(err));
    return stop(1);
  }
  run('sidecar', ['sidecar'], {
    ACT_DATA_DIR: path.join(dataDir, 'sidecar'),
    ACT_SIDECAR_KEY: key,
    ACT_SIDECAR_ID: 'demo-sidecar',
    ACT_SIDECAR_HTTP_ADDR: sidecarHttp,
    ACT_SIDECAR_GRPC_ADDR: sidecarGrpc,
    ACT_CONTROL_PLANE: grpcAddr,
  });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://${sidecarHttp}/readyz`)).ok) break;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const act = `node ${path.join(root, 'dist/bin/act.js')}`;
  process.stdout.write(walkthrough({ base, adminKey, act, sidecarHttp, sidecarGrpc, dataDir, grpcAddr }));
});

/** The copy-paste walkthrough (test/integration/cli-walkthrough.test.ts runs it as printed). */
function walkthrough({ base, adminKey, act, sidecarHttp, sidecarGrpc, dataDir, grpcAddr }) {
  const caps = 'read:customer_profile,read:order_history,create:support_ticket,update:ticket_status';
  return `
================================================================================
 ACT is running (embedded LMDB store in ${dataDir})
   control plane REST  ${base}      gRPC ${grpcAddr} (ACT_GRPC_ADDR)
   sidecar       REST  http://${sidecarHttp}   gRPC ${sidecarGrpc} (decisions, loopback only)
   admin API key       ${adminKey}

 The seed's four steps with the act CLI, copy-paste (the same over REST with
 curl: README.md, "The four steps"; every command: act help, docs/cli.md):

# --- walkthrough ---
act() { ${act} "$@"; }
export ACT_URL=${base} ACT_KEY=${adminKey}

# 1. Create your agent
AGENT_ID=$(act agents create --name "Customer Support Agent" --description "Handles tier-1 customer inquiries" \\
  --metadata team=customer-success --metadata environment=production -q); echo $AGENT_ID

# 2. Define permission policies: the seed's (09:00-17:00 UTC only) and the same without allowed_hours
SEED_POLICY_ID=$(act policies create --name "Customer Support Policy" --capability ${caps} \\
  --max-actions-per-day 1000 --allowed-hours "09:00-17:00 UTC" --rate-limit "100 per minute" -q); echo $SEED_POLICY_ID
POLICY_ID=$(act policies create --name "Customer Support Policy (any hour)" --capability ${caps} \\
  --max-actions-per-day 1000 --rate-limit "100 per minute" -q); echo $POLICY_ID

# 3. Generate capability tokens, valid for 30 days from now
SEED_TOKEN=$(act tokens create --agent $AGENT_ID --policy $SEED_POLICY_ID --expires-in 30d \\
  --metadata issued_by=admin@company.com --metadata "purpose=Q4 customer support operations" -q)
TOKEN=$(act tokens create --agent $AGENT_ID --policy $POLICY_ID --expires-in 30d \\
  --metadata issued_by=admin@company.com --metadata "purpose=Q4 customer support operations" -q)

# 4. Enforce & audit
act check --token $TOKEN --action read:customer_profile --resource customer_54321 \\
  --ctx ip=10.0.1.50 --ctx "reason=User inquiry about order status"            # ALLOW, at any hour
act check --token $SEED_TOKEN --action read:customer_profile --resource customer_54321   # ALLOW 09:00-17:00 UTC; else DENY and when it opens
act check --token $TOKEN --action delete:customer_account --resource customer_54321      # DENY: capability not granted
act check --sidecar http://${sidecarHttp} --token $TOKEN --action read:customer_profile --resource customer_54321   # answered by the sidecar
act audit query --limit 5

# An approval: payments over 1000 need a human
PAY_POLICY_ID=$(act policies create --name "Payments" --capability create:transaction \\
  --approval-rule "context.amount > 1000" -q)
PAY_TOKEN=$(act tokens create --agent $AGENT_ID --policy $PAY_POLICY_ID --expires-in 1d -q)
act check --token $PAY_TOKEN --action create:transaction --resource acct_1 --ctx amount=5000   # APPROVAL_REQUIRED, prints the approval id
APPROVAL_ID=$(act approvals list --status PENDING -q | head -1)
act approvals approve $APPROVAL_ID --comment "verified with the customer"
act check --token $PAY_TOKEN --action create:transaction --resource acct_1 --ctx amount=5000 --approval-id $APPROVAL_ID   # ALLOW, once

# A revocation, then the audit trail as CSV
act tokens revoke $SEED_TOKEN --reason "demo" --wait 5s     # a token id (tok_…) or the token itself
act check --token $SEED_TOKEN --action read:customer_profile --resource customer_54321   # DENY: TOKEN_REVOKED
act audit export --format csv --output audit.csv && act audit verify
# --- end ---

 Ctrl-C stops everything.
================================================================================
`;
}
