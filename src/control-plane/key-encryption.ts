/**
 * The key-encryption key (KEK) that protects signing keys at rest: AES-256-GCM, a fresh 96-bit
 * IV per secret, the key id as additional data (a ciphertext cannot be moved to another key's
 * row). From ACT_KEY_ENCRYPTION_KEY (32 bytes, base64 or hex) or a file holding it; on the
 * embedded store without one, a key file is created beside the data (mode 0600) — with
 * PostgreSQL the control plane refuses to start without a KEK, since the database is shared.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface Kek {
  /** First 8 bytes of SHA-256 of the key, hex: tells which KEK sealed a secret. */
  readonly id: string;
  seal(plain: Buffer, aad: string): string;
  open(sealed: string, aad: string): Buffer;
}

const FILE_NAME = 'key-encryption.key';

/** Parses 32 bytes given as base64, base64url or hex. */
export function parseKekText(text: string, from: string): Buffer {
  const t = text.trim();
  const raw = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  if (raw.length !== 32)
    throw new Error(
      `${from} must be 32 random bytes as base64 or hex (e.g. the output of: openssl rand -base64 32)`,
    );
  return raw;
}

export function makeKek(key: Buffer): Kek {
  const id = createHash('sha256').update(key).digest('hex').slice(0, 16);
  return {
    id,
    seal(plain, aad) {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, iv);
      c.setAAD(Buffer.from(aad, 'utf8'));
      const body = Buffer.concat([c.update(plain), c.final()]);
      return `v1.${id}.${Buffer.concat([iv, c.getAuthTag(), body]).toString('base64url')}`;
    },
    open(sealed, aad) {
      const [v, kid, b64] = sealed.split('.');
      if (v !== 'v1' || b64 === undefined) throw new Error('not a sealed secret');
      if (kid !== id) throw new Error(`sealed under another key-encryption key (${kid}); this one is ${id}`);
      const buf = Buffer.from(b64, 'base64url');
      const d = createDecipheriv('aes-256-gcm', key, buf.subarray(0, 12));
      d.setAAD(Buffer.from(aad, 'utf8'));
      d.setAuthTag(buf.subarray(12, 28));
      return Buffer.concat([d.update(buf.subarray(28)), d.final()]);
    },
  };
}

/**
 * The KEK from the configuration: `text` (ACT_KEY_ENCRYPTION_KEY), else `file`
 * (ACT_KEY_ENCRYPTION_KEY_FILE), else — only when `createIn` is given (embedded store) — the
 * key file in that directory, made on first start.
 */
export function loadKek(opts: {
  text?: string | undefined;
  file?: string | undefined;
  createIn?: string;
}): Kek | undefined {
  if (opts.text) return makeKek(parseKekText(opts.text, 'ACT_KEY_ENCRYPTION_KEY'));
  if (opts.file)
    return makeKek(
      parseKekText(readFileSync(opts.file, 'utf8'), `ACT_KEY_ENCRYPTION_KEY_FILE (${opts.file})`),
    );
  if (opts.createIn === undefined) return undefined;
  const f = path.join(opts.createIn, FILE_NAME);
  if (!existsSync(f))
    writeFileSync(f, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
  return makeKek(parseKekText(readFileSync(f, 'utf8'), f));
}
