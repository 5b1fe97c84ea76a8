/**
 * The approval webhook: a real HTTP receiver on loopback gets each new approval,
 * signed with the configured secret the way log-stream webhooks are.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Ledger, SqliteStore } from '@custody/ledger';
import { SIGNATURE_HEADER, verifyWebhook } from '@custody/records';
import { afterAll, describe, expect, it } from 'vitest';

import { Approvals } from './approvals.js';
import { SqliteApprovalStore } from './sqlite-approval-store.js';

const dir = mkdtempSync(join(tmpdir(), 'custody-approval-webhook-'));
const received: { body: string; signature: string | undefined }[] = [];
/** The statuses the receiver answers with, one per request, then 200. */
const answers: number[] = [];
const receiver = createServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c.toString()));
  req.on('end', () => {
    received.push({ body, signature: req.headers[SIGNATURE_HEADER] as string | undefined });
    res.statusCode = answers.shift() ?? 200;
    res.end();
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
const ledger = await Ledger.open({ store: new SqliteStore({ path: join(dir, 'ledger.db') }), logSeed: new Uint8Array(32).fill(7), originHost: 'custody.test' });
const openStore = async () => {
  const s = new SqliteApprovalStore({ path: join(dir, 'ledger.db') });
  await s.migrate();
  return s;
};
const SECRET = 'whsec_0123456789abcdef';

afterAll(async () => {
  await ledger.close();
  receiver.close();
  rmSync(dir, { recursive: true, force: true });
});

const context = {
  session: { id: 'ses-1', scope: ['payments.transfer'], expiresAt: new Date(Date.now() + 3_600_000).toISOString(), depth: 0 },
  initiator: { type: 'human' as const, id: 'alice@example.com' },
  agent: { type: 'agent' as const, id: 'agent:refunds' },
  chain: [],
  capture: 'full' as const,
  policies: ['transfer-needs-approval'],
  reasons: ['transfers need a human'],
  policyVersion: 'sha256:x',
  requestedBy: 'key:x',
};

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

describe('approval webhook', () => {
  it('signs each notification with the secret (custody-signature), verifiable with verifyWebhook', async () => {
    const approvals = new Approvals({ store: await openStore(), sweepIntervalMs: 0, webhook: { url: hookUrl, secret: SECRET } }, ledger);
    const { record } = approvals.prepare('acme', { sessionId: 'ses-1', tool: 'payments.transfer', argumentsDigest: 'x'.repeat(43), callEvent: 'call', context });
    await approvals.open(record, 'http://custody.test/v1/approvals/' + record.id);
    await until(() => received.length === 1);
    const got = received[0]!;
    expect(JSON.parse(got.body)).toMatchObject({ type: 'approval.requested', approval: { id: record.id, status: 'pending' }, decide: `http://custody.test/v1/approvals/${record.id}` });
    expect(verifyWebhook(SECRET, got.body, got.signature)).toBe(true);
    expect(verifyWebhook('another-secret-entirely', got.body, got.signature)).toBe(false);
    expect(verifyWebhook(SECRET, got.body.replace('payments', 'paymentz'), got.signature)).toBe(false);
    await approvals.close();
  });

  it('retries a failed delivery (5xx, 429) with backoff, a bounded number of times; a 4xx is not retried', async () => {
    received.length = 0;
    const logs: string[] = [];
    const approvals = new Approvals({ store: await openStore(), sweepIntervalMs: 0, webhook: { url: hookUrl, secret: SECRET }, webhookRetryDelaysMs: [20, 40], log: (m) => logs.push(m) }, ledger);
    const open = async (digest: string) => {
      const { record } = approvals.prepare('acme', { sessionId: 'ses-1', tool: 'payments.transfer', argumentsDigest: digest.repeat(43), callEvent: 'call', context });
      await approvals.open(record);
      return record.id;
    };
    // 503, then 429, then delivered: three attempts, each signed.
    answers.push(503, 429);
    const a = await open('a');
    await until(() => received.length === 3);
    expect(received.every((r) => verifyWebhook(SECRET, r.body, r.signature))).toBe(true);
    expect(logs).toEqual([`the approval webhook answered HTTP 503 for ${a}; retrying (attempt 2 of 3)`, `the approval webhook answered HTTP 429 for ${a}; retrying (attempt 3 of 3)`]);
    // Failing every time: three attempts, then given up (logged), never a fourth.
    received.length = 0;
    logs.length = 0;
    answers.push(500, 500, 500, 500);
    const b = await open('b');
    await until(() => logs.some((l) => l.includes('gave up')));
    await new Promise((r) => setTimeout(r, 150));
    expect(received).toHaveLength(3);
    expect(logs.at(-1)).toContain(`HTTP 500 for ${b}; gave up after 3 attempt(s)`);
    answers.length = 0;
    // A 4xx: the receiver refuses this request; sending it again would not help.
    received.length = 0;
    logs.length = 0;
    answers.push(400);
    const c = await open('c');
    await until(() => logs.length === 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(received).toHaveLength(1);
    expect(logs).toEqual([`the approval webhook answered HTTP 400 for ${c}; not retried`]);
    await approvals.close();
  });

  it('sends no signature header without a secret', async () => {
    received.length = 0;
    const approvals = new Approvals({ store: await openStore(), sweepIntervalMs: 0, webhook: { url: hookUrl } }, ledger);
    const { record } = approvals.prepare('acme', { sessionId: 'ses-1', tool: 'payments.transfer', argumentsDigest: 'y'.repeat(43), callEvent: 'call', context });
    await approvals.open(record);
    await until(() => received.length === 1);
    expect(received[0]!.signature).toBeUndefined();
    await approvals.close();
  });
});
