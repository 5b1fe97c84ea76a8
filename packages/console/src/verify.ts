/**
 * "Verified in your browser": downloads a session's evidence bundle and checks it
 * here, with @custody/core (its browser build), against the log key the server
 * publishes: every entry's receipt (Merkle inclusion), the signed checkpoint, the
 * session's hash chain and its seal, and each disclosure against its commitment.
 * Nothing the server says about the bundle is trusted; only the key is taken from it,
 * and the badge shows which key so it can be compared with one pinned elsewhere.
 */
import { type BundleReport, verifyBundle } from '@custody/core';

import { api } from './api.js';

export interface BrowserVerification {
  report: BundleReport;
  key: string;
  records: number;
  ms: number;
}

/** Fetches the bundle and the log key, and verifies the bundle in this page. */
export async function verifySession(sessionId: string): Promise<BrowserVerification> {
  const [bundle, key] = await Promise.all([api<unknown>(`/v1/sessions/${encodeURIComponent(sessionId)}/bundle`), api<string>('/v1/log/key', { text: true })]);
  const started = performance.now();
  const report = verifyBundle(bundle, { verifierKey: key.trim() });
  const records = Array.isArray((bundle as { records?: unknown[] }).records) ? (bundle as { records: unknown[] }).records.length : 0;
  return { report, key: key.trim(), records, ms: performance.now() - started };
}
