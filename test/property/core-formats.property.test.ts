/**
 * Property-based tests of @custody/core's parsers of untrusted input (issue 9,
 * adversarial input): encodings, RFC 8785 canonical JSON, the event envelope and
 * entry bytes, disclosures and pointers, checkpoints, receipts, signed notes and
 * bundles. For each: arbitrary or mutated input only ever raises the documented
 * error type and codes (never a TypeError or RangeError), round trips hold, and
 * any single-byte mutation of a signed or proved artifact fails verification.
 *
 * Already covered next to the code (not repeated here): parseNote on arbitrary
 * strings (note.test.ts), prepare/place agreement (entry.test.ts), bundles with
 * mutated entry/proof/checkpoint fields and verifyBundle on fc.anything()
 * (bundle.test.ts).
 */
import {
  canonicalJson,
  createDisclosure,
  decodeEntry,
  decodeEntryBase64,
  encodeEntry,
  type EventDraft,
  envelopeIssues,
  formatCheckpoint,
  formatPointer,
  formatReceipt,
  FormatError,
  fromBase64,
  fromBase64url,
  fromHex,
  fromUtf8,
  generateSigner,
  MemoryLog,
  parseCheckpoint,
  parseDisclosure,
  parseCanonical,
  parsePointer,
  parseReceipt,
  parseVerifierKey,
  sealEvent,
  signNote,
  toBase64,
  toBase64url,
  toHex,
  utf8,
  validateEnvelope,
  verifyBundle,
  verifyCheckpoint,
  verifyNote,
  verifyReceipt,
  VerificationError,
} from '@custody/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

const RUNS = Number(process.env['PROPERTY_RUNS'] ?? (process.env['SOAK'] === '1' ? 5000 : 300));
const opts = { numRuns: RUNS };

/** Runs `f`; passes when it returns or throws a FormatError with one of `codes`. */
function onlyFormatError(f: () => unknown, ...codes: string[]): void {
  try {
    f();
  } catch (err) {
    if (!(err instanceof FormatError)) throw new Error(`threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
    if (codes.length > 0 && !codes.includes(err.code)) throw new Error(`threw FormatError ${err.code}, expected ${codes.join('|')}`, { cause: err });
  }
}

/** Runs `f`; true when it threw a FormatError or VerificationError, and fails the test on anything else thrown. */
function refused(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (err) {
    if (err instanceof FormatError || err instanceof VerificationError) return true;
    throw new Error(`threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
  }
}

/** `text` with the UTF-8 byte at `pos` XORed with `x` (1-255), decoded leniently (invalid UTF-8 becomes U+FFFD). */
function mutateByte(text: string, pos: number, x: number): string {
  const bytes = utf8(text);
  bytes[pos % bytes.length]! ^= x;
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

const byteMutation = fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 }));

/** JSON values as JCS sees them (no -0: it canonicalises to 0). */
const jsonValue = fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);

describe('encodings', () => {
  it('decoders of base64, base64url, hex and UTF-8 raise only ENCODING_INVALID, and round-trip', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (s) => {
        onlyFormatError(() => fromBase64(s), 'ENCODING_INVALID');
        onlyFormatError(() => fromBase64url(s), 'ENCODING_INVALID');
        onlyFormatError(() => fromHex(s), 'ENCODING_INVALID');
      }),
      opts,
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
        expect(fromBase64(toBase64(b))).toEqual(b);
        expect(fromBase64url(toBase64url(b))).toEqual(b);
        expect(fromHex(toHex(b))).toEqual(b);
        onlyFormatError(() => fromUtf8(b), 'ENCODING_INVALID');
      }),
      opts,
    );
  });

  it('base64 decoding is canonical: one byte string, one text', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), byteMutation, (b, [pos, x]) => {
        const text = toBase64(b);
        const other = mutateByte(text, pos, x);
        let decoded: Uint8Array | undefined;
        try {
          decoded = fromBase64(other);
        } catch (err) {
          expect(err).toBeInstanceOf(FormatError);
        }
        if (decoded !== undefined) expect(toHex(decoded)).not.toBe(toHex(b));
      }),
      opts,
    );
  });
});

