export { ActClient, type ActClientOptions, type CheckOptions, type Decision } from './client';
