/**
 * The wire formats of log streams: CloudEvents 1.0 (structured JSON mode) with
 * an HMAC signature for webhooks, Splunk HTTP Event Collector events, and RFC
 * 5424 syslog messages in RFC 6587 octet-counting frames. Pure functions: no I/O.
 * See docs/records.md, "Streaming".
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

import type { EventView } from '@custody/ledger';

/** The webhook signature header: `t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>.<body>")>`. */
export const SIGNATURE_HEADER = 'custody-signature';
/** Content type of a structured-mode CloudEvent. */
export const CLOUDEVENTS_CONTENT_TYPE = 'application/cloudevents+json; charset=utf-8';
/** The SD-ID of Custody's structured data in syslog messages (32473 is the RFC 5612 documentation enterprise number). */
export const SYSLOG_SD_ID = 'custody@32473';

/** A CloudEvents 1.0 event carrying one entry as the API shows it. */
export interface CustodyCloudEvent {
  specversion: '1.0';
  /** The entry's event id (UUIDv7): receivers dedupe on it. */
  id: string;
  /** The log's origin, `<host>/<tenant>`. */
  source: string;
  /** `custody.<event type>`, e.g. `custody.tool.requested`. */
  type: string;
  /** The session id, when the entry has one. */
  subject?: string;
  /** The ledger's `recordedAt`. */
  time: string;
  datacontenttype: 'application/json';
  /** Extension: the entry's index in the tenant's log. */
  custodyindex: number;
  /** Extension: the entry digest (base64url leaf hash), to match a receipt. */
  custodydigest: string;
  data: EventView;
}

/** The CloudEvent of one entry. */
export function toCloudEvent(view: EventView, origin: string): CustodyCloudEvent {
  const e = view.event as unknown as { id: string; type: string; recordedAt: string; session?: { id?: string } };
  const ce: CustodyCloudEvent = {
    specversion: '1.0',
    id: e.id,
    source: origin,
    type: `custody.${e.type}`,
    time: e.recordedAt,
    datacontenttype: 'application/json',
    custodyindex: view.index,
    custodydigest: view.digest,
    data: view,
  };
  if (typeof e.session?.id === 'string') ce.subject = e.session.id;
  return ce;
}

/** The value of the signature header for `body`, signed at `time` (unix seconds). */
export function signWebhook(secret: string, body: string, time: number): string {
  const mac = createHmac('sha256', secret).update(`${time}.${body}`).digest('hex');
  return `t=${time},v1=${mac}`;
}

/**
 * Checks a webhook signature as a receiver should: the HMAC matches (constant
 * time) and `t` is within `toleranceSeconds` of `now` (a replay window).
 * @example
 * verifyWebhook(secret, rawBody, req.headers['custody-signature'])
 */
export function verifyWebhook(secret: string, body: string, header: string | undefined, opts: { now?: number; toleranceSeconds?: number } = {}): boolean {
  if (header === undefined) return false;
  const parts = new Map(header.split(',').map((p) => [p.slice(0, p.indexOf('=')).trim(), p.slice(p.indexOf('=') + 1).trim()] as const));
  const t = Number(parts.get('t'));
  const v1 = parts.get('v1');
  if (!Number.isSafeInteger(t) || v1 === undefined || !/^[0-9a-f]{64}$/.test(v1)) return false;
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (opts.toleranceSeconds ?? 300)) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1, 'hex'));
}

/** Settings of a Splunk HEC event. */
export interface HecOptions {
  index?: string;
  sourcetype?: string;
  source?: string;
  host?: string;
}

/** One Splunk HEC event (`/services/collector/event`) of an entry. */
export function toHecEvent(view: EventView, opts: HecOptions): Record<string, unknown> {
  const recordedAt = (view.event as unknown as { recordedAt: string }).recordedAt;
  const out: Record<string, unknown> = {
    time: Date.parse(recordedAt) / 1000,
    source: opts.source ?? 'custody',
    sourcetype: opts.sourcetype ?? 'custody:entry',
  };
  if (opts.host !== undefined) out['host'] = opts.host;
  if (opts.index !== undefined) out['index'] = opts.index;
  out['event'] = view;
  return out;
}

/** The body of a HEC batch: the events' JSON objects, one per line. */
export function hecBody(views: readonly EventView[], opts: HecOptions): string {
  return views.map((v) => JSON.stringify(toHecEvent(v, opts))).join('\n');
}

/** Settings of an RFC 5424 message. */
export interface SyslogOptions {
  /** Facility 0-23. Default 13 (log audit). */
  facility?: number;
  /** HOSTNAME; default `-` (nil). */
  hostname?: string;
  /** APP-NAME; default `custody`. */
  appName?: string;
}

const NIL = '-';

/** A header field: printable US-ASCII without spaces, at most `max` characters, or `-`. */
function headerField(value: string | undefined, max: number): string {
  if (value === undefined) return NIL;
  const clean = value.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return clean === '' ? NIL : clean;
}

/** An SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 §6.3.3). */
function sdValue(value: string): string {
  return value.replace(/[\\"\]]/g, (c) => `\\${c}`);
}

/** Severity of an entry: 4 (warning) for a deny or a failed call, 5 (notice) for admin acts, else 6 (informational). */
export function syslogSeverity(view: EventView): number {
  const e = view.event as unknown as { type: string; decision?: { effect?: string } };
  if (e.type === 'tool.failed' || e.decision?.effect === 'deny' || e.type === 'approval.denied') return 4;
  if (e.type.startsWith('admin.')) return 5;
  return 6;
}

/**
 * The RFC 5424 message of an entry: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID
 * [custody@32473 tenant= index= id= digest=] BOM{EventView JSON}`, MSGID being
 * the event type.
 */
export function toSyslogMessage(view: EventView, opts: SyslogOptions = {}): string {
  const e = view.event as unknown as { id: string; type: string; tenant: string; recordedAt: string };
  const pri = (opts.facility ?? 13) * 8 + syslogSeverity(view);
  const sd = `[${SYSLOG_SD_ID} tenant="${sdValue(e.tenant)}" index="${view.index}" id="${sdValue(e.id)}" digest="${sdValue(view.digest)}"]`;
  return `<${pri}>1 ${e.recordedAt} ${headerField(opts.hostname, 255)} ${headerField(opts.appName ?? 'custody', 48)} ${NIL} ${headerField(e.type, 32)} ${sd} \ufeff${JSON.stringify(view)}`;
}

/** An RFC 6587 octet-counting frame: `<byte length> <message>`. */
export function octetFrame(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}
