/**
 * Built-in secret and credential patterns, redacted from values before they are
 * stored (tool arguments and results): tokens and keys found in strings (and in
 * object keys), the values of fields whose names say they hold a secret, and the
 * values given to such names inside text (`"password": "…"`, `password=…`,
 * `Authorization: …`). No I/O.
 */

/** One redaction: where (RFC 6901 JSON Pointer inside the redacted value) and what kind. */
export interface SecretRedaction {
  path: string;
  kind: string;
}

/** A secret pattern: a name and a global regular expression. */
interface SecretPattern {
  kind: string;
  pattern: RegExp;
}

/** The built-in patterns, most specific first. */
export const SECRET_PATTERNS: readonly { kind: string; pattern: RegExp }[] = [
  { kind: 'private-key', pattern: /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----/g },
  { kind: 'custody-api-key', pattern: /\bcust_[a-z2-7]{12}_[A-Za-z0-9_-]{43}/g },
  { kind: 'jwt', pattern: /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g },
  { kind: 'aws-access-key-id', pattern: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g },
  { kind: 'github-token', pattern: /\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})/g },
  { kind: 'slack-token', pattern: /\bxox[abprs]-[A-Za-z0-9-]{10,}/g },
  // sk_live_… / rk_test_… / sk-live-…: 8 or more letters and digits after the prefix.
  { kind: 'stripe-key', pattern: /\b(?:sk|rk)([_-])(?:live|test)\1[A-Za-z0-9]{8,}/g },
  // sk-…: 20 or more key characters, or 16 or more with a digit or a capital among them
  // (so hyphenated words such as sk-learn-pipeline are not taken for keys).
  { kind: 'api-key', pattern: /\bsk-(?:[A-Za-z0-9_-]{20,}|(?=[a-z_-]*[A-Z0-9])[A-Za-z0-9_-]{16,})/g },
  { kind: 'google-api-key', pattern: /\bAIza[0-9A-Za-z_-]{35}/g },
  // The scheme in any case (RFC 7235); a credential of lowercase letters only is taken for a word.
  { kind: 'bearer-token', pattern: /\b(?:[Bb][Ee][Aa][Rr][Ee][Rr]|[Bb][Aa][Ss][Ii][Cc]) +(?=[a-z]*[A-Z0-9._~+/-])[A-Za-z0-9._~+/-]{16,}=*/g },
  { kind: 'url-credentials', pattern: /(?<=[a-z][a-z0-9+.-]*:\/\/[^\s:/@]{1,256}:)[^\s@/]{1,256}(?=@)/gi },
];

/** Objects and arrays nested deeper than this are replaced whole by `[REDACTED:depth]`. */
const MAX_DEPTH = 64;

/** Words that make a field name secret (in the name's snake_case form). */
const SECRET_WORD = /password|passwd|passphrase|secret(?!ar)|token|api_?key|private_?key|session_?key|credential|authorization|cookie|(?:^|_)pass$|_pwd$/g;
/** What after a secret word makes the name describe the secret rather than hold it. */
const META_SUFFIX = /^s?_?(?:(?:min|max)_?)?(?:count|limit|usage|used|budget|length|len|type|endpoint|url|uri|expiry|expires|expires_at|expires_in|expiration|ttl|index|policy|name|required|fingerprint|path|file|filename)s?$/;
/** Around `token` only: counts and pagination (`max_tokens`, `tokens_used`, `tokenizer`, `next_page_token`). */
const TOKEN_NOT_SECRET_BEFORE = /(?:(?:^|_)(?:max|min|num|total|next|continuation)|page)_?$/;
const TOKEN_NOT_SECRET_AFTER = /^(?:s(?:_|$)|i[sz])/;

/** `aws-Secret.AccessKey` → `aws_secret_access_key`. */
const snake = (name: string) =>
  name
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[-_.\s]+/g, '_')
    .replace(/^_+|_+$/g, '');

/**
 * Whether a field name says its value is a secret: its snake_case form contains
 * password, passwd, passphrase, secret (not secretary), token, api key, private key,
 * session key, credential, authorization or cookie, or ends in the word pass or _pwd,
 * unless what follows says it describes the secret (`token_count`, `password_policy`,
 * `secret_name` …) or, for token, a count or page cursor (`max_tokens`, `tokens_used`,
 * `next_page_token`).
 */
