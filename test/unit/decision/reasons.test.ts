/**
 * Reason codes (src/common/reasons.ts) against the generated proto enum: every code has a
 * wire value and maps back, and RESOURCE_PATH_INVALID sits where decide() checks it.
 */
import assert from 'node:assert/strict';
import { DEFAULT_REASON_TEXT, REASON_CODES, reasonFromWire, reasonToWire } from '../../../src/common/reasons';
import { ReasonCode } from '../../../src/gen/act/v1/decision';

describe('reason codes', () => {
  it('every code has a wire value, a default text, and maps back', () => {
    for (const code of REASON_CODES) {
      const wire = reasonToWire(code);
      assert.equal(typeof wire, 'number', code);
      assert.equal(reasonFromWire(wire), code);
      assert.ok(DEFAULT_REASON_TEXT[code].length > 0, code);
    }
  });

  it('RESOURCE_PATH_INVALID is 19 on the wire and comes after POLICY_UNKNOWN, before capability matching', () => {
    assert.equal(reasonToWire('RESOURCE_PATH_INVALID'), ReasonCode.RESOURCE_PATH_INVALID);
    assert.equal(ReasonCode.RESOURCE_PATH_INVALID, 19);
    const at = (c: (typeof REASON_CODES)[number]) => REASON_CODES.indexOf(c);
    assert.equal(at('RESOURCE_PATH_INVALID'), at('POLICY_UNKNOWN') + 1);
    assert.equal(at('CAPABILITY_NOT_GRANTED'), at('RESOURCE_PATH_INVALID') + 1);
  });
});
