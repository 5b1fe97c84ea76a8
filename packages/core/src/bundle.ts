/**
 * Evidence bundles (`custody.bundle/v1`): the offline evidence for a session,
 * and `verifyBundle`, which checks it with no trust in the server that made it.
 * See docs/format.md, "Evidence bundle".
 */
import * as z from 'zod';

import { fromBase64, toBase64 } from './bytes.js';
import { type Checkpoint, parseCheckpoint, verifyCheckpoint } from './checkpoint.js';
import { checkDisclosures } from './commitment.js';
import { decodeEntry, decodeEntryBase64, entryDigest } from './entry.js';
import type { Envelope } from './envelope.js';
import { CustodyError } from './errors.js';
import { verifyConsistency } from './merkle.js';
import { type NoteVerifier, parseNote, parseVerifierKey, verifyNote } from './note.js';
import { checkInclusion, parseReceipt, type Receipt } from './receipt.js';
import { type ChainEntry, verifySessionChain } from './session-chain.js';

/** The format string of version 1 bundles. */
export const BUNDLE_FORMAT = 'custody.bundle/v1';

/** One entry of a bundle with its receipt and the disclosures still held. */
export interface BundleRecord {
  /** base64 of the exact entry bytes. */
  entry: string;
  /** The entry's receipt, tlog-proof@v1 text. */
  proof: string;
  /** Disclosures for the entry's commitments; missing ones are redacted fields. */
  disclosures?: string[];
}

/** A `custody.bundle/v1` evidence bundle. */
export interface Bundle {
  format: typeof BUNDLE_FORMAT;
  /** The session the bundle is for; when set, every record must belong to it. */
  session?: string;
  verifierKey: string;
  checkpoint: string;
  records: BundleRecord[];
  /** Consistency proofs (base64 hashes) from smaller receipt checkpoints, keyed by their size. */
  consistency?: Record<string, string[]>;
}

const bundleSchema = z.object({
  format: z.literal(BUNDLE_FORMAT),
  session: z.string().min(1).max(128).optional(),
  verifierKey: z.string().min(1).max(4096),
  checkpoint: z.string().min(1).max(1 << 20),
  records: z
    .array(
      z.object({
        entry: z.string().max(16 << 20),
        proof: z.string().max(1 << 20),
        disclosures: z.array(z.string().max(16 << 20)).max(10_000).optional(),
      }),
    )
    .max(10_000_000),
  consistency: z.record(z.string().regex(/^(0|[1-9][0-9]{0,15})$/), z.array(z.string()).max(64)).optional(),
});

/** A failure found while verifying, with a stable code and the record it concerns. */
export interface VerificationFailure {
  code: string;
  message: string;
  /** Position of the record in `records`, when the failure is about one record. */
  record?: number;
}

/** What the verifier learned about one record. */
export interface RecordReport {
  record: number;
  ok: boolean;
  /** Leaf index in the log, from the receipt. */
  index?: number;
  id?: string;
  type?: string;
  session?: string;
  seq?: number;
  /** Entry digest (base64url leaf hash). */
  digest?: string;
  /** JSON Pointers of fields whose disclosure was present and opened its commitment. */
  disclosed: string[];
  /** JSON Pointers of committed fields with no disclosure: redacted. */
  redacted: string[];
  failures: VerificationFailure[];
}

/** The verdict on one session found in the bundle. */
export interface SessionReport {
  id: string;
  ok: boolean;
  sealed: boolean;
  entries: number;
}

/** The structured result of `verifyBundle`. */
export interface BundleReport {
  ok: boolean;
  /** `complete`: all holds and every session is sealed; `intact`: all holds, some session not sealed yet. */
  verdict: 'complete' | 'intact' | 'failed';
  /** One line for people. */
  summary: string;
  key: { text?: string; source: 'given' | 'bundle'; matchesBundle: boolean };
  checkpoint?: { origin: string; size: number; rootHash: string };
  sessions: SessionReport[];
  records: RecordReport[];
  /** Every failure, in the order found. */
  failures: VerificationFailure[];
  /**
   * Fields of the bundle that this format does not define (`notes`, `records[2].comment`):
   * no proof covers them and the verifier did not read them. Present only when there are
   * some (at most 20 named). A viewer must not show them as evidence.
   */
  ignored?: string[];
}

