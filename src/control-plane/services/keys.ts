/** Signing keys, as the admin API shows them (public halves only). */
import type { SigningKey } from '../../gen/act/v1/admin';
import type { SigningKeyRecord } from '../../store/records';
import type { Store } from '../../store/types';
import type { SigningKeys } from '../signing-keys';
import { formatTime } from '../validate';

export class KeyService {
  constructor(
    private readonly store: Store,
    private readonly keys: SigningKeys,
  ) {}

  /** All keys still verifying, newest first; the newest is the active one. */
  async list(): Promise<SigningKey[]> {
    return this.store.read(async (r) => {
      const rows = (await r.scan<SigningKeyRecord>('keys', { limit: 10_000 })).map((x) => x.value);
      const active = (await this.keys.active(r)).keyId;
      return rows
        .sort((a, b) => b.created_at_ms - a.created_at_ms)
        .map((k) => ({
          key_id: k.key_id,
          public_key: k.public_key,
          created_at: formatTime(k.created_at_ms),
          active: k.key_id === active,
        }));
    });
  }

  async rotate(): Promise<SigningKey> {
    const k = await this.keys.rotate();
    return {
      key_id: k.keyId,
      public_key: Buffer.from(k.publicKeyRaw).toString('base64url'),
      created_at: formatTime(k.createdAtMs),
      active: true,
    };
  }
}
