/**
 * C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint) bodies, signed as
 * C2SP signed notes.
 */
import { fromBase64, toBase64 } from './bytes.js';
import { FormatError, VerificationError } from './errors.js';
import { type NoteSigner, type NoteVerifier, signNote, verifyNote } from './note.js';

/** A checkpoint: the log's origin, tree size and root hash. */
export interface Checkpoint {
  readonly origin: string;
  readonly size: number;
  readonly rootHash: Uint8Array;
  /** Extension lines; Custody writes none. */
  readonly extensions: readonly string[];
}

/** The checkpoint's note text: origin, size and base64 root hash, one per line. */
export function formatCheckpoint(cp: Checkpoint): string {
  if (cp.origin === '' || /[\n]/.test(cp.origin)) throw new FormatError('CHECKPOINT_MALFORMED', 'origin must be one non-empty line');
  if (!Number.isSafeInteger(cp.size) || cp.size < 0) throw new FormatError('CHECKPOINT_MALFORMED', 'size must be a non-negative integer');
  if (cp.rootHash.length !== 32) throw new FormatError('CHECKPOINT_MALFORMED', 'root hash must be 32 bytes');
  for (const ext of cp.extensions) {
    if (ext === '' || ext.includes('\n')) throw new FormatError('CHECKPOINT_MALFORMED', 'extension lines must be non-empty single lines');
  }
  return [cp.origin, String(cp.size), toBase64(cp.rootHash), ...cp.extensions].join('\n') + '\n';
}

/**
 * Parses checkpoint note text (attacker-controlled; the signature is checked elsewhere).
 * @throws FormatError `CHECKPOINT_MALFORMED`
 */
export function parseCheckpoint(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw new FormatError('CHECKPOINT_MALFORMED', 'checkpoint text must end in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw new FormatError('CHECKPOINT_MALFORMED', 'checkpoint needs origin, size and root hash lines');
  const [origin, sizeText, rootText, ...extensions] = lines as [string, string, string, ...string[]];
  if (origin === '') throw new FormatError('CHECKPOINT_MALFORMED', 'checkpoint origin is empty');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
    throw new FormatError('CHECKPOINT_MALFORMED', 'checkpoint size is not a decimal integer without leading zeros');
  }
  let rootHash: Uint8Array;
  try {
    rootHash = fromBase64(rootText, 'root hash');
  } catch (cause) {
    throw new FormatError('CHECKPOINT_MALFORMED', 'checkpoint root hash is not base64', { cause });
  }
  if (rootHash.length !== 32) throw new FormatError('CHECKPOINT_MALFORMED', 'checkpoint root hash is not 32 bytes');
  if (extensions.some((e) => e === '')) throw new FormatError('CHECKPOINT_MALFORMED', 'checkpoint has an empty extension line');
  return { origin, size: Number(sizeText), rootHash, extensions };
}

/** Signs a checkpoint; returns the signed note. The signer's name should equal the origin. */
export function signCheckpoint(cp: Checkpoint, signer: NoteSigner): string {
  return signNote(formatCheckpoint(cp), signer);
}

/**
 * Verifies a signed checkpoint against the log's key and parses it.
 * The origin must equal the key name (Custody logs are named by their origin).
 * @throws FormatError `NOTE_MALFORMED`, `CHECKPOINT_MALFORMED`;
 *   VerificationError `KEY_MISMATCH`, `SIGNATURE_INVALID`, `ORIGIN_MISMATCH`
 */
export function verifyCheckpoint(note: string, verifier: NoteVerifier): Checkpoint {
  const { text } = verifyNote(note, verifier);
  const cp = parseCheckpoint(text);
  if (cp.origin !== verifier.name) {
    throw new VerificationError('ORIGIN_MISMATCH', `checkpoint origin ${cp.origin} is not the key's log ${verifier.name}`);
  }
  return cp;
}
