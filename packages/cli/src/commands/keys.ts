import { Ledger } from '@custody/ledger';
import { createApiKey } from '@custody/server';

import { apiFetch, resolveConnection } from '../connection.js';
import { dataDir, loadLogSeed, openStore } from '../local-config.js';
import { CliError, type Output, safeData, safeJson } from '../output.js';

const ROLES = ['ingest', 'read', 'approve', 'admin'] as const;
type Role = (typeof ROLES)[number];

export interface KeysOptions {
  url?: string;
  apiKey?: string;
  data?: string;
  profile?: string;
  postgres?: string;
  direct?: boolean;
  tenant?: string;
  originHost?: string;
  role?: string;
  name?: string;
  json?: boolean;
}

interface KeyInfo {
  id: string;
  tenant?: string;
  role: string;
  name: string;
  createdAt?: string;
  revokedAt?: string;
}

function role(r: string | undefined): Role {
  if (r === undefined) throw new CliError('ROLE_REQUIRED', `name the key's role with --role (${ROLES.join(', ')})`);
  if (!(ROLES as readonly string[]).includes(r)) throw new CliError('ROLE_INVALID', `--role must be one of ${ROLES.join(', ')}; got ${r}`);
  return r as Role;
}

/** What `custody keys` was asked to do, its flags checked. */
type KeysRequest = { action: 'create'; role: Role } | { action: 'list' } | { action: 'revoke'; id: string };

/** Checks the flags of an action: a bad --role or a missing id is named before any key, server or store is looked for. */
function keysRequest(action: 'create' | 'list' | 'revoke', id: string | undefined, opts: KeysOptions): KeysRequest {
  if (action === 'create') return { action, role: role(opts.role) };
  if (action === 'list') return { action };
  if (id === undefined) throw new CliError('KEY_ID_REQUIRED', 'name the key to revoke: custody keys revoke <id>');
  return { action, id };
}

/** `custody keys create|list|revoke`: through the API with an admin key, or --direct on the data folder / PostgreSQL. */
export async function runKeys(action: 'create' | 'list' | 'revoke', id: string | undefined, opts: KeysOptions, io: Output): Promise<number> {
  const req = keysRequest(action, id, opts);
  if (opts.direct) return direct(req, opts, io);
  const conn = resolveConnection(opts);
  if (opts.tenant !== undefined) throw new CliError('TENANT_FROM_KEY', 'through the API a key manages its own tenant only; use --direct to create a key for another tenant');
  if (req.action === 'create') {
    const res = await apiFetch(conn, '/v1/keys', { method: 'POST', body: JSON.stringify({ role: req.role, name: opts.name ?? `${req.role} key` }) });
    const body = (await res.json()) as { id: string; key: string; role: string; name: string };
    printCreated(body, opts, io);
  } else if (req.action === 'list') {
    const res = await apiFetch(conn, '/v1/keys');
    const body = (await res.json()) as { keys: KeyInfo[] };
    printList(body.keys, opts, io);
  } else {
    await apiFetch(conn, `/v1/keys/${encodeURIComponent(req.id)}`, { method: 'DELETE' });
    io.out(opts.json ? safeJson({ id: req.id, revoked: true }) : `revoked key ${req.id}`);
  }
  return 0;
}

async function direct(req: KeysRequest, opts: KeysOptions, io: Output): Promise<number> {
  const dir = dataDir(opts.data);
  const { seed } = loadLogSeed(dir);
  const store = await openStore(dir, opts.postgres);
  const ledger = await Ledger.open({ store, logSeed: seed, ...(opts.originHost ? { originHost: opts.originHost } : {}) });
  try {
    const tenant = opts.tenant ?? 'default';
    if (req.action === 'create') {
      const { key, row } = await createApiKey(ledger, { tenant, role: req.role, name: opts.name ?? `${req.role} key` });
      printCreated({ id: row.id, key, role: row.role, name: row.name, tenant }, opts, io);
    } else if (req.action === 'list') {
      printList(await store.listApiKeys(opts.tenant), opts, io);
    } else {
      const { revokeApiKey } = await import('@custody/server');
      const ok = await revokeApiKey(ledger, { tenant, id: req.id, by: 'cli:direct' });
      if (!ok) throw new CliError('KEY_NOT_FOUND', `no live key ${req.id} in tenant ${tenant}`, 1);
      io.out(opts.json ? safeJson({ id: req.id, revoked: true }) : `revoked key ${req.id}`);
    }
    return 0;
  } finally {
    await ledger.close();
  }
}

function printCreated(k: { id: string; key: string; role: string; name: string; tenant?: string }, opts: KeysOptions, io: Output): void {
  if (opts.json) {
    io.out(safeJson(k));
    return;
  }
  const shown = safeData(k);
  io.out(`created ${shown.role} key ${shown.id}${shown.tenant ? ` in tenant ${shown.tenant}` : ''} (${shown.name})`);
  io.out(k.key);
  io.err('this is the only time the key is shown: store it now');
}

function printList(keys: KeyInfo[], opts: KeysOptions, io: Output): void {
  if (opts.json) {
    io.out(safeJson({ keys }, 2));
    return;
  }
  // Key names are the approvers' names: shown escaped, like every server- or store-supplied value.
  const rows = [['ID', 'TENANT', 'ROLE', 'NAME', 'CREATED', 'STATUS'], ...safeData(keys).map((k) => [k.id, k.tenant ?? '', k.role, k.name, k.createdAt ?? '', k.revokedAt ? `revoked ${k.revokedAt}` : 'active'])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.out(r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}
