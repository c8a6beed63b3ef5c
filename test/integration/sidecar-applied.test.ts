/**
 * The sidecar's Applied reports on the Sync stream, seen from the control plane's side: a
 * gRPC SyncService served here (a scripted peer on a real port) sends a real `act sidecar`
 * a snapshot and then a burst of revocation deltas. Applied comes at once for the snapshot;
 * for the burst it is coalesced (at most one per 100 ms) and still ends on the last revision.
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import {
  SyncServiceService,
  type SyncRequest,
  type SyncResponse,
  type SyncServiceServer,
} from '../../src/gen/act/v1/sync';
import { startSidecar, tempDir, type SidecarProcess } from '../support/processes';
import { waitFor } from '../support/sidecar-helpers';

const DELTAS = 50;

describe('sidecar: Applied on the Sync stream', function () {
  this.timeout(60_000);
  const tmp = tempDir('applied');
  const server = new grpc.Server();
  let sidecar: SidecarProcess | undefined;
  const applied: number[] = [];
  let stream: grpc.ServerDuplexStream<SyncRequest, SyncResponse> | undefined;

  before(async () => {
    const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>) =>
      cb({ code: grpc.status.UNIMPLEMENTED, details: 'scripted peer' });
    const impl: SyncServiceServer = {
      requestApproval: unimplemented,
      consumeApproval: unimplemented,
      leaseBudget: unimplemented,
      releaseBudget: unimplemented,
      sync: (call) => {
        stream = call;
        call.on('data', (m: SyncRequest) => {
          if (m.msg?.$case === 'hello') {
            call.write({
              msg: {
                $case: 'snapshot',
                value: { revision: 1, store_id: 'applied-test', first: true, last: true, changes: [] },
              },
            });
          } else if (m.msg?.$case === 'applied') applied.push(m.msg.value.revision);
        });
        call.on('error', () => undefined);
      },
    };
    server.addService(SyncServiceService, impl);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    sidecar = await startSidecar({ grpcPort: port, adminKey: 'test-admin-key-0123456789abcdef' }, tmp.dir);
  });

  after(async () => {
    await sidecar?.stop();
    server.forceShutdown();
    tmp.remove();
  });

  it('reports the snapshot at once, then coalesces a burst of deltas and ends on the last revision', async () => {
    await waitFor('Applied for the snapshot', async () => (applied.includes(1) ? true : undefined));
    assert.deepEqual(applied, [1]);
    const now = Date.now();
    for (let i = 0; i < DELTAS; i++) {
      stream!.write({
        msg: {
          $case: 'delta',
          value: {
            revision: 2 + i,
            changes: [
              {
                kind: {
                  $case: 'revocation',
                  value: {
                    token_id: `tok_applied_${i}`,
                    revoked_at_ms: now,
                    expires_at_ms: now + 86_400_000,
                    agent_id: 'agent_applied',
                  },
                },
              },
            ],
          },
        },
      });
    }
    const last = DELTAS + 1;
    await waitFor(`Applied for revision ${last}`, async () => (applied.includes(last) ? true : undefined));
    const afterSnapshot = applied.slice(1);
    assert.equal(afterSnapshot.at(-1), last);
    assert.ok(
      afterSnapshot.length < DELTAS / 2,
      `expected the ${DELTAS} deltas' Applied to be coalesced, got ${afterSnapshot.length}: ${afterSnapshot.join(',')}`,
    );
    for (let i = 1; i < applied.length; i++) assert.ok(applied[i]! > applied[i - 1]!, 'revisions only grow');
  });
});
