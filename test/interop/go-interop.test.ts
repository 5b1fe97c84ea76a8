import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

// Runs the independent Go verifier (test/interop/go, written from docs/format.md
// alone with golang.org/x/mod/sumdb/{note,tlog}) over the frozen test vectors.

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const goEnv = { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode' };
const INSTALL =
  'Go is not on PATH; install it with `apt-get install golang-go golang-golang-x-mod-dev` to run the Go interop verifier';
const TIMEOUT = 180_000;

const hasGo = spawnSync('go', ['version'], { env: goEnv, encoding: 'utf8' }).status === 0;

function requireGo(ctx: { skip: (note?: string) => never }): void {
  if (hasGo) return;
  if (process.env.CI === 'true') throw new Error(`${INSTALL} (required in CI)`);
  ctx.skip(INSTALL);
}

function go(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('go', args, {
    cwd: repoRoot,
    env: goEnv,
    encoding: 'utf8',
    timeout: TIMEOUT,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('Go interop verifier', () => {
  it(
    'verifies every test vector in test-vectors/v1',
    (ctx) => {
      requireGo(ctx);
      const { status, output } = go(['run', './test/interop/go', 'vectors', 'test-vectors/v1']);
      const summary = /interop: (\d+) passed, (\d+) failed, (\d+) skipped/.exec(output);
      const failures = output.split('\n').filter((l) => !l.startsWith('ok ') && !l.startsWith('skip '));
      expect(summary, output).not.toBeNull();
      expect(status, failures.join('\n')).toBe(0);
      expect(Number(summary?.[1])).toBeGreaterThan(0);
      expect(Number(summary?.[2])).toBe(0);
    },
    TIMEOUT,
  );

  it(
    'passes its own self-tests (go test)',
    (ctx) => {
      requireGo(ctx);
      const { status, output } = go(['test', './test/interop/go']);
      expect(status, output).toBe(0);
    },
    TIMEOUT,
  );
});
