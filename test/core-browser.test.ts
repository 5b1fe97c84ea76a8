/**
 * @custody/core must run in the browser: bundle it for the browser platform (no
 * Node built-ins allowed) and verify a golden bundle inside a bare JavaScript
 * context that has no `process`, `Buffer` or `require`.
 */
import { readFileSync } from 'node:fs';
import { createContext, runInContext } from 'node:vm';

import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const root = new URL('../', import.meta.url);

describe('@custody/core in the browser', () => {
  it('bundles for the browser and verifies a golden bundle with no Node globals', async () => {
    const out = await build({
      entryPoints: [new URL('packages/core/dist/index.js', root).pathname],
      bundle: true,
      platform: 'browser',
      format: 'iife',
      globalName: 'CustodyCore',
      conditions: ['browser'],
      write: false,
      logLevel: 'silent',
    });
    const code = out.outputFiles[0]!.text;
    expect(code).not.toMatch(/require\(["']node:/);
    const vector = JSON.parse(readFileSync(new URL('test-vectors/v1/bundle/golden-complete.json', root), 'utf8')) as {
      input: { bundle: unknown; verifierKey: string };
    };
    const context = createContext({
      TextEncoder,
      TextDecoder,
      crypto: globalThis.crypto,
      structuredClone,
      input: vector.input,
      result: undefined as unknown,
    });
    runInContext(`${code}\nresult = CustodyCore.verifyBundle(input.bundle, { verifierKey: input.verifierKey });`, context);
    const report = context['result'] as { ok: boolean; verdict: string };
    expect(runInContext('typeof process + typeof Buffer + typeof require', context)).toBe('undefinedundefinedundefined');
    expect(report.verdict).toBe('complete');
    expect(report.ok).toBe(true);
  });
});
