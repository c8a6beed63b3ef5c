// Globs for capability parts, matched in time linear in the input: common shapes take a
// fast path (exact, prefix, suffix, one star, any); the rest run as an NFA simulated over
// the input once (O(n·m) for an input of n and a pattern of m ≤ 256 chars, no
// backtracking). A backtracking RegExp took seconds on `*_*_*_*.pdf` against a few
// hundred `_`s, and the event loop waited with it.
//
// Path convention (resource patterns): `*` matches any run of characters within one
// `/`-separated segment (never a `/`); `**` (two or more `*`) matches any run, `/`
// included. A `**` that is a whole segment followed by `/` may also match no segment at
// all: `a/**/b` matches `a/b`, `**/b` matches `b`. A trailing `/**` needs the `/`: `a/**`
// matches `a/` and everything under it, not `a`.
//
// Verb and type parts never contain `/` (actions are validated), so they compile with
// `paths = false`: every run of `*` matches any run of characters, as it always did.

// Token kinds, shared by the tokenizer, the NFA and the coverage check.
// (const enums: inlined as literals; module-level consts cost a context load per use.)
const enum Tok {
  LIT,
  STAR, // [^/]*
  GLOBSTAR, // .*
  GSEG, // (.*/)? — a whole-segment `**` followed by `/`
}

// NFA state kinds. A GSEG becomes ENTRY (epsilon to BODY and past it) + BODY (.*, leaves on '/').
const enum N {
  LIT,
  STAR,
  GLOBSTAR,
  ENTRY,
  BODY,
  ACCEPT,
}

