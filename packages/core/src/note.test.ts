import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { CustodyError, FormatError, VerificationError } from './errors.js';
import { generateSigner, noteKeyId, parseNote, parseSignerKey, parseVerifierKey, signerFromSeed, signNote, verifyNote } from './note.js';

// c2sp.org/signed-note, "Verifier keys", Example.
const C2SP_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const C2SP_NOTE =
  'This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';

describe('signed notes', () => {
  it('verifies the C2SP specification example', () => {
    const v = parseVerifierKey(C2SP_VKEY);
    expect(v.name).toBe('example.com/foo');
    expect(v.keyId).toBe(0x530d903a);
    expect(noteKeyId(v.name, v.publicKey)).toBe(0x530d903a);
    expect(verifyNote(C2SP_NOTE, v).text).toBe('This is an example message.\n');
  });

  it('round-trips signer and verifier keys, including base64 containing +', () => {
    for (let i = 0; i < 50; i++) {
      const s = generateSigner('custody.example/acme');
      expect(parseSignerKey(s.signerText).verifierText).toBe(s.verifierText);
      expect(parseVerifierKey(s.verifierText).text).toBe(s.verifierText);
    }
  });

  it('rejects malformed keys with KEY_MALFORMED', () => {
    for (const bad of ['', 'name', 'name+1234', 'na me+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k', 'example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k', 'example.com/foo+530d903a+AgkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k', 'example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k']) {
      expect(() => parseVerifierKey(bad), bad).toThrowError(expect.objectContaining({ code: 'KEY_MALFORMED' }));
    }
    expect(() => parseSignerKey('PRIVATE+KEY+x+00000000+AAAA')).toThrow(FormatError);
    expect(() => signerFromSeed('x', new Uint8Array(31))).toThrow(FormatError);
  });

  it('signs with several keys; each verifies alone; unknown ones are ignored', () => {
    const a = generateSigner('a.example/log');
    const b = generateSigner('b.example/witness');
    const note = signNote('hello\n', a, b);
    expect(verifyNote(note, a).unknownSignatures).toBe(1);
    expect(verifyNote(note, b).verifiedBy[0]!.name).toBe('b.example/witness');
    expect(verifyNote(note, [a, b]).verifiedBy).toHaveLength(2);
  });

  it('rejects a note with no known key, and a bad signature by a known key', () => {
    const a = generateSigner('a.example/log');
    const other = generateSigner('a.example/log');
    const note = signNote('hello\n', a);
    expect(() => verifyNote(note, other)).toThrowError(expect.objectContaining({ code: 'KEY_MISMATCH' }));
    expect(() => verifyNote(note.replace('hello', 'jello'), a)).toThrowError(expect.objectContaining({ code: 'SIGNATURE_INVALID' }));
    expect(() => verifyNote(note.replace('hello', 'jello'), a)).toThrow(VerificationError);
  });

  it('separates text from signatures at the last blank line', () => {
    const a = generateSigner('a.example/log');
    const note = signNote('one\n\ntwo\n', a);
    expect(parseNote(note).text).toBe('one\n\ntwo\n');
    expect(verifyNote(note, a).text).toBe('one\n\ntwo\n');
  });

  it('rejects malformed notes with NOTE_MALFORMED', () => {
    const a = generateSigner('a.example/log');
    const good = signNote('x\n', a);
    for (const bad of [
      'x\n',
      'x\n\n',
      good.slice(0, -1),
      good.replace('\u2014', '-'),
      good.replace(' a.example', '  a.example'),
      'x\r\n\n' + good.slice(3),
      good.replace(/ [A-Za-z0-9+/=]+\n$/, ' AAAA\n'),
      'x\n\n\u2014 a.example/log @@@\n',
    ]) {
      expect(() => verifyNote(bad, a), JSON.stringify(bad)).toThrowError(expect.objectContaining({ code: 'NOTE_MALFORMED' }));
    }
    expect(() => signNote('no newline', a)).toThrow(FormatError);
    expect(() => signNote('x\n')).toThrow(FormatError);
  });

  it('never throws an untyped error on arbitrary input', () => {
    const a = generateSigner('a.example/log');
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (s) => {
        try {
          verifyNote(s, a);
        } catch (err) {
          expect(err).toBeInstanceOf(CustodyError);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('Ed25519 signing on Node and in the browser', () => {
  it('the node:crypto and @noble/curves signers produce the same RFC 8032 signatures', async () => {
    const node = await import('./ed25519-sign-node.js');
    const browser = await import('./ed25519-sign-browser.js');
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 300 }), (seed, message) => {
        expect(node.ed25519Sign(message, seed)).toEqual(browser.ed25519Sign(message, seed));
      }),
      { numRuns: 200 },
    );
  });
});
