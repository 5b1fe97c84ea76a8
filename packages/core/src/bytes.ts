/**
 * Byte and text encodings used by Custody's formats. Decoders are strict: they
 * reject padding errors, stray characters and non-canonical encodings, because
 * their input is attacker-controlled.
 */
import { base64, base64urlnopad, hex as hexCodec } from '@scure/base';

import { base64Encode, base64urlEncode } from '#codec';

import { FormatError } from './errors.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes UTF-8, rejecting invalid sequences. */
export function fromUtf8(bytes: Uint8Array, what = 'text'): string {
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    throw new FormatError('ENCODING_INVALID', `${what} is not valid UTF-8`, { cause });
  }
}

/** Standard base64 (RFC 4648 §4) with padding, as C2SP formats use. */
export function toBase64(bytes: Uint8Array): string {
  return base64Encode(bytes);
}

/** Decodes standard padded base64; rejects anything else. */
export function fromBase64(text: string, what = 'value'): Uint8Array {
  try {
    return base64.decode(text);
  } catch (cause) {
    throw new FormatError('ENCODING_INVALID', `${what} is not valid base64`, { cause });
  }
}

/** Unpadded base64url (RFC 4648 §5), as SD-JWT and Custody's envelope digests use. */
export function toBase64url(bytes: Uint8Array): string {
  return base64urlEncode(bytes);
}

/** Decodes unpadded base64url; rejects padding and non-alphabet characters. */
export function fromBase64url(text: string, what = 'value'): Uint8Array {
  try {
    return base64urlnopad.decode(text);
  } catch (cause) {
    throw new FormatError('ENCODING_INVALID', `${what} is not valid unpadded base64url`, { cause });
  }
}

/** Lowercase hex. */
export function toHex(bytes: Uint8Array): string {
  return hexCodec.encode(bytes);
}

/** Decodes hex (either case). */
export function fromHex(text: string, what = 'value'): Uint8Array {
  try {
    return hexCodec.decode(text.toLowerCase());
  } catch (cause) {
    throw new FormatError('ENCODING_INVALID', `${what} is not valid hex`, { cause });
  }
}

/** Concatenates byte arrays. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Constant-length comparison of two byte arrays (not secret-safe timing; for hashes). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
