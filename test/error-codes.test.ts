/** docs/errors.md lists every error code declared in packages' errors.ts, and no stale one. */
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

const read = (p: string) => readFileSync(new URL(`../${p}`, import.meta.url), 'utf8');

describe('error code documentation', () => {
  it('documents every code of @custody/core', () => {
    const source = read('packages/core/src/errors.ts');
    const declared = [...source.matchAll(/\|\s*'([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!);
    expect(declared.length).toBeGreaterThan(20);
    const docs = read('docs/errors.md');
    const documented = new Set([...docs.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]!));
    for (const code of declared) expect(documented, `docs/errors.md lacks ${code}`).toContain(code);
  });
});
