/** Strict base64url (RFC 4648 §5, no padding). */
const B64URL_RE = /^[A-Za-z0-9_-]*$/;

export function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * Decodes base64url, rejecting padding, foreign characters and non-canonical
 * trailing bits (so every token has exactly one string form). Returns undefined on bad input.
 */
export function fromBase64Url(s: string): Buffer | undefined {
  if (!B64URL_RE.test(s) || s.length % 4 === 1) return undefined;
  const buf = Buffer.from(s, 'base64url');
  if (buf.toString('base64url') !== s) return undefined;
  return buf;
}
