/**
 * Session completeness: the per-session hash chain and the seal.
 * See docs/format.md, "Session completeness".
 */
import type { Envelope } from './envelope.js';
import type { VerificationErrorCode } from './errors.js';

/** One entry of a session, as the chain check sees it. */
export interface ChainEntry {
  envelope: Envelope;
  /** Entry digest (base64url leaf hash) of the entry bytes as held. */
  digest: string;
  /** Leaf index in the log, when known. */
  index?: number;
  /** Position of the record in its bundle, for reports. */
  record: number;
}

/** A chain failure, naming the record at fault. */
export interface ChainFailure {
  code: Extract<VerificationErrorCode, `CHAIN_${string}`>;
  message: string;
  record?: number;
}

/** The verdict on one session's chain. */
export interface ChainReport {
  session: string;
  ok: boolean;
  /** True when the chain ends in a valid seal (`session.closed`). */
  sealed: boolean;
  entries: number;
  failures: ChainFailure[];
  /**
   * The digest the chain itself commits to for each seq (from the next entry's `prev`
   * or the seal's `head`). Lets a verifier tell a tampered entry from a bad proof.
   */
  committed: Map<number, string>;
}

/**
 * Checks the hash chain of one session's entries, given in the order held
 * (bundle order, which must be session order).
 */
export function verifySessionChain(sessionId: string, entries: readonly ChainEntry[]): ChainReport {
  const failures: ChainFailure[] = [];
  const committed = new Map<number, string>();
  const bySeq = new Map<number, ChainEntry>();

  // Order and duplicates, as held.
  let last = 0;
  for (const e of entries) {
    const seq = e.envelope.session!.seq;
    if (bySeq.has(seq)) {
      failures.push({ code: 'CHAIN_EXTRA', record: e.record, message: `a second entry claims seq ${seq} of session ${sessionId}` });
      continue;
    }
    bySeq.set(seq, e);
    if (seq < last) {
      failures.push({ code: 'CHAIN_ORDER', record: e.record, message: `seq ${seq} comes after seq ${last}: entries are out of order` });
    }
    last = Math.max(last, seq);
  }

  const sorted = [...bySeq.values()].sort((a, b) => a.envelope.session!.seq - b.envelope.session!.seq);
  let seal: ChainEntry | undefined;
  let expected = 1;
  let prevEntry: ChainEntry | undefined;
  for (const e of sorted) {
    const ref = e.envelope.session!;
    if (ref.prev !== null) committed.set(ref.seq - 1, ref.prev);
    if (seal !== undefined) {
      failures.push({ code: 'CHAIN_EXTRA', record: e.record, message: `seq ${ref.seq} follows the seal at seq ${seal.envelope.session!.seq}` });
      continue;
    }
    if (ref.seq > expected) {
      const missing = ref.seq - expected === 1 ? `seq ${expected} is` : `seqs ${expected}-${ref.seq - 1} are`;
      failures.push({ code: 'CHAIN_GAP', record: e.record, message: `${missing} missing before seq ${ref.seq}` });
    } else if (prevEntry !== undefined && ref.prev !== prevEntry.digest) {
      failures.push({
        code: 'CHAIN_LINK_MISMATCH',
        record: e.record,
        message: `seq ${ref.seq} does not link to the entry held for seq ${ref.seq - 1}`,
      });
    }
    if (prevEntry?.index !== undefined && e.index !== undefined && e.index <= prevEntry.index) {
      failures.push({
        code: 'CHAIN_ORDER',
        record: e.record,
        message: `seq ${ref.seq} is at log index ${e.index}, not after seq ${prevEntry.envelope.session!.seq} at ${prevEntry.index}`,
      });
    }
    if (e.envelope.type === 'session.closed') {
      seal = e;
      const s = e.envelope.seal!;
      committed.set(ref.seq - 1, s.head);
      if (s.count !== ref.seq || s.head !== ref.prev) {
        failures.push({
          code: 'CHAIN_SEAL_MISMATCH',
          record: e.record,
          message: `the seal commits to ${s.count} entries ending in ${s.head}, but it stands at seq ${ref.seq} after ${String(ref.prev)}`,
        });
      }
    }
    expected = ref.seq + 1;
    prevEntry = e;
  }
  return { session: sessionId, ok: failures.length === 0, sealed: seal !== undefined, entries: entries.length, failures, committed };
}
