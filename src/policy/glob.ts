/**
 * Globs for capability parts, matched in time linear in the input: common shapes take a
 * fast path (exact, prefix, suffix, one star, any); the rest run as an NFA simulated over
 * the input once (O(n·m) for an input of n and a pattern of m ≤ 256 chars, no
 * backtracking). A backtracking RegExp took seconds on `*_*_*_*.pdf` against a few
 * hundred `_`s, and the event loop waited with it.
 *
 * Path convention (resource patterns): `*` matches any run of characters within one
 * `/`-separated segment (never a `/`); `**` (two or more `*`) matches any run, `/`
 * included. A `**` that is a whole segment before a `/` (`**` + `/` at the start, or
 * `/` + `**` + `/` inside) may also match no segment at all: `a/**` + `/b` matches
 * `a/b`, and `**` + `/b` matches `b`. A trailing `/**` needs the `/`: `a/**` matches
 * `a/` and everything under it, not `a`.
 *
 * Verb and type parts never contain `/` (actions are validated), so they compile with
 * `paths = false`: every run of `*` matches any run of characters, as it always did.
 */

// Token kinds, shared by the tokenizer, the NFA and the coverage check.
const LIT = 0;
const STAR = 1; // [^/]*
const GLOBSTAR = 2; // .*
const GSEG = 3; // (.*/)? — a whole-segment `**` followed by `/`

// NFA state kinds. A GSEG becomes ENTRY (epsilon to BODY and past it) + BODY (.*, leaves on '/').
const N_LIT = 0;
const N_STAR = 1;
const N_GLOBSTAR = 2;
const N_ENTRY = 3;
const N_BODY = 4;
const N_ACCEPT = 5;

const SLASH = 47;

interface Token {
  kind: number;
  code: number; // char code, for LIT
}

/** Splits a glob into tokens; see the module comment for what each `*` run becomes. */
function tokenize(g: string, paths: boolean): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < g.length) {
    const c = g.charCodeAt(i);
    if (c !== 42) {
      out.push({ kind: LIT, code: c });
      i++;
      continue;
    }
    let e = i;
    while (e < g.length && g.charCodeAt(e) === 42) e++;
    if (!paths) out.push({ kind: GLOBSTAR, code: 0 });
    else if (e - i === 1) out.push({ kind: STAR, code: 0 });
    else {
      const whole = (i === 0 || g.charCodeAt(i - 1) === SLASH) && e < g.length && g.charCodeAt(e) === SLASH;
      if (whole) {
        out.push({ kind: GSEG, code: 0 });
        e++; // the '/' belongs to the GSEG
      } else out.push({ kind: GLOBSTAR, code: 0 });
    }
    i = e;
  }
  return out;
}

/**
 * Returns an internalized copy of `s`. V8 compares two sliced strings (what `slice` gives
 * for 13+ chars) through a slow runtime path (~20 ns); internalized ones by pointer.
 */
export function intern(s: string): string {
  const o: Record<string, number> = {};
  o[s] = 1;
  return Object.keys(o)[0]!;
}

/** The NFA of a glob, with scratch space reused across runs (matching is synchronous). */
class Nfa {
  readonly kind: Uint8Array;
  readonly code: Uint16Array;
  /** The accepting state. */
  readonly accept: number;
  private cur: Int32Array;
  private next: Int32Array;
  private readonly mark: Int32Array;
  private gen = 0;

  constructor(tokens: readonly Token[]) {
    let size = 1;
    for (const t of tokens) size += t.kind === GSEG ? 2 : 1;
    this.kind = new Uint8Array(size);
    this.code = new Uint16Array(size);
    let s = 0;
    for (const t of tokens) {
      if (t.kind === GSEG) {
        this.kind[s++] = N_ENTRY;
        this.kind[s++] = N_BODY;
      } else {
        this.kind[s] = t.kind === LIT ? N_LIT : t.kind === STAR ? N_STAR : N_GLOBSTAR;
        this.code[s++] = t.code;
      }
    }
    this.kind[s] = N_ACCEPT;
    this.accept = s;
    this.cur = new Int32Array(size);
    this.next = new Int32Array(size);
    this.mark = new Int32Array(size);
  }

