/**
 * The verifier key a command pins (`custody verify --key`, `custody show --key`): the key
 * text itself, or the path of a file that holds it.
 */
import { readFileSync } from 'node:fs';

import { FormatError, parseVerifierKey } from '@custody/core';

import { CliError } from './output.js';

/**
 * The pinned key: --key, else the environment variable `env` names (if any), as the
 * key itself or as the path of a file that holds it; undefined when neither is given. A
 * value that is neither (a file that is missing or unreadable, or text that is not a
 * verifier key) is a usage error, exit 2, like any unusable flag: FILE_UNREADABLE or
 * KEY_MALFORMED. It says nothing about what the key would check, and a caller never falls
 * back to another key (the bundle's, the server's) for it.
 */
export function resolveVerifierKey(flag: string | undefined, opts: { env?: string } = {}): string | undefined {
  const from = flag !== undefined ? '--key' : `$${String(opts.env)}`;
  const value = flag ?? (opts.env !== undefined ? process.env[opts.env] : undefined);
  // An empty variable is an unset one; an empty --key (say, `--key "$(cat missing.vkey)"`) is a mistake.
  if (value === undefined || (value === '' && flag === undefined)) return undefined;
  const text = value.trim();
  if (text === '') throw new CliError('KEY_MALFORMED', `${from} is empty: give the log's verifier key (<name>+<key ID>+<base64>) or a file holding it`);
  const notKey = whyNotKey(text);
  if (notKey === undefined) return text;
  let file: string;
  try {
    file = readFileSync(value, 'utf8').trim();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Text shaped like a key (name+id+key) that is no file is a mistyped key, not a missing file.
    if ((code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG') && text.includes('+')) throw new CliError('KEY_MALFORMED', `${from} is not a verifier key: ${notKey}`);
    throw new CliError('FILE_UNREADABLE', `cannot read the key file ${value} (${from}): ${code === 'ENOENT' ? 'no such file' : (code ?? (err as Error).message)}`);
  }
  if (file === '') throw new CliError('KEY_MALFORMED', `the key file ${value} (${from}) is empty; it should hold the log's verifier key`);
  const problem = whyNotKey(file);
  if (problem !== undefined) throw new CliError('KEY_MALFORMED', `the key file ${value} (${from}) does not hold a verifier key: ${problem}`);
  return file;
}

/** Undefined when `text` is a verifier key, else why it is not. */
function whyNotKey(text: string): string | undefined {
  try {
    parseVerifierKey(text);
    return undefined;
  } catch (err) {
    if (err instanceof FormatError) return err.message;
    throw err;
  }
}
