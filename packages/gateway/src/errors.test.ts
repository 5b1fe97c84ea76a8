/** docs/errors.md lists every GatewayError code and every MCP refusal code. */
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { MCP_ERRORS } from './errors.js';

const read = (p: string) => readFileSync(new URL(`../../../${p}`, import.meta.url), 'utf8');

describe('gateway error documentation', () => {
  it('documents every GatewayError code and MCP refusal', () => {
    const declared = [...read('packages/gateway/src/errors.ts').matchAll(/\|\s*'([A-Z][A-Z0-9_]+)'/g)].map((m) => m[1]!);
    expect(declared.length).toBe(4);
    const docs = read('docs/errors.md');
    for (const code of declared) expect(docs).toContain(`| \`${code}\` |`);
    for (const [code, n] of Object.entries(MCP_ERRORS)) expect(docs).toContain(`\`${code}\` (${n}`);
  });
});
