/**
 * The hand-compiled envelope check (envelope-fast.ts) against the zod schema it
 * stands in front of: it never accepts what the schema rejects, it accepts the
 * envelopes Custody writes, and envelopeIssues / validateEnvelope answer exactly
 * as the schema alone does (same verdict, same fields, same messages, same code).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { envelopeIssues, fastEnvelopeAccepts, schemaIssues, validateEnvelope } from './envelope.js';
import { realTimeByDigits } from './envelope-fast.js';
import { FormatError } from './errors.js';

const DIGEST_A = 'S8xLbBGY5-hf2Yge5uSfT8TTWy4XxbWrnTFgq6l39II';

/** A field's value: usually one of a few good ones, sometimes one of a few near misses, now and then anything at all. */
function field<T>(good: fc.Arbitrary<T>, bad: readonly unknown[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    { arbitrary: good, weight: 12 },
    { arbitrary: fc.constantFrom(...bad), weight: 2 },
    { arbitrary: fc.anything({ maxDepth: 2 }), weight: 1 },
  );
}

/** An object of `fields`, each present or absent; with a small chance of an unknown key or an explicit undefined. */
function obj(fields: Record<string, fc.Arbitrary<unknown>>, required: readonly string[] = []): fc.Arbitrary<unknown> {
  const entries = Object.entries(fields).map(([k, arb]) =>
    (required.includes(k) ? fc.oneof({ arbitrary: arb.map((v) => [k, v] as const), weight: 20 }, { arbitrary: fc.constant(undefined), weight: 1 }) : fc.option(arb.map((v) => [k, v] as const), { freq: 2 })),
  );
  return fc
    .tuple(fc.tuple(...entries), fc.option(fc.constantFrom<[string, unknown]>(['extra', 1], ['__proto__', {}], ['seq', undefined]), { freq: 15 }))
    .map(([pairs, extra]) => {
      const o: Record<string, unknown> = {};
      for (const p of pairs) if (p !== undefined && p !== null) o[p[0]] = p[1];
      if (extra !== null) Object.defineProperty(o, extra[0], { value: extra[1], enumerable: true, configurable: true, writable: true });
      return o;
    });
}

const text = (max: number) => fc.oneof(fc.string({ minLength: 1, maxLength: 12 }), fc.constant('x'.repeat(max)));
const badText = (max: number) => ['', 'x'.repeat(max + 1), 7, null];
const time = fc.constantFrom('2026-11-22T09:00:00.000Z', '2026-11-22T09:00:00Z', '2024-02-29T23:59:59.123456789Z');
const badTime = ['2026-02-30T09:00:00Z', '2026-11-22T09:00:00+01:00', '2023-02-29T00:00:00Z', '2026-11-22 09:00:00Z', 0];
const uuid = fc.constantFrom('019ab3a0-0000-7000-8000-000000000001', '019ab3a0-0000-7000-b000-00000000000f');
const badUuid = ['019AB3A0-0000-7000-8000-000000000001', '019ab3a0-0000-7000-c000-000000000001', 'not-a-uuid'];
const digest = fc.constantFrom(DIGEST_A, 'A'.repeat(43), '_-'.repeat(21) + 'z');
const badDigest = ['A'.repeat(42), 'A'.repeat(44), '+'.repeat(43), ''];
const sessionId = fc.constantFrom('s1', 'sess:a.b_c-d', 'x'.repeat(128));
const badSessionId = ['', 'x'.repeat(129), 'a b', 's/1'];

const principal = obj(
  {
    type: field(fc.constantFrom('human', 'agent', 'workload', 'service'), ['robot', 'Human']),
    id: field(text(512), badText(512)),
    issuer: field(text(512), badText(512)),
    name: field(text(256), badText(256)),
    verified: field(fc.boolean(), ['true', 1]),
  },
  ['type', 'id'],
);
const textArray = (item: number, max: number) => field(fc.array(text(item), { maxLength: 3 }), [[''], Array.from({ length: max + 1 }, () => 'a'), 'a', [1]]);