  /**
   * Adds `state` and the states its epsilon moves reach (forward only, so no cycles) to
   * `list` unless already there in this generation. Returns the new length.
   */
  private add(list: Int32Array, len: number, state: number, gen: number, stats?: Stats): number {
    const { kind, mark } = this;
    for (;;) {
      if (mark[state] === gen) return len;
      mark[state] = gen;
      list[len++] = state;
      if (stats !== undefined) stats.steps++;
      const k = kind[state];
      if (k === N_STAR || k === N_GLOBSTAR) state++;
      else if (k === N_ENTRY) {
        if (mark[state + 1] !== gen) {
          mark[state + 1] = gen;
          list[len++] = state + 1; // BODY: no epsilon moves of its own
          if (stats !== undefined) stats.steps++;
        }
        state += 2;
      } else return len;
    }
  }

  /**
   * Runs the NFA from state `start` over `s[from, to)` and says whether state `end` is
   * then live. Each character visits each live state at most once.
   */
  run(s: string, from: number, to: number, start: number, end: number, stats?: Stats): boolean {
    const { kind, code } = this;
    if (this.gen > 0x3fffffff - (to - from) - 2) {
      this.mark.fill(0);
      this.gen = 0;
    }
    let gen = ++this.gen;
    let cur = this.cur;
    let next = this.next;
    let curLen = this.add(cur, 0, start, gen, stats);
    for (let j = from; j < to; j++) {
      const c = s.charCodeAt(j);
      gen = ++this.gen;
      let nextLen = 0;
      for (let x = 0; x < curLen; x++) {
        const st = cur[x]!;
        if (stats !== undefined) stats.steps++;
        switch (kind[st]) {
          case N_LIT:
            if (code[st] === c) nextLen = this.add(next, nextLen, st + 1, gen, stats);
            break;
          case N_STAR:
            if (c !== SLASH) nextLen = this.add(next, nextLen, st, gen, stats);
            break;
          case N_GLOBSTAR:
            nextLen = this.add(next, nextLen, st, gen, stats);
            break;
          case N_BODY:
            nextLen = this.add(next, nextLen, st, gen, stats);
            if (c === SLASH) nextLen = this.add(next, nextLen, st + 1, gen, stats);
            break;
          default: // ENTRY consumes nothing; ACCEPT has no moves
        }
      }
      if (nextLen === 0) return false;
      const t = cur;
      cur = next;
      next = t;
      curLen = nextLen;
    }
    // `mark` holds the generation of the list in `cur`.
    return this.mark[end] === gen;
  }
}

/**
 * The same NFA over states [from, to] as bits of one 32-bit word (bit b = state from+b),
 * for middles of up to 31 states with ASCII literals (every pattern the grammar allows
 * up to that size): a character costs a few word operations instead of a visit per
 * live state.
 */
class Bits {
  private readonly lit = new Int32Array(128); // per char: the LIT states it advances
  private readonly stay: number; // states that consume any char but '/' and stay
  private readonly staySlash: number; // states that consume '/' and stay
  private readonly body: number; // BODY states (leave on '/')
  private readonly eps1: number; // states with an epsilon move to the next state
  private readonly eps2: number; // ENTRY: an epsilon move past its BODY
  private readonly all: number;
  private readonly start: number;
  private readonly end: number;

  constructor(nfa: Nfa, from: number, to: number) {
    let stay = 0;
    let staySlash = 0;
    let body = 0;
    let eps1 = 0;
    let eps2 = 0;
    for (let st = from; st < to; st++) {
      const bit = 1 << (st - from);
      const k = nfa.kind[st];
      if (k === N_LIT) this.lit[nfa.code[st]!]! |= bit;
      else if (k === N_STAR) {
        stay |= bit;
        eps1 |= bit;
      } else if (k === N_GLOBSTAR) {
        stay |= bit;
        staySlash |= bit;
        eps1 |= bit;
      } else if (k === N_ENTRY) {
        eps1 |= bit;
        eps2 |= bit;
      } else if (k === N_BODY) {
        stay |= bit;
        staySlash |= bit;
        body |= bit;
      }
    }
    this.stay = stay;
    this.staySlash = staySlash;
    this.body = body;
    this.eps1 = eps1;
    this.eps2 = eps2;
    this.all = (1 << (to - from + 1)) - 1;
    this.start = 1;
    this.end = 1 << (to - from);
  }

