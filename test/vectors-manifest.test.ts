/**
 * The v1 vectors are frozen: every file is pinned by SHA-256 in manifest.json,
 * and every file present is pinned. A change here is a format change.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../test-vectors/v1/', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : [relative(root, p)];
  });
}

describe('test-vectors/v1 manifest', () => {
  const manifest = JSON.parse(readFileSync(join(root, 'manifest.json'), 'utf8')) as { files: Record<string, string> };
  const present = files(root).filter((f) => f !== 'manifest.json').sort();

  it('pins every vector file', () => {
    expect(Object.keys(manifest.files).sort()).toEqual(present);
  });

  it('has both positive and negative vectors for every format', () => {
    const formats = new Set(present.filter((f) => f.includes('/')).map((f) => f.split('/')[0]));
    expect([...formats].sort()).toEqual(['bundle', 'canonical-json', 'checkpoint', 'commitment', 'envelope', 'merkle', 'note', 'receipt']);
    for (const format of formats) {
      const docs = present.filter((f) => f.startsWith(`${format}/`)).map((f) => JSON.parse(readFileSync(join(root, f), 'utf8')) as Record<string, unknown>);
      expect(docs.some((d) => 'expected' in d), `${format} has a positive vector`).toBe(true);
      expect(docs.some((d) => 'expectedError' in d), `${format} has a negative vector`).toBe(true);
    }
  });

  it.each(present)('%s matches its pinned SHA-256', (f) => {
    expect(createHash('sha256').update(readFileSync(join(root, f))).digest('hex')).toBe(manifest.files[f]);
  });
});