const seqPrev = fc.oneof(
  fc.record({ seq: fc.constant(1), prev: fc.constant(null) }),
  fc.record({ seq: fc.integer({ min: 2, max: 2 ** 40 }), prev: digest }),
  fc.record({ seq: fc.constantFrom<unknown>(1, 2, 0, 1.5, -1, 2 ** 53, Number.MAX_SAFE_INTEGER, '2'), prev: fc.constantFrom<unknown>(null, DIGEST_A, 'short') }),
);
const session = fc
  .tuple(seqPrev, obj({ id: field(sessionId, badSessionId), parent: field(sessionId, badSessionId), objective: field(text(4096), badText(4096)) }, ['id']))
  .map(([sp, rest]) => (typeof rest === 'object' && rest !== null && !Array.isArray(rest) ? { ...rest, ...sp } : rest));

const envelopeArb = fc
  .tuple(
    obj(
      {
        v: field(fc.constant(1), [2, '1', 1.0000001]),
        id: field(uuid, badUuid),
        tenant: field(fc.constantFrom('acme', 'a', 'a.b_c-9', 'x'.repeat(63)), ['Acme', '', '-a', 'x'.repeat(64)]),
        time: field(time, badTime),
        recordedAt: field(time, badTime),
        session: field(session, [null, []]),
        initiator: field(principal, [null]),
        actor: field(principal, [null, 'alice']),
        chain: field(fc.array(obj({ principal, scope: textArray(256, 256), session: field(sessionId, badSessionId) }, ['principal']), { maxLength: 3 }), [[null], {}]),
        workload: field(
          obj({
            method: field(fc.constantFrom('jwt-svid', 'x509-svid', 'oidc', 'api-key', 'unverified'), ['spiffe']),
            verified: field(fc.boolean(), [null]),
            spiffeId: field(fc.constantFrom('spiffe://example.org/agent', 'spiffe://' + 'x'.repeat(2039)), ['https://x', 'spiffe://' + 'x'.repeat(2040)]),
            issuer: field(text(512), badText(512)),
            subject: field(text(512), badText(512)),
          }, ['method', 'verified']),
          [null],
        ),
        cause: field(uuid, badUuid),
        trace: field(
          obj({
            traceId: field(fc.constantFrom('0af7651916cd43dd8448eb211c80319c', '00000000000000000000000000000001'), ['0'.repeat(32), 'A'.repeat(32), 'a'.repeat(31)]),
            spanId: field(fc.constantFrom('b7ad6b7169203331', '0000000000000001'), ['0'.repeat(16), 'b7ad6b716920333']),
            flags: field(fc.constantFrom('01', '00', 'ff'), ['1', 'FF', 1]),
            state: field(fc.constantFrom('', 'k=v', 'x'.repeat(512)), ['x'.repeat(513), 5]),
          }, ['traceId', 'spanId']),
          [null],
        ),
        tool: field(obj({ name: field(text(256), badText(256)), server: field(text(256), badText(256)), callId: field(text(256), badText(256)) }, ['name']), [null]),
        decision: field(
          obj({
            effect: field(fc.constantFrom('allow', 'deny', 'approval_required'), ['maybe']),
            policyVersion: field(text(128), badText(128)),
            policies: textArray(256, 256),
            reasons: textArray(2048, 256),
            evaluatedAt: field(time, badTime),
            durationMs: field(fc.constantFrom(0, -0, 1.5, 1e9), [-1, Number.NaN, Number.POSITIVE_INFINITY, '1']),
          }, ['effect', 'policyVersion', 'policies', 'reasons']),
          [null],
        ),
        approval: field(
          obj({
            id: field(text(128), badText(128)),
            status: field(fc.constantFrom('pending', 'granted', 'denied', 'expired'), ['ok']),
            approver: field(principal, [null]),
            source: field(fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }), [{ ip: 1 }, { ip: 'x'.repeat(1025) }, [], null]),
            expiresAt: field(time, badTime),
            argumentsDigest: field(digest, badDigest),
            reason: field(text(4096), badText(4096)),
          }, ['id']),
          [null],
        ),
        credential: field(
          obj({
            jti: field(text(256), badText(256)),
            fingerprint: field(digest, badDigest),
            scope: textArray(256, 256),
            audience: field(fc.oneof(text(512), fc.array(text(512), { maxLength: 3 })), ['', Array.from({ length: 33 }, () => 'a'), [1]]),
            issuedAt: field(time, badTime),
            expiresAt: field(time, badTime),
            depth: field(fc.integer({ min: 0, max: 64 }), [-1, 65, 1.5]),
          }, ['jti', 'fingerprint']),
          [null],
        ),
        seal: field(obj({ count: field(fc.integer({ min: 1, max: 2 ** 40 }), [0, 1.5]), head: field(digest, badDigest) }, ['count', 'head']), [null]),
        data: field(
          fc.dictionary(
            fc.constantFrom('arguments', 'result', 'ip', 'a', '$commitment'),
            fc.oneof(
              fc.record({ $commitment: digest }),
              fc.constantFrom<unknown>({ $commitment: 'short' }, { $commitment: DIGEST_A, b: 1 }, [{ $commitment: DIGEST_A }], [{ $commitment: 1 }], { deep: { $commitment: 'x' } }),
              fc.jsonValue({ maxDepth: 2 }),
            ),
            { maxKeys: 3 },
          ),
          [[], null, 'data', new Date(0)],
        ),
      },
      ['v', 'id', 'tenant', 'time', 'recordedAt', 'actor'],
    ),
    fc.oneof(
      { arbitrary: fc.constantFrom('session.opened', 'session.closed', 'tool.requested', 'tool.completed', 'policy.decided', 'approval.granted', 'credential.issued', 'prompt.received', 'admin.key_created', 'external.otel.span'), weight: 10 },
      { arbitrary: fc.constantFrom<unknown>('admin.', 'external.Bad', 'tool.unknown', 'session', 7), weight: 1 },
    ),
  )
  .map(([env, type]) => (typeof env === 'object' && env !== null && !Array.isArray(env) ? { ...env, type } : env));

