/**
 * `@act-platform/sdk` against a small scripted grpc-js DecisionService (the root's generated
 * service definition, a real server on a loopback port): what the client sends, its retries,
 * deadlines and cancellation, WaitForApproval's stream, and — the point of the SDK — that no
 * error, odd answer or malformed argument ever comes back as "allowed".
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import {
  ACTClient,
  ACTError,
  ACTInvalidArgumentError,
  ACTProtocolError,
  ACTTimeoutError,
  ACTUnavailableError,
  type ApprovalUpdate,
} from '@act-platform/sdk';
import {
  ApprovalStatus,
  Decision,
  DecisionServiceService,
  ReasonCode,
  type CheckPermissionResponse,
  type DecisionServiceServer,
} from '../../src/gen/act/v1/decision';

const TOKEN = 'act_scripted-test-token.sig';

interface Call {
  method: string;
  request: any;
  metadata: grpc.Metadata;
}

interface Scripted {
  address: string;
  calls: Call[];
  close(): Promise<void>;
}

/** Starts a DecisionService whose methods do what the test says; records every call it receives. */
async function scripted(impl: Partial<DecisionServiceServer>): Promise<Scripted> {
  const calls: Call[] = [];
  const server = new grpc.Server();
  const record =
    <F extends (call: any, ...rest: any[]) => void>(method: string, f: F | undefined) =>
    (call: any, ...rest: any[]) => {
      calls.push({ method, request: call.request, metadata: call.metadata });
      if (f) f(call, ...rest);
      else if (typeof rest[0] === 'function')
        rest[0]({ code: grpc.status.UNIMPLEMENTED, details: 'not scripted' });
      else call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not scripted' });
    };
  server.addService(DecisionServiceService, {
    checkPermission: record('checkPermission', impl.checkPermission),
    checkPermissions: record('checkPermissions', impl.checkPermissions),
    waitForApproval: record('waitForApproval', impl.waitForApproval),
  } as DecisionServiceServer);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    address: `127.0.0.1:${port}`,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown();
        resolve();
      }),
  };
}

function response(over: Partial<CheckPermissionResponse> = {}): CheckPermissionResponse {
  return {
    allowed: true,
    action: 'read:customer_profile',
    decision: Decision.ALLOW,
    reason_code: ReasonCode.GRANTED,
    reason: 'Token valid, capability granted',
    audit_id: 'audit_1',
    approval_id: '',
    details: {
      missing_capability: '',
      presented_approval_id: '',
      retry_after_ms: 0,
      next_allowed_at: '',
      remaining_daily_budget: -1,
      policy_id: '',
      rule: '',
      remaining_rate: -1,
    },
    policy_revision: 7,
    ...over,
  };
}

/** Answers every check with `res` (the request's action echoed unless `res` names one). */
const answering =
  (over: Partial<CheckPermissionResponse> = {}): DecisionServiceServer['checkPermission'] =>
  (call, cb) =>
    cb(null, response({ action: call.request.action, ...over }));

