/**
 * LeaseBudgets sizing and refills against a scripted ledger (real time; no timing is asserted,
 * only what the slices did): a steady pace far below half a slice per life is refilled before
 * its slice expires (no check waits on the ledger after the first), and slices that expire
 * mostly unspent make the next requests smaller.
 */
import assert from 'node:assert/strict';
import { LeaseBudgets } from '../../../src/enforce/budgets';
import type { LeaseGrant, LeasePort, LeaseRequest } from '../../../src/enforce/ports';
import type { RateLimit } from '../../../src/policy/types';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RATE: RateLimit = { limit: 1_000_000, periodMs: 1000, raw: '1000000 per second' };

class Ledger implements LeasePort {
  readonly asked: LeaseRequest[] = [];
  constructor(private readonly validMs: number) {}
  lease(req: LeaseRequest): Promise<LeaseGrant> {
    this.asked.push(req);
    return Promise.resolve({
      leaseId: `lease_${this.asked.length}`,
      granted: req.want,
      window: '',
      validMs: this.validMs,
      remaining: 1_000_000,
      retryAfterMs: 0,
      limit: 1_000_000,
    });
  }
  release(): Promise<void> {
    return Promise.resolve();
  }
}

/** One check through the pipeline's protocol: decide (read), lease on a miss, spend. */
async function spend(b: LeaseBudgets): Promise<boolean> {
  b.beginDecision();
  let r = b.rate('agent_a|policy_p', RATE);
  let waited = false;
  if (!r.ok && b.hasMisses()) {
    waited = true;
    await b.acquire();
    b.beginDecision();
    r = b.rate('agent_a|policy_p', RATE);
  }
  assert.equal(r.ok, true);
  b.apply([{ kind: 'rate', key: 'agent_a|policy_p', atMs: Date.now(), rate: RATE }]);
  return waited;
}

describe('LeaseBudgets refills and sizing', function () {
  this.timeout(20_000);

  it('a slot spent slowly is refilled before it expires: only the first check waits on the ledger', async function () {
    const ledger = new Ledger(1200);
    const b = new LeaseBudgets(ledger);
    const waits: boolean[] = [];
    // About 60 checks over 3 lives of a slice, far fewer than half of what one slice holds.
    for (let i = 0; i < 60; i++) {
      waits.push(await spend(b));
      await sleep(60);
    }
    assert.equal(waits[0], true, 'the first check leases');
    assert.deepEqual(
      waits.slice(1).filter((w) => w),
      [],
      `checks that waited for a lease: ${waits.filter((w) => w).length} (leases asked: ${ledger.asked.length})`,
    );
    assert.ok(ledger.asked.length >= 3, `refilled ahead of expiry: ${ledger.asked.length} leases`);
  });

  it('slices that expire mostly unspent make the next requests smaller, down to the initial size', async function () {
    const ledger = new Ledger(150);
    const b = new LeaseBudgets(ledger);
    for (let i = 0; i < 40; i++) {
      await spend(b);
      await sleep(40);
    }
    const wants = ledger.asked.map((a) => a.want);
    assert.equal(wants[0], 100, 'starts at a twentieth of the limit, at most 100');
    assert.ok(Math.max(...wants) <= 100, `never grew at this pace: ${wants.join(' ')}`);
  });

  it('a slot half spent within a second asks for twice as much next time', async function () {
    const ledger = new Ledger(5000);
    const b = new LeaseBudgets(ledger);
    for (let i = 0; i < 400; i++) await spend(b);
    const wants = ledger.asked.map((a) => a.want);
    assert.ok(wants.length >= 3, wants.join(' '));
    for (let i = 1; i < wants.length; i++) assert.equal(wants[i], wants[i - 1]! * 2, wants.join(' '));
  });
});
