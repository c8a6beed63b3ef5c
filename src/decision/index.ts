export { decide } from './decide';
export { InMemoryCounters, type CounterWriter } from './counters';
export * from './types';
