/** docs/errors.md lists every error code declared in the packages' errors.ts files. */
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

const read = (p: string) => readFileSync(new URL(`../${p}`, import.meta.url), 'utf8');

describe('error code documentation', () => {
  it.each(['packages/core/src/errors.ts', 'packages/ledger/src/errors.ts', 'packages/records/src/errors.ts', 'packages/authority/src/errors.ts', 'packages/policy/src/errors.ts', 'packages/sdk/src/errors.ts'])('documents every code of %s', (file) => {
    const source = read(file);
    const declared = [...source.matchAll(/\|\s*'([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!);
    expect(declared.length).toBeGreaterThan(5);
    const docs = read('docs/errors.md');
    const documented = new Set([...docs.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]!));
    for (const code of declared) expect(documented, `docs/errors.md lacks ${code}`).toContain(code);
  });

  it('documents the import mapping error of @custody/server', () => {
    const declared = [...read('packages/server/src/import/mapping.ts').matchAll(/CustodyError<'([A-Z][A-Z0-9_]+)'>/g)].map((m) => m[1]!);
    expect(declared).toEqual(['IMPORT_MAPPING_INVALID']);
    const documented = new Set([...read('docs/errors.md').matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1]!));
    for (const code of declared) expect(documented, `docs/errors.md lacks ${code}`).toContain(code);
  });
});
