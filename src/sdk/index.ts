/**
 * The TypeScript client is the package `@act-platform/sdk` (packages/sdk); this module re-exports
 * it for code that imported it from this repository's build.
 */
export * from '@act-platform/sdk';
/**
 * @deprecated Use `ACTClient`: it takes one request object, `checkPermission({ action, resource,
 * context })`, and resolves to a boolean (`check()` resolves to the whole decision). The old
 * positional form `checkPermission(action, options)` now throws a TypeError.
 */
export { ACTClient as ActClient } from '@act-platform/sdk';