/** Options for `verifyBundle`. */
export interface VerifyBundleOptions {
  /**
   * The log's verifier key, pinned by the caller. Without it the bundle's own
   * `verifierKey` is used, which proves integrity but not who signed.
   */
  verifierKey?: string | NoteVerifier;
}

function failureOf(err: unknown, fallback: string): { code: string; message: string } {
  if (err instanceof CustodyError) return { code: err.code, message: err.message };
  return { code: fallback, message: err instanceof Error ? err.message : String(err) };
}

/** Assembles a bundle. */
export function createBundle(parts: Omit<Bundle, 'format'>): Bundle {
  const out: Bundle = { format: BUNDLE_FORMAT, ...parts };
  if (out.consistency !== undefined && Object.keys(out.consistency).length === 0) delete out.consistency;
  return out;
}

/**
 * Verifies a bundle offline: the checkpoint signature, every inclusion proof, the
 * session chains and seals, and every disclosure against its commitment. It never
 * throws for bad input; everything found is in the report.
 * @example
 * const report = verifyBundle(JSON.parse(text), { verifierKey: pinnedKey });
 * if (!report.ok) for (const f of report.failures) console.error(f.record, f.code, f.message);
 */
export function verifyBundle(input: unknown, options: VerifyBundleOptions = {}): BundleReport {
  const failures: VerificationFailure[] = [];
  const records: RecordReport[] = [];
  const given = options.verifierKey;
  const report = (extra: Partial<BundleReport> & Pick<BundleReport, 'key'>): BundleReport =>
    finish({ ok: false, verdict: 'failed', summary: '', sessions: [], records, failures, ...extra });

  const parsed = bundleSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : 'bundle';
    failures.push({ code: 'BUNDLE_MALFORMED', message: `${where}: ${issue.message}` });
    return report({ key: { source: given === undefined ? 'bundle' : 'given', matchesBundle: false } });
  }
  const bundle = parsed.data as Bundle;
  const ignored = unknownFields(input as Record<string, unknown>);

  // 1. The key: pinned by the caller, or taken from the bundle.
  let verifier: NoteVerifier | undefined;
  let bundleKeyText: string | undefined;
  try {
    bundleKeyText = parseVerifierKey(bundle.verifierKey).text;
  } catch {
    bundleKeyText = undefined;
  }
  try {
    verifier = typeof given === 'object' ? given : parseVerifierKey(given ?? bundle.verifierKey);
  } catch (err) {
    failures.push(failureOf(err, 'KEY_MALFORMED'));
  }
  const key = {
    source: given === undefined ? ('bundle' as const) : ('given' as const),
    matchesBundle: verifier !== undefined && verifier.text === bundleKeyText,
    ...(verifier ? { text: verifier.text } : {}),
  };
  if (verifier === undefined) return report({ key });
  if (given !== undefined && !key.matchesBundle) {
    // The bundle's key is a claim like any other in it: it must name the pinned key.
    failures.push({
      code: 'KEY_MISMATCH',
      message: `the bundle names the log key ${bundleKeyText ?? JSON.stringify(bundle.verifierKey.slice(0, 80))}, not the pinned key ${verifier.text}`,
    });
  }

  // 2. The bundle's checkpoint.
  const checkpoints = new Map<string, Checkpoint | { code: string; message: string }>();
  const checkCheckpoint = (note: string): Checkpoint | { code: string; message: string } => {
    let result = checkpoints.get(note);
    if (result === undefined) {
      try {
        result = verifyCheckpoint(note, verifier);
      } catch (err) {
        result = failureOf(err, 'CHECKPOINT_MALFORMED');
      }
      checkpoints.set(note, result);
    }
    return result;
  };
  const head = checkCheckpoint(bundle.checkpoint);
  let headCheckpoint: Checkpoint | undefined;
  if ('rootHash' in head) {
    headCheckpoint = head;
  } else {
    failures.push(head.code === 'SIGNATURE_INVALID' ? diagnoseAltered(bundle, verifier, head) : head);
  }

  // 3. Each record: entry, receipt, inclusion, disclosures.
  const held: { env: Envelope; digest: string; index?: number; record: number; inclusionFailed: boolean }[] = [];
  bundle.records.forEach((rec, i) => {
    const r: RecordReport = { record: i, ok: true, disclosed: [], redacted: [], failures: [] };
    records.push(r);
    const fail = (f: { code: string; message: string }) => r.failures.push({ ...f, record: i });
    let entry: Uint8Array | undefined;
    let env: Envelope | undefined;
    try {
      entry = decodeEntryBase64(rec.entry);
      r.digest = entryDigest(entry);
      env = decodeEntry(entry);
      r.id = env.id;
      r.type = env.type;
      if (env.session) {
        r.session = env.session.id;
        r.seq = env.session.seq;
      }
    } catch (err) {
      fail(failureOf(err, 'ENTRY_MALFORMED'));
    }
    let receipt: Receipt | undefined;
    try {
      receipt = parseReceipt(rec.proof);
      r.index = receipt.index;
    } catch (err) {
      fail(failureOf(err, 'PROOF_MALFORMED'));
    }
    let inclusionFailed = false;
    if (receipt !== undefined) {
      const cp = receipt.checkpoint === bundle.checkpoint ? head : checkCheckpoint(receipt.checkpoint);
      if (!('rootHash' in cp)) {
        // A bad bundle checkpoint is reported once, above; a bad receipt checkpoint here.
        if (receipt.checkpoint !== bundle.checkpoint) {
          fail({ code: 'PROOF_CHECKPOINT_INVALID', message: `the receipt's checkpoint does not verify: ${cp.message}` });
        } else {
          r.ok = false;
        }
      } else {
        const consistency = checkAgainstHead(cp, headCheckpoint, bundle);
        if (consistency !== undefined) fail(consistency);
        if (entry !== undefined) {
          try {
            checkInclusion(entry, receipt, cp);
          } catch (err) {
            inclusionFailed = true;
            fail(failureOf(err, 'PROOF_INCLUSION_FAILED'));
          }
        }
      }
    }
    if (env !== undefined) {
      const check = checkDisclosures(env, rec.disclosures ?? []);
      r.disclosed = check.disclosed.map((d) => d.path);
      r.redacted = check.redacted;
      for (const f of check.failures) fail({ code: f.code, message: `disclosure ${f.disclosure}: ${f.message}` });
      if (bundle.session !== undefined && env.session?.id !== bundle.session) {
        fail({
          code: 'CHAIN_EXTRA',
          message: `entry ${env.id} belongs to ${env.session ? `session ${env.session.id}` : 'no session'}, not to session ${bundle.session}`,
        });
      } else if (env.session !== undefined) {
        held.push({ env, digest: r.digest!, record: i, inclusionFailed, ...(r.index !== undefined ? { index: r.index } : {}) });
      }
    }
  });

  // 4. Session chains. A failed inclusion whose digest differs from the one the chain
  // committed to is a tampered entry; the broken link after it is its consequence.
  const sessions: SessionReport[] = [];
  const bySession = new Map<string, typeof held>();
  for (const h of held) {
    const id = h.env.session!.id;
    if (!bySession.has(id)) bySession.set(id, []);
    bySession.get(id)!.push(h);
  }
  for (const [id, list] of bySession) {
    const chain = verifySessionChain(
      id,
      list.map((h): ChainEntry => ({ envelope: h.env, digest: h.digest, record: h.record, ...(h.index !== undefined ? { index: h.index } : {}) })),
    );
    const tamperedSeqs = new Set<number>();
    for (const h of list) {
      const seq = h.env.session!.seq;
      const committed = chain.committed.get(seq);
      if (h.inclusionFailed && committed !== undefined && committed !== h.digest) {
        const r = records[h.record]!;
        const f = r.failures.find((x) => x.code === 'PROOF_INCLUSION_FAILED');
        if (f) {
          f.code = 'ENTRY_TAMPERED';
          f.message = `entry bytes were changed: the session chain committed to digest ${committed}, the entry held has ${h.digest}`;
        }
        tamperedSeqs.add(seq);
      }
    }
    for (const f of chain.failures) {
      const rec = f.record !== undefined ? records[f.record] : undefined;
      const seq = rec?.seq;
      if (f.code === 'CHAIN_LINK_MISMATCH' && seq !== undefined && tamperedSeqs.has(seq - 1)) continue;
      if (rec) rec.failures.push(f);
      else failures.push(f);
    }
    const ok = list.every((h) => records[h.record]!.failures.length === 0) && chain.ok;
    sessions.push({ id, ok, sealed: chain.sealed, entries: list.length });
  }
  if (bundle.session !== undefined && !bySession.has(bundle.session)) {
    failures.push({ code: 'CHAIN_GAP', message: `the bundle holds no entry of session ${bundle.session}` });
  }

  for (const r of records) {
    if (r.failures.length > 0) r.ok = false;
    failures.push(...r.failures);
  }
  const ok = failures.length === 0 && records.every((r) => r.ok);
  const allSealed = sessions.length > 0 && sessions.every((s) => s.sealed);
  return finish({
    ok,
    verdict: ok ? (allSealed ? 'complete' : 'intact') : 'failed',
    summary: '',
    key,
    ...(headCheckpoint
      ? { checkpoint: { origin: headCheckpoint.origin, size: headCheckpoint.size, rootHash: toBase64(headCheckpoint.rootHash) } }
      : {}),
    sessions,
    records,
    failures,
    ...(ignored.length > 0 ? { ignored } : {}),
  });
}

