/**
 * The audit hash chain: sealing, verification, tamper detection, and that a sealed
 * record survives the JSON export round trip (what `act audit verify` checks).
 */
import assert from 'node:assert/strict';
import { AuditChain, auditHash, verifyChain } from '../../../src/audit/chain';
import { fromExportJson } from '../../../src/cli/cli';
import { auditJson } from '../../../src/control-plane/json-mapping';
import { parseCheckRequest } from '../../../src/decision/request';
import { AuditRecord } from '../../../src/gen/act/v1/admin';

function record(i: number, context: Record<string, unknown>): AuditRecord {
  return AuditRecord.fromPartial({
    audit_id: `audit_${String(i).padStart(26, '0')}`,
    time: new Date(1_790_000_000_000 + i).toISOString(),
    action: 'read:customer_profile',
    resource: `c${i}`,
    decision: 1,
    reason_code: 16,
    reason: 'Token valid, capability granted',
    context,
    allowed: true,
  });
}

describe('audit hash chain', () => {
  it('seals records into a chain that verifies, and sealEncoded bytes decode to the sealed record', () => {
    const chain = new AuditChain('sc-1', 0, '');
    const recs: AuditRecord[] = [];
    for (let i = 0; i < 5; i++) {
      const r = record(i, { ip: '10.0.1.50', n: i, nested: { list: [1.5, 'x', null, true] } });
      const bytes = chain.sealEncoded(r);
      assert.deepEqual(AuditRecord.decode(bytes), r);
      assert.equal(auditHash(r), r.hash);
      recs.push(r);
    }
    assert.deepEqual(verifyChain(recs), []);
    assert.equal(recs[1]!.prev_hash, recs[0]!.hash);
  });

  it('detects an edited, dropped or reordered record', () => {
    const chain = new AuditChain('sc-1', 0, '');
    const recs = [0, 1, 2, 3].map((i) => chain.seal(record(i, { i })));
    assert.match(verifyChain([{ ...recs[0]!, resource: 'other' }, ...recs.slice(1)])[0]!.problem, /hash/);
    assert.ok(verifyChain([recs[0]!, recs[2]!, recs[3]!]).length > 0);
    assert.ok(verifyChain([recs[1]!, recs[0]!, recs[2]!]).length > 0);
  });

  it('a record verifies after the JSON export round trip, with -0 in the request context made 0', () => {
    const input = parseCheckRequest({
      token: 'act_x',
      action: 'read:x',
      context: { a: -0, b: [2.5, -0], c: { d: -0 } },
    });
    assert.ok(Object.is(input.context.a, 0));
    const chain = new AuditChain('control-plane', 0, '');
    const sealed = chain.seal(record(1, input.context));
    const exported = JSON.parse(JSON.stringify(auditJson(sealed))) as Record<string, unknown>;
    const back = fromExportJson(exported);
    assert.equal(auditHash(back), sealed.hash);
    assert.deepEqual(verifyChain([back]), []);
  });

  it('rejects non-finite numbers and over-deep context', () => {
    assert.throws(
      () => parseCheckRequest({ token: 'act_x', action: 'read:x', context: { n: NaN } }),
      /finite/,
    );
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) deep = { d: deep };
    assert.throws(() => parseCheckRequest({ token: 'act_x', action: 'read:x', context: deep }), /nested/);
  });
});
