export * from './reasons';
export * from './errors';
export * from './clock';
export * from './base64url';
export * from './ids';
export * from './backoff';
