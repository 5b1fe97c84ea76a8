/**
 * The session credential signing key: Ed25519, kept as a 32-byte seed in a file
 * (`<data>/session.key`, mode 0600, generated on first start) or given by config.
 * Its public half is published at /.well-known/jwks.json under its RFC 7638
 * thumbprint as `kid`.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

import { fromBase64, sha256, toBase64, toBase64url, utf8 } from '@custody/core';

import { AuthorityError } from './errors.js';

/** The first word of a session key file. */
export const SESSION_KEY_HEADER = 'custody-session-key-v1';

/** An Ed25519 public key as a JWK, as /.well-known/jwks.json publishes it. */
export interface PublicJwk {
  kty: 'OKP';
  crv: 'Ed25519';
  x: string;
  kid: string;
  alg: 'EdDSA';
  use: 'sig';
}

/** The signing key of session credentials. */
export interface SigningKey {
  /** RFC 7638 JWK thumbprint of the public key (base64url SHA-256). */
  kid: string;
  privateKey: KeyObject;
  publicJwk: PublicJwk;
}

// PKCS#8 DER prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

/** The signing key of a 32-byte Ed25519 seed. */
export function signingKeyFromSeed(seed: Uint8Array): SigningKey {
  if (seed.length !== 32) throw new AuthorityError('AUTHORITY_KEY_INVALID', 'the session key must be a 32-byte Ed25519 seed');
  const der = new Uint8Array(PKCS8_PREFIX.length + 32);
  der.set(PKCS8_PREFIX);
  der.set(seed, PKCS8_PREFIX.length);
  const privateKey = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  const x = createPublicKey(privateKey).export({ format: 'jwk' }).x as string;
  // RFC 7638 §3.2: the thumbprint hashes the required members in lexicographic order, no spaces.
  const kid = toBase64url(sha256(utf8(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`)));
  return { kid, privateKey, publicJwk: { kty: 'OKP', crv: 'Ed25519', x, kid, alg: 'EdDSA', use: 'sig' } };
}

function parseSeed(text: string, where: string): Uint8Array {
  const t = text.trim();
  const b64 = t.startsWith(SESSION_KEY_HEADER) ? t.slice(SESSION_KEY_HEADER.length).trim() : t;
  let seed: Uint8Array;
  try {
    seed = fromBase64(b64);
  } catch (err) {
    throw new AuthorityError('AUTHORITY_KEY_INVALID', `${where} does not hold a session key (expected "${SESSION_KEY_HEADER} <base64 of 32 bytes>")`, { cause: err });
  }
  if (seed.length !== 32) throw new AuthorityError('AUTHORITY_KEY_INVALID', `${where}: the session key must be 32 bytes`);
  return seed;
}

/**
 * Loads the signing key from `path`, generating it (mode 0600) when the file does
 * not exist and `create` is true.
 * @throws AuthorityError `AUTHORITY_KEY_INVALID` for a file that holds no key, or a missing file without `create`
 */
export function loadSigningKey(path: string, opts: { create?: boolean } = {}): { key: SigningKey; created: boolean } {
  if (existsSync(path)) return { key: signingKeyFromSeed(parseSeed(readFileSync(path, 'utf8'), path)), created: false };
  if (opts.create !== true) throw new AuthorityError('AUTHORITY_KEY_INVALID', `session key file ${path} does not exist`);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const seed = globalThis.crypto.getRandomValues(new Uint8Array(32));
  writeFileSync(path, `${SESSION_KEY_HEADER} ${toBase64(seed)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return { key: signingKeyFromSeed(seed), created: true };
}

/** The signing key from the text of a key file or environment variable (`custody-session-key-v1 <base64>`). */
export function signingKeyFromText(text: string, where: string): SigningKey {
  return signingKeyFromSeed(parseSeed(text, where));
}
