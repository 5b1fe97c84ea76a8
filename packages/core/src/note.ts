/**
 * C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 (signature type 0x01):
 * parsing, signing, verification, and verifier/signer key encodings.
 */
import { ed25519Sign } from '#ed25519-sign';
import { ed25519 } from '@noble/curves/ed25519.js';

import { concatBytes, fromBase64, toBase64, utf8 } from './bytes.js';
import { FormatError, VerificationError } from './errors.js';
import { sha256 } from './hash.js';

/** Signature type byte for Ed25519 in C2SP signed-note. */
export const ED25519_TYPE = 0x01;
/** Most signature lines accepted in one note (the spec requires at least 16). */
export const MAX_NOTE_SIGNATURES = 100;

const EM_DASH = '\u2014';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A note verifier key (vkey): `<name>+<hex key ID>+<base64(0x01 || public key)>`. */
export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  readonly publicKey: Uint8Array;
  /** The key in its text form. */
  readonly text: string;
}

/** A note signer key: keep it secret. */
export interface NoteSigner extends NoteVerifier {
  /** The 32-byte Ed25519 seed (RFC 8032 private key). */
  readonly seed: Uint8Array;
  /** `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`. */
  readonly signerText: string;
  /** The matching verifier key text. */
  readonly verifierText: string;
}

/** One signature line of a note. */
export interface NoteSignature {
  readonly name: string;
  readonly keyId: number;
  /** The signature bytes, after the 4-byte key ID. */
  readonly signature: Uint8Array;
}

/** A parsed (not yet verified) note. */
export interface Note {
  /** The signed text, including its final newline. */
  readonly text: string;
  readonly signatures: readonly NoteSignature[];
}

/** Checks a key name: non-empty, no Unicode spaces, no '+'. */
function checkKeyName(name: string, code: 'KEY_MALFORMED' | 'NOTE_MALFORMED'): void {
  if (name === '' || /[\s+]/u.test(name) || /[\u0000-\u001f]/.test(name)) {
    throw new FormatError(code, `invalid key name ${JSON.stringify(name)}: must be non-empty, with no spaces or '+'`);
  }
}

/** The key ID: first four bytes (big-endian) of SHA-256(name || 0x0A || 0x01 || public key). */
export function noteKeyId(name: string, publicKey: Uint8Array): number {
  const h = sha256(utf8(name), Uint8Array.of(0x0a, ED25519_TYPE), publicKey);
  return ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
}

function keyIdHex(id: number): string {
  return id.toString(16).padStart(8, '0');
}

function keyIdBytes(id: number): Uint8Array {
  return Uint8Array.of((id >>> 24) & 0xff, (id >>> 16) & 0xff, (id >>> 8) & 0xff, id & 0xff);
}

/**
 * Parses a verifier key (attacker-controlled when it comes from a bundle).
 * @throws FormatError `KEY_MALFORMED`
 */
export function parseVerifierKey(text: string): NoteVerifier {
  // The base64 key material may itself contain '+': split off the name and key ID only.
  const m = /^([^+]*)\+([^+]*)\+(.*)$/s.exec(text.trim());
  if (m === null) throw new FormatError('KEY_MALFORMED', 'verifier key must be <name>+<hex key ID>+<base64 key>');
  const [, name, idHex, keyB64] = m as unknown as [string, string, string, string];
  checkKeyName(name, 'KEY_MALFORMED');
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new FormatError('KEY_MALFORMED', 'verifier key ID must be 8 lowercase hex digits');
  let key: Uint8Array;
  try {
    key = fromBase64(keyB64, 'verifier key');
  } catch (cause) {
    throw new FormatError('KEY_MALFORMED', 'verifier key material is not base64', { cause });
  }
  if (key.length !== 33 || key[0] !== ED25519_TYPE) {
    throw new FormatError('KEY_MALFORMED', 'verifier key is not an Ed25519 (type 0x01) key');
  }
  const publicKey = key.slice(1);
  const keyId = noteKeyId(name, publicKey);
  if (keyIdHex(keyId) !== idHex) throw new FormatError('KEY_MALFORMED', 'verifier key ID does not match its key');
  return { name, keyId, publicKey, text: `${name}+${idHex}+${keyB64}` };
}