/** Checks a receipt's checkpoint against the bundle's: same tree, or a smaller one proven consistent. */
function checkAgainstHead(
  cp: Checkpoint,
  head: Checkpoint | undefined,
  bundle: Bundle,
): { code: string; message: string } | undefined {
  if (head === undefined || cp === head) return undefined;
  if (cp.size > head.size) {
    return { code: 'PROOF_CHECKPOINT_INVALID', message: `the receipt's checkpoint (size ${cp.size}) is newer than the bundle's (size ${head.size})` };
  }
  if (cp.size === head.size) {
    return cp.rootHash.every((b, i) => b === head.rootHash[i])
      ? undefined
      : { code: 'PROOF_CONSISTENCY_FAILED', message: `two checkpoints of size ${cp.size} have different roots: the log forked` };
  }
  const proofText = bundle.consistency?.[String(cp.size)];
  if (proofText === undefined) {
    return { code: 'PROOF_CONSISTENCY_FAILED', message: `no consistency proof from size ${cp.size} to the bundle's size ${head.size}` };
  }
  let proof: Uint8Array[];
  try {
    proof = proofText.map((h) => fromBase64(h, 'consistency proof hash'));
  } catch {
    return { code: 'PROOF_CONSISTENCY_FAILED', message: `the consistency proof from size ${cp.size} is not base64` };
  }
  return verifyConsistency(cp.size, head.size, cp.rootHash, head.rootHash, proof)
    ? undefined
    : { code: 'PROOF_CONSISTENCY_FAILED', message: `size ${cp.size} is not proven consistent with size ${head.size}` };
}

