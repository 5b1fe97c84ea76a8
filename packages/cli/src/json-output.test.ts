/**
 * `--json` everywhere: every command of the program takes it, and the long-running
 * ones (`custody up`, `custody gateway`), run as the built binary, print one JSON
 * `listening` line on stdout, log JSON lines on stderr, and `stopped` at SIGTERM.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';

import { buildProgram } from './main.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

/** Runs `custody ARGS` to its exit, collecting what it printed. */
function runToExit(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: cleanEnv() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
const examples = fileURLToPath(new URL('../../../examples/', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'custody-json-'));

/** The environment without CUSTODY_* settings of the caller (a PostgreSQL URL, a port…). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { NO_COLOR: '1' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CUSTODY_')) env[k] = v;
  return env;
}

/** A running command: resolves with its first stdout line, then stops it with SIGTERM. */
function start(args: string[]): Promise<{ first: string; child: ChildProcess; stop: () => Promise<{ code: number | null; stdout: string; stderr: string }> }> {
  const child = spawn(process.execPath, [bin, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`custody ${args[0]} did not start in 45 s:\n${stdout}\n${stderr}`)), 45_000);
    child.stdout!.on('data', (d: Buffer) => {
      const had = stdout.includes('\n');
      stdout += d.toString();
      if (!had && stdout.includes('\n')) {
        clearTimeout(timer);
        resolve({
          first: stdout.slice(0, stdout.indexOf('\n')),
          child,
          stop: async () => {
            child.kill('SIGTERM');
            const code = await exited;
            return { code, stdout, stderr };
          },
        });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`custody ${args[0]} exited (${code}) before printing a line:\n${stdout}\n${stderr}`));
    });
  });
}

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

/** Every command that runs (not a group of subcommands), as `custody a b`. */
function runnable(cmd: Command, path: string[] = []): { name: string; command: Command }[] {
  return cmd.commands.flatMap((sub) => {
    const name = [...path, sub.name()];
    return sub.commands.length > 0 ? runnable(sub, name) : [{ name: name.join(' '), command: sub }];
  });
}

describe('--json', () => {
  it('every command and subcommand of the program takes --json', () => {
    const program = buildProgram({ color: false, out: () => undefined, err: () => undefined }, () => undefined);
    const commands = runnable(program);
    expect(commands.length).toBeGreaterThan(30);
    expect(commands.map((c) => c.name)).toEqual(expect.arrayContaining(['up', 'gateway', 'export', 'demo', 'verify', 'keys create', 'policy replay']));
    const without = commands.filter((c) => !c.command.options.some((o) => o.long === '--json')).map((c) => c.name);
    expect(without, 'commands without --json').toEqual([]);
  });

  it('custody up --json prints one listening object, logs JSON lines on stderr, and a stopped object at SIGTERM', async () => {
    const data = join(work, 'up');
    const up = await start(['up', '--json', '--port', '0', '--data', data]);
    const listening = JSON.parse(up.first) as Record<string, unknown>;
    expect(listening).toMatchObject({
      event: 'listening',
      store: 'sqlite',
      data,
      adminKeyFile: join(data, 'admin.key'),
      created: { logKey: true, adminKey: true, sessionKey: true },
      policyVersion: null,
      devIssuer: false,
    });
    expect(listening['url']).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(listening['issuer']).toBe(listening['url']);
    expect(typeof listening['origins']).toBe('string');
    const res = await fetch(`${listening['url'] as string}/v1/openapi.json`);
    expect(res.status).toBe(200);
    const end = await up.stop();
    expect(end.code).toBe(0);
    const out = lines(end.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(out).toHaveLength(2);
    expect(out[1]).toMatchObject({ event: 'stopped', url: listening['url'], signal: 'SIGTERM' });
    const logs = lines(end.stderr).map((l) => JSON.parse(l) as { time: string; level: string; message: string });
    expect(logs.length).toBeGreaterThan(0);
    for (const l of logs) {
      expect(Number.isNaN(Date.parse(l.time))).toBe(false);
      expect(['info', 'warn', 'error']).toContain(l.level);
    }
    expect(logs.map((l) => l.message)).toContain('shutting down: finishing queued appends');

    // Without --json, the output is as it always was: the banner, then `listening on <url>`.
    const text = await start(['up', '--port', '0', '--data', data]);
    expect(text.first).toMatch(/^Custody up: SQLite in /);
    const plain = await text.stop();
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+$/m);
    expect(plain.stderr).toContain('custody: shutting down');
  });

  it('custody up --json reports a bad flag as a JSON error line, exit 2', async () => {
    const r = await runToExit(['up', '--json', '--port', '70000', '--data', join(work, 'bad')]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(JSON.parse(r.stderr)).toMatchObject({ level: 'error', code: 'PORT_INVALID' });
  });

  it('custody up refuses a bad --max-inflight-writes before opening anything, naming the flag', async () => {
    const r = await runToExit(['up', '--json', '--max-inflight-writes', '0', '--data', join(work, 'bad-inflight')]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(JSON.parse(r.stderr)).toMatchObject({ level: 'error', code: 'MAX_INFLIGHT_WRITES_INVALID', message: expect.stringContaining('--max-inflight-writes must be an integer from 1 to 100000') });
    expect(existsSync(join(work, 'bad-inflight'))).toBe(false);
  });

  it('custody gateway --json --port 0 prints one listening object and a stopped object at SIGTERM', async () => {
    const config = join(work, 'gateway.json');
    writeFileSync(
      config,
      JSON.stringify({
        // Not contacted until an agent calls: the gateway starts without a server.
        ledger: { url: 'http://127.0.0.1:9', apiKey: 'cust_test_unused' },
        listen: { host: '127.0.0.1', port: 8471 },
        policies: join(examples, 'policies'),
        upstreams: { files: { command: process.execPath, args: [join(examples, 'gateway/upstream-server.mjs'), 'files'] } },
      }),
    );
    const gw = await start(['gateway', '--config', config, '--json', '--port', '0']);
    const listening = JSON.parse(gw.first) as { event: string; url: string; upstreams: string[]; tools: number; policyVersion: string };
    expect(listening).toMatchObject({ event: 'listening', upstreams: ['files'] });
    expect(listening.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect(listening.url).not.toContain(':8471/');
    expect(listening.tools).toBeGreaterThan(0);
    expect(listening.policyVersion).toMatch(/^sha256:[0-9a-f]{64}$/);
    const meta = (await (await fetch(listening.url.replace(/\/mcp$/, '/.well-known/oauth-protected-resource'))).json()) as { resource: string };
    expect(meta.resource).toBe(listening.url);
    const end = await gw.stop();
    expect(end.code).toBe(0);
    const out = lines(end.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(out).toHaveLength(2);
    expect(out[1]).toMatchObject({ event: 'stopped', url: listening.url, signal: 'SIGTERM' });
    // Every line of ours on stderr is JSON (upstream servers' own stderr passes through as it is).
    const logs = lines(end.stderr).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: string; message: string });
    expect(logs).toContainEqual(expect.objectContaining({ level: 'info', message: 'shutting down' }));
  });
});
