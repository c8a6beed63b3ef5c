/**
 * Signing keys live in the store's `keys` table — public half in the clear (it reaches sidecars
 * through sync), private half sealed under the key-encryption key — so every control-plane
 * replica signs with the same keys and sees a rotation at once. The newest key signs; older keys
 * keep verifying. The first key is made inside a write transaction, so replicas starting together
 * on an empty database make exactly one.
 */
import { createPublicKey } from 'node:crypto';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { toBase64Url } from '../common/base64url';
import type { Clock } from '../common/clock';
import { PublicKey } from '../gen/act/v1/sync';
import type { SigningKeyRecord } from '../store/records';
import type { Store, StoreReader, StoreWriter } from '../store/types';
import { exportPrivateKey, generateSigningKey, importPrivateKey, rawPublicKey } from '../token';
import type { SigningKeyPair } from '../token/types';
import type { Kek } from './key-encryption';

/** The file earlier versions kept private keys in (migrated into the store on start). */
const LEGACY_FILE = 'signing-keys.json';

interface LegacyEntry {
  key_id: string;
  private_key_pem: string;
  created_at_ms: number;
}

export class SigningKeys {
  /** Decrypted keys by id (a key never changes once made). */
  private readonly cache = new Map<string, SigningKeyPair>();

  constructor(
    private readonly store: Store,
    private readonly kek: Kek,
    private readonly clock: Clock,
    /** The embedded store's data dir, where a legacy key file may be. */
    private readonly legacyDir?: string,
  ) {}

  /** Migrates a legacy key file, then makes sure a signing key exists. */
  async start(): Promise<void> {
    if (this.legacyDir !== undefined) await this.migrateLegacy(path.join(this.legacyDir, LEGACY_FILE));
    await this.store.write(async (w) => {
      if ((await this.signable(w)).length === 0) this.add(w, generateSigningKey(this.clock()));
    });
  }

  /** The key that signs new tokens: the newest with a private half (read in the caller's transaction). */
  async active(r: StoreReader): Promise<SigningKeyPair> {
    const rows = await this.signable(r);
    if (rows.length === 0) throw new Error('no signing key in the store');
    const newest = rows.reduce((a, b) => (b.created_at_ms > a.created_at_ms ? b : a));
    return this.open(newest);
  }

  /** Generates a new active key; old keys keep verifying. */
  async rotate(): Promise<SigningKeyPair> {
    const k = generateSigningKey(this.clock());
    await this.store.write(async (w) => this.add(w, k));
    this.cache.set(k.keyId, k);
    return k;
  }

  private async signable(r: StoreReader): Promise<SigningKeyRecord[]> {
    const rows = await r.scan<SigningKeyRecord>('keys', { limit: 10_000 });
    return rows.map((x) => x.value).filter((k) => typeof k.private_key_sealed === 'string');
  }

  private open(rec: SigningKeyRecord): SigningKeyPair {
    const hit = this.cache.get(rec.key_id);
    if (hit) return hit;
    const pem = this.kek.open(rec.private_key_sealed!, rec.key_id).toString('utf8');
    const privateKey = importPrivateKey(pem);
    const publicKey = createPublicKey(privateKey);
    const pair = {
      keyId: rec.key_id,
      privateKey,
      publicKey,
      publicKeyRaw: rawPublicKey(publicKey),
      createdAtMs: rec.created_at_ms,
    };
    this.cache.set(rec.key_id, pair);
    return pair;
  }

  private add(w: StoreWriter, k: SigningKeyPair): void {
    const rec: SigningKeyRecord = {
      key_id: k.keyId,
      public_key: toBase64Url(k.publicKeyRaw),
      created_at_ms: k.createdAtMs,
      max_token_expiry_ms: 0,
      private_key_sealed: this.kek.seal(Buffer.from(exportPrivateKey(k.privateKey), 'utf8'), k.keyId),
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

  /** Seals the keys of a legacy 0600 key file into the store and renames the file (kept, not deleted). */
  private async migrateLegacy(file: string): Promise<void> {
    if (!existsSync(file)) return;
    const entries = JSON.parse(readFileSync(file, 'utf8')) as LegacyEntry[];
    await this.store.write(async (w) => {
      for (const e of entries) {
        const privateKey = importPrivateKey(e.private_key_pem);
        const old = await w.get<SigningKeyRecord>('keys', e.key_id);
        if (old?.private_key_sealed) continue;
        const pair: SigningKeyPair = {
          keyId: e.key_id,
          privateKey,
          publicKey: createPublicKey(privateKey),
          publicKeyRaw: rawPublicKey(privateKey),
          createdAtMs: e.created_at_ms,
        };
        if (old) {
          w.put('keys', e.key_id, {
            ...old,
            private_key_sealed: this.kek.seal(Buffer.from(e.private_key_pem, 'utf8'), e.key_id),
          });
        } else this.add(w, pair);
      }
    });
    renameSync(file, `${file}.migrated`);
  }
}
