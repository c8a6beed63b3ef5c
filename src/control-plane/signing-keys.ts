/**
 * Signing keys: private halves in `<dataDir>/signing-keys.json` (mode 0600,
 * replaced atomically), public halves in the store's `keys` table so they reach
 * sidecars through sync. The newest key signs; older keys keep verifying.
 */
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { toBase64Url } from '../common/base64url';
import type { Clock } from '../common/clock';
import { PublicKey } from '../gen/act/v1/sync';
import type { Store } from '../store/types';
import { exportPrivateKey, generateSigningKey, importPrivateKey, rawPublicKey } from '../token';
import type { SigningKeyPair } from '../token/types';
import type { SigningKeyRecord } from './records';
import { createPublicKey } from 'node:crypto';

interface KeyFileEntry {
  key_id: string;
  private_key_pem: string;
  created_at_ms: number;
}

export class SigningKeys {
  private keys: SigningKeyPair[] = [];
  private readonly file: string;

  constructor(
    dataDir: string,
    private readonly store: Store,
    private readonly clock: Clock,
  ) {
    this.file = path.join(dataDir, 'signing-keys.json');
  }

  /** Loads the key file (creating the first key when there is none) and makes sure the store knows every public key. */
  async start(): Promise<void> {
    if (existsSync(this.file)) {
      chmodSync(this.file, 0o600);
      const entries = JSON.parse(readFileSync(this.file, 'utf8')) as KeyFileEntry[];
      this.keys = entries.map((e) => {
        const privateKey = importPrivateKey(e.private_key_pem);
        const publicKey = createPublicKey(privateKey);
        return {
          keyId: e.key_id,
          privateKey,
          publicKey,
          publicKeyRaw: rawPublicKey(publicKey),
          createdAtMs: e.created_at_ms,
        };
      });
    }
    if (this.keys.length === 0) this.addKey();
    await this.publish();
  }

  /** The key that signs new tokens. */
  active(): SigningKeyPair {
    return this.keys[this.keys.length - 1]!;
  }

  /** Generates a new active key; old keys keep verifying. */
  async rotate(): Promise<SigningKeyPair> {
    const k = this.addKey();
    await this.publish();
    return k;
  }

  private addKey(): SigningKeyPair {
    const k = generateSigningKey(this.clock());
    this.keys.push(k);
    const entries: KeyFileEntry[] = this.keys.map((x) => ({
      key_id: x.keyId,
      private_key_pem: exportPrivateKey(x.privateKey),
      created_at_ms: x.createdAtMs,
    }));
    // Write-then-rename: a crash leaves either the old or the new file, never half of one.
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(entries, null, 2), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.file);
    return k;
  }

  private async publish(): Promise<void> {
    await this.store.write(async (w) => {
      for (const k of this.keys) {
        if (await w.get('keys', k.keyId)) continue;
        const rec: SigningKeyRecord = {
          key_id: k.keyId,
          public_key: toBase64Url(k.publicKeyRaw),
          created_at_ms: k.createdAtMs,
          max_token_expiry_ms: 0,
        };
        w.put('keys', k.keyId, rec);
        w.emit({
          kind: {
            $case: 'public_key',
            value: PublicKey.fromPartial({
              key_id: k.keyId,
              public_key: Buffer.from(k.publicKeyRaw),
              created_at_ms: k.createdAtMs,
            }),
          },
        });
      }
    });
  }
}
