/**
 * Runs every data-driven case in test/cases/*.json through decide() in-process.
 * Cases in a file share counters and run in order (rate and daily budgets carry over).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PIPELINE_REASON_CODES, REASON_CODES } from '../../../src/common/reasons';
import { requestHash } from '../../../src/common/request-hash';
import { decide, InMemoryCounters } from '../../../src/decision';
import { VerificationCache } from '../../../src/token';
import { buildWorld, type CaseFile } from '../../support/decision-fixture';

const dir = path.join(__dirname, '../../cases');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

describe('decision cases (test/cases)', () => {
  it('has case files', () => assert.ok(files.length >= 6));

  it('covers every reason code with at least one case', () => {
    const seen = new Set<string>();
    for (const f of files) {
      const file = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as CaseFile;
      for (const c of file.cases) if (c.expect.reason_code) seen.add(c.expect.reason_code);
    }
    const missing = REASON_CODES.filter((code) => !seen.has(code) && !PIPELINE_REASON_CODES.includes(code));
    assert.deepEqual(missing, [], `reason codes without a case: ${missing.join(', ')}`);
  });

  for (const f of files) {
    const file = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as CaseFile;
    describe(`${f}: ${file.note}`, () => {
      const world = buildWorld(file);
      const counters = new InMemoryCounters();
      const verifier = new VerificationCache(1000);
      for (const c of file.cases) {
        it(c.note, () => {
          const token = c.token_literal ?? world.tokens.get(c.token ?? '');
          assert.ok(token !== undefined, `case names unknown token ${c.token}`);
          const nowMs = Date.parse(c.at ?? file.now);
          for (let i = 0; i < (c.repeat ?? 1); i++) {
            const r = decide(
              {
                token,
                action: c.action,
                resource: c.resource ?? '',
                context: c.context ?? {},
                approvalId: c.approval_id,
              },
              {
                view: world.view,
                verifier,
                counters,
                nowMs,
                stale: c.stale ?? false,
                requestHash: () => requestHash(c.action, c.resource ?? '', c.context ?? {}),
              },
            );
            const e = c.expect;
            const at = `(repetition ${i + 1}: ${r.decision} ${r.reasonCode} "${r.reason}")`;
            if (e.decision) assert.equal(r.decision, e.decision, at);
            if (e.reason_code) assert.equal(r.reasonCode, e.reason_code, at);
            if (e.reason) assert.equal(r.reason, e.reason, at);
            for (const [k, v] of Object.entries(e.details ?? {})) {
              assert.deepEqual((r.details as Record<string, unknown>)[k], v, `details.${k} ${at}`);
            }
            if (e.approval_id !== undefined) assert.equal(r.approvalId, e.approval_id, at);
            if (e.approval_request !== undefined)
              assert.equal(r.approvalRequest !== undefined, e.approval_request, at);
            if (r.decision !== 'ALLOW')
              assert.equal(r.usage.length, 0, 'only allowed actions consume budgets');
            counters.apply(r.usage);
          }
        });
      }
    });
  }
});
