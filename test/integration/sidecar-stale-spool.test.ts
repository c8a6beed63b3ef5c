/**
 * Two fail-safe settings of the sidecar with the control plane gone: serve-stale keeps
 * deciding past the staleness bound (opt-in), and a full audit spool fails checks
 * closed (UNAVAILABLE / HTTP 503) instead of answering without a safe audit record.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  restClient,
  startControlPlane,
  startSidecar,
  tempDir,
  type ControlPlaneProcess,
  type SidecarProcess,
} from '../support/processes';
import { sleep, waitFor } from '../support/sidecar-helpers';

describe('sidecar without its control plane: serve-stale and a full spool', function () {
  this.timeout(60_000);
  const tmp = tempDir('stale');
  let cp: ControlPlaneProcess | undefined;
  const sidecars: SidecarProcess[] = [];
  let token = '';

  before(async () => {
    cp = await startControlPlane(path.join(tmp.dir, 'cp'));
    const api = restClient(cp.url, cp.adminKey);
    const agent = (await api('POST', '/api/agents', { name: 'stale agent' })).body.agent_id;
    const policy = (await api('POST', '/api/policies', { name: 'reads', capabilities: ['read:*'] })).body
      .policy_id;
    token = (await api('POST', '/api/tokens', { agent_id: agent, policy_ids: [policy] })).body.token;
    sidecars.push(
      await startSidecar(cp, path.join(tmp.dir, 'serve-stale'), {
        args: ['--stale-after', '1s', '--stale-policy', 'serve-stale'],
      }),
      await startSidecar(cp, path.join(tmp.dir, 'tiny-spool'), {
        args: ['--stale-after', '60s', '--audit-spool-max-bytes', '3000'],
      }),
    );
    for (const sc of sidecars) {
      const check = restClient(sc.url);
      await waitFor('sidecar synced', async () =>
        (await check('POST', '/api/enforcement/check', { token, action: 'read:x' })).body?.allowed
          ? true
          : undefined,
      );
    }
    await cp.kill(); // SIGKILL: no goodbye to the sidecars
    cp = undefined;
  });

  after(async () => {
    for (const sc of sidecars) await sc.stop();
    await cp?.stop();
    tmp.remove();
  });

  it('serve-stale keeps deciding from the last known state past the bound', async () => {
    await sleep(1500);
    const r = await restClient(sidecars[0]!.url)('POST', '/api/enforcement/check', {
      token,
      action: 'read:customer_profile',
    });
    assert.equal(r.status, 200);
    assert.equal(r.body.allowed, true);
    assert.equal(r.body.reason_code, 'GRANTED');
    const metrics = await (await fetch(`${sidecars[0]!.url}/metrics`)).text();
    assert.match(metrics, /act_replica_stale\{[^}]*\} 1/);
  });

  it('a full audit spool fails checks closed with 503 UNAVAILABLE, and says why', async () => {
    const check = restClient(sidecars[1]!.url);
    let last: Awaited<ReturnType<typeof check>> | undefined;
    for (let i = 0; i < 100; i++) {
      last = await check('POST', '/api/enforcement/check', {
        token,
        action: 'read:x',
        context: { i, pad: 'x'.repeat(200) },
      });
      if (last.status !== 200) break;
    }
    assert.equal(last?.status, 503, JSON.stringify(last?.body));
    assert.equal(last?.body.error.code, 'UNAVAILABLE');
    assert.match(last?.body.error.message, /audit spool is full/);
  });
});
