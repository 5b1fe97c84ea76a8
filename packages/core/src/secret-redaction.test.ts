import { describe, expect, it } from 'vitest';

import { redactSecrets } from './secret-redaction.js';

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

  it('passes scalars through and stops descending past 64 levels', () => {
    expect(redactSecrets(42).value).toBe(42);
    expect(redactSecrets('xoxb-1234567890-abc').value).toBe('[REDACTED:slack-token]');
    let deep: unknown = { password: 'x' };
    for (let i = 0; i < 70; i++) deep = { d: deep };
    expect(redactSecrets(deep).redactions).toEqual([]);
  });
});
