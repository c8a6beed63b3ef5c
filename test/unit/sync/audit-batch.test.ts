/** The sidecar ships spooled records as they are encoded; the result must be a valid SyncRequest. */
import assert from 'node:assert/strict';
import { AuditChain } from '../../../src/audit/chain';
import { AuditRecord } from '../../../src/gen/act/v1/admin';
import { SyncRequest } from '../../../src/gen/act/v1/sync';
import { encodeAuditBatchRequest } from '../../../src/sync/client';

describe('encodeAuditBatchRequest', () => {
  it('assembles SyncRequest{audit_batch} from sealed, encoded records that decode back to the same records', () => {
    const chain = new AuditChain('sc-1', 0, '');
    const records: AuditRecord[] = [];
    const frames: Buffer[] = [];
    for (let i = 0; i < 3; i++) {
      const r = AuditRecord.fromPartial({
        audit_id: `audit_${i}`,
        action: 'read:x',
        context: { i, s: 'é' },
        allowed: true,
      });
      frames.push(chain.sealEncoded(r));
      records.push(r);
    }
    const decoded = SyncRequest.decode(encodeAuditBatchRequest('sc-1:1-3:1', frames));
    assert.equal(decoded.msg?.$case, 'audit_batch');
    if (decoded.msg?.$case !== 'audit_batch') return;
    assert.equal(decoded.msg.value.batch_id, 'sc-1:1-3:1');
    assert.deepEqual(decoded.msg.value.records, records);
  });
});