const enum C {
  SLASH = 47,
  STAR = 42,
  DOT = 46,
}

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
    if (c !== C.STAR) {
      out.push({ kind: Tok.LIT, code: c });
      i++;
      continue;
    }
    let e = i;
    while (e < g.length && g.charCodeAt(e) === C.STAR) e++;
    if (!paths) out.push({ kind: Tok.GLOBSTAR, code: 0 });
    else if (e - i === 1) out.push({ kind: Tok.STAR, code: 0 });
    else {
      const whole =
        (i === 0 || g.charCodeAt(i - 1) === C.SLASH) && e < g.length && g.charCodeAt(e) === C.SLASH;
      if (whole) {
        out.push({ kind: Tok.GSEG, code: 0 });
        e++; // the '/' belongs to the GSEG
      } else out.push({ kind: Tok.GLOBSTAR, code: 0 });
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
  // Scratch for run(), allocated on first use (most globs take a fast path or the bits).
  private cur: Int32Array | undefined;
  private next: Int32Array | undefined;
  private mark: Int32Array | undefined;
  private gen = 0;

  constructor(tokens: readonly Token[]) {
    let size = 1;
    for (const t of tokens) size += t.kind === Tok.GSEG ? 2 : 1;
    this.kind = new Uint8Array(size);
    this.code = new Uint16Array(size);
    let s = 0;
    for (const t of tokens) {
      if (t.kind === Tok.GSEG) {
        this.kind[s++] = N.ENTRY;
        this.kind[s++] = N.BODY;
      } else {
        this.kind[s] = t.kind === Tok.LIT ? N.LIT : t.kind === Tok.STAR ? N.STAR : N.GLOBSTAR;
        this.code[s++] = t.code;
      }
    }
    this.kind[s] = N.ACCEPT;
    this.accept = s;
  }

  /**
   * Adds `state` and the states its epsilon moves reach (forward only, so no cycles) to
   * `list` unless already there in this generation. Returns the new length.
   */
  private add(
    list: Int32Array,
    mark: Int32Array,
    len: number,
    state: number,
    gen: number,
    stats?: Stats,
  ): number {
    const kind = this.kind;
    for (;;) {
      if (mark[state] === gen) return len;
      mark[state] = gen;
      list[len++] = state;
      if (stats !== undefined) stats.steps++;
      const k = kind[state];
      if (k === N.STAR || k === N.GLOBSTAR) state++;
      else if (k === N.ENTRY) {
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
    const size = this.accept + 1;
    const mark = (this.mark ??= new Int32Array(size));
    let cur = (this.cur ??= new Int32Array(size));
    let next = (this.next ??= new Int32Array(size));
    if (this.gen > 0x3fffffff - (to - from) - 2) {
      mark.fill(0);
      this.gen = 0;
    }
    let gen = ++this.gen;
    let curLen = this.add(cur, mark, 0, start, gen, stats);
    for (let j = from; j < to; j++) {
      const c = s.charCodeAt(j);
      gen = ++this.gen;
      let nextLen = 0;
      for (let x = 0; x < curLen; x++) {
        const st = cur[x]!;
        if (stats !== undefined) stats.steps++;
        switch (kind[st]) {
          case N.LIT:
            if (code[st] === c) nextLen = this.add(next, mark, nextLen, st + 1, gen, stats);
            break;
          case N.STAR:
            if (c !== C.SLASH) nextLen = this.add(next, mark, nextLen, st, gen, stats);
            break;
          case N.GLOBSTAR:
            nextLen = this.add(next, mark, nextLen, st, gen, stats);
            break;
          case N.BODY:
            nextLen = this.add(next, mark, nextLen, st, gen, stats);
            if (c === C.SLASH) nextLen = this.add(next, mark, nextLen, st + 1, gen, stats);
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
    return mark[end] === gen;
  }
}

/**
 * The same NFA over states [from, to] as bits of one 32-bit word (bit b = state from+b),
 * for middles of up to 31 states: a character costs a few word operations instead of a
 * visit per live state.
 */
class Bits {
  // Per char code (from `low`): the LIT states that char advances. Only the span of the
  // middle's own literals is kept: usually a few entries, often none.
  private readonly lit: number[] = [];
  private readonly low: number;
  private readonly stay: number; // states that consume any char but '/' and stay
  private readonly staySlash: number; // states that consume '/' and stay
  private readonly body: number; // BODY states (leave on '/')
  private readonly eps1: number; // states with an epsilon move to the next state
  private readonly eps2: number; // ENTRY: an epsilon move past its BODY
  private readonly all: number;
  private readonly end: number;

  constructor(nfa: Nfa, from: number, to: number) {
    let stay = 0;
    let staySlash = 0;
    let body = 0;
    let eps1 = 0;
    let eps2 = 0;
    let low = 0xffff;
    let high = -1;
    for (let st = from; st < to; st++) {
      if (nfa.kind[st] !== N.LIT) continue;
      low = Math.min(low, nfa.code[st]!);
      high = Math.max(high, nfa.code[st]!);
    }
    this.low = low;
    for (let c = low; c <= high; c++) this.lit.push(0);
    for (let st = from; st < to; st++) {
      const bit = 1 << (st - from);
      const k = nfa.kind[st];
      if (k === N.LIT) this.lit[nfa.code[st]! - low]! |= bit;
      else if (k === N.STAR) {
        stay |= bit;
        eps1 |= bit;
      } else if (k === N.GLOBSTAR) {
        stay |= bit;
        staySlash |= bit;
        eps1 |= bit;
      } else if (k === N.ENTRY) {
        eps1 |= bit;
        eps2 |= bit;
      } else if (k === N.BODY) {
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
    this.all = to - from + 1 === 31 ? 0x7fffffff : (1 << (to - from + 1)) - 1;
    this.end = 1 << (to - from);
  }

  /** Whether it fits: at most 31 states. */
  static fits(from: number, to: number): boolean {
    return to - from + 1 <= 31;
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
    const { lit, low, stay, staySlash, body } = this;
    const span = lit.length;
    let d = this.close(1, stats);
    for (let j = from; j < to; j++) {
      const c = s.charCodeAt(j);
      if (stats !== undefined) stats.steps++;
      const at = c - low;
      const l = at >= 0 && at < span ? lit[at]! : 0;
      d = c === C.SLASH ? ((d & l) << 1) | (d & staySlash) | ((d & body) << 1) : ((d & l) << 1) | (d & stay);
      if (d === 0) return false;
      d = this.close(d, stats);
    }
    return (d & this.end) !== 0;
  }
}

/** Work done by one run, for tests and benches: a state visited, or a word step of the bits. */
export interface Stats {
  steps: number;
}

// Glob kinds: fast paths for the common shapes, the NFA for the rest.
const enum K {
  ANY, // **
  EXACT, // abc
  PREFIX_SEG, // abc*  (also a lone *)
  SUFFIX_SEG, // *abc
  INFIX_SEG, // abc*xyz
  PREFIX_ANY, // abc**
  SUFFIX_ANY, // **abc
  NFA,
}

/** A compiled glob. Build with {@link compileGlob}; match with {@link globMatch}. */
export interface Glob {
  readonly kind: number;
  /** Literal for exact; prefix for the prefix and infix kinds; suffix for the suffix kinds. */
  readonly text: string;
  /** Suffix for the infix kind and the NFA kind. */
  readonly tail: string;
  /** The pattern and mode it was compiled from (to build the NFA for tests). */
  readonly source: string;
  readonly paths: boolean;
  /** NFA kind, when the middle does not fit in bits: the state-list automaton. */
  readonly nfa: Nfa | undefined;
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
  const wild: number[] = [];
  for (let i = 0; i < tokens.length; i++) if (tokens[i]!.kind !== Tok.LIT) wild.push(i);
  const n = tokens.length;
  const make = (kind: number, text = '', tail = '', from = 0, to = 0): Glob => {
    let nfa = kind === K.NFA ? new Nfa(tokens) : undefined;
    let bits: Bits | undefined;
    if (nfa !== undefined && Bits.fits(from, to)) {
      bits = new Bits(nfa, from, to);
      nfa = undefined; // the bits replace it
    }
    return { kind, text, tail, source: g, paths, nfa, from, to, bits };
  };
  if (wild.length === 0) return make(K.EXACT, literal(tokens, 0, n));
  if (wild.length === 1) {
    const w = wild[0]!;
    const k = tokens[w]!.kind;
    if (k === Tok.GLOBSTAR) {
      if (n === 1) return make(K.ANY);
      if (w === n - 1) return make(K.PREFIX_ANY, literal(tokens, 0, w));
      if (w === 0) return make(K.SUFFIX_ANY, literal(tokens, 1, n));
    } else if (k === Tok.STAR) {
      if (w === n - 1) return make(K.PREFIX_SEG, literal(tokens, 0, w));
      if (w === 0) return make(K.SUFFIX_SEG, literal(tokens, 1, n));
      return make(K.INFIX_SEG, literal(tokens, 0, w), literal(tokens, w + 1, n));
    }
  }
  // The literal head and tail are checked with startsWith/endsWith; the NFA runs only
  // over what lies between (in the NFA, state i is token i until the first GSEG).
  const head = wild[0]!;
  const tail = n - 1 - wild[wild.length - 1]!;
  let states = 1;
  for (const t of tokens) states += t.kind === Tok.GSEG ? 2 : 1;
  return make(K.NFA, literal(tokens, 0, head), literal(tokens, n - tail, n), head, states - 1 - tail);
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
    case K.ANY:
      return true;
    case K.EXACT:
      return s === g.text;
    case K.PREFIX_SEG:
      return s.startsWith(g.text) && noSlash(s, g.text.length, s.length);
    case K.SUFFIX_SEG: {
      const end = s.length - g.text.length;
      return end >= 0 && s.endsWith(g.text) && noSlash(s, 0, end);
    }
    case K.INFIX_SEG: {
      const end = s.length - g.tail.length;
      return (
        end >= g.text.length && s.startsWith(g.text) && s.endsWith(g.tail) && noSlash(s, g.text.length, end)
      );
    }
    case K.PREFIX_ANY:
      return s.startsWith(g.text);
    case K.SUFFIX_ANY:
      return s.endsWith(g.text);
    default: {
      const end = s.length - g.tail.length;
      if (end < g.text.length || !s.startsWith(g.text) || !s.endsWith(g.tail)) return false;
      return g.bits !== undefined
        ? g.bits.run(s, g.text.length, end, stats)
        : g.nfa!.run(s, g.text.length, end, g.from, g.to, stats);
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
  let matched: boolean;
  if (engine === 'nfa') {
    const nfa = new Nfa(tokenize(g.source, g.paths));
    matched = nfa.run(s, 0, s.length, 0, nfa.accept, stats);
  } else matched = matchAs(g, s, stats);
  return { matched, steps: stats.steps };
}

// Inner-pattern node kinds for coverage. A GSEG becomes CHOICE, whose two branches are
// "empty" (skip to i+3) and "GLOBSTAR then '/'" (the virtual nodes i+1, i+2).
const enum I {
  LIT,
  STAR,
  GLOBSTAR,
  CHOICE,
  END,
}

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
    if (t.kind === Tok.GSEG) {
      kinds.push(I.CHOICE, I.GLOBSTAR, I.LIT);
      codes.push(0, 0, C.SLASH);
    } else {
      kinds.push(t.kind === Tok.LIT ? I.LIT : t.kind === Tok.STAR ? I.STAR : I.GLOBSTAR);
      codes.push(t.code);
    }
  }
  kinds.push(I.END);
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
      if (k === N.STAR || k === N.GLOBSTAR) v = c[row + i + 1] === 1;
      else if (k === N.ENTRY) v = c[row + i + 1] === 1 || c[row + i + 2] === 1;
      if (!v) {
        if (ik === I.END) v = k === N.ACCEPT;
        else if (ik === I.CHOICE) v = c[(p + 3) * states + i] === 1 && c[nextRow + i] === 1;
        else if (k === N.LIT) v = ik === I.LIT && icode === oc[i] && c[nextRow + i + 1] === 1;
        else if (k === N.STAR)
          v = (ik === I.STAR || (ik === I.LIT && icode !== C.SLASH)) && c[nextRow + i] === 1;
        else if (k === N.GLOBSTAR) v = c[nextRow + i] === 1;
        else if (k === N.BODY) {
          v = c[nextRow + i] === 1 || (ik === I.LIT && icode === C.SLASH && chain[nextRow + i + 1] === 1);
        }
      }
      c[row + i] = v ? 1 : 0;
    }
    for (let i = 0; i < states; i++) {
      chain[row + i] = c[row + i] === 1 || (ik === I.CHOICE && chain[(p + 3) * states + i] === 1) ? 1 : 0;
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
    if (i === 0 || s.charCodeAt(i - 1) === C.SLASH) {
      let e = i + 1;
      if (e < s.length && s.charCodeAt(e) === C.DOT) e++;
      if (e === s.length || s.charCodeAt(e) === C.SLASH) return true;
    }
    i = s.indexOf('.', i + 1);
  }
  return false;
}