/** An envelope Custody could write: every field chosen from the good ones, the per-type parts present. */
const goodEnvelope = fc
  .record({
    type: fc.constantFrom('session.opened', 'tool.requested', 'tool.completed', 'policy.decided', 'approval.granted', 'credential.issued', 'admin.key_created', 'session.closed'),
    seq: fc.integer({ min: 1, max: 1000 }),
    tool: fc.string({ minLength: 1, maxLength: 20 }),
    args: fc.jsonValue({ maxDepth: 3 }),
    verified: fc.boolean(),
    trace: fc.boolean(),
  })
  .map(({ type, seq, tool, args, verified, trace }) => {
    const env: Record<string, unknown> = {
      v: 1,
      id: '019ab3a0-0000-7000-8000-000000000001',
      tenant: 'acme',
      type,
      time: '2026-11-22T09:00:00.000Z',
      recordedAt: '2026-11-22T09:00:00.012Z',
      actor: { type: 'agent', id: 'refund-agent' },
      data: { arguments: { $commitment: DIGEST_A }, extra: args },
    };
    if (!type.startsWith('admin.')) {
      env['session'] = { id: 's1', seq, prev: seq === 1 ? null : DIGEST_A };
      env['initiator'] = { type: 'human', id: 'alice@example.com', verified };
    }
    if (type.startsWith('tool.') || type === 'policy.decided') env['tool'] = { name: tool };
    if (type === 'policy.decided') env['decision'] = { effect: 'allow', policyVersion: 'p1', policies: ['a'], reasons: [] };
    if (type.startsWith('approval.')) env['approval'] = { id: 'ap1', status: 'granted', approver: { type: 'human', id: 'bob' } };
    if (type.startsWith('credential.')) env['credential'] = { jti: 'j1', fingerprint: DIGEST_A, audience: ['a', 'b'], depth: 1 };
    if (type === 'session.closed') env['seal'] = { count: seq, head: DIGEST_A };
    if (trace) env['trace'] = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', flags: '01' };
    return env;
  });

const KEYS = ['v', 'id', 'tenant', 'type', 'time', 'recordedAt', 'session', 'initiator', 'actor', 'chain', 'workload', 'cause', 'trace', 'tool', 'decision', 'approval', 'credential', 'seal', 'data'];

/** A good envelope with one or two of its fields taken from the broad generator (present, absent, good or bad). */
const nearEnvelope = fc
  .tuple(goodEnvelope, envelopeArb, fc.subarray(KEYS, { minLength: 1, maxLength: 2 }))
  .map(([good, other, keys]) => {
    const out: Record<string, unknown> = { ...good };
    const from = typeof other === 'object' && other !== null ? (other as Record<string, unknown>) : {};
    for (const k of keys) {
      if (k in from) out[k] = from[k];
      else delete out[k];
    }
    return out;
  });

