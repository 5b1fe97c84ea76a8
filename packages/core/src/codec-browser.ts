/**
 * base64 encoding in the browser (and any non-Node runtime), through
 * `@scure/base`. See codec-node.ts.
 * @internal
 */
import { base64, base64urlnopad } from '@scure/base';

/** Standard base64 with padding. */
export function base64Encode(bytes: Uint8Array): string {
  return base64.encode(bytes);
}

/** Unpadded base64url. */
export function base64urlEncode(bytes: Uint8Array): string {
  return base64urlnopad.encode(bytes);
}
