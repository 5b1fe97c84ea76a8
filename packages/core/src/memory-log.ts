/**
 * A complete Custody log held in memory: sealing, session chains, the Merkle
 * tree from stored nodes, signed checkpoints, receipts and bundles. The ledger
 * persists the same steps in a store; this one serves demos, tests and vectors.
 */
import { toBase64 } from './bytes.js';
import { signCheckpoint } from './checkpoint.js';
import { type Bundle, createBundle } from './bundle.js';
import { type EventDraft, type SealedEvent, sealEvent } from './entry.js';
import type { RandomBytes } from './commitment.js';
import { FormatError } from './errors.js';
import {
  consistencyProofFromNodes,
  inclusionProofFromNodes,
  MerkleFrontier,
  type NodeId,
  nodeKey,
  rootFromNodes,
} from './merkle.js';
import type { NoteSigner } from './note.js';
import { formatReceipt } from './receipt.js';

/** One appended event with where it landed. */
export interface LoggedEvent extends SealedEvent {
  index: number;
}

/** Options for an in-memory log. */
export interface MemoryLogOptions {
  tenant: string;
  /** The log's signer; its name is the log's origin. */
  signer: NoteSigner;
  /** Clock for `recordedAt`; defaults to the system clock. */
  now?: () => Date;
  random?: RandomBytes;
  sensitivePaths?: readonly string[];
}

/**
 * An append-only log in memory.
 * @example
 * const log = new MemoryLog({ tenant: 'acme', signer: generateSigner('custody.example/acme') });
 * log.append({ id, type: 'session.opened', time, session: { id: 's1' }, initiator, actor });
 * const bundle = log.bundle('s1');
 */
export class MemoryLog {
  readonly #opts: MemoryLogOptions;
  readonly #frontier = new MerkleFrontier();
  readonly #nodes = new Map<string, Uint8Array>();
  readonly #events: LoggedEvent[] = [];
  readonly #sessions = new Map<string, { seq: number; head: string; indexes: number[] }>();
  readonly #checkpoints = new Map<number, string>();

  constructor(opts: MemoryLogOptions) {
    this.#opts = opts;
  }

  /** Number of entries. */
  get size(): number {
    return this.#frontier.size;
  }

  /** Every event appended, in log order. */
  get events(): readonly LoggedEvent[] {
    return this.#events;
  }

  /** Seals and appends one event, assigning its session `seq` and `prev`. */
  append(draft: EventDraft): LoggedEvent {
    const sessionId = draft.session?.id;
    const state = sessionId === undefined ? undefined : this.#sessions.get(sessionId);
    const sealed = sealEvent(draft, {
      tenant: this.#opts.tenant,
      recordedAt: (this.#opts.now?.() ?? new Date()).toISOString(),
      ...(sessionId !== undefined ? { seq: (state?.seq ?? 0) + 1, prev: state?.head ?? null } : {}),
      ...(this.#opts.random ? { random: this.#opts.random } : {}),
      ...(this.#opts.sensitivePaths ? { sensitivePaths: this.#opts.sensitivePaths } : {}),
    });
    const index = this.#frontier.size;
    for (const node of this.#frontier.append(sealed.leafHash)) this.#nodes.set(nodeKey(node), node.hash);
    const logged = { ...sealed, index };
    this.#events.push(logged);
    if (sessionId !== undefined) {
      const indexes = state?.indexes ?? [];
      indexes.push(index);
      this.#sessions.set(sessionId, { seq: sealed.envelope.session!.seq, head: sealed.digest, indexes });
    }
    return logged;
  }

  /** The session's next `seq` and current head digest (for building a seal). */
  sessionHead(sessionId: string): { seq: number; head: string } | undefined {
    const s = this.#sessions.get(sessionId);
    return s && { seq: s.seq, head: s.head };
  }

  #lookup = (id: NodeId): Uint8Array => {
    const h = this.#nodes.get(nodeKey(id));
    if (h === undefined) throw new FormatError('MERKLE_RANGE', `no stored node ${nodeKey(id)}`);
    return h;
  };

  /** The signed checkpoint at `size` (default: the current size). */
  checkpoint(size = this.size): string {
    if (size > this.size) throw new FormatError('MERKLE_RANGE', `the log has only ${this.size} entries`);
    let note = this.#checkpoints.get(size);
    if (note === undefined) {
      note = signCheckpoint(
        { origin: this.#opts.signer.name, size, rootHash: rootFromNodes(size, this.#lookup), extensions: [] },
        this.#opts.signer,
      );
      this.#checkpoints.set(size, note);
    }
    return note;
  }

  /** The receipt for entry `index` against the checkpoint at `size`. */
  receipt(index: number, size = this.size): string {
    return formatReceipt({ index, proof: inclusionProofFromNodes(index, size, this.#lookup), checkpoint: this.checkpoint(size) });
  }

  /** The consistency proof between two sizes, as base64 hashes. */
  consistency(from: number, to = this.size): string[] {
    return consistencyProofFromNodes(from, to, this.#lookup).map(toBase64);
  }

  /** A `custody.bundle/v1` bundle for one session, against the current checkpoint. */
  bundle(sessionId: string, opts: { disclosures?: boolean } = {}): Bundle {
    const s = this.#sessions.get(sessionId);
    if (s === undefined) throw new FormatError('BUNDLE_MALFORMED', `no session ${sessionId}`);
    const size = this.size;
    return createBundle({
      session: sessionId,
      verifierKey: this.#opts.signer.verifierText,
      checkpoint: this.checkpoint(size),
      records: s.indexes.map((i) => {
        const e = this.#events[i]!;
        return {
          entry: toBase64(e.entry),
          proof: this.receipt(i, size),
          ...(opts.disclosures !== false && e.disclosures.length > 0 ? { disclosures: e.disclosures } : {}),
        };
      }),
    });
  }
}
