/**
 * Generates test-vectors/v1 (all formats except merkle/, which
 * generate-merkle-vectors.ts writes) and the manifest pinning every file.
 * Deterministic: fixed keys, seeded salts and ids, fixed clock. The vectors are
 * frozen once published; the manifest test fails if a file changes.
 *
 *   npm run vectors
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  type Bundle,
  canonicalJson,
  createDisclosure,
  formatReceipt,
  generateSigner,
  MemoryLog,
  type NoteSigner,
  parseReceipt,
  signCheckpoint,
  signerFromSeed,
  signNote,
  toBase64,
  utf8,
  verifyBundle,
} from '../packages/core/src/index.js';
import { buildDemo, seededRandom } from '../packages/cli/src/demo-session.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'test-vectors', 'v1');
const seed = (label: string) => createHash('sha256').update(`custody test vectors v1: ${label}`).digest();

const logKey = signerFromSeed('custody.test/default', seed('log key'));
const otherKey = signerFromSeed('custody.test/default', seed('other key'));
const strangerKey = signerFromSeed('stranger.example/log', seed('stranger key'));
void generateSigner;

type Vector = { description: string; source?: string; input: unknown } & ({ expected: unknown } | { expectedError: string; expectedField?: string });

function write(format: string, name: string, v: Vector): void {
  mkdirSync(join(root, format), { recursive: true });
  writeFileSync(join(root, format, `${name}.json`), JSON.stringify(v, null, 2) + '\n');
}

function keysFile(): void {
  const k = (s: NoteSigner, note: string) => ({ name: s.name, signerKey: s.signerText, verifierKey: s.verifierText, note });
  writeFileSync(
    join(root, 'keys.json'),
    JSON.stringify(
      {
        description: 'Fixed TEST keys the vectors were made with. Never use them for anything else.',
        log: k(logKey, 'the log key: signs every checkpoint in these vectors'),
        other: k(otherKey, 'same name as the log key, different key: a wrong key'),
        stranger: k(strangerKey, 'a key of another log'),
      },
      null,
      2,
    ) + '\n',
  );
}

// --- canonical-json -------------------------------------------------------
function canonicalVectors(): void {
  const src = 'cyberphone/json-canonicalization testdata (the RFC 8785 authors\u2019 reference data): input/<name>.json -> output/<name>.json';
  const cases: Record<string, [string, string]> = {
    'rfc8785-arrays': ['[\n  56,\n  {\n    "d": true,\n    "10": null,\n    "1": [ ]\n  }\n]', '[56,{"1":[],"10":null,"d":true}]'],
    'rfc8785-french': [
      '{\n  "peach": "This sorting order",\n  "p\u00e9ch\u00e9": "is wrong according to French",\n  "p\u00eache": "but canonicalization MUST",\n  "sin":   "ignore locale"\n}',
      '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French","p\u00eache":"but canonicalization MUST","sin":"ignore locale"}',
    ],
    'rfc8785-structures': [
      '{\n  "1": {"f": {"f": "hi","F": 5} ,"\\n": 56.0},\n  "10": { },\n  "": "empty",\n  "a": { },\n  "111": [ {"e": "yes","E": "no" } ],\n  "A": { }\n}',
      '{"":"empty","1":{"\\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{"E":"no","e":"yes"}],"A":{},"a":{}}',
    ],
    'rfc8785-unicode': ['{\n  "Unnormalized Unicode":"A\\u030a"\n}', '{"Unnormalized Unicode":"A\u030a"}'],
    'rfc8785-values': [
      '{\n  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n  "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",\n  "literals": [null, true, false]\n}',
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    ],
    'rfc8785-weird': [
      '{\n  "\\u20ac": "Euro Sign",\n  "\\r": "Carriage Return",\n  "\\u000a": "Newline",\n  "1": "One",\n  "\\u0080": "Control\\u007f",\n  "\\ud83d\\ude02": "Smiley",\n  "\\u00f6": "Latin Small Letter O With Diaeresis",\n  "\\ufb33": "Hebrew Letter Dalet With Dagesh",\n  "</script>": "Browser Challenge"\n}',
      '{"\\n":"Newline","\\r":"Carriage Return","1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude02":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    ],
  };
  for (const [name, [json, canonical]] of Object.entries(cases)) {
    if (canonicalJson(JSON.parse(json)) !== canonical) throw new Error(`canonical vector ${name} disagrees with the implementation`);
    write('canonical-json', name, { description: `RFC 8785 reference case ${name.slice(8)}`, source: src, input: { json, mode: 'canonicalize' }, expected: { canonical } });
    write('canonical-json', `${name}-strict`, {
      description: `the canonical form of ${name.slice(8)} is accepted as entry bytes`,
      input: { json: canonical, mode: 'strict' },
      expected: { canonical },
    });
  }
  const neg: [string, string, string, string][] = [
    ['whitespace', '{"a": 1}', 'JSON_NOT_CANONICAL', 'a space after the colon'],
    ['unsorted-keys', '{"b":1,"a":2}', 'JSON_NOT_CANONICAL', 'keys out of order'],
    ['duplicate-keys', '{"a":1,"a":1}', 'JSON_NOT_CANONICAL', 'a duplicate key (JSON.parse keeps one; the re-serialisation differs)'],
    ['number-form', '{"a":1.0}', 'JSON_NOT_CANONICAL', 'a number not in ECMAScript shortest form'],
    ['escape-form', '{"a":"\\u0041"}', 'JSON_NOT_CANONICAL', 'an unnecessary \\u escape'],
    ['trailing-newline', '{"a":1}\n', 'JSON_NOT_CANONICAL', 'a trailing newline'],
    ['lone-surrogate', '{"a":"\\ud800"}', 'JSON_INVALID', 'a lone surrogate (not I-JSON)'],
    ['not-json', '{"a":', 'JSON_INVALID', 'truncated JSON'],
  ];
  for (const [name, json, code, what] of neg) {
    write('canonical-json', `reject-${name}`, { description: `entry bytes with ${what} are rejected`, input: { json, mode: 'strict' }, expectedError: code });
  }
}

// --- commitment -----------------------------------------------------------
function commitmentVectors(): void {
  const rnd = seededRandom(7);
  const cases: [string, string, unknown][] = [
    ['prompt', '/data/prompt', 'Please refund order 1234, it arrived broken.'],
    ['arguments', '/data/arguments', { orderId: '1234', amount: 89.9, currency: 'EUR' }],
    ['unicode', '/data/output', 'R\u00fcckerstattung \u20ac89,90 \ud83d\udc4d'],
    ['null', '/data/result', null],
    ['escaped-path', '/data/a~1b~0c', [1, 2, 3]],
  ];
  for (const [name, path, value] of cases) {
    const { disclosure, digest } = createDisclosure(path, value, rnd);
    const salt = JSON.parse(Buffer.from(disclosure, 'base64url').toString('utf8'))[0];
    write('commitment', name, { description: `disclosure of ${path}`, input: { disclosure }, expected: { digest, salt, path, value } });
  }
  const { disclosure, digest } = createDisclosure('/data/prompt', 'secret', rnd);
  const [salt0, path0] = JSON.parse(Buffer.from(disclosure, 'base64url').toString('utf8'));
  const changed = Buffer.from(canonicalJson([salt0, path0, 'not the secret'])).toString('base64url');
  write('commitment', 'reject-tampered', { description: 'a disclosure whose value was changed no longer matches the commitment', input: { disclosure: changed, digest }, expectedError: 'DISCLOSURE_MISMATCH' });
  const short = Buffer.from(canonicalJson([toB64u(new Uint8Array(8)), '/data/prompt', 'x'])).toString('base64url');
  write('commitment', 'reject-short-salt', { description: 'a salt under 128 bits is rejected', input: { disclosure: short }, expectedError: 'DISCLOSURE_MALFORMED' });
  const two = Buffer.from(canonicalJson([toB64u(new Uint8Array(16)), '/data/prompt'])).toString('base64url');
  write('commitment', 'reject-two-elements', { description: 'a disclosure must be [salt, path, value]', input: { disclosure: two }, expectedError: 'DISCLOSURE_MALFORMED' });
  write('commitment', 'reject-padded', { description: 'padded base64url is not accepted', input: { disclosure: disclosure + '=' }, expectedError: 'DISCLOSURE_MALFORMED' });
  const badPath = Buffer.from(canonicalJson([toB64u(new Uint8Array(16)), 'data/prompt', 'x'])).toString('base64url');
  write('commitment', 'reject-bad-pointer', { description: 'the path must be an RFC 6901 JSON Pointer', input: { disclosure: badPath }, expectedError: 'DISCLOSURE_MALFORMED' });
}
const toB64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

// --- note -----------------------------------------------------------------
function noteVectors(): void {
  write('note', 'c2sp-example', {
    description: 'the example of the C2SP signed-note specification',
    source: 'c2sp.org/signed-note, section "Verifier keys", Example',
    input: {
      note: 'This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n',
      verifierKey: 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k',
    },
    expected: { text: 'This is an example message.\n' },
  });
  const text = 'Custody test note\n\nwith an empty line inside\n';
  const signed = signNote(text, logKey);
  write('note', 'signed', { description: 'a note signed by the log key, with an empty line in its text', input: { note: signed, verifierKey: logKey.verifierText }, expected: { text } });
  const cosigned = signNote(text, strangerKey, logKey);
  write('note', 'unknown-signature-ignored', {
    description: 'a signature by an unknown key is ignored',
    input: { note: cosigned, verifierKey: logKey.verifierText },
    expected: { text },
  });
  write('note', 'reject-tampered-text', { description: 'changed text', input: { note: signed.replace('Custody', 'Kustody'), verifierKey: logKey.verifierText }, expectedError: 'SIGNATURE_INVALID' });
  const lines = signed.split('\n');
  const sigLine = lines[lines.length - 2]!;
  const b64 = sigLine.split(' ')[2]!;
  const raw = Buffer.from(b64, 'base64');
  raw[10]! ^= 0x01;
  write('note', 'reject-tampered-signature', {
    description: 'a flipped bit in the signature',
    input: { note: signed.replace(b64, raw.toString('base64')), verifierKey: logKey.verifierText },
    expectedError: 'SIGNATURE_INVALID',
  });
  write('note', 'reject-wrong-key', { description: 'same name, another key: no known signature', input: { note: signed, verifierKey: otherKey.verifierText }, expectedError: 'KEY_MISMATCH' });
  write('note', 'reject-no-blank-line', { description: 'no blank line before the signatures', input: { note: signed.replace('\n\n\u2014', '\n\u2014'), verifierKey: logKey.verifierText }, expectedError: 'NOTE_MALFORMED' });
  write('note', 'reject-control-character', {
    description: 'a control character other than newline',
    input: { note: signNote('tab here\n', logKey).replace('tab here', 'tab\there'), verifierKey: logKey.verifierText },
    expectedError: 'NOTE_MALFORMED',
  });
  write('note', 'reject-no-final-newline', { description: 'the note must end in a newline', input: { note: signed.slice(0, -1), verifierKey: logKey.verifierText }, expectedError: 'NOTE_MALFORMED' });
}

// --- checkpoint -----------------------------------------------------------
function checkpointVectors(log: MemoryLog): void {
  const note = log.checkpoint();
  const body = note.slice(0, note.indexOf('\n\n') + 1);
  const [origin, size, root] = body.split('\n');
  write('checkpoint', 'signed', { description: 'a checkpoint of the demo log', input: { checkpoint: note, verifierKey: logKey.verifierText }, expected: { origin, size: Number(size), rootHash: root } });
  const small = log.checkpoint(5);
  const sb = small.split('\n');
  write('checkpoint', 'signed-size-5', { description: 'a checkpoint at an earlier size', input: { checkpoint: small, verifierKey: logKey.verifierText }, expected: { origin: sb[0], size: 5, rootHash: sb[2] } });
  write('checkpoint', 'reject-tampered-size', { description: 'the size was changed after signing', input: { checkpoint: note.replace(`\n${size}\n`, `\n${Number(size) + 1}\n`), verifierKey: logKey.verifierText }, expectedError: 'SIGNATURE_INVALID' });
  write('checkpoint', 'reject-wrong-key', { description: 'verified with another key of the same name', input: { checkpoint: note, verifierKey: otherKey.verifierText }, expectedError: 'KEY_MISMATCH' });
  const rootBytes = Buffer.from(root!, 'base64');
  write('checkpoint', 'reject-leading-zero', {
    description: 'a size with a leading zero, validly signed',
    input: { checkpoint: signNote(`${origin}\n0${size}\n${root}\n`, logKey), verifierKey: logKey.verifierText },
    expectedError: 'CHECKPOINT_MALFORMED',
  });
  write('checkpoint', 'reject-short-root', {
    description: 'a 31-byte root hash, validly signed',
    input: { checkpoint: signNote(`${origin}\n${size}\n${rootBytes.subarray(1).toString('base64')}\n`, logKey), verifierKey: logKey.verifierText },
    expectedError: 'CHECKPOINT_MALFORMED',
  });
  write('checkpoint', 'reject-two-lines', {
    description: 'no root hash line, validly signed',
    input: { checkpoint: signNote(`${origin}\n${size}\n`, logKey), verifierKey: logKey.verifierText },
    expectedError: 'CHECKPOINT_MALFORMED',
  });
  write('checkpoint', 'reject-origin-mismatch', {
    description: "a checkpoint whose origin is not the key's name",
    input: { checkpoint: signCheckpoint({ origin: 'custody.test/other', size: 1, rootHash: rootBytes, extensions: [] }, logKey), verifierKey: logKey.verifierText },
    expectedError: 'ORIGIN_MISMATCH',
  });
}

// --- receipt --------------------------------------------------------------
function receiptVectors(log: MemoryLog): void {
  const vk = logKey.verifierText;
  for (const i of [0, 7, 12, log.size - 1]) {
    const e = log.events[i]!;
    const proof = log.receipt(i);
    const cp = parseReceipt(proof).checkpoint.split('\n');
    write('receipt', `entry-${i}`, {
      description: `receipt for entry ${i} (${e.envelope.type}) of the demo log`,
      input: { entry: toBase64(e.entry), proof, verifierKey: vk },
      expected: { index: i, size: Number(cp[1]), rootHash: cp[2] },
    });
  }
  const old = log.receipt(3, 5);
  write('receipt', 'entry-3-at-size-5', {
    description: 'a receipt against an earlier checkpoint',
    input: { entry: toBase64(log.events[3]!.entry), proof: old, verifierKey: vk },
    expected: { index: 3, size: 5, rootHash: parseReceipt(old).checkpoint.split('\n')[2] },
  });
  const e = log.events[7]!;
  const proof = log.receipt(7);
  const r = parseReceipt(proof);
  const entry = toBase64(e.entry);
  const tamperedText = new TextDecoder().decode(e.entry).replace('"recordedAt":"2026', '"recordedAt":"2025');
  if (tamperedText === new TextDecoder().decode(e.entry)) throw new Error('receipt tamper did not apply');
  const tamperedEntry = toBase64(utf8(tamperedText));
  write('receipt', 'reject-tampered-entry', { description: 'the entry was changed', input: { entry: tamperedEntry, proof, verifierKey: vk }, expectedError: 'PROOF_INCLUSION_FAILED' });
  const p2 = r.proof.map((h) => h.slice());
  p2[1]![0]! ^= 0x80;
  write('receipt', 'reject-tampered-proof', { description: 'a bit flipped in a proof hash', input: { entry, proof: formatReceipt({ ...r, proof: p2 }), verifierKey: vk }, expectedError: 'PROOF_INCLUSION_FAILED' });
  write('receipt', 'reject-wrong-index', { description: 'the proof of another index', input: { entry, proof: formatReceipt({ ...r, index: 6 }), verifierKey: vk }, expectedError: 'PROOF_INCLUSION_FAILED' });
  write('receipt', 'reject-short-proof', { description: 'a proof hash removed', input: { entry, proof: formatReceipt({ ...r, proof: r.proof.slice(0, -1) }), verifierKey: vk }, expectedError: 'PROOF_INCLUSION_FAILED' });
  write('receipt', 'reject-wrong-key', { description: 'checked against another key', input: { entry, proof, verifierKey: otherKey.verifierText }, expectedError: 'KEY_MISMATCH' });
  write('receipt', 'reject-tampered-checkpoint', {
    description: 'the embedded checkpoint was changed',
    input: { entry, proof: proof.replace(`\n${log.size}\n`, `\n${log.size + 1}\n`), verifierKey: vk },
    expectedError: 'SIGNATURE_INVALID',
  });
  write('receipt', 'reject-bad-header', { description: 'not a tlog-proof@v1', input: { entry, proof: proof.replace('tlog-proof@v1', 'tlog-proof@v2'), verifierKey: vk }, expectedError: 'PROOF_MALFORMED' });
  write('receipt', 'reject-leading-zero-index', { description: 'an index with a leading zero', input: { entry, proof: proof.replace('index 7', 'index 07'), verifierKey: vk }, expectedError: 'PROOF_MALFORMED' });
}

// --- bundle ---------------------------------------------------------------
function bundleVectors(log: MemoryLog, ids: { session: string; child: string; open: string }): void {
  const vk = logKey.verifierText;
  const put = (name: string, description: string, bundle: unknown, result: { verdict: string } | string, key = vk) => {
    const report = verifyBundle(bundle, { verifierKey: key });
    if (typeof result === 'string') {
      if (report.ok || report.failures[0]!.code !== result) {
        throw new Error(`bundle vector ${name}: expected ${result}, got ${report.failures.map((f) => f.code).join(',') || report.verdict}`);
      }
      write('bundle', name, { description, input: { bundle, verifierKey: key }, expectedError: result });
    } else {
      if (report.verdict !== result.verdict) throw new Error(`bundle vector ${name}: expected ${result.verdict}, got ${report.summary}`);
      const records = (bundle as Bundle).records.length;
      const redacted = report.records.flatMap((r) => r.redacted.map((p) => `${r.record}:${p}`));
      write('bundle', name, { description, input: { bundle, verifierKey: key }, expected: { verdict: result.verdict, records, redacted } });
    }
  };
  const golden = log.bundle(ids.session);
  put('golden-complete', 'a sealed session with its disclosures: complete', golden, { verdict: 'complete' });
  put('golden-delegated', 'a delegated sub-session, sealed: complete', log.bundle(ids.child), { verdict: 'complete' });
  put('golden-open', 'a session not yet sealed: intact so far', log.bundle(ids.open), { verdict: 'intact' });
  put('golden-redacted', 'every disclosure dropped: still complete, the fields reported redacted', log.bundle(ids.session, { disclosures: false }), { verdict: 'complete' });
  const partial = structuredClone(golden);
  partial.records[2]!.disclosures = [];
  put('golden-partly-redacted', 'one prompt redacted after sealing', partial, { verdict: 'complete' });

  // Receipts against an earlier checkpoint, proven consistent.
  const mixed = structuredClone(golden);
  const firstIdx = parseReceipt(golden.records[0]!.proof).index;
  const earlier = firstIdx + 3;
  mixed.records[0]!.proof = log.receipt(firstIdx, earlier);
  mixed.consistency = { [String(earlier)]: log.consistency(earlier) };
  put('golden-earlier-checkpoint', 'a receipt against an earlier checkpoint, with the consistency proof to the bundle checkpoint', mixed, { verdict: 'complete' });

  const noCons = structuredClone(mixed);
  delete noCons.consistency;
  put('reject-missing-consistency', 'a receipt against an earlier checkpoint without a consistency proof', noCons, 'PROOF_CONSISTENCY_FAILED');

  // Tampering, one kind per vector, each with its own reason.
  const entryText = (b: Bundle, i: number) => Buffer.from(b.records[i]!.entry, 'base64').toString('utf8');
  const setEntry = (b: Bundle, i: number, text: string) => (b.records[i]!.entry = Buffer.from(text, 'utf8').toString('base64'));

  const te = structuredClone(golden);
  if (!entryText(te, 3).includes('"orders.lookup"')) throw new Error('bundle tamper did not apply');
  setEntry(te, 3, entryText(te, 3).replace('"orders.lookup"', '"orders.delete"'));
  put('reject-tampered-entry', 'an entry changed after sealing (the tool name)', te, 'ENTRY_TAMPERED');

  const tp = structuredClone(golden);
  const rp = parseReceipt(tp.records[4]!.proof);
  const flipped = rp.proof.map((h) => h.slice());
  flipped[0]![5]! ^= 0x01;
  tp.records[4]!.proof = formatReceipt({ ...rp, proof: flipped });
  put('reject-tampered-proof', 'a bit flipped in one inclusion proof', tp, 'PROOF_INCLUSION_FAILED');

  const tc = structuredClone(golden);
  const size = Number(tc.checkpoint.split('\n')[1]);
  tc.checkpoint = tc.checkpoint.replace(`\n${size}\n`, `\n${size - 1}\n`);
  put('reject-tampered-checkpoint', "the bundle checkpoint's size changed after signing", tc, 'CHECKPOINT_ALTERED');

  const ts = structuredClone(golden);
  const sigB64 = ts.checkpoint.trimEnd().split(' ').at(-1)!;
  const sigRaw = Buffer.from(sigB64, 'base64');
  sigRaw[20]! ^= 0x01;
  ts.checkpoint = ts.checkpoint.replace(sigB64, sigRaw.toString('base64'));
  put('reject-tampered-signature', 'a bit flipped in the checkpoint signature', ts, 'SIGNATURE_INVALID');

  const td = structuredClone(golden);
  const disc = td.records[2]!.disclosures![0]!;
  const decoded = JSON.parse(Buffer.from(disc, 'base64url').toString('utf8'));
  decoded[2] = 'Please refund order 9999.';
  td.records[2]!.disclosures![0] = Buffer.from(canonicalJson(decoded)).toString('base64url');
  put('reject-tampered-disclosure', 'a disclosure changed to reveal another prompt', td, 'DISCLOSURE_MISMATCH');

  const dropped = structuredClone(golden);
  dropped.records.splice(4, 1);
  put('reject-dropped-entry', 'an entry removed from the middle of a sealed session', dropped, 'CHAIN_GAP');

  const reordered = structuredClone(golden);
  [reordered.records[3], reordered.records[4]] = [reordered.records[4]!, reordered.records[3]!];
  put('reject-reordered', 'two entries swapped', reordered, 'CHAIN_ORDER');

  const extra = structuredClone(golden);
  extra.records.splice(5, 0, log.bundle(ids.open).records[1]!);
  put('reject-extra-entry', "an entry of another session slipped in", extra, 'CHAIN_EXTRA');

  const sealedOpen = structuredClone(log.bundle(ids.session));
  sealedOpen.records.pop();
  put('dropped-seal-is-intact', 'the seal removed: every entry genuine, but no longer provably complete', sealedOpen, { verdict: 'intact' });

  put('reject-wrong-key', 'verified with another key of the same name', golden, 'KEY_MISMATCH', otherKey.verifierText);
  put('reject-stranger-key', "verified with another log's key", golden, 'KEY_MISMATCH', strangerKey.verifierText);

  const me = structuredClone(golden);
  setEntry(me, 1, entryText(me, 1).replace('{', '{ '));
  put('reject-noncanonical-entry', 'an entry with a space added (not canonical JSON)', me, 'ENTRY_MALFORMED');

  const mp = structuredClone(golden);
  mp.records[0]!.proof = mp.records[0]!.proof.replace(/^index \d+$/m, 'index x');
  put('reject-malformed-proof', 'a receipt with an unreadable index', mp, 'PROOF_MALFORMED');

  const bf = structuredClone(golden) as unknown as Record<string, unknown>;
  bf['format'] = 'custody.bundle/v0';
  put('reject-format', 'an unknown bundle format', bf, 'BUNDLE_MALFORMED');

  // A receipt whose checkpoint is signed by the stranger log.
  const forged = structuredClone(golden);
  const r0 = parseReceipt(forged.records[0]!.proof);
  const cpText = r0.checkpoint.slice(0, r0.checkpoint.indexOf('\n\n') + 1);
  forged.records[0]!.proof = formatReceipt({ ...r0, checkpoint: signNote(cpText, otherKey) });
  put('reject-receipt-checkpoint', "a receipt whose checkpoint is not signed by the log's key", forged, 'PROOF_CHECKPOINT_INVALID');

  // A log that wrote a false seal (a faulty or malicious ledger).
  const bad = new MemoryLog({ tenant: 'default', signer: logKey, random: seededRandom(99), now: () => new Date('2026-11-22T10:00:00.000Z') });
  const base = {
    initiator: { type: 'human' as const, id: 'alice@example.com' },
    actor: { type: 'agent' as const, id: 'refund-agent' },
    session: { id: 'sess-bad-seal' },
    time: '2026-11-22T10:00:00.000Z',
  };
  bad.append({ ...base, id: '019ab3a0-0000-7000-8000-000000000001', type: 'session.opened' });
  bad.append({ ...base, id: '019ab3a0-0000-7000-8000-000000000002', type: 'prompt.received', data: { prompt: 'hello' } });
  const head = bad.sessionHead('sess-bad-seal')!;
  bad.append({ ...base, id: '019ab3a0-0000-7000-8000-000000000003', type: 'session.closed', seal: { count: 2, head: head.head } });
  put('reject-false-seal', 'a seal that counts fewer entries than it closes', bad.bundle('sess-bad-seal'), 'CHAIN_SEAL_MISMATCH');
}

// --- envelope -------------------------------------------------------------
function envelopeVectors(log: MemoryLog): void {
  const env = log.events.find((e) => e.envelope.type === 'policy.decided')!.envelope;
  write('envelope', 'policy-decided', { description: 'a sealed policy.decided envelope', input: { envelope: env }, expected: { valid: true } });
  write('envelope', 'approval-granted', { description: 'a sealed approval.granted envelope', input: { envelope: log.events.find((e) => e.envelope.type === 'approval.granted')!.envelope }, expected: { valid: true } });
  write('envelope', 'session-closed', { description: 'a seal', input: { envelope: log.events.find((e) => e.envelope.type === 'session.closed')!.envelope }, expected: { valid: true } });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- mutating arbitrary JSON on purpose
  const broken: [string, string, (e: Record<string, any>) => void][] = [
    ['bad-principal-type', 'actor.type', (e) => (e.actor.type = 'robot')],
    ['seq-zero', 'session.seq', (e) => (e.session.seq = 0)],
    ['prev-on-first', 'session.prev', (e) => ((e.session.seq = 1), (e.session.prev = e.session.prev ?? 'x'))],
    ['unknown-type', 'type', (e) => (e.type = 'tool.exploded')],
    ['missing-decision', 'decision', (e) => delete e.decision],
    ['bad-effect', 'decision.effect', (e) => (e.decision.effect = 'maybe')],
    ['unknown-field', '(envelope)', (e) => (e.extra = 1)],
    ['bad-time', 'time', (e) => (e.time = '22/11/2026')],
    ['bad-trace', 'trace.traceId', (e) => (e.trace.traceId = '00000000000000000000000000000000')],
    ['bad-commitment', 'data.arguments', (e) => (e.data = { arguments: { $commitment: 'short', more: 1 } })],
    ['missing-initiator', 'initiator', (e) => delete e.initiator],
    ['bad-tenant', 'tenant', (e) => (e.tenant = 'Acme Corp')],
  ];
  for (const [name, field, mutate] of broken) {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- mutating arbitrary JSON on purpose
    const e = structuredClone(env) as Record<string, any>;
    mutate(e);
    write('envelope', `reject-${name}`, { description: `invalid: ${field}`, input: { envelope: e }, expectedError: 'ENVELOPE_INVALID', expectedField: field });
  }
}

function manifest(): void {
  const files: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name !== 'manifest.json') files[relative(root, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(root);
  writeFileSync(
    join(root, 'manifest.json'),
    JSON.stringify({ description: 'SHA-256 of every v1 vector file. The vectors are frozen: a change here is a format change.', files }, null, 2) + '\n',
  );
}

mkdirSync(root, { recursive: true });
const demo = buildDemo({ signer: logKey, tenant: 'default', random: seededRandom(2026), start: new Date('2026-11-22T09:00:00.000Z') });
keysFile();
canonicalVectors();
commitmentVectors();
noteVectors();
checkpointVectors(demo.log);
receiptVectors(demo.log);
bundleVectors(demo.log, demo);
envelopeVectors(demo.log);
manifest();
process.stdout.write(`wrote vectors under ${relative(process.cwd(), root)}\n`);
