/**
 * Reference semantics for capability globs, written straight from the README's rule and
 * independent of src/policy/glob.ts: a memoized recursive matcher over the pattern text
 * (polynomial, obviously correct, slow), a member generator, and a step-counting
 * backtracking matcher that shows what super-linear work looks like.
 */

/**
 * Whether `p` matches all of `s`. With `paths`: `*` is any run without '/'; a run of two
 * or more `*` is any run, and when it is a whole segment followed by '/' the run and that
 * '/' may also be absent. Without `paths` every run of `*` is any run.
 */
export function refGlob(p: string, s: string, paths: boolean): boolean {
  const memo = new Map<number, boolean>();
  const go = (i: number, j: number): boolean => {
    const key = i * (s.length + 1) + j;
    const hit = memo.get(key);
    if (hit !== undefined) return hit;
    const r = step(i, j);
    memo.set(key, r);
    return r;
  };
  const step = (i: number, j: number): boolean => {
    if (i === p.length) return j === s.length;
    if (p[i] !== '*') return j < s.length && s[j] === p[i] && go(i + 1, j + 1);
    let e = i;
    while (e < p.length && p[e] === '*') e++;
    if (paths && e - i === 1) {
      for (let t = j; ; t++) {
        if (go(e, t)) return true;
        if (t >= s.length || s[t] === '/') return false;
      }
    }
    const wholeBeforeSlash = paths && (i === 0 || p[i - 1] === '/') && e < p.length && p[e] === '/';
    if (wholeBeforeSlash) {
      if (go(e + 1, j)) return true; // no segment at all
      for (let t = j; t < s.length; t++) if (s[t] === '/' && go(e + 1, t + 1)) return true;
      return false;
    }
    for (let t = j; t <= s.length; t++) if (go(e, t)) return true;
    return false;
  };
  return go(0, 0);
}

/**
 * A string `p` matches, built by filling each `*` run from `fill` (cycled): a single `*`
 * gets its filler without '/', a whole-segment `**` + '/' gets nothing or filler + '/'
 * (by `skip`), any other run gets the filler as is.
 */
export function member(p: string, paths: boolean, fill: readonly string[], skip: readonly boolean[]): string {
  let out = '';
  let k = 0;
  let i = 0;
  const next = () => (fill.length === 0 ? '' : fill[k++ % fill.length]!);
  while (i < p.length) {
    if (p[i] !== '*') {
      out += p[i++];
      continue;
    }
    let e = i;
    while (e < p.length && p[e] === '*') e++;
    const f = next();
    if (paths && e - i === 1) out += f.replace(/\//g, '');
    else if (paths && (i === 0 || p[i - 1] === '/') && e < p.length && p[e] === '/') {
      out += skip[k % Math.max(1, skip.length)] ? '' : f + '/';
      e++;
    } else out += f;
    i = e;
  }
  return out;
}

/**
 * A plain backtracking matcher (path semantics, no `**`-segment rule) that counts its
 * calls: what a RegExp engine does on `*_*_*_*.pdf`. Used to show the linearity check
 * would catch super-linear work.
 */
export function backtrackingSteps(p: string, s: string): number {
  let steps = 0;
  const go = (i: number, j: number): boolean => {
    steps++;
    if (i === p.length) return j === s.length;
    if (p[i] === '*') {
      for (let t = j; t <= s.length; t++) {
        if (go(i + 1, t)) return true;
        if (t < s.length && s[t] === '/') return false;
      }
      return false;
    }
    return j < s.length && s[j] === p[i] && go(i + 1, j + 1);
  };
  go(0, 0);
  return steps;
}
