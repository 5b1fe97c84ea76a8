import {
  type Bundle,
  checkDisclosures,
  decodeEntry,
  fromBase64url,
  parseReceipt,
  parseVerifierKey,
  verifyCheckpoint,
  verifyInclusion,
  verifyReceipt,
} from '@custody/core';
import type { EventView } from '@custody/ledger';

import { apiFetch, apiJson, type ConnectionOptions, resolveConnection } from '../connection.js';
import { CliError, type Output, paint, safeData, safeJson } from '../output.js';
import { shortTime } from '../render.js';
import { resolveVerifierKey } from '../verifier-key.js';
import { eventDetail } from './search.js';

/** Options of `custody show`. */
export interface ShowOptions extends ConnectionOptions {
  key?: string;
  json?: boolean;
}

/** What `custody show` found out about an event's evidence. */
export interface ShowResult {
  event: EventView;
  receipt: { ok: boolean; index?: number; size?: number; origin?: string; keySource: 'flag' | 'server'; error?: { code: string; message: string } };
  /** JSON Pointers of committed fields whose disclosure the ledger holds (opened in `event`); undefined when not checked. */
  disclosed?: string[];
  /** JSON Pointers of committed fields with no disclosure. */
  redacted: string[];
}

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Looks the event up, and checks its receipt against the log key: with a session,
 * the exact entry bytes from the session bundle (so the disclosures are checked
 * too); without one, the entry digest the server reports.
 */
export async function showEvent(id: string, opts: ShowOptions): Promise<ShowResult> {
  if (!ID.test(id)) throw new CliError('EVENT_ID_INVALID', `an event id is a lowercase UUID such as 0193a0c2-7a6e-7c1f-9d3e-2b4f5a6c7d8e; got ${JSON.stringify(id.slice(0, 80))}`);
  // --key, the key or a file holding it, is checked before anything is sent: one that cannot be used is a usage error (exit 2), not a failed receipt.
  const pinned = resolveVerifierKey(opts.key);
  const conn = resolveConnection(opts);
  const view = await apiJson<EventView>(conn, `/v1/events/${id}`);
  const keyText = pinned ?? (await (await apiFetch(conn, '/v1/log/key')).text()).trim();
  const keySource = pinned !== undefined ? 'flag' : 'server';
  const result: ShowResult = { event: view, receipt: { ok: false, keySource }, redacted: view.redacted };
  try {
    const verifier = parseVerifierKey(keyText);
    const session = view.event.session?.id;
    if (session !== undefined) {
      const bundle = await apiJson<Bundle>(conn, `/v1/sessions/${encodeURIComponent(session)}/bundle`);
      const record = bundle.records.find((r) => decodeEntry(fromBase64Std(r.entry)).id === id);
      if (record === undefined) throw new CliError('EVENT_NOT_IN_BUNDLE', `the bundle of session ${session} does not hold event ${id}`, 1);
      const entry = fromBase64Std(record.entry);
      const ok = verifyReceipt(entry, record.proof, verifier);
      const check = checkDisclosures(decodeEntry(entry), record.disclosures ?? []);
      result.receipt = { ok: true, index: ok.index, size: ok.checkpoint.size, origin: ok.checkpoint.origin, keySource };
      result.disclosed = check.disclosed.map((d) => d.path);
      result.redacted = check.redacted;
    } else {
      const text = await (await apiFetch(conn, `/v1/log/proof/inclusion?index=${view.index}`)).text();
      const receipt = parseReceipt(text);
      const cp = verifyCheckpoint(receipt.checkpoint, verifier);
      if (receipt.index !== view.index || !verifyInclusion(fromBase64url(view.digest), receipt.index, cp.size, receipt.proof, cp.rootHash)) {
        throw Object.assign(new Error(`the receipt does not prove entry ${view.index} (digest ${view.digest}) under the checkpoint`), { code: 'PROOF_INCLUSION_FAILED' });
      }
      result.receipt = { ok: true, index: receipt.index, size: cp.size, origin: cp.origin, keySource };
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    const code = typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : 'VERIFY_FAILED';
    result.receipt = { ok: false, keySource, error: { code, message: (err as Error).message } };
  }
  return result;
}

function fromBase64Std(b64: string): Uint8Array {
  return Uint8Array.from(Buffer.from(b64, 'base64'));
}

/** `custody show <event-id>`: one event, its receipt status, and its disclosed and redacted fields. Exit 1 when the receipt does not verify. */
export async function runShow(id: string, opts: ShowOptions, io: Output): Promise<number> {
  const raw = await showEvent(id, opts);
  if (opts.json) {
    io.out(safeJson(raw, 2));
    return raw.receipt.ok ? 0 : 1;
  }
  // Every value is server-supplied (much of it agent-supplied): shown escaped.
  const r = safeData(raw);
  const e = r.event.event;
  const c = io.color;
  io.out(`${paint(c, 'bold', e.type)}  ${e.id}`);
  const line = (k: string, v: string | undefined) => {
    if (v !== undefined && v !== '') io.out(`  ${k.padEnd(11)}${v}`);
  };
  line('time', `${shortTime(e.time)} (source)   recorded ${shortTime(e.recordedAt)} (ledger)`);
  line('session', e.session ? `${e.session.id}  seq ${e.session.seq}   (custody timeline ${e.session.id})` : '(none)');
  line('initiator', e.initiator ? `${e.initiator.type} ${e.initiator.id}${e.initiator.verified ? ' (verified)' : ''}` : undefined);
  line('actor', `${e.actor.type} ${e.actor.id}${e.actor.verified ? ' (verified)' : ''}`);
  line('chain', e.chain?.map((l) => l.principal.id + (l.scope ? ` [${l.scope.join(' ')}]` : '')).join(' → '));
  line('workload', e.workload ? `${e.workload.spiffeId ?? e.workload.subject ?? ''} (${e.workload.method}${e.workload.verified ? ', verified' : ''})` : undefined);
  line('cause', e.cause);
  line('trace', e.trace?.traceId);
  line('detail', eventDetail(io, raw.event.event));
  if (e.decision) for (const reason of e.decision.reasons) line('reason', reason);
  line('log', `index ${r.event.index}, digest ${r.event.digest}`);
  if (r.receipt.ok) {
    io.out(`  ${'receipt'.padEnd(11)}${paint(c, 'green', '✔')} included at index ${r.receipt.index} in ${r.receipt.origin} at tree size ${r.receipt.size}, checkpoint signature verified`);
  } else {
    io.out(`  ${'receipt'.padEnd(11)}${paint(c, 'red', '✘')} ${r.receipt.error?.code ?? ''} ${r.receipt.error?.message ?? ''}`);
  }
  if (r.receipt.keySource === 'server') io.err(paint(c, 'yellow', "note: checked against the server's own log key; pin the key with --key <verifierKey> to trust nothing the server says"));
  line('disclosed', r.disclosed === undefined ? '(not checked for events without a session)' : r.disclosed.length > 0 ? r.disclosed.join(', ') : '(none)');
  line('redacted', r.redacted.length > 0 ? paint(c, 'yellow', r.redacted.join(', ')) : '(none)');
  if (raw.event.event.data !== undefined) io.out(`  ${'data'.padEnd(11)}${safeJson(raw.event.event.data)}`);
  return r.receipt.ok ? 0 : 1;
}
