/**
 * The web console end to end, in Debian's Chromium driven by playwright-core,
 * against a real `custody up` (with the console built) and sessions recorded
 * through the real authority and decision point by @custody/sdk: sign-in and
 * search, the session page, the "verified in your browser" badge turning red on a
 * tampered bundle, an approval answered in the queue, and a revocation.
 *
 * CUSTODY_SCREENSHOTS=1 also writes the main pages to docs/screenshots/
 * (`CUSTODY_SCREENSHOTS=1 npx vitest run test/browser`).
 *
 * Without /usr/bin/chromium (or CHROMIUM_PATH) the suite is skipped with a message,
 * and fails when CI=true. It needs the built console (`npm run build`).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Custody } from '@custody/sdk';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { api, custody as cli, type Server, startServer } from '../e2e/custody-process.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';
const shots = process.env['CUSTODY_SCREENSHOTS'] === '1' ? join(root, 'docs/screenshots') : undefined;
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env['CI'] === 'true') throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium (apt-get install -y chromium)`);
if (!haveChromium) console.warn(`test/browser skipped: ${CHROMIUM} is missing (apt-get install chromium, or set CHROMIUM_PATH); with CI=true this fails`);
const KEY_STORAGE = 'custody.apiKey';
// Code run in the page is given as text: this file is type-checked without the DOM's types.
const keepKey = (key: string) => `sessionStorage.setItem(${JSON.stringify(KEY_STORAGE)}, ${JSON.stringify(key)})`;
const storedKey = (page: Page) => page.evaluate<string | null>(`sessionStorage.getItem(${JSON.stringify(KEY_STORAGE)})`);

let dir: string;
let server: Server;
let adminKey: string;
let approverKey: string;
let browser: Browser;
let custody: Custody;
/** A session with allowed, denied and human-approved calls, a delegation, a redacted field; sealed. */
let sealed: string;
/** The tool.requested entry of the denied call, whose arguments were redacted. */
let redactedCall: string;