  /** Whether it fits: at most 31 states, ASCII literals. */
  static fits(nfa: Nfa, from: number, to: number): boolean {
    if (to - from + 1 > 31) return false;
    for (let st = from; st < to; st++) if (nfa.kind[st] === N_LIT && nfa.code[st]! >= 128) return false;
    return true;
  }

  private close(d: number, stats?: Stats): number {
    for (;;) {
      if (stats !== undefined) stats.steps++;
      const n = (d | ((d & this.eps1) << 1) | ((d & this.eps2) << 2)) & this.all;
      if (n === d) return d;
      d = n;
    }
  }

  /** Runs over `s[from, to)`: one word step per character, plus the epsilon closure. */
  run(s: string, from: number, to: number, stats?: Stats): boolean {
    const { lit, stay, staySlash, body } = this;
    let d = this.close(this.start, stats);
    for (let j = from; j < to; j++) {
      const c = s.charCodeAt(j);
      if (stats !== undefined) stats.steps++;
      const l = c < 128 ? lit[c]! : 0;
      d = c === SLASH ? ((d & l) << 1) | (d & staySlash) | ((d & body) << 1) : ((d & l) << 1) | (d & stay);
      if (d === 0) return false;
      d = this.close(d, stats);
    }
    return (d & this.end) !== 0;
  }
}

/** Work done by one NFA run, for tests and benches: one step per state visited. */
export interface Stats {
  steps: number;
}

// Glob kinds: fast paths for the common shapes, the NFA for the rest.
const K_ANY = 0; // **
const K_EXACT = 1; // abc
const K_PREFIX_SEG = 2; // abc*  (also a lone *)
const K_SUFFIX_SEG = 3; // *abc
const K_INFIX_SEG = 4; // abc*xyz
const K_PREFIX_ANY = 5; // abc**
const K_SUFFIX_ANY = 6; // **abc
const K_NFA = 7;

/** A compiled glob. Build with {@link compileGlob}; match with {@link globMatch}. */
export interface Glob {
  readonly kind: number;
  /** Literal for exact; prefix for the prefix and infix kinds; suffix for the suffix kinds. */
  readonly text: string;
  /** Suffix for the infix kind and the NFA kind. */
  readonly tail: string;
  /** Always built: the fast paths are checked against it in tests. */
  readonly nfa: Nfa;
  /** NFA kind: the states where the middle (between `text` and `tail`) starts and ends. */
  readonly from: number;
  readonly to: number;
  /** NFA kind: the middle as one word of bits, when it fits. */
  readonly bits: Bits | undefined;
}

function literal(tokens: readonly Token[], from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += String.fromCharCode(tokens[i]!.code);
  return intern(s);
}

/**
 * Compiles a glob. `paths` (resource patterns) gives `*` and `**` their path meaning;
 * without it (verb and type) every run of `*` matches any run of characters.
 */
