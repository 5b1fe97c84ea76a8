/**
 * How every `custody` command that talks to a server connects: one place that
 * resolves the server URL and API key, and one way to call the API.
 *
 * Each setting is taken from the first of:
 * 1. the flag (`--url`, `--api-key`);
 * 2. the profile named by `--profile` (or `$CUSTODY_PROFILE`), when one is named;
 * 3. the environment (`CUSTODY_URL`, `CUSTODY_API_KEY`);
 * 4. the profile `default` of the profile file, when the file has one;
 * 5. the local deployment: `http://127.0.0.1:8470` and `<data>/admin.key`
 *    (`--data`, `$CUSTODY_DATA`, else `./.custody`), as `custody up` writes them.
 *
 * The profile file is `$CUSTODY_CONFIG`, else `$XDG_CONFIG_HOME/custody/profiles.json`,
 * else `~/.config/custody/profiles.json`: a JSON object of named profiles, each
 * `{ "url"?, "apiKey"?, "apiKeyFile"? }` (see docs/cli.md).
 *
 * @example
 * // In a command's action (commander options with --url/--api-key/--profile/--data):
 * const conn = resolveConnection(opts);
 * const sessions = await apiJson<{ sessions: unknown[] }>(conn, '/v1/sessions?limit=10');
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';

import type { Command } from 'commander';

import { CliError } from './output.js';

/** Default API port of `custody up`. */
export const DEFAULT_PORT = 8470;
/** Default server URL. */
export const DEFAULT_URL = `http://127.0.0.1:${DEFAULT_PORT}`;

/** The connection flags a command accepts (see {@link addConnectionOptions}). */
export interface ConnectionOptions {
  url?: string;
  apiKey?: string;
  profile?: string;
  /** Data folder whose admin.key is the last resort. */
  data?: string;
}

/** A resolved connection. */
export interface Connection {
  /** Server URL without a trailing slash. */
  url: string;
  apiKey: string;
  /** Where each setting came from (for `--verbose` style messages and tests). */
  from: { url: string; apiKey: string };
  /** The profile used, if any. */
  profile?: string;
}

/** One profile of the profile file. */
export interface Profile {
  url?: string;
  apiKey?: string;
  /** A file holding the API key (relative paths are relative to the profile file). */
  apiKeyFile?: string;
}

/** The profile file: `$CUSTODY_CONFIG`, else `$XDG_CONFIG_HOME/custody/profiles.json`, else `~/.config/custody/profiles.json`. */
export function profilesPath(): string {
  const explicit = process.env['CUSTODY_CONFIG'];
  if (explicit !== undefined && explicit !== '') return resolve(explicit);
  const xdg = process.env['XDG_CONFIG_HOME'];
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.config'), 'custody', 'profiles.json');
}

/**
 * Reads the profile file (client-controlled): undefined when it does not exist.
 * @throws CliError `PROFILE_INVALID` when it is not a JSON object of profiles
 */