function devTokens(human: string, agent: string) {
  const r = cli(['dev-tokens', '--data', dir, '--human', human, '--agent', agent, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { subject_token: string; actor_token: string };
}

async function approveNext(sessionId: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const list = (await (await api(server.url, adminKey, `/v1/approvals?status=pending&session=${sessionId}`)).json()) as { approvals: { id: string }[] };
    if (list.approvals.length > 0) {
      const res = await api(server.url, approverKey, `/v1/approvals/${list.approvals[0]!.id}`, { method: 'POST', body: JSON.stringify({ decision: 'approve', reason: 'invoice checked' }) });
      expect(res.status).toBe(200);
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no approval appeared');
}

async function signedIn(key: string, path = '/'): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  await page.goto(`${server.url}${path}`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  return page;
}

/** A page already signed in (the key in the tab's sessionStorage, as the sign-in form leaves it). */
async function openAs(key: string, path: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  await page.addInitScript(keepKey(key));
  await page.goto(`${server.url}${path}`);
  return page;
}

/** The badge's checks that failed. */
async function failedChecks(page: Page): Promise<string[]> {
  return page.getByTestId('verify-badge').locator('[data-check][data-result=failed]').evaluateAll((els) => els.map((e) => e.getAttribute('data-check') ?? ''));
}

async function shot(page: Page, name: string, fullPage = false): Promise<void> {
  if (shots === undefined) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
}

describe.skipIf(!haveChromium)('the web console in Chromium', () => {
  beforeAll(async () => {
    expect(existsSync(join(root, 'packages/console/dist/index.html')), 'the console is not built: run npm run build').toBe(true);
    dir = mkdtempSync(join(tmpdir(), 'custody-browser-'));
    server = await startServer(['--data', dir, '--dev-issuer', '--policies', join(root, 'examples/policies')]);
    adminKey = readFileSync(join(dir, 'admin.key'), 'utf8').trim();
    const created = await api(server.url, adminKey, '/v1/keys', { method: 'POST', body: JSON.stringify({ role: 'approve', name: 'bob@example.com' }) });
    approverKey = ((await created.json()) as { key: string }).key;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });

    // A realistic session: allowed, denied and human-approved calls, a delegation, the seal.
    custody = new Custody({ url: server.url, apiKey: adminKey, approvalTimeoutMs: 20_000 });
    const t = devTokens('alice@example.com', 'agent:refunds');
    const s = await custody.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.* payments.*', objective: 'pay the March invoice' });
    await s.prompt('pay invoice 2026-03 from the files');
    const read = s.tool('files.read_file', ({ path }: { path: string }) => `invoice at ${path}: 2500.00 EUR`);
    await read({ path: 'invoices/2026-03.txt' });
    await expect(read({ path: 'prod.env' })).rejects.toMatchObject({ code: 'SDK_DENIED' });
    const transfer = s.tool('payments.transfer', (a: { amount: number; currency: string; to: string }) => ({ ok: true, amount: a.amount }));
    const approving = approveNext(s.id);
    await transfer({ amount: 250_000, currency: 'EUR', to: 'DE89370400440532013000' });
    await approving;
    const child = await s.delegate({ actorToken: devTokens('alice@example.com', 'agent:reports').actor_token, scope: 'files.*', objective: 'summarise the invoice' });
    await child.close();
    await s.close({ reason: 'done' });
    sealed = s.id;

    // Redact the arguments of the denied call (a secret's file name): the disclosure is dropped, every proof stays valid.
    const requests = (await (await api(server.url, adminKey, `/v1/events?session=${sealed}&type=tool.requested&tool=files.read_file`)).json()) as { events: { event: { id: string; data?: { arguments?: { path?: string } } } }[] };
    redactedCall = requests.events.find((e) => e.event.data?.arguments?.path === 'prod.env')!.event.id;
    const redacted = await api(server.url, adminKey, `/v1/events/${redactedCall}/redact`, { method: 'POST', body: JSON.stringify({ fields: ['/data/arguments'], reason: 'names a secret' }) });
    expect(redacted.status, await redacted.clone().text()).toBe(200);
  }, 120_000);

  afterAll(async () => {
    await custody?.close();
    await browser?.close();
    await server?.stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('signs in with an API key and searches by user, tool and decision', async () => {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    await page.goto(`${server.url}/`);
    await page.getByLabel('API key').fill('cust_aaaaaaaaaaaa_bogusbogusbogusbogusbogusbogusbogusbogusbog');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('UNAUTHENTICATED');
    await page.getByLabel('API key').fill(adminKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Latest sessions' }).waitFor();
    await expect.poll(() => page.locator('table').first().textContent()).toContain(sealed);

    await page.getByLabel('User (initiator)').fill('alice@example.com');
    await page.getByLabel('Tool').fill('files.read_file');
    await page.getByLabel('Decision').selectOption('deny');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    const results = page.getByRole('region', { name: /Events/ });
    await expect.poll(() => results.locator('tbody tr').count()).toBe(1);
    expect(await results.locator('tbody tr').first().textContent()).toContain('policy.decided');
    await shot(page, 'search');

    // By approver, and by time range (events and sessions).
    await page.getByRole('button', { name: 'Clear' }).click();
    await page.getByLabel('Approver').fill('bob@example.com');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    // The approval bob gave, and the step it let run (the entries that name him as approver).
    await expect.poll(() => results.locator('tbody tr').filter({ hasText: 'approval.granted' }).count()).toBe(1);
    for (const row of await results.locator('tbody tr').all()) expect(await row.textContent()).toContain(sealed);
    await page.getByRole('button', { name: 'Clear' }).click();
    await page.getByLabel('Agent').fill('agent:refunds');
    await page.getByLabel('Since').fill('2099-01-01T00:00');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await page.getByText('No events match.').waitFor();
    await page.getByRole('heading', { name: 'Sessions matching who and when' }).waitFor();
    await page.getByText('No sessions match.').waitFor();
    await page.getByLabel('Since').fill('2000-01-01T00:00');
    await page.getByLabel('Until').fill('2099-01-01T00:00');
    await page.getByRole('button', { name: 'Search', exact: true }).click();
    await expect.poll(() => results.locator('tbody tr').count()).toBeGreaterThan(5);
    const sessionsTable = page.getByRole('region', { name: 'Sessions matching who and when' });
    await expect.poll(() => sessionsTable.locator('tbody tr').count()).toBe(1);
    expect(await sessionsTable.textContent()).toContain(sealed);

    // Each result links to its session.
    await results.getByRole('link', { name: sealed }).first().click();
    await page.getByRole('heading', { name: `Session ${sealed}` }).waitFor();

    // Sign out: the key leaves the tab, and the console asks for one again.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    expect(await storedKey(page)).toBeNull();
    await page.goto(`${server.url}/sessions/${sealed}`);
    await page.getByLabel('API key').waitFor();
    await page.close();
  });

  it('shows a session: causal tree, delegation, decisions with policies, approvals, credentials, and a green badge', async () => {
    const page = await signedIn(adminKey, `/sessions/${sealed}`);
    const badge = page.getByTestId('verify-badge');
    await expect.poll(() => badge.getAttribute('data-state'), { timeout: 20_000 }).toBe('verified');
    // The key is kept in the tab's sessionStorage.
    expect(await storedKey(page)).toBe(adminKey);
    expect(await badge.textContent()).toContain('Verified in your browser');
    expect(await badge.textContent()).toContain('complete (sealed)');
    expect(await failedChecks(page)).toEqual([]);
    expect(await badge.locator('[data-check][data-result=passed]').count()).toBe(5);
    expect(await page.getByText('pay the March invoice').count()).toBeGreaterThan(0);

    const graph = page.getByRole('list', { name: 'Delegation chain' });
    expect(await graph.textContent()).toContain('alice@example.com');
    expect(await graph.textContent()).toContain('agent:refunds');
    expect(await graph.textContent()).toContain('agent:reports');

    const tree = page.getByRole('list', { name: 'Causal tree' });
    const text = (await tree.textContent()) ?? '';
    for (const t of ['session.opened', 'tool.requested', 'policy.decided', 'approval.requested', 'approval.granted', 'tool.completed', 'session.closed']) expect(text).toContain(t);
    expect(text).toMatch(/deny/);
    expect(text).toContain('by human');
    // A decision sits under the call it decided: nested in the call's list.
    expect(await tree.locator('li ul[aria-label="caused by tool.requested"] .step-policy').count()).toBeGreaterThan(0);
    // Redacted versus disclosed, as this browser found them in the bundle.
    expect(text).toContain('disclosed /data/prompt');
    expect(text).toContain('redacted /data/arguments');
    expect(await tree.locator('.step').filter({ hasText: 'redacted /data/arguments' }).count()).toBe(1);

    const approvals = page.getByRole('region', { name: 'Approvals' });
    expect(await approvals.textContent()).toContain('bob@example.com');
    expect(await approvals.textContent()).toContain('invoice checked');
    expect(await approvals.textContent()).toMatch(/ip: /);
    const credentials = page.getByRole('region', { name: 'Credentials' });
    expect(await credentials.textContent()).toMatch(/revoked|expired|active/);
    await shot(page, 'session', true);
    await page.close();
  });

  it('works from the keyboard, with visible focus, and keeps its layout while the badge verifies', async () => {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    // Hold the bundle for a moment, to see the page while it is being verified.
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    await page.route('**/v1/sessions/*/bundle', async (route) => {
      await held;
      await route.continue();
    });
    await page.goto(`${server.url}/sessions/${sealed}`);
    // The key field has focus: type the key and press Enter.
    await page.getByLabel('API key').waitFor();
    expect(await page.evaluate<string | undefined>('document.activeElement?.id')).toBe('api-key');
    await page.keyboard.type(adminKey);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: `Session ${sealed}` }).waitFor();
    // The first Tab reaches the skip link, drawn with a visible focus ring.
    await page.keyboard.press('Tab');
    expect(await page.evaluate<string | undefined>('document.activeElement?.textContent')).toBe('Skip to content');
    expect(await page.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle')).not.toBe('none');

    const badge = page.getByTestId('verify-badge');
    await page.getByRole('list', { name: 'Causal tree' }).waitFor();
    await page.getByText('authority: closed').waitFor();
    expect(await badge.getAttribute('data-state')).toBe('checking');
    const heading = page.getByRole('heading', { name: 'Who asked, and who acted' });
    const before = await heading.boundingBox();
    release();
    await expect.poll(() => badge.getAttribute('data-state'), { timeout: 20_000 }).toBe('verified');
    expect(await heading.boundingBox()).toEqual(before);

    // Tab through to a step's details button and open it with the keyboard.
    const details = page.locator('.step').first().getByRole('button');
    await details.focus();
    await page.keyboard.press('Enter');
    expect(await details.getAttribute('aria-expanded')).toBe('true');
    expect(await page.locator('.step').first().locator('pre.json').textContent()).toContain('"type": "session.opened"');
    await page.close();
  });

  type Bundle = { checkpoint: string; records: { entry: string; proof: string; disclosures?: string[] }[] };
  const entryOf = (r: { entry: string }) => Buffer.from(r.entry, 'base64').toString('utf8');
  const tampers: [string, string, string, (b: Bundle) => void][] = [
    [
      'an entry changed (a denial turned into an allow)',
      'receipts',
      'ENTRY_TAMPERED',
      (b) => {
        const r = b.records.find((x) => entryOf(x).includes('"effect":"deny"'))!;
        r.entry = Buffer.from(entryOf(r).replace('"effect":"deny"', '"effect":"allow"')).toString('base64');
      },
    ],
    [
      'the checkpoint signature altered',
      'signature',
      'SIGNATURE_INVALID|CHECKPOINT_ALTERED',
      (b) => {
        const lines = b.checkpoint.split('\n');
        const i = lines.findIndex((l) => l.startsWith('\u2014 '));
        const sig = Buffer.from(lines[i]!.split(' ').pop()!, 'base64');
        sig[sig.length - 1] = sig[sig.length - 1]! ^ 0x01;
        lines[i] = `${lines[i]!.split(' ').slice(0, -1).join(' ')} ${sig.toString('base64')}`;
        b.checkpoint = lines.join('\n');
      },
    ],
    ['an entry left out of the middle', 'chain', 'CHAIN_GAP', (b) => void b.records.splice(3, 1)],
    ['the seal left out (a truncated session)', 'seal', 'SEAL_MISSING', (b) => void b.records.splice(b.records.findIndex((x) => entryOf(x).includes('"type":"session.closed"')), 1)],
    [
      'a disclosure swapped for another value',
      'disclosures',
      'DISCLOSURE_MISMATCH',
      (b) => {
        const r = b.records.find((x) => (x.disclosures?.length ?? 0) > 0)!;
        const d = JSON.parse(Buffer.from(r.disclosures![0]!, 'base64url').toString('utf8')) as unknown[];
        d[2] = 'something else';
        r.disclosures![0] = Buffer.from(JSON.stringify(d)).toString('base64url');
      },
    ],
  ];

  it.each(tampers)('turns the badge red, naming the failed check, when the bundle it downloads has %s', async (what, check, code, tamper) => {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    await page.addInitScript(keepKey(adminKey));
    // The server is honest; the bundle is changed on its way to the browser.
    await page.route('**/v1/sessions/*/bundle', async (route) => {
      const res = await route.fetch();
      const bundle = (await res.json()) as Bundle;
      tamper(bundle);
      await route.fulfill({ response: res, json: bundle });
    });
    await page.goto(`${server.url}/sessions/${sealed}`);
    const badge = page.getByTestId('verify-badge');
    await expect.poll(() => badge.getAttribute('data-state'), { timeout: 20_000 }).toBe('failed');
    const text = (await badge.textContent()) ?? '';
    expect(text).toContain('Verification failed in your browser');
    expect(await failedChecks(page), what).toEqual([check]);
    expect(text).toContain(`failed: ${check}`);
    const failures = page.getByRole('list', { name: 'What failed' });
    expect(await failures.textContent()).toMatch(new RegExp(code));
    if (check === 'receipts') await shot(page, 'session-tampered');
    await page.close();
  });

  it('stays green for fields no proof covers, but names them as not evidence', async () => {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    await page.addInitScript(keepKey(adminKey));
    // A note added to the bundle on its way: the proofs still hold, and the note is no part of them.
    await page.route('**/v1/sessions/*/bundle', async (route) => {
      const res = await route.fetch();
      const bundle = (await res.json()) as Bundle & Record<string, unknown>;
      bundle['notes'] = 'approved by the CFO';
      (bundle.records[1] as unknown as Record<string, unknown>)['comment'] = '<b>fine</b>';
      await route.fulfill({ response: res, json: bundle });
    });
    await page.goto(`${server.url}/sessions/${sealed}`);
    const badge = page.getByTestId('verify-badge');
    await expect.poll(() => badge.getAttribute('data-state'), { timeout: 20_000 }).toBe('verified');
    const ignored = page.getByTestId('verify-ignored');
    expect(await ignored.textContent()).toContain('Not covered by any proof');
    expect(await ignored.locator('code').textContent()).toBe('notes, records[1].comment');
    expect(await page.getByText('approved by the CFO').count()).toBe(0);
    await page.close();
  });

  it('answers a held call from the approval queue, with its full context, and the call proceeds', async () => {
    const t = devTokens('carol@example.com', 'agent:payouts');
    const s = await custody.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'payments.*', objective: 'pay supplier 77' });
    const transfer = s.tool('payments.transfer', (a: { amount: number; currency: string; to: string }) => ({ ok: true, amount: a.amount }));
    const held = transfer({ amount: 480_000, currency: 'EUR', to: 'FR7630006000011234567890189' });

    for (let i = 0; i < 200; i++) {
      const pending = (await (await api(server.url, adminKey, `/v1/approvals?status=pending&session=${s.id}`)).json()) as { approvals: unknown[] };
      if (pending.approvals.length > 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const page = await signedIn(approverKey, '/approvals');
    const card = page.locator('article.approval').filter({ hasText: 'pay supplier 77' });
    await expect.poll(() => card.count(), { timeout: 20_000 }).toBe(1);
    const context = (await card.textContent()) ?? '';
    for (const want of ['payments.transfer', 'carol@example.com', 'agent:payouts', 'FR7630006000011234567890189', '480000']) expect(context).toContain(want);
    await shot(page, 'approvals');
    await card.getByLabel('Reason (recorded)').fill('supplier confirmed by phone');
    await card.getByRole('button', { name: 'Approve' }).click();
    await expect.poll(() => card.getByRole('status').textContent()).toContain('granted');
    expect(await held).toEqual({ ok: true, amount: 480_000 });

    const events = (await (await api(server.url, adminKey, `/v1/events?session=${s.id}&type=approval.granted`)).json()) as { events: { event: { approval: { approver: { id: string }; reason?: string } } }[] };
    expect(events.events).toHaveLength(1);
    expect(events.events[0]!.event.approval).toMatchObject({ approver: { id: 'bob@example.com' }, reason: 'supplier confirmed by phone' });
    await s.close();
    await page.close();
  });

  it('revokes a session with the kill switch, after a confirmation', async () => {
    const t = devTokens('dave@example.com', 'agent:ops');
    const s = await custody.openSession({ subjectToken: t.subject_token, actorToken: t.actor_token, scope: 'files.*', objective: 'clean up old reports' });
    await s.prompt('clean up the reports folder');
    const page = await signedIn(adminKey, `/sessions/${s.id}`);
    await page.getByRole('button', { name: 'Revoke session…' }).click();
    const dialog = page.getByRole('dialog', { name: 'Revoke this session?' });
    await dialog.waitFor();
    // Cancel first: nothing happens.
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect(((await (await api(server.url, adminKey, `/v1/authority/sessions/${s.id}`)).json()) as { session: { status: string } }).session.status).toBe('active');
    await page.getByRole('button', { name: 'Revoke session…' }).click();
    await dialog.getByLabel('Reason (recorded)').fill('agent misbehaving');
    await dialog.getByRole('button', { name: 'Revoke', exact: true }).click();
    await expect.poll(() => page.getByRole('status').filter({ hasText: /Revoked 1 session: / }).count()).toBe(1);
    const after = (await (await api(server.url, adminKey, `/v1/authority/sessions/${s.id}`)).json()) as { session: { status: string; endReason?: string } };
    expect(after.session).toMatchObject({ status: 'revoked', endReason: 'agent misbehaving' });
    await expect.poll(async () => (await page.locator('.session-head').textContent()) ?? '').toContain('revoked');
    // Still verified in the browser, with the revocation in the chain: intact, but never sealed.
    const badge = page.getByTestId('verify-badge');
    await expect.poll(() => badge.getAttribute('data-state'), { timeout: 20_000 }).toBe('verified');
    expect(await badge.textContent()).toContain('intact, not sealed: revoked');
    expect(await page.getByRole('list', { name: 'Causal tree' }).textContent()).toContain('session.revoked');
    // The session's credential is refused from now on: its next tool call does not run.
    await expect(s.tool('files.read_file', () => 'never')({ path: 'a.txt' })).rejects.toMatchObject({ code: 'SDK_REVOKED' });
    await page.close();
  });

  it('shows a principal page and a report page whose rows link to their sessions', async () => {
    const page = await openAs(adminKey, `/principals/${encodeURIComponent('agent:refunds')}`);
    await page.getByRole('heading', { name: 'By type' }).waitFor();
    await expect.poll(() => page.locator('.counts').first().textContent()).toMatch(/\d/);
    expect(await page.getByRole('link', { name: sealed }).count()).toBeGreaterThan(0);
    await page.goto(`${server.url}/reports/denied-calls`);
    await expect.poll(() => page.locator('tbody tr').count(), { timeout: 20_000 }).toBeGreaterThan(0);
    expect(await page.locator('tbody').getByRole('link', { name: sealed }).count()).toBeGreaterThan(0);
    await shot(page, 'report-denied-calls');
    await page.goto(`${server.url}/reports/compliance`);
    await expect.poll(() => page.locator('article.card').count(), { timeout: 20_000 }).toBeGreaterThan(3);
    await page.close();
  });
});