export function compileGlob(g: string, paths: boolean): Glob {
  const tokens = tokenize(g, paths);
  const nfa = new Nfa(tokens);
  const wild: number[] = [];
  for (let i = 0; i < tokens.length; i++) if (tokens[i]!.kind !== LIT) wild.push(i);
  const n = tokens.length;
  const make = (kind: number, text = '', tail = '', from = 0, to = 0): Glob => ({
    kind,
    text,
    tail,
    nfa,
    from,
    to,
    bits: kind === K_NFA && Bits.fits(nfa, from, to) ? new Bits(nfa, from, to) : undefined,
  });
  if (wild.length === 0) return make(K_EXACT, literal(tokens, 0, n));
  if (wild.length === 1) {
    const w = wild[0]!;
    const k = tokens[w]!.kind;
    if (k === GLOBSTAR) {
      if (n === 1) return make(K_ANY);
      if (w === n - 1) return make(K_PREFIX_ANY, literal(tokens, 0, w));
      if (w === 0) return make(K_SUFFIX_ANY, literal(tokens, 1, n));
    } else if (k === STAR) {
      if (w === n - 1) return make(K_PREFIX_SEG, literal(tokens, 0, w));
      if (w === 0) return make(K_SUFFIX_SEG, literal(tokens, 1, n));
      return make(K_INFIX_SEG, literal(tokens, 0, w), literal(tokens, w + 1, n));
    }
  }
  // The literal head and tail are checked with startsWith/endsWith; the NFA runs only
  // over what lies between (in the NFA, state i is token i until the first GSEG).
  const head = wild[0]!;
  const tail = n - 1 - wild[wild.length - 1]!;
  return make(K_NFA, literal(tokens, 0, head), literal(tokens, n - tail, n), head, nfa.accept - tail);
}

/** Whether `s` has no '/' in [from, to). */
function noSlash(s: string, from: number, to: number): boolean {
  const i = s.indexOf('/', from);
  return i < 0 || i >= to;
}

/** Whether the glob matches all of `s`. Linear in `s.length` for a given glob. */
export function globMatch(g: Glob, s: string): boolean {
  return matchAs(g, s, undefined);
}

function matchAs(g: Glob, s: string, stats: Stats | undefined): boolean {
  switch (g.kind) {
    case K_ANY:
      return true;
    case K_EXACT:
      return s === g.text;
    case K_PREFIX_SEG:
      return s.startsWith(g.text) && noSlash(s, g.text.length, s.length);
    case K_SUFFIX_SEG: {
      const end = s.length - g.text.length;
      return end >= 0 && s.endsWith(g.text) && noSlash(s, 0, end);
    }
    case K_INFIX_SEG: {
      const end = s.length - g.tail.length;
      return (
        end >= g.text.length && s.startsWith(g.text) && s.endsWith(g.tail) && noSlash(s, g.text.length, end)
      );
    }
    case K_PREFIX_ANY:
      return s.startsWith(g.text);
    case K_SUFFIX_ANY:
      return s.endsWith(g.text);
    default: {
      const end = s.length - g.tail.length;
      if (end < g.text.length || !s.startsWith(g.text) || !s.endsWith(g.tail)) return false;
      return g.bits !== undefined
        ? g.bits.run(s, g.text.length, end, stats)
        : g.nfa.run(s, g.text.length, end, g.from, g.to, stats);
    }
  }
}

/**
 * For tests and benches: matches as {@link globMatch} does and counts the automaton's
 * steps (a state visited, or a word step of the bit form, per character). The fast paths
 * (one scan by startsWith/endsWith/indexOf) count no steps. With `engine: 'nfa'` the
 * whole input runs through the state-list NFA, whatever the glob's kind: a second
 * matcher to check the fast paths and the bit form against.
 */
export function globMatchCounted(
  g: Glob,
  s: string,
  engine: 'auto' | 'nfa' = 'auto',
): { matched: boolean; steps: number } {
  const stats: Stats = { steps: 0 };
  const matched = engine === 'nfa' ? g.nfa.run(s, 0, s.length, 0, g.nfa.accept, stats) : matchAs(g, s, stats);
  return { matched, steps: stats.steps };
}

// Inner-pattern node kinds for coverage. A GSEG becomes CHOICE, whose two branches are
// "empty" (skip to i+3) and "GLOBSTAR then '/'" (the virtual nodes i+1, i+2).
const I_LIT = 0;
const I_STAR = 1;
const I_GLOBSTAR = 2;
const I_CHOICE = 3;
const I_END = 4;