/** Builds the signer for `name` from a 32-byte Ed25519 seed. */
export function signerFromSeed(name: string, seed: Uint8Array): NoteSigner {
  checkKeyName(name, 'KEY_MALFORMED');
  if (seed.length !== 32) throw new FormatError('KEY_MALFORMED', 'Ed25519 seed must be 32 bytes');
  const publicKey = ed25519.getPublicKey(seed);
  const keyId = noteKeyId(name, publicKey);
  const verifierText = `${name}+${keyIdHex(keyId)}+${toBase64(concatBytes(Uint8Array.of(ED25519_TYPE), publicKey))}`;
  const signerText = `PRIVATE+KEY+${name}+${keyIdHex(keyId)}+${toBase64(concatBytes(Uint8Array.of(ED25519_TYPE), seed))}`;
  return { name, keyId, publicKey, seed: seed.slice(), text: verifierText, verifierText, signerText };
}

/**
 * Parses a signer key `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>`.
 * @throws FormatError `KEY_MALFORMED`
 */
export function parseSignerKey(text: string): NoteSigner {
  const m = /^PRIVATE\+KEY\+([^+]*)\+([^+]*)\+(.*)$/s.exec(text.trim());
  if (m === null) {
    throw new FormatError('KEY_MALFORMED', 'signer key must be PRIVATE+KEY+<name>+<hex key ID>+<base64 key>');
  }
  const [, name, idHex, keyB64] = m as unknown as [string, string, string, string];
  let key: Uint8Array;
  try {
    key = fromBase64(keyB64, 'signer key');
  } catch (cause) {
    throw new FormatError('KEY_MALFORMED', 'signer key material is not base64', { cause });
  }
  if (key.length !== 33 || key[0] !== ED25519_TYPE) {
    throw new FormatError('KEY_MALFORMED', 'signer key is not an Ed25519 (type 0x01) key');
  }
  const signer = signerFromSeed(name, key.slice(1));
  if (keyIdHex(signer.keyId) !== idHex) throw new FormatError('KEY_MALFORMED', 'signer key ID does not match its key');
  return signer;
}

/** Generates a new Ed25519 note signer named `name` (for example `custody.example/acme`). */
export function generateSigner(name: string): NoteSigner {
  return signerFromSeed(name, globalThis.crypto.getRandomValues(new Uint8Array(32)));
}

/** Checks note text: valid as note text, ends in newline, no control characters but newline. */
function checkNoteText(text: string): void {
  if (!text.endsWith('\n')) throw new FormatError('NOTE_MALFORMED', 'note text must end in a newline');
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) {
    throw new FormatError('NOTE_MALFORMED', 'note contains a control character other than newline');
  }
  // Lone surrogates cannot be encoded as UTF-8.
  if (LONE_SURROGATE.test(text)) throw new FormatError('NOTE_MALFORMED', 'note is not valid Unicode');
}

/**
 * Signs `text` (which must end in a newline) with each signer and returns the signed note.
 * @example
 * const note = signNote('custody.example/acme\n1\nAAAA…=\n', signer);
 */
export function signNote(text: string, ...signers: NoteSigner[]): string {
  checkNoteText(text);
  if (signers.length === 0) throw new FormatError('NOTE_MALFORMED', 'a note needs at least one signature');
  const message = utf8(text);
  const lines = signers.map((s) => {
    const sig = ed25519Sign(message, s.seed);
    return `${EM_DASH} ${s.name} ${toBase64(concatBytes(keyIdBytes(s.keyId), sig))}\n`;
  });
  return `${text}\n${lines.join('')}`;
}