describe('RFC 8785 canonical JSON', () => {
  it('round-trips: parseCanonical(canonicalJson(v)) equals v, and canonicalisation is idempotent', () => {
    fc.assert(
      fc.property(jsonValue, (v) => {
        const text = canonicalJson(v);
        expect(parseCanonical(utf8(text))).toEqual(v);
        expect(canonicalJson(JSON.parse(text))).toBe(text);
      }),
      opts,
    );
  });

  it('canonicalJson raises only JSON_INVALID on anything', () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withBoxedValues: true, withMap: true, withSet: true, withTypedArray: true, withSparseArray: true, withNullPrototype: true }), (v) => {
        onlyFormatError(() => canonicalJson(v), 'JSON_INVALID');
      }),
      opts,
    );
  });

  it('parseCanonical raises only ENCODING_INVALID, JSON_INVALID or JSON_NOT_CANONICAL on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.string({ unit: 'binary', maxLength: 64 }).map(utf8), jsonValue.map((v) => utf8(JSON.stringify(v, null, 1)))), (b) => {
        onlyFormatError(() => parseCanonical(b), 'ENCODING_INVALID', 'JSON_INVALID', 'JSON_NOT_CANONICAL');
      }),
      opts,
    );
  });

  it('refuses any non-canonical spelling of a value', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 6 }), jsonValue, { minKeys: 2, maxKeys: 5 }), (obj) => {
        const text = canonicalJson(obj);
        const spaced = JSON.stringify(JSON.parse(text), null, 1);
        const reversed = `{${Object.entries(JSON.parse(text) as Record<string, unknown>)
          .reverse()
          .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`)
          .join(',')}}`;
        for (const other of [spaced, reversed]) {
          if (other === text) continue;
          expect(() => parseCanonical(utf8(other))).toThrow(FormatError);
        }
      }),
      opts,
    );
  });
});

const human = { type: 'human' as const, id: 'alice@example.com' };
const agent = { type: 'agent' as const, id: 'refund-bot' };
const drafts = fc.record({
  n: fc.nat({ max: 1e6 }),
  type: fc.constantFrom('session.opened', 'tool.requested', 'model.output', 'admin.note', 'external.otel.span'),
  data: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== '__proto__' && k !== '$commitment'), jsonValue, { maxKeys: 4 }),
  args: fc.option(jsonValue, { nil: undefined }),
});
function draftOf(d: { n: number; type: string; data: Record<string, unknown>; args: unknown }): EventDraft {
  return {
    id: `0193a0c2-0000-7000-8000-${d.n.toString(16).padStart(12, '0')}`,
    time: '2026-11-22T09:00:00.000Z',
    type: d.type,
    ...(d.type.startsWith('admin.') || d.type.startsWith('external.') ? {} : { session: { id: 's-1' } }),
    initiator: human,
    actor: agent,
    ...(d.type === 'tool.requested' ? { tool: { name: 't' } } : {}),
    data: { ...d.data, ...(d.args !== undefined ? { arguments: d.args } : {}) },
  } as EventDraft;
}
const seal = (d: EventDraft) => sealEvent(d, { tenant: 'acme', recordedAt: '2026-11-22T09:00:01.000Z', ...(d.session ? { seq: 1, prev: null } : {}) });

describe('the event envelope and entry bytes', () => {
  it('validateEnvelope raises only ENVELOPE_INVALID, and envelopeIssues never throws, on anything', () => {
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withBigInt: true, maxDepth: 4 }), (v) => {
        onlyFormatError(() => validateEnvelope(v), 'ENVELOPE_INVALID');
        expect(Array.isArray(envelopeIssues(v))).toBe(true);
      }),
      opts,
    );
  });

  it('decodeEntry raises only ENTRY_MALFORMED on arbitrary bytes and on any single-byte mutation of an entry', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), jsonValue.map((v) => utf8(canonicalJson(v)))), (b) => {
        onlyFormatError(() => decodeEntry(b), 'ENTRY_MALFORMED');
      }),
      opts,
    );
    fc.assert(
      fc.property(drafts, byteMutation, (d, [pos, x]) => {
        const { entry } = seal(draftOf(d));
        const before = decodeEntry(entry);
        const bytes = entry.slice();
        bytes[pos % bytes.length]! ^= x;
        let after: unknown;
        onlyFormatError(() => {
          after = decodeEntry(bytes);
        }, 'ENTRY_MALFORMED');
        // A mutation that still parses is a different envelope (the digest chain catches it).
        if (after !== undefined) expect(canonicalJson(after)).not.toBe(canonicalJson(before));
      }),
      opts,
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (s) => {
        onlyFormatError(() => decodeEntryBase64(s), 'ENTRY_MALFORMED');
      }),
      opts,
    );
  });

  it('round-trips: decodeEntry(encodeEntry(envelope)) is the envelope, byte for byte', () => {
    fc.assert(
      fc.property(drafts, (d) => {
        const { envelope, entry } = seal(draftOf(d));
        expect(decodeEntry(entry)).toEqual(envelope);
        expect(toHex(encodeEntry(decodeEntry(entry)))).toBe(toHex(entry));
      }),
      opts,
    );
  });
});

describe('disclosures and JSON Pointers', () => {
  it('parseDisclosure raises only DISCLOSURE_MALFORMED on arbitrary and mutated input', () => {
    const good = createDisclosure('/data/arguments', { a: 1 }, (n) => new Uint8Array(n).fill(7)).disclosure;
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 120 }), jsonValue.map((v) => toBase64url(utf8(JSON.stringify(v)))), byteMutation.map(([p, x]) => mutateByte(good, p, x))), (s) => {
        onlyFormatError(() => parseDisclosure(s), 'DISCLOSURE_MALFORMED');
      }),
      opts,
    );
  });

  it('round-trip: createDisclosure → parseDisclosure, formatPointer → parsePointer', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 6 }), { minLength: 1, maxLength: 4 }), jsonValue, (tokens, value) => {
        const pointer = formatPointer(tokens);
        expect(parsePointer(pointer)).toEqual(tokens);
        const d = createDisclosure(pointer, value);
        expect(parseDisclosure(d.disclosure)).toMatchObject({ path: pointer, value });
      }),
      opts,
    );
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 30 }), (s) => onlyFormatError(() => parsePointer(s), 'DISCLOSURE_MALFORMED')),
      opts,
    );
  });
});

/** A log with `n` sealed sessions' worth of entries. */
function logOf(n: number): MemoryLog {
  const signer = generateSigner('custody.test/acme');
  const log = new MemoryLog({ tenant: 'acme', signer });
  for (let s = 0; s < n; s++) {
    const base = { time: '2026-11-22T09:00:00.000Z', session: { id: `s${s}` }, initiator: human, actor: agent };
    log.append({ ...base, id: `019ab3a0-0000-7000-8000-${(s * 10).toString(16).padStart(12, '0')}`, type: 'session.opened' } as EventDraft);
    log.append({ ...base, id: `019ab3a0-0000-7000-8000-${(s * 10 + 1).toString(16).padStart(12, '0')}`, type: 'tool.requested', tool: { name: 't' }, data: { arguments: { s } } } as EventDraft);
    const head = log.sessionHead(`s${s}`)!;
    log.append({ ...base, id: `019ab3a0-0000-7000-8000-${(s * 10 + 2).toString(16).padStart(12, '0')}`, type: 'session.closed', seal: { count: head.seq + 1, head: head.head } } as EventDraft);
  }
  return Object.assign(log, { signer });
}
const log = logOf(4) as MemoryLog & { signer: ReturnType<typeof generateSigner> };
const verifier = parseVerifierKey(log.signer.verifierText);

describe('checkpoints', () => {
  it('parseCheckpoint raises only CHECKPOINT_MALFORMED on arbitrary input, and round-trips', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 120 }), fc.tuple(fc.string(), fc.string(), fc.string()).map((l) => `${l.join('\n')}\n`)), (s) => {
        onlyFormatError(() => parseCheckpoint(s), 'CHECKPOINT_MALFORMED');
      }),
      opts,
    );
    fc.assert(
      fc.property(
        fc.record({
          origin: fc.string({ minLength: 1, maxLength: 30 }).filter((o) => !o.includes('\n')),
          size: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
          rootHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
          extensions: fc.array(fc.string({ minLength: 1, maxLength: 10 }).filter((e) => !e.includes('\n')), { maxLength: 2 }),
        }),
        (cp) => {
          const parsed = parseCheckpoint(formatCheckpoint(cp));
          expect({ ...parsed, rootHash: toHex(parsed.rootHash) }).toEqual({ ...cp, rootHash: toHex(cp.rootHash) });
        },
      ),
      opts,
    );
  });

  it('any single-byte mutation of a signed checkpoint fails verification', () => {
    const note = log.checkpoint();
    expect(verifyCheckpoint(note, verifier).size).toBe(log.size);
    fc.assert(
      fc.property(byteMutation, ([pos, x]) => {
        expect(refused(() => verifyCheckpoint(mutateByte(note, pos, x), verifier))).toBe(true);
      }),
      opts,
    );
  });
});

describe('signed notes', () => {
  it('any single-byte mutation of a signed note fails verification', () => {
    const signer = generateSigner('custody.test/notes');
    const v = parseVerifierKey(signer.verifierText);
    fc.assert(
      fc.property(fc.array(fc.string({ minLength: 1, maxLength: 20 }).filter((l) => !/[\u0000-\u001f]|[\ud800-\udfff]/.test(l)), { minLength: 1, maxLength: 3 }), byteMutation, (lines, [pos, x]) => {
        const note = signNote(`${lines.join('\n')}\n`, signer);
        expect(verifyNote(note, v).text).toBe(`${lines.join('\n')}\n`);
        expect(refused(() => verifyNote(mutateByte(note, pos, x), v))).toBe(true);
      }),
      opts,
    );
  });

  it('verifier keys: parseVerifierKey raises only KEY_MALFORMED on arbitrary and mutated keys', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 90 }), byteMutation.map(([p, x]) => mutateByte(log.signer.verifierText, p, x))), (s) => {
        onlyFormatError(() => parseVerifierKey(s), 'KEY_MALFORMED');
      }),
      opts,
    );
  });
});

describe('receipts', () => {
  it('parseReceipt raises only PROOF_MALFORMED on arbitrary input, and round-trips', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ maxLength: 100 }).map((s) => `c2sp.org/tlog-proof@v1\n${s}\n\nx\n`)), (s) => {
        onlyFormatError(() => parseReceipt(s), 'PROOF_MALFORMED');
      }),
      opts,
    );
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 40 }), fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 10 }), fc.option(fc.uint8Array({ maxLength: 20 }), { nil: undefined }), (index, proof, extra) => {
        const r = { index, proof, checkpoint: 'custody.test/acme\n1\nAAAA\n\n— x y\n', ...(extra !== undefined ? { extra } : {}) };
        const parsed = parseReceipt(formatReceipt(r));
        expect(parsed.index).toBe(index);
        expect(parsed.proof.map(toHex)).toEqual(proof.map(toHex));
        expect(parsed.checkpoint).toBe(r.checkpoint);
        if (extra !== undefined) expect(toHex(parsed.extra!)).toBe(toHex(extra));
      }),
      opts,
    );
  });

  it('any single-byte mutation of a receipt (or of its entry) fails verification', () => {
    fc.assert(
      fc.property(fc.nat({ max: log.size - 1 }), byteMutation, fc.boolean(), (index, [pos, x], mutateEntry) => {
        const entry = log.events[index]!.entry;
        const receipt = log.receipt(index);
        expect(verifyReceipt(entry, receipt, verifier).index).toBe(index);
        if (mutateEntry) {
          const bytes = entry.slice();
          bytes[pos % bytes.length]! ^= x;
          expect(refused(() => verifyReceipt(bytes, receipt, verifier))).toBe(true);
        } else {
          expect(refused(() => verifyReceipt(entry, mutateByte(receipt, pos, x), verifier))).toBe(true);
        }
      }),
      opts,
    );
  });
});

describe('bundles', () => {
  it('any single-byte mutation of a serialised bundle fails verification (or does not parse), and verifyBundle never throws', () => {
    const golden = log.bundle('s1');
    const text = JSON.stringify(golden);
    expect(verifyBundle(JSON.parse(text), { verifierKey: log.signer.verifierText }).ok).toBe(true);
    const TOP = ['format', 'session', 'verifierKey', 'checkpoint', 'records', 'consistency'];
    const RECORD = ['entry', 'proof', 'disclosures'];
    const known = (o: Record<string, unknown>, keys: string[]) => Object.fromEntries(Object.entries(o).filter(([k]) => keys.includes(k)));
    const passed: string[] = [];
    fc.assert(
      fc.property(byteMutation, ([pos, x]) => {
        const mutated = mutateByte(text, pos, x);
        let parsed: Record<string, unknown>;
        try {
          parsed = JSON.parse(mutated) as Record<string, unknown>;
        } catch {
          return; // not JSON: refused before verification
        }
        const report = verifyBundle(parsed, { verifierKey: log.signer.verifierText });
        if (!report.ok) return;
        // The only mutations that may still verify rename an optional, unsigned key
        // (\`session\`, a record's \`disclosures\`): the same as leaving it out, which v1
        // allows (a redacted bundle; a bundle not scoped to one session). Every signed
        // or proved byte (checkpoint, entries, receipts, disclosures present) is intact.
        const top = known(parsed, TOP);
        const records = (parsed['records'] as Record<string, unknown>[]).map((r) => known(r, RECORD));
        const same =
          top['format'] === golden.format &&
          top['verifierKey'] === golden.verifierKey &&
          top['checkpoint'] === golden.checkpoint &&
          (top['session'] === undefined || top['session'] === golden.session) &&
          records.length === golden.records.length &&
          records.every((r, i) => r['entry'] === golden.records[i]!.entry && r['proof'] === golden.records[i]!.proof && (r['disclosures'] === undefined || JSON.stringify(r['disclosures']) === JSON.stringify(golden.records[i]!.disclosures)));
        const droppedOptional = (top['session'] === undefined) !== (golden.session === undefined) || records.some((r, i) => r['disclosures'] === undefined && golden.records[i]!.disclosures !== undefined);
        if (!(same && droppedOptional)) {
          let at = 0;
          while (at < text.length && text[at] === mutated[at]) at++;
          passed.push(`byte ${pos % utf8(text).length} (^${x}): ${JSON.stringify(text.slice(Math.max(0, at - 40), at + 10))} → ${JSON.stringify(mutated.slice(Math.max(0, at - 40), at + 10))}`);
        }
        if (droppedOptional) expect(report.records.some((r) => r.redacted.length > 0) || report.sessions.length > 0).toBe(true);
      }),
      { numRuns: RUNS * 3 },
    );
    expect(passed).toEqual([]);
  });
});
