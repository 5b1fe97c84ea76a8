/**
 * Receipts: C2SP tlog-proof@v1 (https://c2sp.org/tlog-proof) texts that prove
 * one entry's inclusion against a signed checkpoint, offline.
 */
import { fromBase64, toBase64 } from './bytes.js';
import { type Checkpoint, verifyCheckpoint } from './checkpoint.js';
import { FormatError, VerificationError } from './errors.js';
import { leafHash, verifyInclusion } from './merkle.js';
import type { NoteVerifier } from './note.js';

/** The first line of every receipt. */
export const RECEIPT_HEADER = 'c2sp.org/tlog-proof@v1';

/** A parsed receipt. */
export interface Receipt {
  /** Zero-based leaf index of the entry. */
  readonly index: number;
  /** The RFC 9162 inclusion proof, the leaf's sibling first. */
  readonly proof: readonly Uint8Array[];
  /** The signed checkpoint note, verbatim. */
  readonly checkpoint: string;
  /** Opaque, unauthenticated extra data; Custody writes none. */
  readonly extra?: Uint8Array;
}

/** Writes a receipt as tlog-proof@v1 text. */
export function formatReceipt(r: Receipt): string {
  const lines = [RECEIPT_HEADER];
  if (r.extra !== undefined) lines.push(`extra ${toBase64(r.extra)}`);
  lines.push(`index ${r.index}`);
  for (const h of r.proof) lines.push(toBase64(h));
  return `${lines.join('\n')}\n\n${r.checkpoint}`;
}

/**
 * Parses tlog-proof@v1 text (attacker-controlled). The embedded checkpoint is not verified here.
 * @throws FormatError `PROOF_MALFORMED`
 */
export function parseReceipt(text: string): Receipt {
  const bad = (why: string): never => {
    throw new FormatError('PROOF_MALFORMED', `receipt is malformed: ${why}`);
  };
  const blank = text.indexOf('\n\n');
  if (blank < 0) bad('no empty line before the checkpoint');
  const head = text.slice(0, blank).split('\n');
  const checkpoint = text.slice(blank + 2);
  if (head[0] !== RECEIPT_HEADER) bad(`first line must be ${RECEIPT_HEADER}`);
  let i = 1;
  let extra: Uint8Array | undefined;
  if (head[i]?.startsWith('extra ')) {
    try {
      extra = fromBase64(head[i]!.slice(6), 'extra');
    } catch {
      bad('extra is not base64');
    }
    i++;
  }
  const m = /^index (0|[1-9][0-9]{0,15})$/.exec(head[i] ?? '');
  if (m === null || !Number.isSafeInteger(Number(m[1]))) bad('missing or invalid index line');
  const index = Number(m![1]);
  const proof: Uint8Array[] = [];
  for (const line of head.slice(i + 1)) {
    let h: Uint8Array | undefined;
    try {
      h = fromBase64(line, 'proof hash');
    } catch {
      bad(`proof line ${JSON.stringify(line.slice(0, 60))} is not base64`);
    }
    if (h!.length !== 32) bad('proof hash is not 32 bytes');
    proof.push(h!);
  }
  if (proof.length > 64) bad('proof has more than 64 hashes');
  if (checkpoint === '') bad('no checkpoint after the proof');
  return extra === undefined ? { index, proof, checkpoint } : { index, proof, checkpoint, extra };
}

/**
 * Verifies that `entry` is included in the log, by its receipt, against the log's key.
 * @returns the leaf index and the verified checkpoint
 * @throws FormatError `PROOF_MALFORMED` …; VerificationError `KEY_MISMATCH`, `SIGNATURE_INVALID`,
 *   `ORIGIN_MISMATCH` (checkpoint), `PROOF_INCLUSION_FAILED`
 */
export function verifyReceipt(
  entry: Uint8Array,
  receiptText: string,
  verifier: NoteVerifier,
): { index: number; checkpoint: Checkpoint } {
  const receipt = parseReceipt(receiptText);
  const checkpoint = verifyCheckpoint(receipt.checkpoint, verifier);
  checkInclusion(entry, receipt, checkpoint);
  return { index: receipt.index, checkpoint };
}

/**
 * Checks the inclusion proof of a parsed receipt against an already verified checkpoint.
 * @throws VerificationError `PROOF_INCLUSION_FAILED`
 */
export function checkInclusion(entry: Uint8Array, receipt: Receipt, checkpoint: Checkpoint): void {
  if (receipt.index >= checkpoint.size) {
    throw new VerificationError(
      'PROOF_INCLUSION_FAILED',
      `index ${receipt.index} is outside the checkpoint's tree of size ${checkpoint.size}`,
    );
  }
  if (!verifyInclusion(leafHash(entry), receipt.index, checkpoint.size, receipt.proof, checkpoint.rootHash)) {
    throw new VerificationError(
      'PROOF_INCLUSION_FAILED',
      `the inclusion proof does not lead from entry ${receipt.index} to the root of tree size ${checkpoint.size}`,
    );
  }
}