function thrown(f: () => unknown): { code: string; field: string | undefined; message: string } | undefined {
  try {
    f();
    return undefined;
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    return { code: err.code, field: err.field, message: err.message };
  }
}

describe('the fast envelope check', () => {
  it('never accepts what the schema rejects, and leaves every answer as the schema gives it', () => {
    let accepted = 0;
    let rejected = 0;
    fc.assert(
      fc.property(fc.oneof(envelopeArb, nearEnvelope), (env) => {
        const schema = schemaIssues(env);
        if (fastEnvelopeAccepts(env)) {
          expect(schema).toEqual([]);
          accepted++;
        } else rejected++;
        // Same verdict, same issues (fields and messages), same error.
        expect(envelopeIssues(env)).toEqual(schema);
        const err = thrown(() => validateEnvelope(env));
        if (schema.length === 0) expect(err).toBeUndefined();
        else expect(err).toEqual({ code: 'ENVELOPE_INVALID', field: schema[0]!.field, message: `invalid envelope: ${schema.map((i) => `${i.field}: ${i.message}`).join('; ')}` });
      }),
      { numRuns: 20_000 },
    );
    // Both sides of the check were exercised.
    expect(accepted).toBeGreaterThan(200);
    expect(rejected).toBeGreaterThan(200);
  });

  it('accepts the envelopes Custody writes (so the fast path is the path taken)', () => {
    fc.assert(
      fc.property(goodEnvelope, (env) => {
        expect(schemaIssues(env)).toEqual([]);
        expect(fastEnvelopeAccepts(env)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('defers to the schema for objects that are not plain, symbol keys and inherited commitment keys', () => {
    const base = fc.sample(goodEnvelope, { numRuns: 1, seed: 1 })[0]!;
    class Actor {
      type = 'agent';
      id = 'a';
    }
    const sym = { ...(base['data'] as object), [Symbol('k')]: 1 };
    const inherited = Object.create({ $commitment: DIGEST_A }) as Record<string, unknown>;
    inherited['x'] = 1;
    const cases = [
      { ...base, actor: new Actor() },
      { ...base, data: sym },
      { ...base, data: { a: inherited } },
      { ...base, data: Object.create(null) as object },
      Object.assign(Object.create(null) as object, base),
    ];
    for (const env of cases) {
      expect(envelopeIssues(env)).toEqual(schemaIssues(env));
      if (fastEnvelopeAccepts(env)) expect(schemaIssues(env)).toEqual([]);
    }
  });
});

describe('realTimeByDigits', () => {
  /** What envelope.ts asks of Date.parse. */
  const byDate = (s: string) => {
    const ms = Date.parse(s);
    return !Number.isNaN(ms) && new Date(ms).toISOString().slice(0, 19) === s.slice(0, 19);
  };
  const pad = (n: number, w: number) => String(n).padStart(w, '0');
  it('agrees with Date.parse on every time the envelope pattern admits, and defers past 3 fraction digits', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.constantFrom(0, 1600, 1900, 2000, 2024, 2100, 9999)),
        fc.integer({ min: 0, max: 99 }),
        fc.integer({ min: 0, max: 99 }),
        fc.integer({ min: 0, max: 99 }),
        fc.integer({ min: 0, max: 99 }),
        fc.integer({ min: 0, max: 99 }),
        fc.option(fc.stringMatching(/^\.\d{1,9}$/)),
        (y, mo, d, h, mi, sec, frac) => {
          const s = `${pad(y, 4)}-${pad(mo, 2)}-${pad(d, 2)}T${pad(h, 2)}:${pad(mi, 2)}:${pad(sec, 2)}${frac ?? ''}Z`;
          const fast = realTimeByDigits(s);
          if (s.length > 24) expect(fast).toBeUndefined();
          else expect(fast, s).toBe(byDate(s));
        },
      ),
      { numRuns: 20_000 },
    );
    // Every day of a leap and a common year, and the days just past each month's end.
    for (const y of [2023, 2024, 1900, 2000]) {
      for (let mo = 1; mo <= 12; mo++) {
        for (let d = 0; d <= 32; d++) {
          const s = `${y}-${pad(mo, 2)}-${pad(d, 2)}T23:59:59.999Z`;
          expect(realTimeByDigits(s), s).toBe(byDate(s));
        }
      }
    }
  });
});
