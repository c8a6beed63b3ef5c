/** A clock in Unix milliseconds. Shells pass `systemClock`; tests pass fixed clocks. */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

/** A clock that returns `t` until moved; for tests. */
export function fixedClock(t: number): Clock & { set(t: number): void; advance(ms: number): void } {
  let now = t;
  const c = (() => now) as Clock & { set(t: number): void; advance(ms: number): void };
  c.set = (v: number) => {
    now = v;
  };
  c.advance = (ms: number) => {
    now += ms;
  };
  return c;
}