/**
 * Parses a signed note (attacker-controlled) without verifying it.
 * @throws FormatError `NOTE_MALFORMED`
 */
export function parseNote(message: string): Note {
  checkNoteText(message);
  // The text is separated from the signatures by the last empty line.
  const split = message.lastIndexOf('\n\n');
  if (split < 0) throw new FormatError('NOTE_MALFORMED', 'note has no blank line before its signatures');
  const text = message.slice(0, split + 1);
  const sigBlock = message.slice(split + 2);
  const lines = sigBlock.split('\n');
  lines.pop(); // the block ends in a newline
  if (lines.length === 0) throw new FormatError('NOTE_MALFORMED', 'note has no signature lines');
  if (lines.length > MAX_NOTE_SIGNATURES) {
    throw new FormatError('NOTE_MALFORMED', `note has more than ${MAX_NOTE_SIGNATURES} signatures`);
  }
  const signatures = lines.map((line, i) => {
    const m = /^\u2014 (\S+) (\S+)$/u.exec(line);
    if (m === null) throw new FormatError('NOTE_MALFORMED', `signature line ${i + 1} is malformed`);
    const name = m[1]!;
    checkKeyName(name, 'NOTE_MALFORMED');
    let raw: Uint8Array;
    try {
      raw = fromBase64(m[2]!, 'signature');
    } catch (cause) {
      throw new FormatError('NOTE_MALFORMED', `signature line ${i + 1} is not base64`, { cause });
    }
    if (raw.length < 5) throw new FormatError('NOTE_MALFORMED', `signature line ${i + 1} is too short`);
    const keyId = ((raw[0]! << 24) | (raw[1]! << 16) | (raw[2]! << 8) | raw[3]!) >>> 0;
    return { name, keyId, signature: raw.slice(4) };
  });
  return { text, signatures };
}

/** The result of verifying a note. */
export interface VerifiedNote {
  readonly text: string;
  /** The known keys whose signatures verified. */
  readonly verifiedBy: readonly NoteVerifier[];
  /** Signature lines from keys not known to the verifier (ignored). */
  readonly unknownSignatures: number;
}

/**
 * Verifies a signed note against one or more known keys, per C2SP signed-note:
 * unknown signatures are ignored, a failing known signature rejects the note,
 * and at least one known signature must verify.
 * @throws FormatError `NOTE_MALFORMED`; VerificationError `KEY_MISMATCH` (no known key signed it)
 *   or `SIGNATURE_INVALID` (a known key's signature does not verify)
 */
export function verifyNote(message: string, verifiers: NoteVerifier | readonly NoteVerifier[]): VerifiedNote {
  const known = Array.isArray(verifiers) ? (verifiers as readonly NoteVerifier[]) : [verifiers as NoteVerifier];
  const note = parseNote(message);
  const bytes = utf8(note.text);
  const verifiedBy: NoteVerifier[] = [];
  let unknown = 0;
  for (const sig of note.signatures) {
    const key = known.find((k) => k.name === sig.name && k.keyId === sig.keyId);
    if (key === undefined) {
      unknown++;
      continue;
    }
    let ok = false;
    if (sig.signature.length === 64) {
      try {
        ok = ed25519.verify(sig.signature, bytes, key.publicKey, { zip215: false });
      } catch {
        ok = false;
      }
    }
    if (!ok) throw new VerificationError('SIGNATURE_INVALID', `the signature by ${key.name} does not verify`);
    if (!verifiedBy.includes(key)) verifiedBy.push(key);
  }
  if (verifiedBy.length === 0) {
    const names = known.map((k) => `${k.name}+${keyIdHex(k.keyId)}`).join(', ');
    throw new VerificationError('KEY_MISMATCH', `the note is not signed by the expected key (${names})`);
  }
  return { text: note.text, verifiedBy, unknownSignatures: unknown };
}

/** Hex of a key ID, as in verifier keys. @internal */
export function formatKeyId(id: number): string {
  return keyIdHex(id);
}
