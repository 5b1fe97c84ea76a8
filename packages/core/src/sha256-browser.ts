/**
 * SHA-256 in the browser (and any non-Node runtime), through `@noble/hashes`:
 * synchronous, so the Merkle API stays synchronous everywhere.
 * @internal
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}