/**
 * The bundle's checkpoint signature failed. If a receipt carries a checkpoint with the
 * same signature lines but other text, and that one verifies, the text was altered.
 */
function diagnoseAltered(bundle: Bundle, verifier: NoteVerifier, fallback: { code: string; message: string }) {
  let sigs: string;
  try {
    sigs = signatureBlock(bundle.checkpoint);
  } catch {
    return fallback;
  }
  for (const rec of bundle.records) {
    let note: string;
    try {
      note = parseReceipt(rec.proof).checkpoint;
    } catch {
      continue;
    }
    if (note === bundle.checkpoint) continue;
    try {
      if (signatureBlock(note) !== sigs) continue;
      verifyNote(note, verifier);
      const signed = parseCheckpoint(parseNote(note).text);
      return {
        code: 'CHECKPOINT_ALTERED',
        message: `the checkpoint text was changed after signing: the log signed size ${signed.size} with root ${toBase64(signed.rootHash)}`,
      };
    } catch {
      continue;
    }
  }
  return fallback;
}

function signatureBlock(note: string): string {
  return note.slice(note.lastIndexOf('\n\n'));
}

const BUNDLE_FIELDS: ReadonlySet<string> = new Set(['format', 'session', 'verifierKey', 'checkpoint', 'records', 'consistency']);
const RECORD_FIELDS: ReadonlySet<string> = new Set(['entry', 'proof', 'disclosures']);
const MAX_IGNORED = 20;

