/**
 * Runs every frozen vector in test-vectors/v1 (but merkle/, see merkle-vectors.test.ts)
 * through the implementation: positive vectors must give `expected`, negative ones
 * must fail with `expectedError`.
 */
import { readdirSync, readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { verifyBundle } from './bundle.js';
import { fromBase64, toBase64, utf8 } from './bytes.js';
import { canonicalJson, parseCanonical, parseJson } from './canonical-json.js';
import { verifyCheckpoint } from './checkpoint.js';
import { disclosureDigest, parseDisclosure } from './commitment.js';
import { validateEnvelope } from './envelope.js';
import { CustodyError, type FormatError } from './errors.js';
import { parseVerifierKey, verifyNote } from './note.js';
import { verifyReceipt } from './receipt.js';

const root = new URL('../../../test-vectors/v1/', import.meta.url);

interface Vector {
  description: string;
  input: Record<string, unknown>;
  expected?: Record<string, unknown>;
  expectedError?: string;
  expectedField?: string;
}

function load(format: string): [string, Vector][] {
  const dir = new URL(`${format}/`, root);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f, JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as Vector]);
}

/** Runs `fn`; returns the error code it threw, or its result. */
function attempt<T>(fn: () => T): { ok: true; value: T } | { ok: false; code: string; err: unknown } {
  try {
    return { ok: true, value: fn() };
  } catch (err) {
    return { ok: false, code: err instanceof CustodyError ? err.code : `UNTYPED: ${String(err)}`, err };
  }
}

function check<T>(v: Vector, fn: () => T, compare: (value: T, expected: Record<string, unknown>) => void): void {
  const r = attempt(fn);
  if (v.expectedError !== undefined) {
    expect(r.ok, `${v.description}: should be rejected`).toBe(false);
    if (!r.ok) expect(r.code).toBe(v.expectedError);
  } else {
    if (!r.ok) throw r.err;
    compare(r.value, v.expected!);
  }
}

describe('test vectors v1', () => {
  describe.each(load('canonical-json'))('canonical-json/%s', (_name, v) => {
    it(v.description, () => {
      const json = v.input['json'] as string;
      check(
        v,
        () => (v.input['mode'] === 'strict' ? canonicalJson(parseCanonical(utf8(json))) : canonicalJson(parseJson(json))),
        (out, exp) => expect(out).toBe(exp['canonical']),
      );
    });
  });

  describe.each(load('commitment'))('commitment/%s', (_name, v) => {
    it(v.description, () => {
      const disclosure = v.input['disclosure'] as string;
      check(
        v,
        () => {
          const d = parseDisclosure(disclosure);
          const digest = disclosureDigest(disclosure);
          if (v.input['digest'] !== undefined && v.input['digest'] !== digest) {
            throw new CustodyError('DISCLOSURE_MISMATCH', 'digest differs');
          }
          return { ...d, digest };
        },
        (out, exp) => expect(out).toEqual(exp),
      );
    });
  });

  describe.each(load('note'))('note/%s', (_name, v) => {
    it(v.description, () => {
      check(
        v,
        () => verifyNote(v.input['note'] as string, parseVerifierKey(v.input['verifierKey'] as string)),
        (out, exp) => expect(out.text).toBe(exp['text']),
      );
    });
  });

  describe.each(load('checkpoint'))('checkpoint/%s', (_name, v) => {
    it(v.description, () => {
      check(
        v,
        () => verifyCheckpoint(v.input['checkpoint'] as string, parseVerifierKey(v.input['verifierKey'] as string)),
        (cp, exp) => expect({ origin: cp.origin, size: cp.size, rootHash: toBase64(cp.rootHash) }).toEqual(exp),
      );
    });
  });

  describe.each(load('receipt'))('receipt/%s', (_name, v) => {
    it(v.description, () => {
      check(
        v,
        () =>
          verifyReceipt(
            fromBase64(v.input['entry'] as string),
            v.input['proof'] as string,
            parseVerifierKey(v.input['verifierKey'] as string),
          ),
        (r, exp) => expect({ index: r.index, size: r.checkpoint.size, rootHash: toBase64(r.checkpoint.rootHash) }).toEqual(exp),
      );
    });
  });

  describe.each(load('envelope'))('envelope/%s', (_name, v) => {
    it(v.description, () => {
      const r = attempt(() => validateEnvelope(v.input['envelope']));
      if (v.expectedError === undefined) {
        expect(r.ok).toBe(true);
      } else {
        expect(r.ok).toBe(false);
        if (!r.ok) {
          expect(r.code).toBe(v.expectedError);
          expect((r.err as FormatError).field).toBe(v.expectedField);
        }
      }
    });
  });

  describe.each(load('bundle'))('bundle/%s', (_name, v) => {
    it(v.description, () => {
      const report = verifyBundle(v.input['bundle'], { verifierKey: v.input['verifierKey'] as string });
      if (v.expectedError !== undefined) {
        expect(report.ok).toBe(false);
        expect(report.verdict).toBe('failed');
        expect(report.failures[0]?.code).toBe(v.expectedError);
      } else {
        expect(report.failures).toEqual([]);
        expect(report.verdict).toBe(v.expected!['verdict']);
        expect(report.records).toHaveLength(v.expected!['records'] as number);
        const redacted = report.records.flatMap((r) => r.redacted.map((p) => `${r.record}:${p}`));
        expect(redacted).toEqual(v.expected!['redacted']);
      }
    });
  });

  it('each kind of tampering fails for a distinct reason', () => {
    const reason = new Map(load('bundle').map(([name, v]) => [name, v.expectedError]));
    const kinds = {
      'reject-tampered-entry.json': 'ENTRY_TAMPERED',
      'reject-tampered-proof.json': 'PROOF_INCLUSION_FAILED',
      'reject-tampered-checkpoint.json': 'CHECKPOINT_ALTERED',
      'reject-tampered-signature.json': 'SIGNATURE_INVALID',
      'reject-tampered-disclosure.json': 'DISCLOSURE_MISMATCH',
      'reject-dropped-entry.json': 'CHAIN_GAP',
      'reject-wrong-key.json': 'KEY_MISMATCH',
    };
    for (const [file, code] of Object.entries(kinds)) expect(reason.get(file), file).toBe(code);
    expect(new Set(Object.values(kinds)).size).toBe(Object.keys(kinds).length);
  });
});
