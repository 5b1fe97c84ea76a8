/**
 * Built-in secret and credential patterns, redacted from values before they are
 * stored (tool arguments and results): tokens and keys found in strings, and the
 * values of fields whose names say they hold a secret. No I/O.
 */

/** One redaction: where (RFC 6901 JSON Pointer inside the value) and what kind. */
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
  { kind: 'stripe-key', pattern: /\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}/g },
  { kind: 'api-key', pattern: /\bsk-[A-Za-z0-9_-]{20,}/g },
  { kind: 'google-api-key', pattern: /\bAIza[0-9A-Za-z_-]{35}/g },
  { kind: 'bearer-token', pattern: /\b(?:Bearer|Basic) +[A-Za-z0-9._~+/-]{16,}=*/g },
  { kind: 'url-credentials', pattern: /(?<=[a-z][a-z0-9+.-]*:\/\/[^\s:/@]{1,256}:)[^\s@/]{1,256}(?=@)/gi },
];

/** Field names whose values are secrets whatever they look like. */
const SECRET_FIELD = /^(?:password|passwd|pass|secret|client[_-]?secret|token|access[_-]?token|refresh[_-]?token|id[_-]?token|api[_-]?key|apikey|authorization|private[_-]?key|credentials?|cookie|session[_-]?token)$/i;

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
  return text;
}

/**
 * Returns a copy of `value` with built-in secret patterns replaced by
 * `[REDACTED:<kind>]` and the values of secret-named fields (`password`,
 * `token`, `api_key`, `authorization` …) replaced by `[REDACTED:field]`, with the
 * list of what was redacted. The input is not changed.
 * @example
 * redactSecrets({ q: 'key sk-abcdefghijklmnopqrstuvwx' }).value // { q: 'key [REDACTED:api-key]' }
 */
export function redactSecrets<T>(value: T): { value: T; redactions: SecretRedaction[] } {
  const out: SecretRedaction[] = [];
  const walk = (v: unknown, path: string, depth: number): unknown => {
    if (typeof v === 'string') return redactString(v, path, out, SECRET_PATTERNS);
    if (v === null || typeof v !== 'object' || depth > 64) return v;
    if (Array.isArray(v)) return v.map((item, i) => walk(item, `${path}/${i}`, depth + 1));
    const copy: Record<string, unknown> = {};
    for (const [k, child] of Object.entries(v as Record<string, unknown>)) {
      const at = `${path}/${escape(k)}`;
      if (SECRET_FIELD.test(k) && child !== null && child !== undefined && child !== '' && typeof child !== 'boolean') {
        copy[k] = '[REDACTED:field]';
        out.push({ path: at, kind: 'field' });
      } else {
        copy[k] = walk(child, at, depth + 1);
      }
    }
    return copy;
  };
  return { value: walk(value, '', 0) as T, redactions: out };
}
