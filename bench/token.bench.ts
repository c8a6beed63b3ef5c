/**
 * Token micro-benchmarks: sign, verify (uncached), cached verify, and tweetnacl verify
 * for comparison. Run standalone with `npx tsx bench/token.bench.ts [--quick]`, or call
 * `run()` from the bench runner. Results are ops/s.
 */
import { performance } from 'node:perf_hooks';
import nacl from 'tweetnacl';
import {
  generateSigningKey,
  parseToken,
  signingMessage,
  signToken,
  verifyToken,
  VerificationCache,
  type PublicKeyLookup,
  type TokenClaims,
} from '../src/token';

const NOW = 1_700_000_000_000;

/** Runs `fn` n times (after a short warm-up) and returns ops/s. */
function measure(n: number, fn: (i: number) => void): number {
  for (let i = 0; i < Math.min(n, 100); i++) fn(i);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  return Math.round(n / ((performance.now() - t0) / 1000));
}

/** Benchmarks the token module; `quick` cuts iteration counts for CI smoke runs. */
export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  const scale = opts.quick ? 0.1 : 1;
  const key = generateSigningKey(NOW);
  const lookup: PublicKeyLookup = (id) => (id === key.keyId ? key.publicKey : undefined);
  const claims = (i: number): TokenClaims => ({
    version: 1,
    key_id: key.keyId,
    token_id: `tok_bench${i}`,
    agent_id: 'agent_bench',
    policy_ids: ['policy_a', 'policy_b'],
    attenuation: ['files.read', 'files.list'],
    attenuated: true,
    parent_token_id: '',
    ancestor_token_ids: [],
    issued_at_ms: NOW,
    not_before_ms: NOW,
    expires_at_ms: NOW + 3_600_000,
    metadata: { issued_by: 'bench' },
  });

  const n = Math.max(10, Math.round(20_000 * scale));
  const tokens = Array.from({ length: 1000 }, (_, i) => signToken(claims(i), key));
  const cache = new VerificationCache();
  for (const t of tokens) cache.verify(t, lookup);

  const parsed = parseToken(tokens[0]);
  if ('error' in parsed) throw new Error(parsed.error);
  const msg = signingMessage(parsed.claimsBytes);

  const results: Record<string, number> = {
    'token.sign': measure(n, (i) => signToken(claims(i), key)),
    'token.verify_uncached': measure(n, (i) => {
      if (!verifyToken(tokens[i % tokens.length], lookup).ok) throw new Error('verify failed');
    }),
    'token.verify_cached': measure(n * 20, (i) => {
      if (!cache.verify(tokens[i % tokens.length], lookup).ok) throw new Error('verify failed');
    }),
    'token.tweetnacl_verify': measure(opts.quick ? 3 : 20, () => {
      if (!nacl.sign.detached.verify(msg, parsed.signature, key.publicKeyRaw)) throw new Error('nacl failed');
    }),
  };
  return results;
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      for (const [name, ops] of Object.entries(r))
        console.log(`${name.padEnd(26)} ${ops.toLocaleString('en-US')} ops/s`);
    },
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
