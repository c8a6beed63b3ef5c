#!/usr/bin/env node
// `npm start`: runs the demo-ready system on the embedded default (LMDB under
// ./data): a control plane and a sidecar beside it, and prints the admin key
// with a copy-paste walkthrough of the seed's four steps. The demo admin key is kept in ./data/demo-admin-key (mode 0600)
// so every start can print it; set ACT_ADMIN_KEY to use your own.
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
const env = { ...process.env, ACT_DATA_DIR: dataDir, ACT_ADMIN_KEY: adminKey, ACT_HTTP_ADDR: httpAddr };
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
  });
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`http://${sidecarHttp}/readyz`)).ok) break;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const J = `node -pe 'JSON.parse(require("fs").readFileSync(0)).`;
  process.stdout.write(`
================================================================================
 ACT is running (embedded LMDB store in ${dataDir})
   control plane REST  ${base}      gRPC 127.0.0.1:8701 (ACT_GRPC_ADDR)
   sidecar       REST  http://${sidecarHttp}   gRPC ${sidecarGrpc} (decisions, loopback only)
   admin API key       ${adminKey}

 The seed's four steps, copy-paste:

 export ACT=${base} ACT_KEY=${adminKey}

 # 1. Create your agent
 AGENT_ID=$(curl -s -X POST $ACT/api/agents -H "Authorization: Bearer $ACT_KEY" -H 'Content-Type: application/json' \\
   -d '{"name":"Customer Support Agent","description":"Handles tier-1 customer inquiries","metadata":{"team":"customer-success","environment":"production"}}' \\
   | ${J}agent_id'); echo $AGENT_ID

 # 2. Define a permission policy
 POLICY_ID=$(curl -s -X POST $ACT/api/policies -H "Authorization: Bearer $ACT_KEY" -H 'Content-Type: application/json' \\
   -d '{"name":"Customer Support Policy","capabilities":["read:customer_profile","read:order_history","create:support_ticket","update:ticket_status"],"constraints":{"max_actions_per_day":1000,"allowed_hours":"09:00-17:00 UTC","rate_limit":"100 per minute"}}' \\
   | ${J}policy_id'); echo $POLICY_ID

 # 3. Generate a capability token
 TOKEN=$(curl -s -X POST $ACT/api/tokens -H "Authorization: Bearer $ACT_KEY" -H 'Content-Type: application/json' \\
   -d '{"agent_id":"'$AGENT_ID'","policy_ids":["'$POLICY_ID'"],"expires_at":"'$(date -u -d '+30 days' +%Y-%m-%dT%H:%M:%SZ)'","metadata":{"issued_by":"admin@company.com","purpose":"Q4 customer support operations"}}' \\
   | ${J}token'); echo $TOKEN

 # 4. Enforce & audit (allowed 09:00-17:00 UTC; outside those hours the answer says when to retry)
 curl -s -X POST $ACT/api/enforcement/check -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
   -d '{"token":"'$TOKEN'","action":"read:customer_profile","resource":"customer_54321","context":{"ip":"10.0.1.50","reason":"User inquiry about order status"}}'; echo
 curl -s -X POST $ACT/api/enforcement/check -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
   -d '{"token":"'$TOKEN'","action":"delete:customer_account","resource":"customer_54321"}'; echo
 curl -s "$ACT/api/audit?limit=5" -H "Authorization: Bearer $ACT_KEY"; echo

 # The same check answered by the sidecar from its local replica (no key needed on loopback):
 curl -s -X POST http://${sidecarHttp}/api/enforcement/check -H 'Content-Type: application/json' \\
   -d '{"token":"'$TOKEN'","action":"read:customer_profile","resource":"customer_54321","context":{"ip":"10.0.1.50"}}'; echo
 # or over gRPC (grpcurl, or: npx buf curl --protocol grpc --http2-prior-knowledge ... http://${sidecarGrpc}/act.v1.DecisionService/CheckPermission)
 grpcurl -plaintext -d '{"token":"'$TOKEN'","action":"read:customer_profile","resource":"customer_54321"}' ${sidecarGrpc} act.v1.DecisionService/CheckPermission

 Ctrl-C stops everything.
================================================================================
`);
});
