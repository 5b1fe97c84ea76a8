/**
 * The one SHA-256 every Custody format uses. The implementation is picked per
 * runtime by the `#sha256` subpath import (node:crypto on Node, @noble/hashes
 * elsewhere); both are checked against the same vectors.
 */
import { sha256 as sha256Impl } from '#sha256';

import { concatBytes } from './bytes.js';

/** SHA-256 of the concatenation of `parts`. */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  return sha256Impl(parts.length === 1 ? parts[0]! : concatBytes(...parts));
}
