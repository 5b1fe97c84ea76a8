/**
 * The built `custody` command, end to end, as a person or a script runs it.
 * `npm test` builds first (pretest), so dist/bin.js is current.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const vectors = fileURLToPath(new URL('../../../test-vectors/v1/bundle/', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'custody-cli-'));

function custody(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', input, env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const files = readdirSync(vectors).filter((f) => f.endsWith('.json'));
const load = (f: string) => JSON.parse(readFileSync(join(vectors, f), 'utf8')) as {
  input: { bundle: unknown; verifierKey: string };
  expected?: { verdict: string };
  expectedError?: string;
};

describe('custody verify', () => {
  it.each(files.filter((f) => load(f).expected))('accepts %s with a one-line verdict and exit 0', (f) => {
    const v = load(f);
    const path = join(work, f);
    writeFileSync(path, JSON.stringify(v.input.bundle));
    const r = custody(['verify', path, '--key', v.input.verifierKey]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toMatch(v.expected!.verdict === 'complete' ? /^✔ OK: / : /^● OK \(not sealed\): /);
  });

  it.each(files.filter((f) => load(f).expectedError))('rejects %s, naming the record and reason, exit 1', (f) => {
    const v = load(f);
    const path = join(work, f);
    writeFileSync(path, JSON.stringify(v.input.bundle));
    const r = custody(['verify', path, '--key', v.input.verifierKey]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^✘ FAILED: \d+ problems? in this bundle/);
    expect(r.stdout).toContain(v.expectedError!);
    const json = custody(['verify', path, '--key', v.input.verifierKey, '--json']);
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout) as { ok: boolean; failures: { code: string }[] };
    expect(report.ok).toBe(false);
    expect(report.failures[0]!.code).toBe(v.expectedError);
  });

  it('reads the key from a file or the environment, and the bundle from stdin', () => {
    const v = load('golden-complete.json');
    const keyFile = join(work, 'log.vkey');
    writeFileSync(keyFile, v.input.verifierKey + '\n');
    expect(custody(['verify', '-', '--key', keyFile], JSON.stringify(v.input.bundle)).code).toBe(0);
    const r = spawnSync(process.execPath, [bin, 'verify', '-'], {
      encoding: 'utf8',
      input: JSON.stringify(v.input.bundle),
      env: { ...process.env, CUSTODY_VERIFIER_KEY: v.input.verifierKey },
    });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('warns when no key is pinned', () => {
    const v = load('golden-complete.json');
    const path = join(work, 'unpinned.json');
    writeFileSync(path, JSON.stringify(v.input.bundle));
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    delete env['CUSTODY_VERIFIER_KEY'];
    const r = spawnSync(process.execPath, [bin, 'verify', path], { encoding: 'utf8', env });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('no --key given');
  });

  it('exits 2 with a clear message on unreadable input', () => {
    const missing = custody(['verify', join(work, 'nope.json')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read bundle');
    expect(missing.stderr).toContain('[FILE_UNREADABLE]');
    const notJson = join(work, 'not.json');
    writeFileSync(notJson, 'hello');
    const r = custody(['verify', notJson]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is not JSON');
    expect(custody(['verify']).code).toBe(2);
    expect(custody(['frobnicate']).code).toBe(2);
  });

  it('has help with examples', () => {
    const r = custody(['verify', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Examples:');
    expect(r.stdout).toContain('--key');
    expect(custody(['--help']).stdout).toContain('verify');
  });
});

describe('custody demo', () => {
  it('writes bundles that verify, and a tampered one that does not', () => {
    const out = join(work, 'demo');
    const r = custody(['demo', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('custody verify');
    const key = readFileSync(join(out, 'log.vkey'), 'utf8').trim();
    expect(custody(['verify', join(out, 'sess-refund-1234.bundle.json'), '--key', key]).code).toBe(0);
    expect(custody(['verify', join(out, 'sess-report-77.bundle.json'), '--key', key]).stdout).toContain('not sealed');
    const bad = custody(['verify', join(out, 'tampered.bundle.json'), '--key', key]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('ENTRY_TAMPERED');
  });

  it('--json prints one summary: the bundles, their verification, the tampered copy\'s failures, the key file', () => {
    const out = join(work, 'demo-json');
    const r = custody(['demo', '--out', out, '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const summary = JSON.parse(r.stdout) as {
      keyFile: string;
      bundles: { file: string; session: string; records: number; ok: boolean; verdict: string; failures: unknown[] }[];
      tampered: { file: string; ok: boolean; failures: { record: number | null; code: string; message: string }[] };
    };
    expect(summary.keyFile).toBe(join(out, 'log.vkey'));
    expect(summary.bundles.map((b) => [b.session, b.ok, b.verdict])).toEqual([
      ['sess-refund-1234', true, 'complete'],
      ['sess-refund-1234.payments', true, 'complete'],
      ['sess-report-77', true, 'intact'],
    ]);
    for (const b of summary.bundles) {
      expect(b.failures).toEqual([]);
      expect(b.records).toBe((JSON.parse(readFileSync(b.file, 'utf8')) as { records: unknown[] }).records.length);
    }
    expect(summary.tampered.ok).toBe(false);
    expect(summary.tampered.failures[0]).toMatchObject({ code: 'ENTRY_TAMPERED', record: expect.any(Number) });
    const key = readFileSync(summary.keyFile, 'utf8').trim();
    expect(custody(['verify', summary.tampered.file, '--key', key]).code).toBe(1);
  });

  it('--live --json prints one summary: each scenario with its outcome, and the sessions verified', () => {
    const r = custody(['demo', '--live', '--out', join(work, 'demo-live'), '--json']);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout) as {
      ok: boolean;
      keyFile: string;
      gateway: string;
      scenarios: { name: string; ok: boolean; detail: string; result: unknown }[];
      sessions: { file: string; session: string; records: number; ok: boolean; failures: unknown[] }[];
    };
    expect(summary.ok).toBe(true);
    expect(summary.gateway).toMatch(/\/mcp$/);
    expect(summary.scenarios.map((s) => s.name)).toEqual(['tools-listed', 'allowed', 'denied', 'held', 'self-approval', 'approved', 'scope-widening', 'sub-agent-tools', 'sub-agent-denied', 'held-again', 'revoked', 'refused-after-revoke']);
    expect(summary.scenarios.every((s) => s.ok)).toBe(true);
    expect(summary.scenarios.find((s) => s.name === 'self-approval')?.result).toBe('APPROVAL_SELF');
    expect(summary.scenarios.find((s) => s.name === 'scope-widening')?.result).toBe('SCOPE_WIDENED');
    expect(summary.sessions).toHaveLength(2);
    for (const s of summary.sessions) {
      expect(s).toMatchObject({ ok: true, failures: [] });
      expect(s.session).toMatch(/^ses-/);
      expect(s.records).toBeGreaterThan(0);
    }
    const key = readFileSync(summary.keyFile, 'utf8').trim();
    expect(custody(['verify', summary.sessions[0]!.file, '--key', key]).code).toBe(0);
  });
});
