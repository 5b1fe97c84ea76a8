/**
 * The SDK's one way to call Custody: fetch with a timeout, answers classified
 * into "unreachable / could not record" (retry or spool) and refusals (typed errors).
 * @internal
 */
import { LedgerUnavailableError, RequestError } from './errors.js';

/** A fetch function (the global one by default; inject one for tests or proxies). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

/** One HTTP answer whose status was not a failure to record. */
export interface HttpAnswer<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

/** Options of one request. */
export interface HttpRequest {
  method: 'GET' | 'POST';
  path: string;
  bearer?: string;
  json?: unknown;
  form?: Record<string, string>;
  traceparent?: string;
  timeoutMs: number;
  /** The caller's abort signal (the request ends when it aborts, as on a timeout). */
  signal?: AbortSignal;
  /** Gzip a JSON body of GZIP_MIN_BYTES or more (`Content-Encoding: gzip`; POST /v1/events takes it). */
  gzip?: boolean;
}

/** JSON bodies at least this long are gzipped where a request allows it (a batch of about 20 events). */
export const GZIP_MIN_BYTES = 16 * 1024;

/** Gzip with the platform's CompressionStream (Node 18+, browsers). */
async function gzipped(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A signal that aborts after `ms` or when `other` aborts. */
function deadline(ms: number, other: AbortSignal | undefined): AbortSignal {
  const timeout = AbortSignal.timeout(ms);
  if (other === undefined) return timeout;
  const any = (AbortSignal as { any?: (signals: AbortSignal[]) => AbortSignal }).any;
  if (any !== undefined) return any([timeout, other]);
  const c = new AbortController();
  const abort = () => c.abort();
  timeout.addEventListener('abort', abort, { once: true });
  other.addEventListener('abort', abort, { once: true });
  if (other.aborted) c.abort();
  return c.signal;
}

/** Statuses that mean "nothing was recorded; try again later". */
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504, 507]);

/** The server's error body: `{ error: { code, message } }`, or an OAuth error. */
function errorOf(body: unknown): { code: string; message: string } {
  if (body !== null && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    const e = b['error'];
    if (e !== null && typeof e === 'object') {
      const o = e as Record<string, unknown>;
      return { code: String(o['code'] ?? 'UNKNOWN'), message: String(o['message'] ?? '') };
    }
    if (typeof e === 'string') return { code: String(b['custody_code'] ?? e), message: String(b['error_description'] ?? e) };
  }
  return { code: 'UNKNOWN', message: typeof body === 'string' ? body.slice(0, 200) : 'no error body' };
}

/** Minimal HTTP client over fetch. @internal */
export class Http {
  readonly #base: string;
  readonly #fetch: FetchLike;
  /** Set once a server (or a proxy before it) refused a gzipped body with 415: later bodies go uncompressed. */
  #gzipRefused = false;
  constructor(base: string, fetchFn: FetchLike | undefined) {
    this.#base = base.replace(/\/+$/, '');
    this.#fetch = fetchFn ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** The absolute URL of `path`. */
  url(path: string): string {
    return `${this.#base}${path}`;
  }

  /**
   * Sends a request. Resolves with any answer that is not a failure to record
   * (2xx and 4xx); callers decide what a 4xx means.
   * @throws LedgerUnavailableError when the server cannot be reached, times out, or answers 5xx/429
   */
  async send<T = unknown>(req: HttpRequest): Promise<HttpAnswer<T>> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (req.bearer !== undefined) headers['authorization'] = `Bearer ${req.bearer}`;
    if (req.traceparent !== undefined) headers['traceparent'] = req.traceparent;
    let body: string | undefined;
    if (req.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(req.json);
    } else if (req.form !== undefined) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(req.form).toString();
    }
    const compress = req.gzip === true && !this.#gzipRefused && body !== undefined && body.length >= GZIP_MIN_BYTES;
    let res = await this.#exchange(req, headers, body, compress);
    if (compress && res.status === 415) {
      // Something on the way does not take gzip: send this body, and every later one, as it is.
      this.#gzipRefused = true;
      await res.body?.cancel().catch(() => undefined);
      res = await this.#exchange(req, headers, body, false);
    }
    const text = await res.text().catch(() => '');
    let parsed: unknown = text;
    if (text !== '') {
      try {
        parsed = JSON.parse(text) as unknown;
      } catch {
        parsed = text;
      }
    }
    if (RETRYABLE.has(res.status)) {
      const e = errorOf(parsed);
      throw new LedgerUnavailableError('SDK_LEDGER_UNAVAILABLE', `Custody could not record (${req.method} ${req.path}: ${res.status} ${e.code}): ${e.message}`);
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  async #exchange(req: HttpRequest, headers: Record<string, string>, text: string | undefined, compress: boolean): Promise<Response> {
    try {
      const body = text === undefined ? undefined : compress ? await gzipped(text) : text;
      const h = compress ? { ...headers, 'content-encoding': 'gzip' } : headers;
      return await this.#fetch(this.url(req.path), { method: req.method, headers: h, ...(body !== undefined ? { body } : {}), signal: deadline(req.timeoutMs, req.signal) });
    } catch (cause) {
      throw new LedgerUnavailableError('SDK_LEDGER_UNAVAILABLE', `cannot reach Custody at ${this.#base} (${req.method} ${req.path}): ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    }
  }
}

/** A RequestError for a refused answer. */
export function refused(answer: HttpAnswer, what: string, code: 'SDK_REQUEST_FAILED' | 'SDK_EXCHANGE_FAILED' = 'SDK_REQUEST_FAILED'): RequestError {
  const e = errorOf(answer.body);
  return new RequestError(code, answer.status, e.code, `${what}: ${e.message}`);
}

/** The server's error code and message of an answer. */
export function apiErrorOf(answer: HttpAnswer): { code: string; message: string } {
  return errorOf(answer.body);
}
