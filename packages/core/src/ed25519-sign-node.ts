/**
 * Ed25519 signing on Node, through `node:crypto` (OpenSSL): a few times the rate
 * of a pure-JS implementation, which matters because the ledger signs a checkpoint
 * for every committed batch. RFC 8032 signatures are deterministic, so the bytes
 * are the same as the browser implementation's; tests check both. Verification
 * stays on @noble/curves everywhere. Selected by the `node` condition of the
 * `#ed25519-sign` import; see ed25519-sign-browser.ts.
 * @internal
 */
import { createPrivateKey, type KeyObject, sign } from 'node:crypto';

/** PKCS #8 DER prefix of an Ed25519 private key (RFC 8410), before the 32-byte seed. */
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

const keys = new WeakMap<Uint8Array, KeyObject>();

/** The Ed25519 signature of `message` by the key with this 32-byte seed. */
export function ed25519Sign(message: Uint8Array, seed: Uint8Array): Uint8Array {
  let key = keys.get(seed);
  if (key === undefined) {
    const der = new Uint8Array(PKCS8_PREFIX.length + 32);
    der.set(PKCS8_PREFIX);
    der.set(seed, PKCS8_PREFIX.length);
    key = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
    keys.set(seed, key);
  }
  const sig = sign(null, message, key);
  return new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength);
}
