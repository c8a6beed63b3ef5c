/**
 * Simulated sidecars for the revocation-propagation bench: opens `streams` Sync streams to a
 * control plane, each on its own channel (its own TCP connection, as separate sidecars have),
 * each with Hello {sidecar_id unique, agent_ids ['*'], last_revision 0}. Each stream decodes
 * the snapshot and every delta (grpc-js deserializes each message per stream) and answers
 * Applied like a real sidecar (after the snapshot, then at most every 100 ms after deltas), but
 * keeps no replica: "applied" here means received and decoded.
 *
 * Two clients: "h2" (default) speaks gRPC's wire format directly over node:http2 — one HTTP/2
 * session per stream, length-prefixed protobuf messages, grpc-status from the trailers — and
 * costs about a third of grpc-js's client CPU per message; "grpc-js" uses the real grpc-js
 * client. On a 2-core machine the simulators share the cores with the control plane, so the
 * lighter client leaves the figure closer to what the control plane does on its own machine.
 *
 *   node --import tsx bench/lib/sync-sim.ts '{"target":"127.0.0.1:port","key":"…","streams":250,"prefix":"sim0","client":"h2"}'
 *
 * Prints JSON lines: {"type":"ready","streams":N} once every stream has its snapshot; then for
 * each revoked token id, once every stream has received it,
 * {"type":"revocation","token_id":…,"n":N,"first":ms,"last":ms,"median":ms} with wall-clock
 * times on the machine's monotonic clock (machineMs, comparable across processes on one machine).
 */
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { SyncRequest, SyncResponse, SyncServiceClient, SyncServiceService } from '../../src/gen/act/v1/sync';
import { exitWithParent, helperArgs, pct, machineMs } from './procs';

/** The sidecar's Applied cadence after deltas (src/sync/client.ts). */
const APPLIED_EVERY_MS = 100;

interface Args {
  target: string;
  key: string;
  streams: number;
  prefix: string;
  client?: 'h2' | 'grpc-js';
}

/** The part of a client stream the simulator uses (grpc-js's duplex call has the same shape). */
interface SimStream {
  on(event: 'data', fn: (m: SyncResponse) => void): void;
  on(event: 'error', fn: (err: { code: number; message: string }) => void): void;
  write(m: SyncRequest): void;
  cancel(): void;
}

/** A gRPC bidi stream over node:http2 (gRPC's HTTP/2 wire format, no grpc-js). */
function h2Stream(target: string, key: string): SimStream & { close(): void } {
  const session = http2.connect(`http://${target}`);
  const req = session.request({
    ':method': 'POST',
    ':path': SyncServiceService.sync.path,
    'content-type': 'application/grpc',
    te: 'trailers',
    authorization: `Bearer ${key}`,
  });
  let onData: (m: SyncResponse) => void = () => undefined;
  let onError: (err: { code: number; message: string }) => void = () => undefined;
  let pending: Buffer = Buffer.alloc(0);
  req.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 5) {
      const len = pending.readUInt32BE(1);
      if (pending.length < 5 + len) break;
      if (pending[0] !== 0) throw new Error('compressed gRPC message: not expected from the control plane');
      const msg = SyncResponse.decode(pending.subarray(5, 5 + len));
      pending = pending.subarray(5 + len);
      onData(msg);
    }
  });
  const fail = (code: number, message: string) => onError({ code, message });
  req.on('trailers', (t) => {
    const code = Number(t['grpc-status'] ?? 2);
    if (code !== 0) fail(code, String(t['grpc-message'] ?? 'stream ended'));
  });
  req.on('response', (h) => {
    // A trailers-only response (an error before any message) carries grpc-status here.
    if (h['grpc-status'] !== undefined && Number(h['grpc-status']) !== 0)
      fail(Number(h['grpc-status']), String(h['grpc-message'] ?? ''));
  });
  req.on('error', (err) => fail(grpc.status.UNAVAILABLE, err.message));
  session.on('error', (err) => fail(grpc.status.UNAVAILABLE, err.message));
  return {
    on(event: 'data' | 'error', fn: never) {
      if (event === 'data') onData = fn;
      else onError = fn;
    },
    write(m: SyncRequest) {
      const body = SyncRequest.encode(m).finish();
      const frame = Buffer.allocUnsafe(5 + body.length);
      frame[0] = 0;
      frame.writeUInt32BE(body.length, 1);
      frame.set(body, 5);
      req.write(frame);
    },
    cancel() {
      req.close(http2.constants.NGHTTP2_CANCEL);
    },
    close() {
      session.close();
    },
  };
}

function main(): void {
  const a = helperArgs<Args>();
  const clients: { close(): void }[] = [];
  const calls: SimStream[] = [];
  let ready = 0;
  const seen = new Map<string, number[]>();
  const emit = (o: unknown) => console.log(JSON.stringify(o));
  exitWithParent(() => {
    for (const c of calls) c.cancel();
    for (const c of clients) c.close();
  });

  for (let i = 0; i < a.streams; i++) {
    let call: SimStream;
    if (a.client === 'grpc-js') {
      const client = new SyncServiceClient(a.target, grpc.credentials.createInsecure(), {
        'grpc.use_local_subchannel_pool': 1, // one connection per simulated sidecar
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
      });
      clients.push(client);
      const md = new grpc.Metadata();
      md.set('authorization', `Bearer ${a.key}`);
      call = client.sync(md);
    } else {
      const h2 = h2Stream(a.target, a.key);
      clients.push(h2);
      call = h2;
    }
    calls.push(call);
    let isReady = false;
    let pendingApplied = 0;
    let appliedTimer: NodeJS.Timeout | undefined;
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
        const t = machineMs();
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
        // As the sidecar does (src/sync/client.ts): after deltas, Applied at most every 100 ms.
        pendingApplied = msg.value.revision;
        appliedTimer ??= setTimeout(() => {
          appliedTimer = undefined;
          call.write({ msg: { $case: 'applied', value: { revision: pendingApplied } } });
        }, APPLIED_EVERY_MS);
      }
    });
    call.on('error', (err) => {
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
          previous_sidecar_ids: [],
        },
      },
    });
  }
}

main();
