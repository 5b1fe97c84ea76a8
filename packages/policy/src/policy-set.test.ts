import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { canonicalPolicyText, policySetVersion } from './canonical-text.js';
import { PolicyError } from './errors.js';
import { compilePolicySet, loadPolicySet, readPolicyFolder } from './policy-set.js';

const examples = fileURLToPath(new URL('../../../examples/policies', import.meta.url));
const ok = 'permit (principal is Agent, action == Action::"tools/call", resource);\n';

function compileError(files: { name: string; text: string }[]): PolicyError {
  try {
    compilePolicySet(files);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    return err as PolicyError;
  }
  throw new Error('expected a PolicyError');
}

describe('loadPolicySet', () => {
  it('loads the example policies with their ids, annotations and no warnings', () => {
    const set = loadPolicySet(examples);
    expect(set.policies.length).toBeGreaterThanOrEqual(10);
    expect(set.warnings).toEqual([]);
    const approval = set.policies.find((p) => p.id === 'transfer-needs-approval');
    expect(approval).toMatchObject({ file: '20-payments.cedar', effect: 'forbid', approval: true, line: 8, column: 1 });
    expect(set.version).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(set.version).toBe(policySetVersion(readPolicyFolder(examples)));
  });

  it('names the file, line and column of a parse error', () => {
    const err = compileError([{ name: 'a.cedar', text: ok }, { name: 'b.cedar', text: `${ok}\n// next\npermit (principal, action, resource) when { context. };\n` }]);
    expect(err.code).toBe('POLICY_PARSE_ERROR');
    expect(err.issues[0]).toMatchObject({ file: 'b.cedar', line: 4 });
    expect(err.message).toContain('b.cedar:4:');
  });

  it('rejects a policy that does not validate against the schema, naming the policy', () => {
    const err = compileError([{ name: 'a.cedar', text: `${ok}@id("bad")\npermit (principal, action == Action::"tools/call", resource) when { context.nope == 1 };\n` }]);
    expect(err.code).toBe('POLICY_INVALID');
    expect(err.issues[0]).toMatchObject({ file: 'a.cedar', line: 3, policy: 'bad' });
    expect(err.message).toMatch(/nope/);
  });

  it('warns about a policy that can never apply, and still loads', () => {
    const set = compilePolicySet([{ name: 'a.cedar', text: `${ok}@id("never")\npermit (principal is Agent, action == Action::"tools/call", resource is Server);\n` }]);
    expect(set.warnings.length).toBeGreaterThan(0);
    expect(set.warnings[0]).toMatchObject({ file: 'a.cedar', policy: 'never', line: 2 });
  });

  it('rejects @approval on a permit, duplicate ids and templates', () => {
    expect(compileError([{ name: 'a.cedar', text: '@approval("required") permit (principal, action, resource);' }]).code).toBe('POLICY_ANNOTATION_INVALID');
    expect(compileError([{ name: 'a.cedar', text: '@approval("maybe") forbid (principal, action, resource);' }]).code).toBe('POLICY_ANNOTATION_INVALID');
    const dup = compileError([{ name: 'a.cedar', text: '@id("x") permit (principal, action, resource);' }, { name: 'b.cedar', text: '@id("x") forbid (principal, action, resource);' }]);
    expect(dup.code).toBe('POLICY_DUPLICATE_ID');
    expect(dup.message).toContain('a.cedar:1:1');
    expect(compileError([{ name: 'a.cedar', text: 'permit (principal == ?principal, action, resource);' }]).code).toBe('POLICY_TEMPLATE_UNSUPPORTED');
  });

  it('checks schema fragments: they parse, and every Arguments attribute is optional', () => {
    expect(compileError([{ name: 'a.cedar', text: ok }, { name: 'x.cedarschema', text: 'type Arguments = { amount?: Long,, };' }]).code).toBe('POLICY_SCHEMA_INVALID');
    const req = compileError([{ name: 'a.cedar', text: ok }, { name: 'x.cedarschema', text: 'type Arguments = { amount: Long };' }]);
    expect(req.code).toBe('POLICY_SCHEMA_INVALID');
    expect(req.message).toContain('amount?');
  });

  it('fails with a code on a missing or empty folder', () => {
    expect(() => loadPolicySet('/nonexistent/policies')).toThrow(expect.objectContaining({ code: 'POLICY_DIR_UNREADABLE' }) as Error);
    expect(() => loadPolicySet(fileURLToPath(new URL('.', import.meta.url)))).toThrow(expect.objectContaining({ code: 'POLICY_DIR_EMPTY' }) as Error);
  });
});

describe('policySetVersion', () => {
  it('ignores file order, line endings and a BOM, but not content or names', () => {
    const a = [
      { name: 'b.cedar', text: 'forbid (principal, action, resource);\n' },
      { name: 'a.cedar', text: ok },
    ];
    const v = policySetVersion(a);
    expect(policySetVersion([...a].reverse())).toBe(v);
    expect(policySetVersion(a.map((f) => ({ ...f, text: `\uFEFF${f.text.replace(/\n/g, '\r\n')}` })))).toBe(v);
    expect(policySetVersion(a.map((f) => ({ ...f, text: f.text.trimEnd() })))).toBe(v);
    expect(policySetVersion([a[0]!, { ...a[1]!, name: 'c.cedar' }])).not.toBe(v);
    expect(policySetVersion([a[0]!, { ...a[1]!, text: ok.replace('Agent', 'Human') }])).not.toBe(v);
  });

  it('hashes the documented canonical text', () => {
    const text = canonicalPolicyText([{ name: 'a.cedar', text: 'x\r\ny' }]);
    expect(text).toBe('custody.policy-set/v1 custody.policy-schema/v1\n=== a.cedar\nx\ny\n');
  });
});
