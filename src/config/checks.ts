/**
 * Value checks for the config table: each factory returns the text of what is
 * allowed together with the function that enforces it, so the error message,
 * the docs table and the check can never disagree.
 *
 * A check takes whatever the source produced (a YAML scalar, or a string from
 * the environment or a CLI flag) and returns the typed value or throws
 * `Rejected`; the loader adds key, value and origin to make a ConfigError.
 */

export interface Check<T> {
  /** What is allowed, in words: "an integer 16..65536, a multiple of 16". */
  readonly type: string;
  readonly check: (raw: unknown) => T;
}

/** Thrown by a check; `hint` says more than `type` when there is more to say. */
export class Rejected extends Error {
  constructor(readonly hint?: string) {
    super(hint ?? 'rejected');
  }
}

const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

function toNumber(raw: unknown): number {
  if (typeof raw === 'number' && Number.isFinite(raw)) return raw;
  if (typeof raw === 'string' && NUMBER_RE.test(raw.trim())) return Number(raw.trim());
  throw new Rejected();
}

export function integer(min: number, max: number, multipleOf = 1): Check<number> {
  const range = `${min}..${max}`;
  const type = multipleOf === 1 ? `integer ${range}` : `integer ${range}, a multiple of ${multipleOf}`;
  return {
    type,
    check(raw) {
      const n = toNumber(raw);
      if (!Number.isInteger(n) || n < min || n > max || n % multipleOf !== 0) throw new Rejected();
      return n;
    },
  };
}

/** A finite number > 0 (and <= max). */
export function positive(max: number, unit: string): Check<number> {
  return {
    type: `number > 0 and <= ${max} (${unit})`,
    check(raw) {
      const n = toNumber(raw);
      if (!(n > 0 && n <= max)) throw new Rejected();
      return n;
    },
  };
}

const TRUE = new Set(['true', '1', 'yes']);
const FALSE = new Set(['false', '0', 'no']);

/**
 * A boolean. `strict` (for settings that turn a safety check off): only
 * true or false, a YAML boolean or those words, so a stray `1` or `y` is an
 * error, not a yes.
 */
export function boolean(opts: { strict?: boolean } = {}): Check<boolean> {
  if (opts.strict) {
    return {
      type: 'true or false, spelled out',
      check(raw) {
        if (typeof raw === 'boolean') return raw;
        const s = typeof raw === 'string' ? raw.trim().toLowerCase() : '';
        if (s === 'true' || s === 'false') return s === 'true';
        throw new Rejected();
      },
    };
  }
  return {
    type: 'boolean (true/false, 1/0, yes/no)',
    check(raw) {
      if (typeof raw === 'boolean') return raw;
      const s = typeof raw === 'string' || typeof raw === 'number' ? String(raw).trim().toLowerCase() : '';
      if (TRUE.has(s)) return true;
      if (FALSE.has(s)) return false;
      throw new Rejected();
    },
  };
}

export interface OneOfOptions<T extends string> {
  /** Other spellings accepted for a value, e.g. { warning: 'warn' }. */
  aliases?: Readonly<Record<string, T>>;
  /** Known but refused values, with the reason shown in the error. */
  refused?: Readonly<Record<string, string>>;
}

/** One of a fixed set of strings, matched case-insensitively. */
export function oneOf<T extends string>(values: readonly T[], opts: OneOfOptions<T> = {}): Check<T> {
  return {
    type: `one of ${values.join(', ')}`,
    check(raw) {
      if (typeof raw !== 'string') throw new Rejected();
      const s = raw.trim().toLowerCase();
      const hit = values.find((v) => v === s) ?? opts.aliases?.[s];
      if (hit !== undefined) return hit;
      throw new Rejected(opts.refused?.[s]);
    },
  };
}

export interface TextOptions {
  pattern?: RegExp;
  /** The pattern in words, for the error and docs. */
  patternText?: string;
  maxBytes?: number;
}

