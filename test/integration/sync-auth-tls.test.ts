/**
 * TLS on the control plane (HTTPS and gRPC) with a sidecar syncing over TLS, and
 * who may open a Sync stream: no key, a wrong role, and a sidecar key limited to
 * some agents asking for others are all refused.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import selfsigned from 'selfsigned';
import { SyncServiceClient, type SyncResponse } from '../../src/gen/act/v1/sync';
import {
  restClient,
  startControlPlane,
  startSidecar,
  tempDir,
  type ControlPlaneProcess,
  type SidecarProcess,
} from '../support/processes';

async function makeCert(dir: string): Promise<{ cert: string; key: string; ca: Buffer }> {
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    notAfterDate: new Date(Date.now() + 86_400_000),
    keyType: 'ec',
    curve: 'P-256',
    extensions: [
      { name: 'basicConstraints', cA: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  const cert = path.join(dir, 'tls.crt');
  const key = path.join(dir, 'tls.key');
  writeFileSync(cert, pems.cert);
  writeFileSync(key, pems.private, { mode: 0o600 });
  return { cert, key, ca: Buffer.from(pems.cert) };
}

function httpsJson(
  port: number,
  ca: Buffer,
  method: string,
  route: string,
  key: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: route,
        ca,
        headers: {
          authorization: `Bearer ${key}`,
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

let probes = 0;

/** Opens a raw Sync stream and returns the first message or the error status. */
function trySync(
  port: number,
  creds: grpc.ChannelCredentials,
  key: string | undefined,
  agentIds: string[],
): Promise<{ msg?: SyncResponse; err?: grpc.ServiceError }> {
  const client = new SyncServiceClient(`127.0.0.1:${port}`, creds);
  const md = new grpc.Metadata();
  if (key) md.set('authorization', `Bearer ${key}`);
  return new Promise((resolve) => {
    const call = client.sync(md);
    const done = (r: { msg?: SyncResponse; err?: grpc.ServiceError }) => {
      call.removeAllListeners();
      call.on('error', () => undefined);
      call.cancel();
      client.close();
      resolve(r);
    };
    call.on('data', (msg: SyncResponse) => done({ msg }));
    call.on('error', (err: grpc.ServiceError) => done({ err }));
    call.write({
      msg: {
        $case: 'hello',
        value: {
          // A sidecar id belongs to the first key that used it: each probe has its own.
          sidecar_id: `probe-${++probes}`,
          agent_ids: agentIds,
          last_revision: 0,
          store_id: '',
          version: 'test',
          previous_sidecar_ids: [],
        },
      },
    });
  });
}

