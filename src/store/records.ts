/** What the control plane keeps in the store's tables (beside the generated Agent/Policy/Approval). */

/** tokens table (the one token row type: hub, scope and services read it). Never holds the token string. */
export interface TokenRecord {
  token_id: string;
  agent_id: string;
  policy_ids: string[];
  attenuated: boolean;
  attenuation: string[];
  parent_token_id: string;
  ancestor_token_ids: string[];
  issued_at_ms: number;
  not_before_ms: number;
  expires_at_ms: number;
  metadata: Record<string, string>;
  key_id: string;
  /** 0 while live. */
  revoked_at_ms: number;
  revoke_reason: string;
}

/** keys table: a signing key (control-plane/signing-keys.ts). */
export interface SigningKeyRecord {
  key_id: string;
  /** Raw Ed25519 public key, base64url. */
  public_key: string;
  created_at_ms: number;
  /** Latest expiry of any token signed with this key. */
  max_token_expiry_ms: number;
  /** The PKCS8 PEM private key sealed under the key-encryption key (never sent to sidecars). */
  private_key_sealed?: string;
}

export type RoleName = 'admin' | 'approver' | 'auditor' | 'sidecar';

/** apikeys table. The secret is stored as its SHA-256 only. */
export interface ApiKeyRecord {
  api_key_id: string;
  name: string;
  role: RoleName;
  secret_sha256: string;
  created_at_ms: number;
  /** Sidecar keys: the agents the key may sync; absent or empty = any. */
  agent_ids?: string[];
}

/** Index keys (table 'index'). */
export const idx = {
  agentName: (name: string) => `agent-name:${name.toLowerCase()}`,
  policyName: (name: string) => `policy-name:${name.toLowerCase()}`,
  agentToken: (agentId: string, tokenId: string) => `agent-token:${agentId}:${tokenId}`,
  agentTokenPrefix: (agentId: string) => `agent-token:${agentId}:`,
  tokenChild: (parent: string, child: string) => `token-child:${parent}:${child}`,
  tokenChildPrefix: (parent: string) => `token-child:${parent}:`,
};
