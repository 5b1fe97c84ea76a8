/**
 * "Verified in your browser": downloads a session's evidence bundle and checks it
 * here, with @custody/core (its browser build), against the log key the server
 * publishes: every entry's receipt (Merkle inclusion), the signed checkpoint, the
 * session's hash chain and its seal, and each disclosure against its commitment.
 * Nothing the server says about the bundle is trusted; only the key is taken from it,
 * and the badge shows which key so it can be compared with one pinned elsewhere.
 */
import { type BundleReport, type RecordReport, verifyBundle } from '@custody/core';

import { api } from './api.js';

export interface BrowserVerification {
  report: BundleReport;
  key: string;
  records: number;
  ms: number;
}

/** Fetches the bundle and the log key (as `custody verify --key` takes it), and verifies the bundle in this page. */
export async function verifySession(sessionId: string): Promise<BrowserVerification> {
  const [bundle, key] = await Promise.all([api<unknown>(`/v1/sessions/${encodeURIComponent(sessionId)}/bundle`), api<string>('/v1/log/key', { text: true })]);
  const started = performance.now();
  const report = verifyBundle(bundle, { verifierKey: key.trim() });
  const records = Array.isArray((bundle as { records?: unknown[] }).records) ? (bundle as { records: unknown[] }).records.length : 0;
  return { report, key: key.trim(), records, ms: performance.now() - started };
}

/** The checks the badge shows, in order. */
export const CHECKS = ['signature', 'receipts', 'chain', 'seal', 'disclosures', 'format'] as const;
export type Check = (typeof CHECKS)[number];

/** What each check means, for the badge's tooltips and docs/console.md. */
export const CHECK_TITLES: Record<Check, string> = {
  signature: "the checkpoint (origin, tree size, root hash) is signed by the log's key",
  receipts: 'every entry is included in that checkpoint (its receipt, an RFC 9162 inclusion proof) and is the exact bytes the log committed to',
  chain: "the session's hash chain is whole: every seq present, in order, each entry linked to the previous one",
  seal: "the seal (session.closed) commits to the chain's head and entry count, so nothing was left out",
  disclosures: 'every disclosed field opens its commitment in the entry',
  format: 'the bundle and its entries are well formed',
};

/** The check a verifier failure code belongs to (the codes of @custody/core's verifyBundle, docs/format.md). */
export function checkOf(code: string): Check {
  if (code === 'CHAIN_SEAL_MISMATCH' || code.startsWith('SEAL_')) return 'seal';
  if (code.startsWith('CHAIN_')) return 'chain';
  if (code.startsWith('DISCLOSURE_') || code.startsWith('COMMITMENT_')) return 'disclosures';
  if (code.startsWith('PROOF_') || code === 'ENTRY_TAMPERED') return 'receipts';
  if (code === 'SIGNATURE_INVALID' || code.startsWith('KEY_') || code.startsWith('NOTE_') || code.startsWith('CHECKPOINT_')) return 'signature';
  return 'format';
}

/** The disclosed and redacted fields of each entry (by entry id), as this browser found them. */
export function fieldsById(report: BundleReport | undefined): Map<string, Pick<RecordReport, 'disclosed' | 'redacted'>> {
  const out = new Map<string, Pick<RecordReport, 'disclosed' | 'redacted'>>();
  for (const r of report?.records ?? []) if (r.id !== undefined && r.ok) out.set(r.id, { disclosed: r.disclosed, redacted: r.redacted });
  return out;
}