/** The fields of a (schema-valid) bundle that the format does not define, at most MAX_IGNORED. */
function unknownFields(input: Record<string, unknown>): string[] {
  const out: string[] = [];
  const add = (name: string) => {
    if (out.length < MAX_IGNORED) out.push(name);
  };
  // Names come from the bundle: shown only as letters, digits and `_.$-` (others as `?`), so no viewer prints controls.
  const shown = (k: string) => k.slice(0, 80).replace(/[^A-Za-z0-9_.$-]/g, '?');
  for (const k of Object.keys(input)) if (!BUNDLE_FIELDS.has(k)) add(shown(k));
  const records = input['records'] as Record<string, unknown>[];
  for (let i = 0; i < records.length && out.length < MAX_IGNORED; i++) {
    for (const k of Object.keys(records[i]!)) if (!RECORD_FIELDS.has(k)) add(`records[${i}].${shown(k)}`);
  }
  return out;
}

function finish(r: BundleReport): BundleReport {
  r.summary = summarize(r);
  return r;
}

function summarize(r: BundleReport): string {
  if (!r.ok) {
    const first = r.failures[0];
    const where = first?.record !== undefined ? `record ${first.record}: ` : '';
    const n = r.failures.length;
    return `FAILED: ${n} problem${n === 1 ? '' : 's'}; first: ${where}${first?.code ?? 'UNKNOWN'} ${first?.message ?? ''}`.trim();
  }
  const cp = r.checkpoint;
  const sessions = r.sessions
    .map((s) => `session ${s.id} ${s.sealed ? `complete (sealed, ${s.entries} entries)` : `intact so far, not sealed (${s.entries} entries)`}`)
    .join('; ');
  const redacted = r.records.reduce((n, x) => n + x.redacted.length, 0);
  const disclosed = r.records.reduce((n, x) => n + x.disclosed.length, 0);
  const keyNote = r.key.source === 'given' ? 'pinned key' : "the bundle's own key (pin it with --key)";
  return [
    `${r.verdict === 'complete' ? 'OK' : 'OK (not sealed)'}: ${r.records.length} record${r.records.length === 1 ? '' : 's'} included in ${cp?.origin} at size ${cp?.size}`,
    sessions,
    `${disclosed} field${disclosed === 1 ? '' : 's'} disclosed, ${redacted} redacted`,
    `signed by ${keyNote}`,
    r.ignored !== undefined ? `ignored fields no proof covers: ${r.ignored.join(', ')}` : '',
  ]
    .filter((s) => s !== '')
    .join('; ');
}