describe('control plane over TLS, and Sync authorization', function () {
  this.timeout(60_000);
  const tmp = tempDir('tls');
  let cp: ControlPlaneProcess;
  let sidecar: SidecarProcess | undefined;
  let tls: { cert: string; key: string; ca: Buffer };
  const ids: { a: string; b: string; token: string; scopedKey: string; auditorKey: string } = {
    a: '',
    b: '',
    token: '',
    scopedKey: '',
    auditorKey: '',
  };

  before(async () => {
    tls = await makeCert(tmp.dir);
    cp = await startControlPlane(path.join(tmp.dir, 'cp'), {}, [
      '--tls-cert',
      tls.cert,
      '--tls-key',
      tls.key,
    ]);
    const call = (m: string, r: string, b?: unknown) => httpsJson(cp.httpPort, tls.ca, m, r, cp.adminKey, b);
    ids.a = (await call('POST', '/api/agents', { name: 'agent A' })).body.agent_id;
    ids.b = (await call('POST', '/api/agents', { name: 'agent B' })).body.agent_id;
    const policy = (await call('POST', '/api/policies', { name: 'reads', capabilities: ['read:*'] })).body
      .policy_id;
    ids.token = (await call('POST', '/api/tokens', { agent_id: ids.a, policy_ids: [policy] })).body.token;
    ids.scopedKey = (
      await call('POST', '/api/api-keys', { name: 'sidecar for A', role: 'SIDECAR', agent_ids: [ids.a] })
    ).body.secret;
    ids.auditorKey = (await call('POST', '/api/api-keys', { name: 'auditor', role: 'AUDITOR' })).body.secret;
  });

  after(async () => {
    await sidecar?.stop();
    await cp?.stop();
    tmp.remove();
  });

  it('serves HTTPS with the configured certificate and refuses plaintext HTTP', async () => {
    const r = await httpsJson(cp.httpPort, tls.ca, 'GET', '/api/agents', cp.adminKey);
    assert.equal(r.status, 200);
    assert.equal(r.body.agents.length, 2);
    await assert.rejects(restClient(`http://127.0.0.1:${cp.httpPort}`, cp.adminKey)('GET', '/api/agents'));
  });

  it('serves gRPC over TLS: a TLS client syncs, a plaintext client cannot', async () => {
    const ok = await trySync(cp.grpcPort, grpc.credentials.createSsl(tls.ca), cp.adminKey, ['*']);
    assert.equal(ok.msg?.msg?.$case, 'snapshot');
    const plain = await trySync(cp.grpcPort, grpc.credentials.createInsecure(), cp.adminKey, ['*']);
    assert.equal(plain.err?.code, grpc.status.UNAVAILABLE);
  });

  it('a sidecar with --tls-ca syncs over TLS and answers checks', async () => {
    const caFile = path.join(tmp.dir, 'ca.crt');
    writeFileSync(caFile, tls.ca);
    sidecar = await startSidecar(cp, path.join(tmp.dir, 'sc'), {
      agentIds: ids.a,
      env: { ACT_SIDECAR_KEY: ids.scopedKey },
      args: ['--tls-ca', caFile],
    });
    const check = restClient(sidecar.url);
    let r: Awaited<ReturnType<typeof check>> | undefined;
    for (let i = 0; i < 100; i++) {
      r = await check('POST', '/api/enforcement/check', {
        token: ids.token,
        action: 'read:customer_profile',
        resource: 'c1',
      });
      if (r.body?.allowed) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.equal(r?.body.allowed, true, JSON.stringify(r?.body));
    assert.equal(r?.body.reason_code, 'GRANTED');
  });

  it('refuses a Sync without a key (UNAUTHENTICATED) and with an auditor key (PERMISSION_DENIED)', async () => {
    const creds = grpc.credentials.createSsl(tls.ca);
    assert.equal(
      (await trySync(cp.grpcPort, creds, undefined, ['*'])).err?.code,
      grpc.status.UNAUTHENTICATED,
    );
    assert.equal(
      (await trySync(cp.grpcPort, creds, 'not-a-key-at-all-xxxxxxxx', ['*'])).err?.code,
      grpc.status.UNAUTHENTICATED,
    );
    assert.equal(
      (await trySync(cp.grpcPort, creds, ids.auditorKey, ['*'])).err?.code,
      grpc.status.PERMISSION_DENIED,
    );
  });

  it('refuses an out-of-scope Sync: a key for agent A asking for B, or for all agents', async () => {
    const creds = grpc.credentials.createSsl(tls.ca);
    const forB = await trySync(cp.grpcPort, creds, ids.scopedKey, [ids.b]);
    assert.equal(forB.err?.code, grpc.status.PERMISSION_DENIED);
    assert.match(forB.err?.details ?? '', /out of scope/);
    assert.equal(
      (await trySync(cp.grpcPort, creds, ids.scopedKey, ['*'])).err?.code,
      grpc.status.PERMISSION_DENIED,
    );
    assert.equal(
      (await trySync(cp.grpcPort, creds, ids.scopedKey, [])).err?.code,
      grpc.status.PERMISSION_DENIED,
    );
    const forA = await trySync(cp.grpcPort, creds, ids.scopedKey, [ids.a]);
    assert.equal(forA.msg?.msg?.$case, 'snapshot');
  });

  it('rejects agent_ids on non-sidecar keys', async () => {
    const r = await httpsJson(cp.httpPort, tls.ca, 'POST', '/api/api-keys', cp.adminKey, {
      name: 'x',
      role: 'AUDITOR',
      agent_ids: [ids.a],
    });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.field, 'agent_ids');
  });
});
