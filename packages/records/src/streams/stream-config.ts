/**
 * Validation of stream configurations and their public view (secrets never
 * shown). See docs/records.md, "Streaming".
 */
import { createHash, randomBytes } from 'node:crypto';

import type { StreamRow, StreamStatus } from '@custody/ledger';

import { RecordsError } from '../errors.js';

/** Target kinds. */
export const STREAM_KINDS = ['webhook', 'splunk_hec', 'syslog'] as const;
/** A target kind. */
export type StreamKind = (typeof STREAM_KINDS)[number];

/** What an admin sends to add a stream (flat; each kind uses its fields). */
export interface StreamInput {
  name: string;
  kind: StreamKind;
  /** webhook, splunk_hec: the endpoint (https; http only to a loopback host). */
  url?: string;
  /** webhook: HMAC secret (16+ characters); generated and returned once when absent. */
  secret?: string;
  /** splunk_hec: the HEC token. */
  token?: string;
  /** splunk_hec: index, sourcetype. */
  index?: string;
  sourcetype?: string;
  /** syslog: host and port, TLS, extra trusted CA (PEM), facility. */
  host?: string;
  port?: number;
  tls?: boolean;
  ca?: string;
  facility?: number;
  /** Entries per delivery (1-1000, default 100). */
  batchSize?: number;
  /** Consecutive failures before dead letter (1-100, default 10). */
  maxFailures?: number;
  /** First backoff delay in ms (10-60000, default 1000), doubled per failure up to maxBackoffMs (default 60000). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Where delivery starts: `now` (default: entries appended from now on), `start` (index 0) or an index. */
  from?: 'now' | 'start' | number;
}

/** A validated stream configuration, as stored (secrets included). */
export interface StreamConfig {
  url?: string;
  secret?: string;
  token?: string;
  index?: string;
  sourcetype?: string;
  host?: string;
  port?: number;
  tls?: boolean;
  ca?: string;
  facility?: number;
  batchSize: number;
  maxFailures: number;
  backoffMs: number;
  maxBackoffMs: number;
}

/** A stream as the API shows it: no secret, only whether one is set and its fingerprint. */
export interface StreamView {
  id: string;
  name: string;
  kind: StreamKind;
  status: StreamStatus;
  /** Next index to deliver: every entry before it was acknowledged by the target. */
  cursor: number;
  /** Entries appended but not yet acknowledged (when known). */
  lag?: number;
  failures: number;
  lastError?: string;
  lastErrorAt?: string;
  lastDeliveredAt?: string;
  createdAt: string;
  updatedAt: string;
  target: { url?: string; host?: string; port?: number; tls?: boolean; index?: string; sourcetype?: string; facility?: number };
  /** SHA-256 fingerprint (first 16 hex) of the webhook secret or HEC token. */
  secretFingerprint?: string;
  batchSize: number;
  maxFailures: number;
  backoffMs: number;
  maxBackoffMs: number;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

function bad(message: string, field: string): never {
  throw new RecordsError('STREAM_INVALID', message, { field });
}

function int(value: unknown, field: string, min: number, max: number, dflt: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) bad(`${field} must be a whole number ${min}-${max}`, field);
  return value;
}

function text(value: unknown, field: string, max: number): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > max) bad(`${field} must be 1-${max} characters`, field);
  return value;
}

function checkUrl(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length > 2048) bad(`${field} is required: the target's https URL`, field);
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    bad(`${field} is not a URL`, field);
  }
  if (u.username !== '' || u.password !== '') bad(`${field} must not hold credentials: use secret or token`, field);
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK.has(u.hostname))) bad(`${field} must be https (http is allowed only to a loopback host)`, field);
  return u.toString();
}

/** A fingerprint of a secret, safe to show and to record. */
export function secretFingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 16);
}

/**
 * Validates what an admin sent; resolves the stored configuration and, for a
 * webhook without a secret, the generated one (shown once).
 * @throws RecordsError `STREAM_INVALID` naming the field
 */
