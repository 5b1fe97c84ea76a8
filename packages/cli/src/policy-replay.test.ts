import { fileURLToPath } from 'node:url';

import type { EventDraft } from '@custody/core';
import { Ledger, SqliteStore } from '@custody/ledger';
import { createApiKey, createServer } from '@custody/server';
import type { FastifyInstance } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { targetOf } from './commands/policy-replay.js';
import { main } from './main.js';
import type { Output } from './output.js';

const policies = fileURLToPath(new URL('../../../examples/policies', import.meta.url));
let ledger: Ledger;
let app: FastifyInstance;
let url: string;
let key: string;

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: Output = { color: false, out: (l = '') => out.push(l), err: (l = '') => err.push(l) };
  const code = await main(['node', 'custody', ...args], io);
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

/** A session with a credential, and two recorded transfers with the decisions an older policy set gave. */
function session(id: string, scope: string[]): EventDraft[] {
  let t = Date.parse('2026-11-22T09:00:00Z');
  const at = () => new Date((t += 1000)).toISOString();
  const who = { initiator: { type: 'human' as const, id: 'alice@example.com' }, actor: { type: 'agent' as const, id: 'agent:refunds' } };
  const ev = (type: EventDraft['type'], extra: Partial<EventDraft> = {}): EventDraft => ({ id: uuidv7(), type, time: at(), session: { id }, ...who, ...extra });
  const call = (amount: number, effect: 'allow' | 'deny' | 'approval_required') => {
    const req = ev('tool.requested', { tool: { name: 'payments.transfer' }, data: { arguments: { amount, currency: 'EUR' } } });
    const dec = ev('policy.decided', { tool: { name: 'payments.transfer' }, cause: req.id, decision: { effect, policyVersion: 'sha256:old', policies: ['old'], reasons: ['the old rules'] } });
    return [req, dec];
  };
  return [
    ev('session.opened', { session: { id, objective: 'refund order 1042' } }),
    ev('credential.issued', { credential: { jti: `j-${id}`, fingerprint: 'A'.repeat(43), scope, expiresAt: '2026-11-22T12:00:00.000Z', depth: 0 } }),
    ...call(2_500, 'allow'), // still allowed under the examples
    ...call(250_000, 'allow'), // the examples want an approval above 1,000.00
  ];
}

beforeAll(async () => {
  ledger = await Ledger.open({ store: new SqliteStore({ path: ':memory:' }), logSeed: new Uint8Array(32).fill(6), originHost: 'custody.test' });
  key = (await createApiKey(ledger, { tenant: 'default', role: 'read', name: 'reviewer' })).key;
  const settled = await ledger.append('default', [...session('pay-1', ['payments.transfer']), ...session('pay-2', ['files.read_file'])]);
  expect(settled.every((s) => s.status === 'fulfilled')).toBe(true);
  app = await createServer({ ledger });
  url = await app.listen({ port: 0, host: '127.0.0.1' });
});

afterAll(async () => {
  await app?.close();
  await ledger?.close();
});

describe('custody policy replay', () => {
  it('lists exactly the recorded calls whose decision would change, with the policies that decide now', async () => {
    const r = await run(['policy', 'replay', '--policies', policies, '--url', url, '--api-key', key, '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { replayed: number; changed: number; rows: { session: string; recorded: string; replayed: string; policies: string[]; missing: string[] }[] };
    expect(out.replayed).toBe(4);
    // pay-1: the large transfer now needs approval. pay-2: the credential's scope does not cover payments: both denied.
    expect(out.rows.map((x) => [x.session, x.recorded, x.replayed])).toEqual([
      ['pay-1', 'allow', 'approval_required'],
      ['pay-2', 'allow', 'deny'],
      ['pay-2', 'allow', 'deny'],
    ]);
    expect(out.rows[0]!.policies).toContain('transfer-needs-approval');
    expect(out.rows.every((x) => x.missing.length === 0)).toBe(true);
    const text = await run(['policy', 'replay', '--policies', policies, '--url', url, '--api-key', key, '--quiet']);
    expect(text.stdout).toContain('4 recorded decisions replayed under sha256:');
    expect(text.stdout).toContain('3 would change');
  });

  it('refuses an invalid policy folder (exit 2) and a bad time', async () => {
    expect((await run(['policy', 'replay', '--policies', '/nonexistent', '--url', url, '--api-key', key])).code).toBe(2);
    expect((await run(['policy', 'replay', '--policies', policies, '--url', url, '--api-key', key, '--since', 'soon'])).code).toBe(2);
  });

  it('finds the MCP server of a tool', () => {
    expect(targetOf({ name: 'payments.transfer' })).toEqual({ server: 'payments', name: 'transfer' });
    expect(targetOf({ name: 'transfer', server: 'payments' })).toEqual({ server: 'payments', name: 'transfer' });
    expect(targetOf({ name: 'payments.transfer', server: 'payments' })).toEqual({ server: 'payments', name: 'transfer' });
    expect(targetOf({ name: 'lonely' })).toEqual({ server: 'default', name: 'lonely' });
  });
});