/** A non-empty string. YAML numbers and booleans are refused: quote them. */
export function text(opts: TextOptions = {}): Check<string> {
  const parts = ['non-empty string'];
  if (opts.patternText) parts.push(`of ${opts.patternText}`);
  if (opts.maxBytes) parts.push(`at most ${opts.maxBytes} bytes`);
  return {
    type: parts.join(' '),
    check(raw) {
      if (typeof raw !== 'string' || raw === '') throw new Rejected(typeof raw === 'number' || typeof raw === 'boolean' ? 'quote it in YAML' : undefined);
      if (opts.pattern && !opts.pattern.test(raw)) throw new Rejected();
      if (opts.maxBytes && Buffer.byteLength(raw) > opts.maxBytes) throw new Rejected();
      return raw;
    },
  };
}

/**
 * A directory: a file:// URL (LMCache's form, "file:///path/") or an
 * absolute path. Only the form is checked here; whether it can be used is
 * checked at start, by the tier that uses it.
 */
export function directory(): Check<string> {
  return {
    type: 'file:///absolute/path/ or /absolute/path',
    check(raw) {
      if (typeof raw !== 'string') throw new Rejected();
      const s = raw.trim();
      let path = s;
      if (/^[a-z][a-z0-9+.-]*:/i.test(s)) {
        const m = /^file:\/\/(\/[^\0]*)$/i.exec(s);
        if (!m) throw new Rejected(/^file:/i.test(s) ? 'write file:///absolute/path/ (three slashes)' : 'only file:// URLs name a local directory');
        path = decodeURIComponent(m[1]);
      }
      if (!path.startsWith('/') || path.includes('\0')) throw new Rejected('the path must be absolute');
      return path.length > 1 ? path.replace(/\/+$/, '') : path;
    },
  };
}

/** auto, or a boolean (true/false, 1/0, yes/no). */
export function autoBoolean(): Check<'auto' | boolean> {
  const b = boolean();
  return {
    type: 'auto, true or false',
    check(raw) {
      if (typeof raw === 'string' && raw.trim().toLowerCase() === 'auto') return 'auto';
      return b.check(raw);
    },
  };
}

/** `inner`, or null given as YAML null or an empty string (an empty env var). */
export function nullable<T>(inner: Check<T>): Check<T | null> {
  return {
    type: `${inner.type}, or null`,
    check(raw) {
      if (raw === null || raw === undefined || raw === '') return null;
      return inner.check(raw);
    },
  };
}

/** A URL whose scheme is one of `schemes`; the rest is parsed by its user. */
export function url(schemes: readonly string[], refusedHint: string): Check<string> {
  return {
    type: `URL with scheme ${schemes.map((s) => `${s}://`).join(', ')}`,
    check(raw) {
      if (typeof raw !== 'string') throw new Rejected();
      const m = /^([a-z][a-z0-9+.-]*):\/\/[^\s]+$/i.exec(raw.trim());
      if (!m || !schemes.includes(m[1].toLowerCase())) throw new Rejected(m ? refusedHint : undefined);
      return raw.trim();
    },
  };
}

const MODE_RE = /^(?:0o?)?([0-7]{1,4})$/i;

/**
 * Unix permission bits. A string is octal ('0600', '600', '0o600'); a number
 * is taken as is (YAML 1.1 reads an unquoted 0600 as octal already).
 */
export function fileMode(): Check<number> {
  return {
    type: "permission bits 0..0o777: an octal string like '0600', or a number",
    check(raw) {
      let n: number;
      if (typeof raw === 'number') n = raw;
      else if (typeof raw === 'string' && MODE_RE.test(raw.trim())) n = parseInt(MODE_RE.exec(raw.trim())![1], 8);
      else throw new Rejected();
      if (!Number.isInteger(n) || n < 0 || n > 0o777) {
        const octal = Number.isInteger(n) && n >= 0 ? ` (octal 0o${n.toString(8)})` : '';
        throw new Rejected(`${n}${octal} sets bits outside 0o777; write the mode quoted, like '0660'`);
      }
      return n;
    },
  };
}

/** A mapping (YAML map or JSON object); null means empty. */
export function mapping(): Check<Record<string, unknown>> {
  return {
    type: 'mapping of sub-keys',
    check(raw) {
      if (raw === null || raw === undefined) return {};
      if (typeof raw !== 'object' || Array.isArray(raw)) throw new Rejected();
      return { ...(raw as Record<string, unknown>) };
    },
  };
}
