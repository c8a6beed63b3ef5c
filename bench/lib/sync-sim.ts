/**
 * Simulated sidecars for the revocation-propagation bench: opens `streams` Sync streams to a
 * control plane, each on its own channel (its own TCP connection, as separate sidecars have),
 * each with Hello {sidecar_id unique, agent_ids ['*'], last_revision 0}. Each stream decodes
 * the snapshot and every delta (grpc-js deserializes each message per stream) and answers
 * Applied like a real sidecar, but keeps no replica: "applied" here means received and decoded.
 *
 *   node --import tsx bench/lib/sync-sim.ts '{"target":"127.0.0.1:port","key":"…","streams":250,"prefix":"sim0"}'
 *
 * Prints JSON lines: {"type":"ready","streams":N} once every stream has its snapshot; then for
 * each revoked token id, once every stream has received it,
 * {"type":"revocation","token_id":…,"n":N,"first":ms,"last":ms,"median":ms} with wall-clock
 * times (performance.timeOrigin + performance.now(), comparable across processes).
 */
import * as grpc from '@grpc/grpc-js';
import { SyncServiceClient, type SyncRequest, type SyncResponse } from '../../src/gen/act/v1/sync';
import { exitWithParent, helperArgs, pct, wallMs } from './procs';

interface Args {
  target: string;
  key: string;
  streams: number;
  prefix: string;
}

function main(): void {
  const a = helperArgs<Args>();
  const clients: SyncServiceClient[] = [];
  const calls: grpc.ClientDuplexStream<SyncRequest, SyncResponse>[] = [];
  let ready = 0;
  const seen = new Map<string, number[]>();
  const emit = (o: unknown) => console.log(JSON.stringify(o));
  exitWithParent(() => {
    for (const c of calls) c.cancel();
    for (const c of clients) c.close();
  });

  for (let i = 0; i < a.streams; i++) {
    const client = new SyncServiceClient(a.target, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1, // one connection per simulated sidecar
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
    clients.push(client);
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${a.key}`);
    const call = client.sync(md);
    calls.push(call);
    let isReady = false;
    call.on('data', (m: SyncResponse) => {
      const msg = m.msg;
      if (msg?.$case === 'snapshot') {
        if (msg.value.last) {
          call.write({ msg: { $case: 'applied', value: { revision: msg.value.revision } } });
          if (!isReady) {
            isReady = true;
            if (++ready === a.streams) emit({ type: 'ready', streams: ready });
          }
        }
      } else if (msg?.$case === 'delta') {
        const t = wallMs();
        for (const c of msg.value.changes) {
          if (c.kind?.$case !== 'revocation') continue;
          const id = c.kind.value.token_id;
          const times = seen.get(id) ?? [];
          times.push(t);
          seen.set(id, times);
          if (times.length === a.streams) {
            times.sort((x, y) => x - y);
            emit({
              type: 'revocation',
              token_id: id,
              n: times.length,
              first: times[0],
              last: times[times.length - 1],
              median: pct(times, 0.5),
            });
            seen.delete(id);
          }
        }
        call.write({ msg: { $case: 'applied', value: { revision: msg.value.revision } } });
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) emit({ type: 'stream_error', stream: i, error: err.message });
    });
    call.write({
      msg: {
        $case: 'hello',
        value: {
          sidecar_id: `${a.prefix}-${i}`,
          agent_ids: ['*'],
          last_revision: 0,
          store_id: '',
          version: 'bench-sync-sim',
        },
      },
    });
  }
}

main();
