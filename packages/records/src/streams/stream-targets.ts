/**
 * Delivery to each target kind over Node built-ins (fetch, net, tls). A delivery
 * reports how many entries of the batch, from its start, the target
 * acknowledged; the caller advances the cursor by exactly that many.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

import type { EventView } from '@custody/ledger';

import type { StreamConfig } from './stream-config.js';
import { CLOUDEVENTS_CONTENT_TYPE, hecBody, octetFrame, SIGNATURE_HEADER, signWebhook, toCloudEvent, toSyslogMessage } from './stream-formats.js';

/** The outcome of one delivery attempt. */
export interface DeliveryResult {
  /** Entries acknowledged, from the start of the batch. */
  acked: number;
  /** Why the rest was not (no secret in it). */
  error?: string;
}

/** What a delivery needs besides the batch. */
export interface DeliveryContext {
  /** The tenant log's origin `<host>/<tenant>`. */
  origin: string;
  /** Aborts the delivery (shutdown). */
  signal: AbortSignal;
  /** Per request or connection, ms. Default 10,000. */
  timeoutMs?: number;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    const code = typeof (cause as { code?: unknown } | undefined)?.code === 'string' ? ` (${(cause as { code: string }).code})` : '';
    return `${err.message}${code}`.slice(0, 300);
  }
  return String(err).slice(0, 300);
}

async function post(url: string, headers: Record<string, string>, body: string, ctx: DeliveryContext): Promise<string | undefined> {
  const timeout = ctx.timeoutMs ?? 10_000;
  const abort = new AbortController();
  const onStop = () => abort.abort(new Error('aborted'));
  const timer = setTimeout(() => abort.abort(new Error(`timed out after ${timeout} ms`)), timeout);
  if (ctx.signal.aborted) onStop();
  else ctx.signal.addEventListener('abort', onStop, { once: true });
  try {
    const res = await fetch(url, { method: 'POST', headers, body, redirect: 'error', signal: abort.signal });
    await res.arrayBuffer().catch(() => undefined);
    return res.ok ? undefined : `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
  } catch (err) {
    return abort.signal.aborted && abort.signal.reason instanceof Error ? abort.signal.reason.message : describe(err);
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onStop);
  }
}

/** Webhook: one signed structured-mode CloudEvent per request, in order. */
async function deliverWebhook(c: StreamConfig, views: readonly EventView[], ctx: DeliveryContext): Promise<DeliveryResult> {
  for (let i = 0; i < views.length; i++) {
    const body = JSON.stringify(toCloudEvent(views[i]!, ctx.origin));
    const error = await post(
      c.url!,
      { 'content-type': CLOUDEVENTS_CONTENT_TYPE, [SIGNATURE_HEADER]: signWebhook(c.secret!, body, Math.floor(Date.now() / 1000)), 'user-agent': 'custody-stream/1' },
      body,
      ctx,
    );
    if (error !== undefined) return { acked: i, error };
  }
  return { acked: views.length };
}

/** The HEC event endpoint of a configured URL (a base URL gets `/services/collector/event`). */
export function hecEndpoint(url: string): string {
  const u = new URL(url);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/services/collector/event';
  return u.toString();
}

/** Splunk HEC: the whole batch in one request; all or nothing. */
async function deliverHec(c: StreamConfig, views: readonly EventView[], ctx: DeliveryContext): Promise<DeliveryResult> {
  const host = ctx.origin.slice(0, ctx.origin.lastIndexOf('/'));
  const body = hecBody(views, { host, ...(c.index !== undefined ? { index: c.index } : {}), ...(c.sourcetype !== undefined ? { sourcetype: c.sourcetype } : {}) });
  const error = await post(hecEndpoint(c.url!), { authorization: `Splunk ${c.token!}`, 'content-type': 'application/json', 'user-agent': 'custody-stream/1' }, body, ctx);
  return error === undefined ? { acked: views.length } : { acked: 0, error };
}

/**
 * Syslog over TCP (or TLS): one connection per batch, octet-counted frames, then a
 * half-close; the batch counts as acknowledged once the server has read to the
 * end and closed its side (TCP syslog has no application-level ack).
 */
async function deliverSyslog(c: StreamConfig, views: readonly EventView[], ctx: DeliveryContext): Promise<DeliveryResult> {
  const hostname = ctx.origin.slice(0, ctx.origin.lastIndexOf('/'));
  const data = Buffer.concat(views.map((v) => octetFrame(toSyslogMessage(v, { facility: c.facility ?? 13, hostname }))));
  const timeout = ctx.timeoutMs ?? 10_000;
  return new Promise<DeliveryResult>((resolve) => {
    let settled = false;
    const onConnect = () => socket.end(data);
    const socket: Socket = c.tls
      ? tlsConnect({ host: c.host!, port: c.port!, servername: /^[\d.:[\]]+$/.test(c.host!) ? undefined : c.host!, ...(c.ca !== undefined ? { ca: c.ca } : {}) }, onConnect)
      : netConnect({ host: c.host!, port: c.port! }, onConnect);
    const done = (r: DeliveryResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(r);
    };
    const onAbort = () => done({ acked: 0, error: 'aborted' });
    const timer = setTimeout(() => done({ acked: 0, error: `timed out after ${timeout} ms` }), timeout);
    socket.on('error', (err) => done({ acked: 0, error: describe(err) }));
    socket.on('data', () => undefined);
    socket.on('close', (hadError) => done(hadError || !socket.writableFinished ? { acked: 0, error: 'connection closed before the batch was written' } : { acked: views.length }));
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener('abort', onAbort);
  });
}

/** Delivers a batch to a target of `kind`. Never throws. */
export async function deliver(kind: string, config: StreamConfig, views: readonly EventView[], ctx: DeliveryContext): Promise<DeliveryResult> {
  if (views.length === 0) return { acked: 0 };
  switch (kind) {
    case 'webhook':
      return deliverWebhook(config, views, ctx);
    case 'splunk_hec':
      return deliverHec(config, views, ctx);
    case 'syslog':
      return deliverSyslog(config, views, ctx);
    default:
      return { acked: 0, error: `unknown stream kind ${kind}` };
  }
}
