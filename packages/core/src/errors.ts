/**
 * Errors raised by `@custody/core`. Each carries a stable SCREAMING_SNAKE `code`
 * with an area prefix; clients branch on `code`, never on `message`.
 * Every code is listed in docs/errors.md.
 */
export class CustodyError<C extends string = string> extends Error {
  readonly code: C;
  constructor(code: C, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Codes for malformed input: bytes or text that do not parse as the format says. */
export type FormatErrorCode =
  | 'ENCODING_INVALID'
  | 'JSON_INVALID'
  | 'JSON_NOT_CANONICAL'
  | 'ENVELOPE_INVALID'
  | 'ENTRY_MALFORMED'
  | 'NOTE_MALFORMED'
  | 'KEY_MALFORMED'
  | 'CHECKPOINT_MALFORMED'
  | 'PROOF_MALFORMED'
  | 'DISCLOSURE_MALFORMED'
  | 'BUNDLE_MALFORMED'
  | 'MERKLE_RANGE';

/** Input that does not parse. Never retried: the input itself is wrong. */
export class FormatError extends CustodyError<FormatErrorCode> {
  /** The field or line at fault, where one can be named (for example `session.seq`). */
  readonly field: string | undefined;
  constructor(code: FormatErrorCode, message: string, options?: { cause?: unknown; field?: string }) {
    super(code, message, options);
    this.field = options?.field;
  }
}

/** Codes for evidence that parses but does not verify: tampering or the wrong key. */
export type VerificationErrorCode =
  | 'SIGNATURE_INVALID'
  | 'KEY_MISMATCH'
  | 'CHECKPOINT_ALTERED'
  | 'ORIGIN_MISMATCH'
  | 'PROOF_INCLUSION_FAILED'
  | 'PROOF_CONSISTENCY_FAILED'
  | 'PROOF_CHECKPOINT_INVALID'
  | 'ENTRY_TAMPERED'
  | 'CHAIN_GAP'
  | 'CHAIN_ORDER'
  | 'CHAIN_EXTRA'
  | 'CHAIN_LINK_MISMATCH'
  | 'CHAIN_SEAL_MISMATCH'
  | 'DISCLOSURE_MISMATCH';

/** Evidence that does not verify. Never retry or swallow it: it means tampering or the wrong key. */
export class VerificationError extends CustodyError<VerificationErrorCode> {}