/**
 * Whether the glob `outer` matches every string the glob `inner` matches (attenuation).
 * Sound, not complete: a true answer is always right; a false may be conservative.
 *
 * A dynamic program over (outer NFA state, inner node): cell (i, p) is true when rules
 * that each preserve language inclusion prove outer-from-i ⊇ inner-from-p:
 * - outer epsilon moves (a star or GSEG matching nothing);
 * - an inner GSEG is empty or any run ending in '/': both branches must be covered;
 * - a looping outer state absorbs an inner node whose whole language it loops on: STAR
 *   takes a literal other than '/' or an inner STAR; GLOBSTAR and BODY take anything;
 * - equal literals advance both; an outer BODY leaves on an inner '/', also together
 *   with inner GSEGs right after it ('/' then GSEGs always ends in '/').
 */
export function globCovers(outer: string, inner: string, paths: boolean): boolean {
  const o = new Nfa(tokenize(outer, paths));
  const ok = o.kind;
  const oc = o.code;
  const states = o.accept + 1;

  const kinds: number[] = [];
  const codes: number[] = [];
  for (const t of tokenize(inner, paths)) {
    if (t.kind === GSEG) {
      kinds.push(I_CHOICE, I_GLOBSTAR, I_LIT);
      codes.push(0, 0, SLASH);
    } else {
      kinds.push(t.kind === LIT ? I_LIT : t.kind === STAR ? I_STAR : I_GLOBSTAR);
      codes.push(t.code);
    }
  }
  kinds.push(I_END);
  codes.push(0);
  const nodes = kinds.length;

  // c[p * states + i]: outer from i covers inner from p. chain: c, or a CHOICE whose
  // empty branch leads to a covered chain (for BODY leaving after '/' + GSEGs).
  const c = new Uint8Array(nodes * states);
  const chain = new Uint8Array(nodes * states);
  for (let p = nodes - 1; p >= 0; p--) {
    const row = p * states;
    const ik = kinds[p]!;
    const icode = codes[p]!;
    const nextRow = (p + 1) * states; // the node after a symbol (or CHOICE's virtual branch)
    for (let i = states - 1; i >= 0; i--) {
      const k = ok[i]!;
      let v = false;
      // Outer epsilon moves.
      if (k === N_STAR || k === N_GLOBSTAR) v = c[row + i + 1] === 1;
      else if (k === N_ENTRY) v = c[row + i + 1] === 1 || c[row + i + 2] === 1;
      if (!v) {
        if (ik === I_END) v = k === N_ACCEPT;
        else if (ik === I_CHOICE) v = c[(p + 3) * states + i] === 1 && c[nextRow + i] === 1;
        else if (k === N_LIT) v = ik === I_LIT && icode === oc[i] && c[nextRow + i + 1] === 1;
        else if (k === N_STAR)
          v = (ik === I_STAR || (ik === I_LIT && icode !== SLASH)) && c[nextRow + i] === 1;
        else if (k === N_GLOBSTAR) v = c[nextRow + i] === 1;
        else if (k === N_BODY) {
          v = c[nextRow + i] === 1 || (ik === I_LIT && icode === SLASH && chain[nextRow + i + 1] === 1);
        }
      }
      c[row + i] = v ? 1 : 0;
    }
    for (let i = 0; i < states; i++) {
      chain[row + i] = c[row + i] === 1 || (ik === I_CHOICE && chain[(p + 3) * states + i] === 1) ? 1 : 0;
    }
  }
  return c[0] === 1;
}

/**
 * Whether a resource has a `.` or `..` segment (split on '/'): `a/../b`, `./a`, `..`,
 * `a/.`. Empty segments (`a//b`, a leading or trailing '/') and names that merely contain
 * dots (`v1.2`, `.env`, `...`) are not dot segments.
 */
export function hasDotSegment(s: string): boolean {
  let i = s.indexOf('.');
  while (i >= 0) {
    if (i === 0 || s.charCodeAt(i - 1) === SLASH) {
      let e = i + 1;
      if (e < s.length && s.charCodeAt(e) === 46) e++;
      if (e === s.length || s.charCodeAt(e) === SLASH) return true;
    }
    i = s.indexOf('.', i + 1);
  }
  return false;
}