export function isSecretFieldName(name: string): boolean {
  const s = snake(name);
  for (const m of s.matchAll(SECRET_WORD)) {
    const word = m[0].replace(/^_/, '');
    const at = m.index + m[0].length - word.length;
    const before = s.slice(0, at);
    const after = s.slice(m.index + m[0].length);
    if (META_SUFFIX.test(after)) continue;
    if (word === 'token' && (TOKEN_NOT_SECRET_BEFORE.test(before) || TOKEN_NOT_SECRET_AFTER.test(after))) continue;
    return true;
  }
  return false;
}

const FIELD_MARK = '[REDACTED:field]';
/** A value that is only markers already (a pattern found it first). */
const ONLY_MARKERS = /^\s*(?:\[REDACTED:[a-z0-9:-]+\]\s*)+$/;
/** `"name": …` and `'name': …`, also with escaped quotes (`\"name\": …`, JSON inside JSON). */
const TEXT_JSON_NAME = /(?<!\\)(\\{0,16})(["'])([^"'\\\r\n]{1,128})\1\2[ \t]*:[ \t]*/g;
/** `name=…` (also `--name=…`, `?name=…&`). */
const TEXT_ASSIGNMENT_NAME = /(?<![A-Za-z0-9_.-])([A-Za-z0-9_.-]{1,128})[ \t]*=[ \t]*/g;
/** `Name: …` (header or YAML style). */
const TEXT_HEADER_NAME = /(?<![A-Za-z0-9_.-])([A-Za-z0-9_.-]{1,128})[ \t]*:[ \t]*/g;

/** The index of the end of the line holding `from`. */
function lineEnd(s: string, from: number): number {
  for (let i = from; i < s.length; i++) if (s[i] === '\n' || s[i] === '\r') return i;
  return s.length;
}

/**
 * Where a quoted value starting at `from` ends: the index of its closing quote
 * (`escapes` + `quote`, not itself escaped), or the end of the line if it has none.
 */
function closingQuote(text: string, from: number, escapes: string, quote: string): number {
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (c === '\n' || c === '\r') return i;
    if (escapes === '') {
      if (c === '\\') i++;
      else if (c === quote) return i;
    } else if (c === quote && text.startsWith(escapes, i - escapes.length) && text[i - escapes.length - 1] !== '\\' && i - escapes.length >= from) {
      return i - escapes.length;
    }
  }
  return text.length;
}

/** The value after `"name":` at `at`: a quoted string's content or a bare scalar (not true/false/null, not an object or array). */
function jsonValueAt(s: string, m: RegExpExecArray, at: number): [number, number] | undefined {
  const escapes = m[1] ?? '';
  const quote = s.startsWith(escapes, at) ? s[at + escapes.length] : undefined;
  if (quote === '"' || quote === "'") {
    const from = at + escapes.length + 1;
    return [from, closingQuote(s, from, escapes, quote)];
  }
  const bare = /^[^\s,{}[\]\\"']+/.exec(s.slice(at, at + 4096));
  if (bare === null || /^(?:true|false|null)$/.test(bare[0])) return undefined;
  return [at, at + bare[0].length];
}

/** The value after `name=` at `at`: quoted, or up to whitespace, `&`, `;` or a quote. */
function assignedValueAt(s: string, _m: RegExpExecArray, at: number): [number, number] {
  const quote = s[at];
  if (quote === '"' || quote === "'") return [at + 1, closingQuote(s, at + 1, '', quote)];
  const bare = /^[^\s&;"']*/.exec(s.slice(at, at + 4096));
  return [at, at + (bare === null ? 0 : bare[0].length)];
}

/** The value after `Name:` at `at`: to the end of the line, or to the quote that opened `"Name: …"`. */
function headerValueAt(s: string, m: RegExpExecArray, at: number): [number, number] {
  const before = s[m.index - 1];
  const eol = lineEnd(s, at);
  if (before === '"' || before === "'") {
    const q = s.indexOf(before, at);
    return [at, q === -1 || q > eol ? eol : q];
  }
  return [at, eol];
}

/**
 * Replaces by `[REDACTED:field]` each value that follows a secret field name matched by
 * `names` (group `nameGroup`); other names are stepped over, so their values are still read.
 */
function redactNamedValues(s: string, names: RegExp, nameGroup: number, valueAt: (s: string, m: RegExpExecArray, at: number) => [number, number] | undefined, hit: { found: boolean }): string {
  let out = '';
  let last = 0;
  names.lastIndex = 0;
  for (let m = names.exec(s); m !== null; m = names.exec(s)) {
    const at = m.index + m[0].length;
    const range = isSecretFieldName(m[nameGroup] ?? '') ? valueAt(s, m, at) : undefined;
    if (range === undefined) continue;
    const [from, to] = range;
    const value = s.slice(from, to);
    if (value.trim() === '' || ONLY_MARKERS.test(value)) continue;
    out += s.slice(last, from) + FIELD_MARK;
    last = to;
    hit.found = true;
    names.lastIndex = Math.max(to, at);
  }
  return last === 0 ? s : out + s.slice(last);
}

/** Replaces the values given to secret names inside text; `hit.found` is set when one was. */
function redactTextFields(s: string, hit: { found: boolean }): string {
  let text = redactNamedValues(s, TEXT_JSON_NAME, 3, jsonValueAt, hit);
  text = redactNamedValues(text, TEXT_ASSIGNMENT_NAME, 1, assignedValueAt, hit);
  return redactNamedValues(text, TEXT_HEADER_NAME, 1, headerValueAt, hit);
}

const escape = (token: string) => token.replace(/~/g, '~0').replace(/\//g, '~1');

function redactString(s: string, path: string, out: SecretRedaction[], patterns: readonly SecretPattern[]): string {
  let text = s;
  for (const { kind, pattern } of patterns) {
    pattern.lastIndex = 0;
    if (!pattern.test(text)) continue;
    pattern.lastIndex = 0;
    text = text.replace(pattern, `[REDACTED:${kind}]`);
    out.push({ path, kind });
  }
  const hit = { found: false };
  text = redactTextFields(text, hit);
  if (hit.found) out.push({ path, kind: 'field' });
  return text;
}

/**
 * Returns a copy of `value` with built-in secret patterns replaced by
 * `[REDACTED:<kind>]`; the values of secret-named fields (`password`, `db_password`,
 * `x-api-key`, `authorization` …, see `isSecretFieldName`) replaced by
 * `[REDACTED:field]`, in objects and in text (`"password": "…"`, `password=…`,
 * `Authorization: …`); object keys holding a secret (and `__proto__` keys) replaced by `[REDACTED:key:<n>]`;
 * and objects nested deeper than 64 levels replaced whole by `[REDACTED:depth]`;
 * with the list of what was redacted. The input is not changed.
 * @example
 * redactSecrets({ q: 'key sk-abcdefghijklmnopqrstuvwx' }).value // { q: 'key [REDACTED:api-key]' }
 */
export function redactSecrets<T>(value: T): { value: T; redactions: SecretRedaction[] } {
  const out: SecretRedaction[] = [];
  const walk = (v: unknown, path: string, depth: number): unknown => {
    if (typeof v === 'string') return redactString(v, path, out, SECRET_PATTERNS);
    if (v === null || typeof v !== 'object') return v;
    if (depth > MAX_DEPTH) {
      out.push({ path, kind: 'depth' });
      return '[REDACTED:depth]';
    }
    if (Array.isArray(v)) return v.map((item, i) => walk(item, `${path}/${i}`, depth + 1));
    const copy: Record<string, unknown> = {};
    const entries = Object.entries(v as Record<string, unknown>);
    const taken = new Set(entries.map(([k]) => k));
    let n = 0;
    for (const [k, child] of entries) {
      let key = k;
      const keyFound: SecretRedaction[] = [];
      // A `__proto__` key (an own key of parsed JSON) is renamed like a secret key: assigned
      // as is, it would set the copy's prototype and drop the field, and the server refuses
      // it in JSON bodies. Its value is kept, under the marker.
      if (k === '__proto__' || redactString(k, '', keyFound, SECRET_PATTERNS) !== k) {
        do key = `[REDACTED:key:${++n}]`;
        while (taken.has(key));
        taken.add(key);
      }
      const at = `${path}/${escape(key)}`;
      if (key !== k) out.push({ path: at, kind: 'key' });
      if (isSecretFieldName(k) && child !== null && child !== undefined && child !== '' && typeof child !== 'boolean') {
        copy[key] = FIELD_MARK;
        out.push({ path: at, kind: 'field' });
      } else {
        copy[key] = walk(child, at, depth + 1);
      }
    }
    return copy;
  };
  return { value: walk(value, '', 0) as T, redactions: out };
}