/** A TCP port nobody listens on (bound, read, closed). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves to the settled outcome, so a test can assert a call did not resolve. */
async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('@act-platform/sdk against a scripted DecisionService', function () {
  const open: { close(): unknown }[] = [];
  const track = <T extends { close(): unknown }>(x: T): T => {
    open.push(x);
    return x;
  };
  afterEach(async function () {
    for (const x of open.splice(0)) await x.close();
  });

  describe('what the client sends', function () {
    it('the request object on the wire: action, resource, context as JSON, approval id, token (also as the bearer)', async function () {
      const s = track(await scripted({ checkPermission: answering() }));
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const when = new Date('2025-06-01T10:00:00Z');
      const allowed = await act.checkPermission({
        action: 'read:customer_profile',
        resource: 'customer_54321',
        context: {
          ip: '10.0.1.50',
          user: { id: 'u1', roles: ['a', 'b'] },
          amount: 12.5,
          at: when,
          gone: undefined,
        },
        approvalId: 'approval_1',
      });
      assert.equal(allowed, true);
      assert.equal(s.calls.length, 1);
      const req = s.calls[0]!.request;
      assert.equal(req.token, TOKEN);
      assert.equal(req.action, 'read:customer_profile');
      assert.equal(req.resource, 'customer_54321');
      assert.equal(req.approval_id, 'approval_1');
      assert.deepEqual(req.context, {
        ip: '10.0.1.50',
        user: { id: 'u1', roles: ['a', 'b'] },
        amount: 12.5,
        at: '2025-06-01T10:00:00.000Z',
      });
      assert.deepEqual(s.calls[0]!.metadata.get('authorization'), [`Bearer ${TOKEN}`]);
    });

    it('check() names the enums and leaves absent details undefined', async function () {
      const s = track(
        await scripted({
          checkPermission: answering({
            allowed: false,
            decision: Decision.DENY,
            reason_code: ReasonCode.RATE_LIMITED,
            reason: 'Rate limit exceeded',
            details: {
              missing_capability: '',
              presented_approval_id: '',
              retry_after_ms: 1500,
              next_allowed_at: '',
              remaining_daily_budget: 3,
              policy_id: 'policy_1',
              rule: '',
              remaining_rate: 0,
            },
          }),
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const d = await act.check({ action: 'read:customer_profile' });
      assert.deepEqual(d, {
        allowed: false,
        decision: 'DENY',
        reasonCode: 'RATE_LIMITED',
        reason: 'Rate limit exceeded',
        action: 'read:customer_profile',
        auditId: 'audit_1',
        approvalId: undefined,
        policyRevision: 7,
        details: {
          missingCapability: undefined,
          retryAfterMs: 1500,
          nextAllowedAt: undefined,
          remainingDailyBudget: 3,
          remainingRate: 0,
          policyId: 'policy_1',
          rule: undefined,
        },
      });
    });

    it('checkBatch() sends one CheckPermissions call and keeps the order', async function () {
      const s = track(
        await scripted({
          checkPermissions: (call, cb) =>
            cb(null, {
              results: call.request.items.map((it, i) =>
                response({
                  action: it.action,
                  allowed: i === 0,
                  decision: i === 0 ? Decision.ALLOW : Decision.DENY,
                  audit_id: `audit_${i}`,
                }),
              ),
            }),
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const ds = await act.checkBatch([
        { action: 'read:a', resource: 'r1', context: { n: 1 } },
        { action: 'read:b' },
      ]);
      assert.deepEqual(
        ds.map((d) => [d.action, d.allowed, d.auditId]),
        [
          ['read:a', true, 'audit_0'],
          ['read:b', false, 'audit_1'],
        ],
      );
      assert.equal(s.calls.length, 1);
      assert.equal(s.calls[0]!.request.token, TOKEN);
      assert.deepEqual(
        s.calls[0]!.request.items.map((i: any) => [i.action, i.resource, i.context]),
        [
          ['read:a', 'r1', { n: 1 }],
          ['read:b', '', undefined],
        ],
      );
    });
  });

  describe('retries: only on UNAVAILABLE, bounded', function () {
    it('UNAVAILABLE twice, then an answer: resolves, after three attempts', async function () {
      let n = 0;
      const s = track(
        await scripted({
          checkPermission: (call, cb) =>
            ++n <= 2 ? cb({ code: grpc.status.UNAVAILABLE, details: 'draining' }) : answering()(call, cb),
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      assert.equal(await act.checkPermission({ action: 'read:customer_profile' }), true);
      assert.equal(s.calls.length, 3);
    });

    it('UNAVAILABLE every time: rejects with ACTUnavailableError after maxAttempts (default 3; 1 turns retries off)', async function () {
      const s = track(
        await scripted({
          checkPermission: (_call, cb) => cb({ code: grpc.status.UNAVAILABLE, details: 'draining' }),
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const r = await settle(act.checkPermission({ action: 'read:customer_profile' }));
      assert.equal(r.ok, false);
      assert.ok(!r.ok && r.error instanceof ACTUnavailableError, String(!r.ok && r.error));
      assert.equal(s.calls.length, 3);

      const once = track(new ACTClient({ token: TOKEN, address: s.address, maxAttempts: 1 }));
      await assert.rejects(once.checkPermission({ action: 'read:customer_profile' }), ACTUnavailableError);
      assert.equal(s.calls.length, 4);
    });

    it('other errors are not retried: INTERNAL and INVALID_ARGUMENT reject after one attempt', async function () {
      const codes = [grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT];
      const s = track(
        await scripted({
          checkPermission: (_call, cb) => cb({ code: codes[s.calls.length - 1]!, details: 'no' }),
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const internal = await settle(act.check({ action: 'read:x' }));
      assert.ok(!internal.ok && internal.error instanceof ACTError);
      assert.equal(!internal.ok && (internal.error as ACTError).code, 'INTERNAL');
      assert.equal(s.calls.length, 1);
      await assert.rejects(act.check({ action: 'read:x' }), ACTInvalidArgumentError);
      assert.equal(s.calls.length, 2);
    });
  });

  describe('deadlines and cancellation', function () {
    it('a sidecar that never answers: ACTTimeoutError at the deadline, for the client default and per call', async function () {
      const held: (() => void)[] = [];
      const s = track(
        await scripted({
          checkPermission: (_call, cb) => held.push(() => cb({ code: grpc.status.CANCELLED })),
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address, timeoutMs: 200 }));
      const r = await settle(act.checkPermission({ action: 'read:x' }));
      assert.ok(!r.ok && r.error instanceof ACTTimeoutError, String(!r.ok && r.error));
      assert.equal((!r.ok && (r.error as ACTError).code) || '', 'DEADLINE_EXCEEDED');
      const slow = track(new ACTClient({ token: TOKEN, address: s.address }));
      await assert.rejects(slow.check({ action: 'read:x' }, { timeoutMs: 100 }), ACTTimeoutError);
      assert.equal(s.calls.length, 2);
    });

    it('an AbortSignal cancels the call: rejects with code CANCELLED', async function () {
      const s = track(await scripted({ checkPermission: () => undefined }));
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const ctl = new AbortController();
      const p = settle(act.checkPermission({ action: 'read:x' }, { signal: ctl.signal }));
      while (s.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
      ctl.abort();
      const r = await p;
      assert.ok(
        !r.ok && r.error instanceof ACTError && r.error.code === 'CANCELLED',
        String(!r.ok && r.error),
      );
      // Already aborted: no call at all.
      await assert.rejects(act.checkPermission({ action: 'read:x' }, { signal: ctl.signal }), /cancelled/);
      assert.equal(s.calls.length, 1);
    });

    it('close(): later calls reject with code CLOSED and reach nothing', async function () {
      const s = track(await scripted({ checkPermission: answering() }));
      const act = new ACTClient({ token: TOKEN, address: s.address });
      assert.equal(await act.checkPermission({ action: 'read:x' }), true);
      act.close();
      const calls: Promise<unknown>[] = [
        act.checkPermission({ action: 'read:x' }),
        act.check({ action: 'read:x' }),
        act.checkBatch([{ action: 'read:x' }]),
        act.waitForApproval('approval_1'),
      ];
      for (const p of calls) {
        const r = await settle(p);
        assert.ok(
          !r.ok && r.error instanceof ACTError && r.error.code === 'CLOSED',
          String(!r.ok && r.error),
        );
      }
      assert.equal(s.calls.length, 1);
    });
  });

  describe('never "allowed" by mistake', function () {
    it('on an error or an answer it cannot trust: false or a rejection, never true', async function () {
      // Answers in which the flag and the decision disagree, or the decision is unknown.
      const odd: Partial<CheckPermissionResponse>[] = [
        { allowed: true, decision: Decision.DENY },
        { allowed: true, decision: Decision.APPROVAL_REQUIRED, approval_id: 'approval_1' },
        { allowed: true, decision: Decision.DECISION_UNSPECIFIED },
        { allowed: true, decision: 42 as Decision },
        { allowed: false, decision: Decision.ALLOW },
      ];
      let i = 0;
      const s = track(
        await scripted({
          checkPermission: (call, cb) => {
            const k = i++;
            if (k < odd.length) return answering(odd[k])(call, cb);
            cb({ code: grpc.status.INTERNAL, details: 'boom' });
          },
          checkPermissions: (call, cb) => {
            const items = call.request.items;
            const all = items.map((it) => response({ action: it.action }));
            // First call: one result short; second: results swapped; third: flag without ALLOW.
            const k = s.calls.filter((c) => c.method === 'checkPermissions').length;
            if (k === 1) return cb(null, { results: all.slice(1) });
            if (k === 2) return cb(null, { results: [...all].reverse() });
            return cb(null, { results: all.map((r) => ({ ...r, decision: Decision.DENY })) });
          },
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      for (const o of odd) {
        const allowed = await act.checkPermission({ action: 'read:x' });
        assert.equal(allowed, false, JSON.stringify(o));
      }
      const r = await settle(act.checkPermission({ action: 'read:x' }));
      assert.equal(r.ok, false, 'an INTERNAL error rejects');

      const items = [{ action: 'read:a' }, { action: 'read:b' }];
      await assert.rejects(act.checkBatch(items), ACTProtocolError); // a missing result
      await assert.rejects(act.checkBatch(items), ACTProtocolError); // results out of order
      const ds = await act.checkBatch(items);
      assert.deepEqual(
        ds.map((d) => d.allowed),
        [false, false],
      );
    });

    it('on a malformed argument: a TypeError before any call reaches the sidecar', async function () {
      const s = track(await scripted({ checkPermission: answering(), checkPermissions: () => undefined }));
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      class User {
        id = 'u1';
      }
      const bad: [string, () => Promise<unknown>][] = [
        // The old positional form, which used to check the action "[object Object]".
        ['positional', () => (act.checkPermission as any)('read:customer_profile', { resource: 'c1' })],
        ['positional check()', () => (act.check as any)('read:customer_profile')],
        ['no argument', () => (act.checkPermission as any)()],
        ['action a number', () => act.checkPermission({ action: 42 as any })],
        ['action an object', () => act.checkPermission({ action: { action: 'read:x' } as any })],
        ['action empty', () => act.checkPermission({ action: '' })],
        ['action missing', () => act.checkPermission({ resource: 'x' } as any)],
        ['resource a number', () => act.checkPermission({ action: 'read:x', resource: 5 as any })],
        ['resource an array', () => act.checkPermission({ action: 'read:x', resource: ['a', 'b'] as any })],
        ['context a string', () => act.checkPermission({ action: 'read:x', context: 'ip=1' as any })],
        ['context an array', () => act.checkPermission({ action: 'read:x', context: [1] as any })],
        ['context null', () => act.checkPermission({ action: 'read:x', context: null as any })],
        ['context a Map', () => act.checkPermission({ action: 'read:x', context: new Map() as any })],
        [
          'context a class instance',
          () => act.checkPermission({ action: 'read:x', context: new User() as any }),
        ],
        [
          'nested class instance',
          () => act.checkPermission({ action: 'read:x', context: { user: new User() } }),
        ],
        ['nested NaN', () => act.checkPermission({ action: 'read:x', context: { amount: NaN } })],
        ['nested Infinity', () => act.checkPermission({ action: 'read:x', context: { amount: Infinity } })],
        ['nested bigint', () => act.checkPermission({ action: 'read:x', context: { n: 1n } })],
        ['nested function', () => act.checkPermission({ action: 'read:x', context: { f: () => 1 } })],
        ['cyclic context', () => act.checkPermission({ action: 'read:x', context: cyclic })],
        [
          '__proto__ key',
          () => act.checkPermission({ action: 'read:x', context: JSON.parse('{"__proto__":{"a":1}}') }),
        ],
        ['unknown field (typo)', () => act.checkPermission({ action: 'read:x', resourceId: 'c1' } as any)],
        ['approvalId a number', () => act.checkPermission({ action: 'read:x', approvalId: 1 as any })],
        ['bad options', () => act.checkPermission({ action: 'read:x' }, { timeoutMs: -1 })],
        ['unknown option', () => act.checkPermission({ action: 'read:x' }, { retries: 9 } as any)],
        ['three arguments', () => (act.checkPermission as any)({ action: 'read:x' }, {}, {})],
        ['batch not an array', () => act.checkBatch({ action: 'read:x' } as any)],
        ['batch empty', () => act.checkBatch([])],
        ['batch too long', () => act.checkBatch(Array.from({ length: 101 }, () => ({ action: 'read:x' })))],
        ['batch item positional', () => act.checkBatch(['read:x' as any])],
        ['batch item with approvalId', () => act.checkBatch([{ action: 'read:x', approvalId: 'a' } as any])],
        ['wait without id', () => (act.waitForApproval as any)()],
        ['wait too long', () => act.waitForApproval('approval_1', { timeoutMs: 900_001 })],
      ];
      for (const [what, call] of bad) {
        const r = await settle(call());
        assert.equal(r.ok, false, `${what}: resolved`);
        assert.ok(!r.ok && r.error instanceof TypeError, `${what}: ${String(!r.ok && r.error)}`);
      }
      assert.equal(s.calls.length, 0, 'no malformed request reached the sidecar');

      for (const [what, make] of [
        ['no token', () => new ACTClient({ token: '', address: s.address })],
        ['token with a newline', () => new ACTClient({ token: `${TOKEN}\n`, address: s.address })],
        ['maxAttempts 9', () => new ACTClient({ token: TOKEN, address: s.address, maxAttempts: 9 })],
        ['options a string', () => new ACTClient(TOKEN as any)],
      ] as const)
        assert.throws(make, TypeError, what);
    });

    it('on an unreachable sidecar: every method rejects with ACTUnavailableError', async function () {
      const port = await closedPort();
      const act = track(new ACTClient({ token: TOKEN, address: `127.0.0.1:${port}` }));
      const outcomes = await Promise.all([
        settle(act.checkPermission({ action: 'read:x' })),
        settle(act.check({ action: 'read:x' })),
        settle(act.checkBatch([{ action: 'read:x' }])),
        settle(act.waitForApproval('approval_1', { timeoutMs: 1000 })),
      ]);
      for (const r of outcomes) {
        assert.equal(r.ok, false);
        assert.ok(!r.ok && r.error instanceof ACTUnavailableError, String(!r.ok && r.error));
        // The address is in the message for the operator; the token never is.
        assert.match((r as { error: Error }).error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
        assert.doesNotMatch((r as { error: Error }).error.message, /act_scripted/);
      }
      const sock = track(new ACTClient({ token: TOKEN, address: 'unix:/nonexistent/act.sock' }));
      await assert.rejects(sock.checkPermission({ action: 'read:x' }), ACTUnavailableError);
    });
  });

  describe('waitForApproval()', function () {
    const update = (status: ApprovalStatus, decided: boolean, over: Record<string, string> = {}) => ({
      approval_id: 'approval_7',
      status,
      decided,
      resolved_by: '',
      comment: '',
      expires_at: '2030-01-01T00:00:00Z',
      reason: '',
      ...over,
    });

    it('streams the current state, then the decision: resolves to the final update, onUpdate sees each', async function () {
      const s = track(
        await scripted({
          waitForApproval: (call) => {
            call.write(update(ApprovalStatus.PENDING, false, { reason: 'Waiting for a human' }));
            setTimeout(() => {
              call.write(
                update(ApprovalStatus.APPROVED, true, {
                  resolved_by: 'ops',
                  comment: 'fine',
                  reason: 'Approved',
                }),
              );
              call.end();
            }, 20);
          },
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const seen: ApprovalUpdate[] = [];
      const final = await act.waitForApproval('approval_7', {
        timeoutMs: 5000,
        onUpdate: (u) => seen.push(u),
      });
      assert.deepEqual(final, {
        approvalId: 'approval_7',
        status: 'APPROVED',
        decided: true,
        resolvedBy: 'ops',
        comment: 'fine',
        expiresAt: '2030-01-01T00:00:00Z',
        reason: 'Approved',
      });
      assert.deepEqual(
        seen.map((u) => [u.status, u.decided]),
        [
          ['PENDING', false],
          ['APPROVED', true],
        ],
      );
      assert.deepEqual(s.calls[0]!.request, { approval_id: 'approval_7', token: TOKEN, timeout_ms: 5000 });
    });

    it('the wait ends undecided: resolves to PENDING with decided false (default wait 60 s sent)', async function () {
      const s = track(
        await scripted({
          waitForApproval: (call) => {
            call.write(update(ApprovalStatus.PENDING, false));
            call.end();
          },
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const u = await act.waitForApproval('approval_7');
      assert.equal(u.status, 'PENDING');
      assert.equal(u.decided, false);
      assert.equal(s.calls[0]!.request.timeout_ms, 60_000);
    });

    it('an empty stream, an update for another approval, or UNIMPLEMENTED: rejects', async function () {
      let k = 0;
      const s = track(
        await scripted({
          waitForApproval: (call) => {
            k++;
            if (k === 1) return call.end();
            if (k === 2) {
              call.write(update(ApprovalStatus.APPROVED, true, { approval_id: 'approval_other' }));
              return call.end();
            }
            call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not yet' });
          },
        }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      await assert.rejects(act.waitForApproval('approval_7'), ACTProtocolError);
      await assert.rejects(act.waitForApproval('approval_7'), ACTProtocolError);
      await assert.rejects(
        act.waitForApproval('approval_7'),
        (e: unknown) => e instanceof ACTError && e.code === 'UNIMPLEMENTED',
      );
    });

    it('an AbortSignal ends the wait with code CANCELLED', async function () {
      const s = track(
        await scripted({ waitForApproval: (call) => call.write(update(ApprovalStatus.PENDING, false)) }),
      );
      const act = track(new ACTClient({ token: TOKEN, address: s.address }));
      const ctl = new AbortController();
      const p = act.waitForApproval('approval_7', {
        signal: ctl.signal,
        onUpdate: () => ctl.abort(),
      });
      await assert.rejects(p, (e: unknown) => e instanceof ACTError && e.code === 'CANCELLED');
    });
  });
});
