/**
 * `custody policy validate|test`, run in-process through main() against the
 * example policies and real cedar-wasm.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { main } from './main.js';
import type { Output } from './output.js';

const examples = fileURLToPath(new URL('../../../examples/policies', import.meta.url));

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Output = { color: false, out: (l = '') => out.push(l), err: (l = '') => err.push(l) };
  const code = await main(['node', 'custody', ...args], io);
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

describe('custody policy', () => {
  it('validates the example policies and prints the version', async () => {
    const r = await run(['policy', 'validate', examples]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^valid: \d+ policies in 5 files \(1 requiring approval\)\nversion sha256:[0-9a-f]{64}$/);
    const j = await run(['policy', 'validate', examples, '--json']);
    expect(JSON.parse(j.stdout)).toMatchObject({ valid: true, warnings: [] });
  });

  it('passes the example cases, and exits 1 listing a failing case', async () => {
    const r = await run(['policy', 'test', examples, '--cases', join(examples, 'cases.json')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\d+ passed, 0 failed/);
    const dir = mkdtempSync(join(tmpdir(), 'custody-policy-'));
    const cases = join(dir, 'cases.json');
    writeFileSync(
      cases,
      JSON.stringify([
        {
          name: 'should not be allowed',
          expect: 'allow',
          request: {
            action: 'tools/call',
            principal: { type: 'agent', id: 'a' },
            target: { server: 'admin', name: 'drop' },
            session: { id: 's', scope: ['admin.*'], expiresAt: '2099-01-01T00:00:00Z', depth: 0, initiator: 'alice' },
          },
        },
      ]),
    );
    const f = await run(['policy', 'test', examples, '--cases', cases]);
    expect(f.code).toBe(1);
    expect(f.stdout).toContain('FAIL  should not be allowed');
    expect(f.stdout).toContain('expected allow, got deny');
    const j = await run(['policy', 'test', examples, '--cases', cases, '--json']);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({ passed: 0, failed: 1 });
  });

  it('exits 2 with a code naming the file and position of an invalid policy', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'custody-policy-'));
    writeFileSync(join(dir, 'bad.cedar'), 'permit (principal, action, resource)\nwhen { context.nope };\n');
    const r = await run(['policy', 'validate', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/bad\.cedar:2:\d+: .*nope.*\[POLICY_INVALID\]/s);
    const missing = await run(['policy', 'validate', join(dir, 'nope')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('[POLICY_DIR_UNREADABLE]');
    const c = await run(['policy', 'test', examples, '--cases', join(dir, 'bad.cedar')]);
    expect(c.code).toBe(2);
    expect(c.stderr).toContain('[POLICY_CASES_INVALID]');
  });
});
