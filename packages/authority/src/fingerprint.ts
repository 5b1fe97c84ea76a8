/** Token fingerprints: what the ledger and the authority keep instead of a token. */
import { sha256, toBase64url, utf8 } from '@custody/core';

/** base64url SHA-256 of a token's text (43 characters). Never store the token itself. */
export function tokenFingerprint(token: string): string {
  return toBase64url(sha256(utf8(token)));
}
