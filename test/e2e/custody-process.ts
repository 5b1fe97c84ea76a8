/**
 * Runs the real `custody` command (packages/cli/dist/bin.js) as a child process,
 * the way a person or a deployment does.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const bin = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

/** A running `custody up`. */
export interface Server {
  url: string;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM and wait. */
  stop: () => Promise<number | null>;
  /** SIGKILL and wait. */
  kill: () => Promise<void>;
}

/** Starts `custody up` with `args`, resolving once it prints `listening on <url>`. */
export function startServer(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const child = spawn(process.execPath, [bin, 'up', '--port', '0', ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`custody up did not start in 30 s:\n${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1]!,
          child,
          output: () => out,
          stop: async () => {
            child.kill('SIGTERM');
            return exited;
          },
          kill: async () => {
            child.kill('SIGKILL');
            await exited;
          },
        });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`custody up exited (${code}) before listening:\n${out}`));
    });
  });
}

/** Runs a `custody` command to completion. */
export function custody(args: string[], env: NodeJS.ProcessEnv = {}, input?: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', ...env }, input, timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Calls the API with a bearer key. */
export async function api(url: string, key: string, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
  });
}

const GO_ENV = { ...process.env, GO111MODULE: 'off', GOPATH: '/usr/share/gocode' };
export const hasGo = spawnSync('go', ['version'], { env: GO_ENV }).status === 0;

let goBinary: string | undefined;

/** Runs the independent Go verifier (test/interop/go) with `args`; builds it once. */
export function goVerify(args: string[]) {
  if (goBinary === undefined) {
    const root = fileURLToPath(new URL('../..', import.meta.url));
    const out = join(mkdtempSync(join(tmpdir(), 'custody-go-')), 'custody-go-verify');
    const b = spawnSync('go', ['build', '-o', out, './test/interop/go'], { cwd: root, env: GO_ENV, encoding: 'utf8', timeout: 180_000 });
    if (b.status !== 0) throw new Error(`go build failed: ${b.stderr}`);
    goBinary = out;
  }
  const r = spawnSync(goBinary, args, { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}