export function checkStreamInput(input: StreamInput): { name: string; kind: StreamKind; config: StreamConfig; generatedSecret?: string } {
  if (typeof input.name !== 'string' || !NAME.test(input.name)) bad('name must be 1-64 characters: letters, digits, . _ - (starting with a letter or digit)', 'name');
  if (!(STREAM_KINDS as readonly string[]).includes(input.kind)) bad(`kind must be one of ${STREAM_KINDS.join(', ')}`, 'kind');
  const common = {
    batchSize: int(input.batchSize, 'batchSize', 1, 1000, 100),
    maxFailures: int(input.maxFailures, 'maxFailures', 1, 100, 10),
    backoffMs: int(input.backoffMs, 'backoffMs', 10, 60_000, 1000),
    maxBackoffMs: int(input.maxBackoffMs, 'maxBackoffMs', 10, 3_600_000, 60_000),
  };
  if (common.maxBackoffMs < common.backoffMs) bad('maxBackoffMs must be at least backoffMs', 'maxBackoffMs');
  const only = (allowed: readonly string[]) => {
    for (const k of ['url', 'secret', 'token', 'index', 'sourcetype', 'host', 'port', 'tls', 'ca', 'facility'] as const) {
      if (input[k] !== undefined && !allowed.includes(k)) bad(`${k} does not apply to a ${input.kind} stream`, k);
    }
  };
  if (input.kind === 'webhook') {
    only(['url', 'secret']);
    const url = checkUrl(input.url, 'url');
    if (input.secret !== undefined && (typeof input.secret !== 'string' || input.secret.length < 16 || input.secret.length > 512)) bad('secret must be 16-512 characters', 'secret');
    const generated = input.secret === undefined ? `whsec_${randomBytes(32).toString('base64url')}` : undefined;
    return { name: input.name, kind: input.kind, config: { ...common, url, secret: input.secret ?? generated! }, ...(generated !== undefined ? { generatedSecret: generated } : {}) };
  }
  if (input.kind === 'splunk_hec') {
    only(['url', 'token', 'index', 'sourcetype']);
    const url = checkUrl(input.url, 'url');
    const token = text(input.token, 'token', 512);
    if (token === undefined) bad('token is required: the HEC token', 'token');
    const index = text(input.index, 'index', 256);
    const sourcetype = text(input.sourcetype, 'sourcetype', 256);
    return { name: input.name, kind: input.kind, config: { ...common, url, token, ...(index ? { index } : {}), ...(sourcetype ? { sourcetype } : {}) } };
  }
  only(['host', 'port', 'tls', 'ca', 'facility']);
  const host = text(input.host, 'host', 255);
  if (host === undefined || !/^[A-Za-z0-9.:[\]-]+$/.test(host)) bad('host is required: the syslog server name or address', 'host');
  const port = int(input.port, 'port', 1, 65535, input.tls === true ? 6514 : 601);
  if (input.tls !== undefined && typeof input.tls !== 'boolean') bad('tls must be true or false', 'tls');
  const ca = text(input.ca, 'ca', 65536);
  if (ca !== undefined && !ca.includes('-----BEGIN CERTIFICATE-----')) bad('ca must be PEM certificates', 'ca');
  if (ca !== undefined && input.tls !== true) bad('ca needs tls: true', 'ca');
  const facility = int(input.facility, 'facility', 0, 23, 13);
  return { name: input.name, kind: 'syslog', config: { ...common, host, port, tls: input.tls === true, ...(ca ? { ca } : {}), facility } };
}

/** The stored configuration of a row. */
export function configOf(row: StreamRow): StreamConfig {
  return JSON.parse(row.config) as StreamConfig;
}

/** Where a stream sends, without secrets (for views and admin entries). */
export function targetOf(kind: string, c: StreamConfig): StreamView['target'] {
  if (kind === 'syslog') return { host: c.host!, port: c.port!, tls: c.tls === true, facility: c.facility ?? 13 };
  const t: StreamView['target'] = { url: c.url! };
  if (c.index !== undefined) t.index = c.index;
  if (c.sourcetype !== undefined) t.sourcetype = c.sourcetype;
  return t;
}

/** The public view of a stream row. */
export function streamView(row: StreamRow, head?: number): StreamView {
  const c = configOf(row);
  const v: StreamView = {
    id: row.id,
    name: row.name,
    kind: row.kind as StreamKind,
    status: row.status,
    cursor: row.cursor,
    failures: row.failures,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    target: targetOf(row.kind, c),
    batchSize: c.batchSize,
    maxFailures: c.maxFailures,
    backoffMs: c.backoffMs,
    maxBackoffMs: c.maxBackoffMs,
  };
  if (head !== undefined) v.lag = Math.max(0, head - row.cursor);
  if (row.lastError !== undefined) v.lastError = row.lastError;
  if (row.lastErrorAt !== undefined) v.lastErrorAt = row.lastErrorAt;
  if (row.lastDeliveredAt !== undefined) v.lastDeliveredAt = row.lastDeliveredAt;
  const secret = c.secret ?? c.token;
  if (secret !== undefined) v.secretFingerprint = secretFingerprint(secret);
  return v;
}
