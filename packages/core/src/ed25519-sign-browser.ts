/**
 * Ed25519 signing in the browser (and any non-Node runtime), through
 * `@noble/curves`. See ed25519-sign-node.ts.
 * @internal
 */
import { ed25519 } from '@noble/curves/ed25519.js';

/** The Ed25519 signature of `message` by the key with this 32-byte seed. */
export function ed25519Sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  return ed25519.sign(message, seed);
}
