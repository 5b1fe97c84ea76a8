/**
 * Redaction on SQLite leaves no copy of the value in the database file: the
 * replaced disclosures are overwritten where they lay (secure_delete), not left
 * in the file's free space. (Whether freed bytes survive without secure_delete
 * depends on how SQLite reuses the page; this layout happens not to keep them, a
 * review's server run did. The test holds the property, whatever the layout.)
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { Ledger } from '../ledger.js';
import { SqliteStore } from './sqlite-store.js';

const dir = mkdtempSync(join(tmpdir(), 'custody-secure-delete-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('redaction on SQLite', () => {
  it('leaves no copy of the redacted disclosure in the database file', async () => {
    const path = join(dir, 'ledger.db');
    const secret = 'SECRETCARD-4111111111111111-unique-marker';
    const open = () => Ledger.open({ store: new SqliteStore({ path }), logSeed: new Uint8Array(32).fill(4), originHost: 'custody.test' });
    let ledger = await open();
    const drafts = Array.from({ length: 20 }, (_, i) => ({
      id: randomUUID(),
      time: new Date(Date.UTC(2026, 11, 1, 10, 0, i)).toISOString(),
      type: 'tool.requested' as const,
      session: { id: 's-1' },
      initiator: { type: 'human' as const, id: 'alice@example.com' },
      actor: { type: 'agent' as const, id: 'agent:pay' },
      tool: { name: 'payments.charge' },
      data: { arguments: { card: i === 7 ? secret : `card-${i}`, amount: i, note: 'n'.repeat(200) } },
    }));
    const results = await ledger.append('acme', drafts);
    const bad = results.find((r) => r.status === 'rejected');
    if (bad) throw (bad as PromiseRejectedResult).reason;
    const index = (results[7] as PromiseFulfilledResult<{ index: number }>).value.index;
    // As on a server that has run a while: the entry's page is in the file, not only in the WAL.
    await ledger.close();
    ledger = await open();
    const [entry] = await ledger.store.getEntries('acme', [index]);
    const disclosures = entry!.disclosures;
    const marker = disclosures.find((d) => Buffer.from(d, 'base64url').toString('utf8').includes(secret));
    expect(marker, 'the value is disclosed before redaction').toBeDefined();
    expect(await ledger.store.records.replaceDisclosures('acme', index, disclosures, [])).toBe(true);
    // The log goes on (the redaction's own admin entry, more calls) into the same pages.
    await ledger.append('acme', drafts.slice(0, 3).map((d) => ({ ...d, id: randomUUID(), data: { arguments: { amount: 1 } } })));
    await ledger.close();
    // Closed: the WAL is folded into the file and removed; search the file's every byte.
    const file = readFileSync(path);
    expect(file.includes(Buffer.from(marker!)), 'the disclosure is still in the file').toBe(false);
    expect(file.includes(Buffer.from(secret)), 'the value is still in the file').toBe(false);
  });
});
