/** Public face of the token module: codec, keys, verification cache, attenuation. Pure. */
export * from './types';
export * from './keys';
export * from './codec';
export * from './cache';
export * from './attenuation';