export function readProfiles(path = profilesPath()): Record<string, Profile> | undefined {
  if (!existsSync(path)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new CliError('PROFILE_INVALID', `the profile file ${path} is not JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new CliError('PROFILE_INVALID', `the profile file ${path} must be a JSON object of profiles, e.g. { "default": { "url": "…", "apiKey": "…" } }`);
  }
  const out: Record<string, Profile> = {};
  for (const [name, p] of Object.entries(parsed as Record<string, unknown>)) {
    if (p === null || typeof p !== 'object' || Array.isArray(p)) throw new CliError('PROFILE_INVALID', `profile ${name} in ${path} must be an object`);
    const prof: Profile = {};
    for (const k of ['url', 'apiKey', 'apiKeyFile'] as const) {
      const v = (p as Record<string, unknown>)[k];
      if (v === undefined) continue;
      if (typeof v !== 'string' || v === '') throw new CliError('PROFILE_INVALID', `profile ${name} in ${path}: ${k} must be a non-empty string`);
      prof[k] = k === 'apiKeyFile' && !isAbsolute(v) ? resolve(dirname(path), v) : v;
    }
    out[name] = prof;
  }
  return out;
}

function keyFromFile(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new CliError('FILE_UNREADABLE', `cannot read the API key file ${path} (${what}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (text === '') throw new CliError('API_KEY_MISSING', `the API key file ${path} (${what}) is empty`);
  return text;
}

/**
 * Resolves the server URL and API key (order in the module comment).
 * @throws CliError `PROFILE_NOT_FOUND`, `PROFILE_INVALID`, `URL_INVALID`, `API_KEY_MISSING` (exit 2)
 */
export function resolveConnection(opts: ConnectionOptions): Connection {
  const env = (k: string) => {
    const v = process.env[k];
    return v === undefined || v === '' ? undefined : v;
  };
  const path = profilesPath();
  const named = opts.profile ?? env('CUSTODY_PROFILE');
  const profiles = named !== undefined || existsSync(path) ? readProfiles(path) : undefined;
  let explicit: Profile | undefined;
  if (named !== undefined) {
    explicit = profiles?.[named];
    if (explicit === undefined) {
      const known = Object.keys(profiles ?? {});
      throw new CliError(
        'PROFILE_NOT_FOUND',
        `no profile ${named} in ${path}${known.length > 0 ? ` (it has ${known.join(', ')})` : profiles === undefined ? ' (the file does not exist)' : ''}`,
      );
    }
  }
  const fallback = named === undefined ? profiles?.['default'] : undefined;
  const profileName = named ?? (fallback !== undefined ? 'default' : undefined);

  let url: string;
  let urlFrom: string;
  if (opts.url !== undefined) [url, urlFrom] = [opts.url, '--url'];
  else if (explicit?.url !== undefined) [url, urlFrom] = [explicit.url, `profile ${named}`];
  else if (env('CUSTODY_URL') !== undefined) [url, urlFrom] = [env('CUSTODY_URL')!, 'CUSTODY_URL'];
  else if (fallback?.url !== undefined) [url, urlFrom] = [fallback.url, 'profile default'];
  else [url, urlFrom] = [DEFAULT_URL, 'default'];
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError('URL_INVALID', `the server URL ${JSON.stringify(url)} (from ${urlFrom}) is not a URL; expected e.g. ${DEFAULT_URL}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new CliError('URL_INVALID', `the server URL ${url} (from ${urlFrom}) must be http:// or https://`);
  }

  let apiKey: string | undefined;
  let keyFrom = '';
  const fromProfile = (p: Profile | undefined, label: string) => {
    if (p?.apiKey !== undefined) return { key: p.apiKey, from: label };
    if (p?.apiKeyFile !== undefined) return { key: keyFromFile(p.apiKeyFile, label), from: `${label} (${p.apiKeyFile})` };
    return undefined;
  };
  const chosen =
    (opts.apiKey !== undefined && opts.apiKey !== '' ? { key: opts.apiKey, from: '--api-key' } : undefined) ??
    fromProfile(explicit, `profile ${named}`) ??
    (env('CUSTODY_API_KEY') !== undefined ? { key: env('CUSTODY_API_KEY')!, from: 'CUSTODY_API_KEY' } : undefined) ??
    fromProfile(fallback, 'profile default');
  if (chosen !== undefined) {
    apiKey = chosen.key;
    keyFrom = chosen.from;
  } else {
    const local = join(resolve(opts.data ?? env('CUSTODY_DATA') ?? '.custody'), 'admin.key');
    if (existsSync(local)) {
      apiKey = keyFromFile(local, 'the data folder');
      keyFrom = local;
    }
  }
  if (apiKey === undefined) {
    throw new CliError('API_KEY_MISSING', 'no API key: pass --api-key, set CUSTODY_API_KEY, use --profile, or run where .custody/admin.key exists');
  }
  return { url: url.replace(/\/+$/, ''), apiKey, from: { url: urlFrom, apiKey: keyFrom }, ...(profileName !== undefined ? { profile: profileName } : {}) };
}

/**
 * Calls the API; turns HTTP errors into CliErrors naming the server's error code
 * (exit 1), and an unreachable server into `SERVER_UNREACHABLE`.
 */
export async function apiFetch(conn: Pick<Connection, 'url' | 'apiKey'>, path: string, init: RequestInit = {}): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(`${conn.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${conn.apiKey}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...init.headers },
    });
  } catch (err) {
    const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message;
    throw new CliError('SERVER_UNREACHABLE', `cannot reach ${conn.url}: ${cause}. Is \`custody up\` running?`);
  }
  if (!res.ok) {
    let code = `HTTP_${res.status}`;
    let message = res.statusText;
    try {
      const body = (await res.json()) as { error?: { code?: string; message?: string } };
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {
      // not JSON
    }
    throw new CliError(code, `${message} (HTTP ${res.status})`, 1);
  }
  return res;
}

/** Calls the API and parses its JSON answer. */
export async function apiJson<T>(conn: Pick<Connection, 'url' | 'apiKey'>, path: string, init: RequestInit = {}): Promise<T> {
  const res = await apiFetch(conn, path, init);
  try {
    return (await res.json()) as T;
  } catch {
    throw new CliError('RESPONSE_INVALID', `${conn.url}${path} did not answer JSON`, 1);
  }
}

/** A query string from defined values (`?a=1&b=x`), or '' when none. */
export function queryString(params: Record<string, string | number | boolean | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v));
  const s = q.toString();
  return s === '' ? '' : `?${s}`;
}

/** Adds the connection flags (`--url`, `--api-key`, `--profile`, `-d/--data`) to a command. */
export function addConnectionOptions(cmd: Command, role = 'read'): Command {
  return cmd
    .option('--url <url>', `server URL (default: profile, $CUSTODY_URL, else ${DEFAULT_URL})`)
    .option('--api-key <key>', `API key with ${role} access (default: profile, $CUSTODY_API_KEY, else <data>/admin.key)`)
    .option('--profile <name>', 'a profile of the profile file ($CUSTODY_CONFIG or ~/.config/custody/profiles.json; default: $CUSTODY_PROFILE, else "default")')
    .option('-d, --data <dir>', 'data folder whose admin.key is the last resort (default: $CUSTODY_DATA or ./.custody)');
}
