/**
 * The `custody` process, run from the TypeScript sources (tsx, with the workspace
 * packages mapped to their sources as vitest maps them), on flags it cannot use and on
 * failures under --json: `custody verify --key` naming a file that is missing, unreadable
 * or holds no verifier key is a usage error (exit 2) like any unusable flag, never a
 * failed verification; `custody audit --json` that cannot run prints one JSON object with
 * the error's code and message, and exits as it does without --json; `custody audit`
 * reads the log key and never creates one, so an audit that fails leaves no key behind.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { type EventDraft, signerFromSeed, toBase64 } from '@custody/core';
import { Ledger, PostgresStore, SqliteStore } from '@custody/ledger';
import { postgresTestEnv } from '@custody/ledger/testing';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const bin = fileURLToPath(new URL('./bin.ts', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const work = mkdtempSync(join(tmpdir(), 'custody-cli-errors-'));
const pg = await postgresTestEnv();
const schemas: string[] = [];

afterAll(async () => {
  for (const s of schemas) await pg.dropSchema(s);
  rmSync(work, { recursive: true, force: true });
});

/** Runs `custody ARGS` from the sources to its exit, without the caller's CUSTODY_* settings. */
function custody(args: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  const env: NodeJS.ProcessEnv = { NO_COLOR: '1', TSX_TSCONFIG_PATH: join(root, 'tsconfig.spec.json') };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CUSTODY_') && !(k in env)) env[k] = v;
  const r = spawnSync(process.execPath, ['--import', tsx, bin, ...args], { cwd: root, encoding: 'utf8', input: opts.input ?? '', env: { ...env, ...opts.env }, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const vector = JSON.parse(readFileSync(join(root, 'test-vectors/v1/bundle/golden-complete.json'), 'utf8')) as { input: { bundle: unknown; verifierKey: string } };
const bundle = join(work, 'golden-complete.bundle.json');
writeFileSync(bundle, JSON.stringify(vector.input.bundle));

describe('custody verify --key that cannot be used: exit 2, a usage error', () => {
  const keyFile = join(work, 'log.vkey');
  writeFileSync(keyFile, `${vector.input.verifierKey}\n`);

  it('still verifies with the key as text or as a file, and still fails (exit 1) with a genuine key of another log', () => {
    expect(custody(['verify', bundle, '--key', vector.input.verifierKey])).toMatchObject({ code: 0, stderr: '' });
    expect(custody(['verify', bundle, '--key', keyFile])).toMatchObject({ code: 0, stderr: '' });
    expect(custody(['verify', bundle], { env: { CUSTODY_VERIFIER_KEY: keyFile } })).toMatchObject({ code: 0, stderr: '' });
    const other = signerFromSeed('custody.example/other', new Uint8Array(32).fill(3)).verifierText;
    const r = custody(['verify', bundle, '--key', other]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('KEY_MISMATCH');
  });

  it('a --key file that does not exist: FILE_UNREADABLE naming it, nothing verified', () => {
    for (const json of [[], ['--json']]) {
      const r = custody(['verify', bundle, '--key', '/missing/file', ...json]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr.trim()).toBe('custody: cannot read the key file /missing/file (--key): no such file [FILE_UNREADABLE]');
    }
    // From the environment, the message names it; and the flag is checked before standard input is read.
    expect(custody(['verify', bundle], { env: { CUSTODY_VERIFIER_KEY: join(work, 'nope.vkey') } }).stderr).toContain(`cannot read the key file ${join(work, 'nope.vkey')} ($CUSTODY_VERIFIER_KEY): no such file [FILE_UNREADABLE]`);
    expect(custody(['verify', '-', '--key', '/missing/file'], { input: 'not even JSON' })).toMatchObject({ code: 2, stderr: expect.stringContaining('[FILE_UNREADABLE]') });
  });

  it('a --key that names a folder: FILE_UNREADABLE with the reason', () => {
    const dir = join(work, 'a-folder');
    mkdirSync(dir);
    const r = custody(['verify', bundle, '--key', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`custody: cannot read the key file ${dir} (--key): EISDIR [FILE_UNREADABLE]`);
  });

  it('a --key file that holds no verifier key: KEY_MALFORMED naming the file and why', () => {
    const cases: [string, string][] = [
      ['seed.key', 'custody-log-seed-v1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n'],
      ['empty.vkey', '\n'],
      ['other-id.vkey', vector.input.verifierKey.replace(/\+[0-9a-f]{8}\+/, '+00000000+')],
    ];
    const why = ['verifier key must be <name>+<hex key ID>+<base64 key>', "is empty; it should hold the log's verifier key", 'verifier key ID does not match its key'];
    cases.forEach(([name, text], i) => {
      const file = join(work, name);
      writeFileSync(file, text);
      const r = custody(['verify', bundle, '--key', file]);
      expect(r.code, name).toBe(2);
      expect(r.stdout, name).toBe('');
      expect(r.stderr, name).toContain(`the key file ${file} (--key)`);
      expect(r.stderr, name).toContain(why[i]);
      expect(r.stderr.trim(), name).toMatch(/\[KEY_MALFORMED\]$/);
    });
  });

  it('a --key text that is no key (and no file), or an empty --key: KEY_MALFORMED, never the bundle\'s own key', () => {
    const typo = vector.input.verifierKey.slice(0, -4);
    const r = custody(['verify', bundle, '--key', typo]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toMatch(/^custody: --key is not a verifier key: .+ \[KEY_MALFORMED\]$/);
    // `--key "$(cat missing.vkey)"`: an empty pin is a mistake, not "no pin".
    const empty = custody(['verify', bundle, '--key', '']);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('--key is empty');
    expect(empty.stderr).not.toContain('no --key given');
    // An empty variable is an unset one: the bundle's key, with the note.
    const unset = custody(['verify', bundle], { env: { CUSTODY_VERIFIER_KEY: '' } });
    expect(unset.code).toBe(0);
    expect(unset.stderr).toContain('no --key given');
  });
});

describe('custody audit --json when the audit cannot run', () => {
  it('an unreachable PostgreSQL: one JSON object with STORE_UNAVAILABLE and its message, exit 1 as without --json', () => {
    const data = join(work, 'audit-unreachable');
    mkdirSync(data);
    const logKey = `custody-log-seed-v1 ${toBase64(new Uint8Array(32).fill(9))}\n`;
    writeFileSync(join(data, 'log.key'), logKey, { mode: 0o600 });
    const args = ['audit', '--postgres', 'postgres://root@127.0.0.1:1/x', '--data', data];
    const plain = custody(args);
    expect(plain.code).toBe(1);
    expect(plain.stdout).toBe('');
    expect(plain.stderr.trim()).toMatch(/^custody: PostgreSQL is unreachable: .*ECONNREFUSED.* \[STORE_UNAVAILABLE\]$/);

    const json = custody([...args, '--json']);
    expect(json.code).toBe(plain.code);
    const out = JSON.parse(json.stdout) as { ok: boolean; error: { code: string; message: string } };
    expect(out).toEqual({ ok: false, error: { code: 'STORE_UNAVAILABLE', message: expect.stringMatching(/^PostgreSQL is unreachable: .*ECONNREFUSED/) } });
    expect(plain.stderr).toContain(out.error.message);
    expect(json.stderr.trim()).toBe(`custody: ${out.error.message} [STORE_UNAVAILABLE]`);
    // The log key is read, never rewritten, and nothing else is left in the data folder.
    expect(readFileSync(join(data, 'log.key'), 'utf8')).toBe(logKey);
    expect(readdirSync(data)).toEqual(['log.key']);
  });

  it('no log key at all (a fresh data folder): LOG_KEY_MISSING, exit 2, before the store is opened; no key is created', () => {
    const expected = (data: string) => `no log key: ${join(data, 'log.key')} does not exist and neither --log-key nor $CUSTODY_LOG_KEY is set; give the data folder \`custody up\` uses (--data), or its log key`;
    // An unreachable PostgreSQL and a folder that does not exist yet; then an empty folder with SQLite.
    const fresh = join(work, 'audit-fresh');
    const empty = join(work, 'audit-empty');
    mkdirSync(empty);
    for (const [data, store] of [[fresh, ['--postgres', 'postgres://root@127.0.0.1:1/x']], [empty, []]] as const) {
      const args = ['audit', ...store, '--data', data];
      const plain = custody(args);
      expect(plain).toEqual({ code: 2, stdout: '', stderr: `custody: ${expected(data)} [LOG_KEY_MISSING]\n` });
      const json = custody([...args, '--json']);
      expect(json.code).toBe(2);
      expect(JSON.parse(json.stdout)).toEqual({ ok: false, error: { code: 'LOG_KEY_MISSING', message: expected(data) } });
      expect(json.stderr).toBe(plain.stderr);
    }
    // Neither a key nor a store was written: the fresh folder was never created, the empty one stays empty.
    expect(existsSync(fresh)).toBe(false);
    expect(readdirSync(empty)).toEqual([]);
    // The key from $CUSTODY_LOG_KEY is enough (an empty SQLite store: nothing to audit), and is not written out either.
    const fromEnv = custody(['audit', '--data', empty], { env: { CUSTODY_LOG_KEY: toBase64(new Uint8Array(32).fill(9)) } });
    expect(fromEnv).toMatchObject({ code: 0, stdout: 'no logs to audit\n' });
    expect(existsSync(join(empty, 'log.key'))).toBe(false);
  });

  it('a --log-key that does not exist: LOG_KEY_INVALID, exit 2 as without --json', () => {
    const args = ['audit', '--data', join(work, 'audit-bad-key'), '--log-key', join(work, 'no-such.key')];
    const plain = custody(args);
    expect(plain.code).toBe(2);
    const json = custody([...args, '--json']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toEqual({ ok: false, error: { code: 'LOG_KEY_INVALID', message: `log key file ${join(work, 'no-such.key')} does not exist` } });
    expect(existsSync(join(work, 'audit-bad-key'))).toBe(false);
  });

  /** A log of a few events, appended through the real Ledger, with its seed in <data>/log.key as `custody up` writes it. */
  async function seed(data: string, store: SqliteStore | PostgresStore): Promise<void> {
    const logSeed = new Uint8Array(32).fill(11);
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'log.key'), `custody-log-seed-v1 ${toBase64(logSeed)}\n`, { mode: 0o600 });
    const ledger = await Ledger.open({ store, logSeed, originHost: 'custody.test' });
    const who = { id: '', time: new Date().toISOString(), initiator: { type: 'human' as const, id: 'alice@example.com' }, actor: { type: 'agent' as const, id: 'agent:refunds' } };
    const drafts: EventDraft[] = [
      { ...who, type: 'session.opened', session: { id: 's-1', objective: 'refund order 1234' } },
      { ...who, type: 'tool.requested', session: { id: 's-1' }, tool: { name: 'refunds.create' }, data: { arguments: { orderId: '1234' } } },
      { ...who, type: 'session.closed', session: { id: 's-1' } },
    ];
    const results = await ledger.append('default', drafts.map((d) => ({ ...d, id: uuidv7() })));
    await ledger.close();
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
  }

  it('a store that holds: the report, unchanged (SQLite)', async () => {
    const data = join(work, 'audit-sqlite');
    mkdirSync(data, { recursive: true });
    await seed(data, new SqliteStore({ path: join(data, 'ledger.db') }));
    const r = custody(['audit', '--data', data, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, tenants: [{ tenant: 'default', ok: true, entries: 3, problems: [] }] });
  });

  it.skipIf(pg.skip)('a store that holds: the report, unchanged (PostgreSQL)', async () => {
    const schema = await pg.freshSchema();
    schemas.push(schema);
    const data = join(work, 'audit-postgres');
    await seed(data, new PostgresStore({ connectionString: pg.url, schema }));
    const r = custody(['audit', '--data', data, '--postgres', pg.url, '--json'], { env: { CUSTODY_POSTGRES_SCHEMA: schema } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, tenants: [{ tenant: 'default', ok: true, entries: 3, problems: [] }] });
  });
});

describe('custody up on a store whose logs another log key signs', () => {
  it('refuses to start (CONFIG_INVALID naming the keys) and takes back the log key it just wrote; the right key starts it', async () => {
    const data = join(work, 'other-key');
    mkdirSync(data, { recursive: true });
    const ledger = await Ledger.open({ store: new SqliteStore({ path: join(data, 'ledger.db') }), logSeed: new Uint8Array(32).fill(7), originHost: 'custody.test' });
    await ledger.close();
    // No log.key in the folder (say, the data folder of another host): up would make one.
    const r = custody(['up', '--data', data, '--port', '0', '--origin-host', 'custody.test']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('[CONFIG_INVALID]');
    expect(r.stderr).toContain(`signed with another log key (public key ${toBase64(signerFromSeed('custody.test', new Uint8Array(32).fill(7)).publicKey)})`);
    expect(r.stderr).toContain('was removed again');
    expect(existsSync(join(data, 'log.key'))).toBe(false);
  });
});
