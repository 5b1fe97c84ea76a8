import { describe, expect, it } from 'vitest';

import { isSecretFieldName, redactSecrets } from './secret-redaction.js';

describe('redactSecrets', () => {
  it('redacts built-in token patterns inside strings, naming the pointer and kind', () => {
    const jwt = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl';
    const input = {
      note: `use ${jwt} and AKIAABCDEFGHIJKLMNOP`,
      list: ['ghp_' + 'a'.repeat(36), 'plain text', 7, null, true],
      nested: { url: 'postgres://app:hunter2secret@db.internal/prod', header: 'Bearer abcdefghijklmnop1234' },
      key: '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----',
      'a/b~c': 'sk-' + 'x'.repeat(24),
    };
    const { value, redactions } = redactSecrets(input);
    expect(value.note).toBe('use [REDACTED:jwt] and [REDACTED:aws-access-key-id]');
    expect(value.list).toEqual(['[REDACTED:github-token]', 'plain text', 7, null, true]);
    expect(value.nested.url).toBe('postgres://app:[REDACTED:url-credentials]@db.internal/prod');
    expect(value.nested.header).toBe('[REDACTED:bearer-token]');
    expect(value.key).toBe('[REDACTED:private-key]');
    expect(value['a/b~c']).toBe('[REDACTED:api-key]');
    expect(redactions).toContainEqual({ path: '/a~1b~0c', kind: 'api-key' });
    expect(redactions).toContainEqual({ path: '/list/0', kind: 'github-token' });
    expect(input.note).toContain(jwt);
  });

  it('redacts the values of secret-named fields whatever they hold, but not flags or empties', () => {
    const { value, redactions } = redactSecrets({ password: 'p', api_key: 12345, token: { a: 1 }, secret: true, authorization: '', pass: null, path: '/etc/hosts' });
    expect(value).toEqual({ password: '[REDACTED:field]', api_key: '[REDACTED:field]', token: '[REDACTED:field]', secret: true, authorization: '', pass: null, path: '/etc/hosts' });
    expect(redactions.map((r) => r.path)).toEqual(['/password', '/api_key', '/token']);
  });

  it('passes scalars through and replaces whatever is nested past 64 levels by one marker, never storing it unwalked', () => {
    expect(redactSecrets(42).value).toBe(42);
    expect(redactSecrets('xoxb-1234567890-abc').value).toBe('[REDACTED:slack-token]');
    let deep: unknown = { password: 'x', note: 'plain', list: [{ api_key: 'y' }] };
    for (let i = 0; i < 70; i++) deep = { d: deep };
    const { value, redactions } = redactSecrets(deep);
    const at65 = '/d'.repeat(65);
    expect(redactions).toEqual([{ path: at65, kind: 'depth' }]);
    let v = value as Record<string, unknown>;
    for (let i = 0; i < 64; i++) v = v['d'] as Record<string, unknown>;
    expect(v).toEqual({ d: '[REDACTED:depth]' });
    expect(JSON.stringify(value)).not.toMatch(/password|plain|api_key/);
    // arrays count as levels too
    let arr: unknown = ['sk_live_' + 'a1'.repeat(8)];
    for (let i = 0; i < 70; i++) arr = [arr];
    expect(JSON.stringify(redactSecrets(arr).value)).not.toContain('sk_live_');
    expect(redactSecrets(arr).redactions).toEqual([{ path: '/0'.repeat(65), kind: 'depth' }]);
  });

  it('walks ordinary nested data (depth 10) and leaves it as it was', () => {
    let nested: unknown = { name: 'leaf', count: 3, tags: ['a', 'b'], ok: true };
    for (let i = 0; i < 10; i++) nested = { level: i, child: nested };
    const { value, redactions } = redactSecrets(nested);
    expect(value).toEqual(nested);
    expect(redactions).toEqual([]);
  });

  it('renames a __proto__ key (an own key of parsed JSON) to a key marker and keeps its value, redacted inside like any other', () => {
    const parsed = JSON.parse('{"a":1,"__proto__":{"password":"hunter2","n":2},"b":{"__proto__":"x"}}') as Record<string, unknown>;
    const { value, redactions } = redactSecrets(parsed);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(value).toEqual({ a: 1, '[REDACTED:key:1]': { password: '[REDACTED:field]', n: 2 }, b: { '[REDACTED:key:1]': 'x' } });
    expect(redactions).toEqual([
      { path: '/[REDACTED:key:1]', kind: 'key' },
      { path: '/[REDACTED:key:1]/password', kind: 'field' },
      { path: '/b/[REDACTED:key:1]', kind: 'key' },
    ]);
  });

  it('replaces object keys that hold a secret by a numbered marker key, recorded at the new key', () => {
    const stripe = 'sk_live_' + 'a1B2'.repeat(6);
    const { value, redactions } = redactSecrets({ [stripe]: 1, nested: { ['Bearer ' + 'Ab1'.repeat(8)]: { password: 'p' } }, '[REDACTED:key:1]': 'taken', name: 'n' });
    expect(value).toEqual({ '[REDACTED:key:2]': 1, nested: { '[REDACTED:key:1]': { password: '[REDACTED:field]' } }, '[REDACTED:key:1]': 'taken', name: 'n' });
    expect(redactions).toEqual([
      { path: '/[REDACTED:key:2]', kind: 'key' },
      { path: '/nested/[REDACTED:key:1]', kind: 'key' },
      { path: '/nested/[REDACTED:key:1]/password', kind: 'field' },
    ]);
    expect(JSON.stringify({ value, redactions })).not.toContain('a1B2');
    const two = redactSecrets({ ['sk-' + 'x'.repeat(24)]: 1, ['sk-' + 'y'.repeat(24)]: 2 }).value;
    expect(Object.keys(two)).toEqual(['[REDACTED:key:1]', '[REDACTED:key:2]']);
  });

  it('matches the Bearer and Basic schemes in any case, but not a word after basic', () => {
    for (const scheme of ['bearer', 'BEARER', 'bEaReR', 'basic']) {
      expect(redactSecrets(`Authorization ${scheme} abcdefghijklmnop1234`).value).toBe('Authorization [REDACTED:bearer-token]');
    }
    expect(redactSecrets('the basic responsibilities of the bearer').value).toBe('the basic responsibilities of the bearer');
  });

  it('redacts live/test keys with 8+ characters and sk- keys with 16+, not sk-learn or task-12', () => {
    const cases: [string, string][] = [
      ['sk-live-1234567890ab', '[REDACTED:stripe-key]'],
      ['sk_live_12345678', '[REDACTED:stripe-key]'],
      ['rk_test_abcdEFGH', '[REDACTED:stripe-key]'],
      ['sk-proj-Abc123def456', '[REDACTED:api-key]'],
      ['sk-1234567890abcdef', '[REDACTED:api-key]'],
      ['sk-' + 'x'.repeat(20), '[REDACTED:api-key]'],
      ['sk_live_1234567', 'sk_live_1234567'],
      ['sk-123456789012345', 'sk-123456789012345'],
      ['pip install sk-learn', 'pip install sk-learn'],
      ['sk-learn-pipeline', 'sk-learn-pipeline'],
      ['see task-12 and desk-top', 'see task-12 and desk-top'],
    ];
    for (const [input, expected] of cases) expect(redactSecrets(input).value, input).toBe(expected);
  });

  it('redacts fields whose names contain a secret word, ignoring case, - and _', () => {
    const names = ['aws_secret_access_key', 'db_password', 'client_secret', 'x-api-key', 'X-Api-Key', 'privateKey', 'private_key', 'apiKey', 'APIKey', 'Set-Cookie', 'session_key', 'sessionKey', 'access_token', 'X-Auth-Token', 'id_token', 'credentials', 'credential', 'Proxy-Authorization', 'passwd', 'PASSWORD', 'passphrase', 'db_pass', 'smtp_pwd', 'token_secret', 'authorization_code', 'tokenString'];
    for (const name of names) expect(isSecretFieldName(name), name).toBe(true);
    const { value, redactions } = redactSecrets(Object.fromEntries(names.map((n) => [n, 'v'])));
    expect(Object.values(value)).toEqual(names.map(() => '[REDACTED:field]'));
    expect(redactions).toHaveLength(names.length);
  });

  it('keeps counts, pagination cursors and names that only describe a secret', () => {
    const names = ['name', 'path', 'key', 'tokens', 'tokens_used', 'max_tokens', 'maxTokens', 'input_tokens', 'completion_tokens', 'total_tokens', 'token_count', 'prompt_token_count', 'tokenizer', 'token_type', 'next_page_token', 'nextPageToken', 'NextToken', 'password_policy', 'password_min_length', 'secret_name', 'authorization_url', 'token_endpoint', 'private_key_path', 'cookie_name', 'secretary', 'bypass', 'pwd', 'passenger'];
    for (const name of names) expect(isSecretFieldName(name), name).toBe(false);
    const input = { name: 'Ada', tokens_used: 1234, max_tokens: 4096, usage: { input_tokens: 10, output_tokens: 20 }, nextPageToken: 'page-2', path: '/etc/hosts' };
    expect(redactSecrets(input)).toEqual({ value: input, redactions: [] });
  });

  it('redacts values given to secret names inside text: JSON, name=value and Name: value', () => {
    const cases: [string, string][] = [
      ['body {"user":"bob","password":"hunter2"} sent', 'body {"user":"bob","password":"[REDACTED:field]"} sent'],
      ["{'api_key': 'abc', 'n': 3}", "{'api_key': '[REDACTED:field]', 'n': 3}"],
      ['{"pin":1,"db_password": 12345}', '{"pin":1,"db_password": [REDACTED:field]}'],
      ['{"password":"a\\"b"}', '{"password":"[REDACTED:field]"}'],
      ['{\\"client_secret\\":\\"s3\\"}', '{\\"client_secret\\":\\"[REDACTED:field]\\"}'],
      ['{"token": null, "secret": true}', '{"token": null, "secret": true}'],
      ['{"credentials": {"user": "bob", "password": "x"}}', '{"credentials": {"user": "bob", "password": "[REDACTED:field]"}}'],
      ['login password=hunter2&user=bob', 'login password=[REDACTED:field]&user=bob'],
      ['GET /cb?x=1&access_token=abc123;y', 'GET /cb?x=1&access_token=[REDACTED:field];y'],
      ['DB_PASSWORD = "two words" next', 'DB_PASSWORD = "[REDACTED:field]" next'],
      ['cmd="mysql --password=hunter2 -u root"', 'cmd="mysql --password=[REDACTED:field] -u root"'],
      ['GET / HTTP/1.1\nAuthorization: Bearer x\nHost: a', 'GET / HTTP/1.1\nAuthorization: [REDACTED:field]\nHost: a'],
      ["curl -H 'authorization: Bearer x' -H \"Cookie: sid=1\" https://a.test", "curl -H 'authorization: [REDACTED:field]' -H \"Cookie: [REDACTED:field]\" https://a.test"],
      ['status: ok, x-api-key: k1 k2', 'status: ok, x-api-key: [REDACTED:field]'],
      ['password: hunter2', 'password: [REDACTED:field]'],
    ];
    for (const [input, expected] of cases) {
      const { value, redactions } = redactSecrets({ text: input });
      expect(value.text, input).toBe(expected);
      expect(redactions, input).toEqual(expected === input ? [] : [{ path: '/text', kind: 'field' }]);
    }
    // a value a pattern already replaced is not recorded twice
    expect(redactSecrets('Authorization: Bearer abcdefghijklmnop1234')).toEqual({ value: 'Authorization: [REDACTED:bearer-token]', redactions: [{ path: '', kind: 'bearer-token' }] });
  });

  it('leaves prose, counts and URLs without credentials alone', () => {
    const texts = [
      'Please change your password before Friday.',
      'The token expired; ask for a new secret.',
      'max_tokens: 4096, tokens_used=1234, token_count: 7',
      'https://example.com/search?q=password+reset&page=2',
      'https://api.example.com:8443/v1/items?sort=name#top',
      'ssh git@github.com:org/repo.git',
      'time 12:30, ratio 3:4, name=value',
    ];
    for (const t of texts) expect(redactSecrets(t), t).toEqual({ value: t, redactions: [] });
  });
});
