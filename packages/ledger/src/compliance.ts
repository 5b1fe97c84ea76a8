/**
 * The compliance report: evidence mapped to the frameworks a reviewer answers to
 * (OWASP Top 10 for Agentic Applications 2026, NIST AI RMF 1.0, CSA MAESTRO,
 * NIST CSF 2.0 PR.AA). Every number is measured from the tenant's log through the
 * stores' indexes (reports.ts); the framework tables only say which measures speak
 * to which control. See docs/records.md, "Compliance report".
 */
import { canonicalJson, sha256, toBase64url } from '@custody/core';

import type { Ledger } from './ledger.js';
import { DEFAULT_DELEGATION_DEPTH, type ReportRange, sessionPath } from './reports.js';
import type { LedgerStore } from './store.js';

/** The frameworks, by the name the CLI and API use. */
export const COMPLIANCE_FRAMEWORKS = ['owasp-agentic', 'nist-ai-rmf', 'maestro', 'csf'] as const;
/** A framework name. */
export type ComplianceFramework = (typeof COMPLIANCE_FRAMEWORKS)[number];

/** Gap selections are counted up to this many; beyond it the count says "at least". */
export const GAP_COUNT_CAP = 10_000;
/** Example sessions shown per gap or per piece of evidence. */
const EXAMPLES = 3;

/** What was measured. Counts are of entries whose `time` is in the range, sessions active in it. */
export interface ComplianceMeasures {
  entries: number;
  byType: Record<string, number>;
  decisions: { allow: number; deny: number; approval_required: number };
  sessions: { sessions: number; sealed: number; open: number };
  /** A gap selection (reports.ts): how many, whether the cap was hit, and example sessions. */
  gaps: Record<GapName, GapMeasure>;
}

/** The gap selections. */
export type GapName = 'unapprovedCalls' | 'deniedCalls' | 'outOfScopeCalls' | 'actedAfterEnd' | 'deepDelegation';

/** One gap selection's size and examples. */
export interface GapMeasure {
  count: number;
  /** True when the count reached GAP_COUNT_CAP: there are at least that many. */
  capped: boolean;
  examples: ExampleSession[];
}

/** A session shown as evidence or as a gap, with the hash of its evidence bundle. */
export interface ExampleSession {
  session: string;
  sessionPath: string;
  /** The log index of the entry that made it an example. */
  index: number;
  /** base64url SHA-256 of the RFC 8785 JSON of the session's bundle without disclosures. */
  bundleSha256?: string;
}

/** One control of a framework, with what the data says about it. */
export interface ControlResult {
  id: string;
  title: string;
  status: 'evidence' | 'gap' | 'no-data';
  evidence: { measure: string; value: number; note?: string }[];
  gaps: { measure: string; count: number; capped: boolean; examples: ExampleSession[] }[];
  /** How the control was measured, in words. */
  method: string;
}

/** The report. */
export interface ComplianceReport {
  framework: ComplianceFramework;
  frameworkTitle: string;
  tenant: string;
  range: ReportRange;
  generatedAt: string;
  /** The signed checkpoint the measures were taken at (size and root), so the report can be tied to the log. */
  checkpoint: { size: number; rootHash: string };
  measures: ComplianceMeasures;
  controls: ControlResult[];
}

type Measure = (m: ComplianceMeasures) => number;
const count = (type: string): Measure => (m) => m.byType[type] ?? 0;
const family = (prefix: string): Measure => (m) => Object.entries(m.byType).reduce((n, [t, c]) => (t.startsWith(prefix) ? n + c : n), 0);

/** Named evidence measures. */
const EVIDENCE: Record<string, { of: Measure; note?: string }> = {
  'tool calls recorded (tool.requested)': { of: count('tool.requested') },
  'policy decisions (policy.decided)': { of: count('policy.decided') },
  'calls denied by policy': { of: (m) => m.decisions.deny },
  'calls held for a human (approval_required)': { of: (m) => m.decisions.approval_required },
  'approvals granted': { of: count('approval.granted') },
  'approvals denied': { of: count('approval.denied') },
  'approvals expired unanswered': { of: count('approval.expired') },
  'sessions opened': { of: count('session.opened') },
  'delegations (session.delegated)': { of: count('session.delegated') },
  'sessions sealed (session.closed)': { of: (m) => m.sessions.sealed },
  'sessions revoked (kill switch)': { of: count('session.revoked') },
  'sessions expired': { of: count('session.expired') },
  'credentials issued': { of: count('credential.issued') },
  'credentials revoked': { of: count('credential.revoked') },
  'credentials expired': { of: count('credential.expired') },
  'refused token exchanges (admin.token_refused)': { of: count('admin.token_refused') },
  'prompts recorded (prompt.received)': { of: count('prompt.received') },
  'model outputs recorded': { of: count('model.output') },
  'tool results (tool.completed)': { of: count('tool.completed') },
  'tool failures (tool.failed)': { of: count('tool.failed') },
  'administrative acts (admin.*)': { of: family('admin.') },
  'redactions (admin.redacted)': { of: count('admin.redacted') },
  'imported lower-assurance events (external.*)': { of: family('external.') },
  'entries in the signed log': { of: (m) => m.entries },
};

const GAP_TITLES: Record<GapName | 'openSessions', string> = {
  unapprovedCalls: 'sensitive calls without a human approval',
  deniedCalls: 'calls denied by policy',
  outOfScopeCalls: "calls outside their delegation chain's scope",
  actedAfterEnd: 'sessions that acted after their end (revocation, expiry or seal)',
  deepDelegation: `sessions delegated deeper than ${DEFAULT_DELEGATION_DEPTH} hops`,
  openSessions: 'sessions neither sealed nor ended by revocation or expiry (still open)',
};

interface ControlSpec {
  id: string;
  title: string;
  evidence: string[];
  gaps: (GapName | 'openSessions')[];
  method: string;
}

const OWASP: ControlSpec[] = [
  { id: 'ASI01', title: 'Agent Goal Hijack', evidence: ['prompts recorded (prompt.received)', 'model outputs recorded', 'sessions opened'], gaps: ['outOfScopeCalls'], method: 'Each session states its objective at opening; prompts and outputs are committed entries, so a goal change is traceable. Calls outside the scope granted for the objective are the observable sign of a hijacked goal.' },
  { id: 'ASI02', title: 'Tool Misuse and Exploitation', evidence: ['tool calls recorded (tool.requested)', 'policy decisions (policy.decided)', 'calls denied by policy'], gaps: ['unapprovedCalls', 'outOfScopeCalls'], method: 'Every tool call is evaluated by Cedar policy in the request path and recorded with its decision; sensitive calls must carry a human approval.' },
  { id: 'ASI03', title: 'Identity and Privilege Abuse', evidence: ['credentials issued', 'delegations (session.delegated)', 'refused token exchanges (admin.token_refused)', 'credentials revoked'], gaps: ['deepDelegation', 'actedAfterEnd'], method: 'Agents act on short-lived, task-scoped credentials from verified tokens; delegation can only narrow. Deep chains and activity after a session ended show privilege that outlived or exceeded its grant.' },
  { id: 'ASI04', title: 'Agentic Supply Chain Vulnerabilities', evidence: ['tool calls recorded (tool.requested)', 'imported lower-assurance events (external.*)'], gaps: [], method: 'Which tool on which MCP server served each call is recorded (tool.name, tool.server). The log does not assess the integrity of those servers: this control needs evidence from outside Custody.' },
  { id: 'ASI05', title: 'Unexpected Code Execution', evidence: ['calls denied by policy', 'calls held for a human (approval_required)'], gaps: ['unapprovedCalls'], method: 'Code-executing tools can be gated by policy and human approval; what ran without one is a gap.' },
  { id: 'ASI06', title: 'Memory and Context Poisoning', evidence: ['prompts recorded (prompt.received)', 'model outputs recorded', 'tool results (tool.completed)'], gaps: [], method: 'Inputs and outputs that shape the agent\'s context are committed in the log, so poisoned context can be traced to its source after the fact; the log does not detect poisoning itself.' },
  { id: 'ASI07', title: 'Insecure Inter-Agent Communication', evidence: ['delegations (session.delegated)', 'credentials issued'], gaps: ['deepDelegation'], method: 'Hand-offs between agents go through delegated sessions with nested act claims and their own credentials, so every hop is attributable.' },
  { id: 'ASI08', title: 'Cascading Failures', evidence: ['tool failures (tool.failed)', 'sessions revoked (kill switch)'], gaps: ['actedAfterEnd'], method: 'Failures are recorded per call; the kill switch revokes a session and everything below it. Activity after revocation would mean containment failed.' },
  { id: 'ASI09', title: 'Human-Agent Trust Exploitation', evidence: ['approvals granted', 'approvals denied', 'approvals expired unanswered'], gaps: ['unapprovedCalls'], method: 'Approvals are bound to the exact call (arguments digest), single-use, by a human who is not the agent; each is recorded with who and from where.' },
  { id: 'ASI10', title: 'Rogue Agents', evidence: ['sessions revoked (kill switch)', 'calls denied by policy', 'sessions sealed (session.closed)'], gaps: ['actedAfterEnd', 'outOfScopeCalls', 'openSessions'], method: 'Every agent acts in a bounded, sealed session; revocation stops it. Unsealed sessions, activity after the end and out-of-scope calls are the signs of an agent off its leash.' },
];

const NIST_AI_RMF: ControlSpec[] = [
  { id: 'GOVERN', title: 'Policies, accountability and oversight are in place', evidence: ['policy decisions (policy.decided)', 'administrative acts (admin.*)', 'redactions (admin.redacted)'], gaps: [], method: 'Policy is code evaluated on every call, and every administrative act (keys, retention, redaction) is itself a signed log entry.' },
  { id: 'MAP', title: 'Context is established: who asked, which agent, for what', evidence: ['sessions opened', 'delegations (session.delegated)', 'imported lower-assurance events (external.*)'], gaps: ['deepDelegation'], method: 'Each session records its initiator, its agent chain and its objective from verified tokens.' },
  { id: 'MEASURE', title: 'Risks are tracked with measures', evidence: ['tool calls recorded (tool.requested)', 'calls denied by policy', 'calls held for a human (approval_required)', 'entries in the signed log'], gaps: ['unapprovedCalls', 'outOfScopeCalls'], method: 'These counts are themselves the measures, taken from a tamper-evident log at a signed checkpoint.' },
  { id: 'MANAGE', title: 'Risks are responded to and monitored after deployment', evidence: ['sessions revoked (kill switch)', 'approvals denied', 'credentials revoked'], gaps: ['actedAfterEnd', 'openSessions'], method: 'Revocations, refusals and approvals are the recorded responses; activity after an end and unsealed sessions show where response or closure is missing.' },
];

const MAESTRO: ControlSpec[] = [
  { id: 'L1', title: 'Foundation Models', evidence: ['model outputs recorded', 'prompts recorded (prompt.received)'], gaps: [], method: 'Model inputs and outputs are committed per session; model-level threats need evidence from outside Custody.' },
  { id: 'L2', title: 'Data Operations', evidence: ['redactions (admin.redacted)', 'administrative acts (admin.*)'], gaps: [], method: 'Sensitive fields are commitments; redaction and retention are recorded admin acts.' },
  { id: 'L3', title: 'Agent Frameworks', evidence: ['tool calls recorded (tool.requested)', 'policy decisions (policy.decided)'], gaps: ['unapprovedCalls', 'outOfScopeCalls'], method: 'Tool use through the gateway or SDK is decided by policy and recorded.' },
  { id: 'L4', title: 'Deployment and Infrastructure', evidence: ['credentials issued', 'credentials expired'], gaps: [], method: 'Short-lived credentials; the log itself is an append-only Merkle tree with signed checkpoints.' },
  { id: 'L5', title: 'Evaluation and Observability', evidence: ['entries in the signed log', 'imported lower-assurance events (external.*)', 'tool failures (tool.failed)'], gaps: ['openSessions'], method: 'Every step is an entry with a receipt; imported telemetry is marked lower assurance.' },
  { id: 'L6', title: 'Security and Compliance', evidence: ['calls denied by policy', 'refused token exchanges (admin.token_refused)', 'sessions revoked (kill switch)'], gaps: ['actedAfterEnd', 'unapprovedCalls'], method: 'Refusals, revocations and approvals are recorded in the same log as the actions.' },
  { id: 'L7', title: 'Agent Ecosystem', evidence: ['delegations (session.delegated)'], gaps: ['deepDelegation'], method: 'Agent-to-agent delegation is attributable hop by hop and can only narrow scope.' },
];

const CSF: ControlSpec[] = [
  { id: 'PR.AA-01', title: 'Identities and credentials for users, services and hardware are managed', evidence: ['credentials issued', 'credentials revoked', 'credentials expired'], gaps: [], method: 'Session credentials are issued, expire and are revoked by Custody, each change recorded.' },
  { id: 'PR.AA-02', title: 'Identities are proofed and bound to credentials', evidence: ['sessions opened', 'refused token exchanges (admin.token_refused)'], gaps: [], method: 'A credential is issued only for a verified human token and a verified agent token (issuer, subject, fingerprint recorded).' },
  { id: 'PR.AA-03', title: 'Users, services and hardware are authenticated', evidence: ['credentials issued', 'refused token exchanges (admin.token_refused)'], gaps: ['actedAfterEnd'], method: 'Tokens are verified with pinned algorithms and keys; refusals are recorded.' },
  { id: 'PR.AA-04', title: 'Identity assertions are protected, conveyed and verified', evidence: ['delegations (session.delegated)', 'credentials issued'], gaps: ['deepDelegation'], method: 'Credentials are EdDSA JWTs with nested act claims, verifiable offline against the published JWKS.' },
  { id: 'PR.AA-05', title: 'Access permissions are managed with least privilege and separation of duties', evidence: ['policy decisions (policy.decided)', 'calls denied by policy', 'approvals granted'], gaps: ['unapprovedCalls', 'outOfScopeCalls'], method: 'Scope narrows on delegation, policy decides every call, and approvals must come from a human other than the agent.' },
];

const FRAMEWORKS: Record<ComplianceFramework, { title: string; controls: ControlSpec[] }> = {
  'owasp-agentic': { title: 'OWASP Top 10 for Agentic Applications (2026)', controls: OWASP },
  'nist-ai-rmf': { title: 'NIST AI Risk Management Framework 1.0 (functions)', controls: NIST_AI_RMF },
  maestro: { title: 'CSA MAESTRO (layers)', controls: MAESTRO },
  csf: { title: 'NIST Cybersecurity Framework 2.0, PR.AA (Identity Management, Authentication and Access Control)', controls: CSF },
};

async function gapOf(ledger: Ledger, store: LedgerStore, tenant: string, select: () => Promise<number[]>, withHashes: boolean): Promise<GapMeasure> {
  const indexes = await select();
  const examples: ExampleSession[] = [];
  if (indexes.length > 0) {
    const seen = new Set<string>();
    for (const e of await store.getEntries(tenant, indexes.slice(0, 20))) {
      if (e.sessionId === undefined || seen.has(e.sessionId) || examples.length >= EXAMPLES) continue;
      seen.add(e.sessionId);
      examples.push({ session: e.sessionId, sessionPath: sessionPath(e.sessionId), index: e.index });
    }
    if (withHashes) {
      for (const x of examples) x.bundleSha256 = toBase64url(sha256(new TextEncoder().encode(canonicalJson(await ledger.bundle(tenant, x.session, { disclosures: false })))));
    }
  }
  return { count: indexes.length, capped: indexes.length >= GAP_COUNT_CAP, examples };
}

/** Measures a tenant's log over a range: the numbers every framework's controls draw on. */
export async function complianceMeasures(ledger: Ledger, tenant: string, range: ReportRange, opts: { bundleHashes?: boolean } = {}): Promise<ComplianceMeasures> {
  const store = ledger.store;
  const r = store.reports;
  const hashes = opts.bundleHashes ?? true;
  // Independent selections, started together: a PostgreSQL pool runs them side by side
  // (SQLite answers each in turn, as before).
  const gap = (select: () => Promise<number[]>) => gapOf(ledger, store, tenant, select, hashes);
  const [counts, sessions, unapprovedCalls, deniedCalls, outOfScopeCalls, actedAfterEnd, deepDelegation] = await Promise.all([
    r.typeCounts(tenant, range),
    r.sessionCounts(tenant, range),
    gap(() => r.unapprovedCalls(tenant, range, undefined, GAP_COUNT_CAP)),
    gap(() => r.deniedCalls(tenant, range, undefined, GAP_COUNT_CAP)),
    gap(() => r.outOfScopeCalls(tenant, range, undefined, GAP_COUNT_CAP)),
    gap(() => r.actedAfterEnd(tenant, range, undefined, GAP_COUNT_CAP)),
    gap(() => r.deepDelegation(tenant, DEFAULT_DELEGATION_DEPTH + 1, range, undefined, GAP_COUNT_CAP)),
  ]);
  const byType: Record<string, number> = {};
  const decisions = { allow: 0, deny: 0, approval_required: 0 };
  let entries = 0;
  for (const c of counts) {
    if (c.decision !== undefined) {
      if (c.decision in decisions) decisions[c.decision as keyof typeof decisions] = c.count;
    } else {
      byType[c.type] = c.count;
      entries += c.count;
    }
  }
  return { entries, byType, decisions, sessions, gaps: { unapprovedCalls, deniedCalls, outOfScopeCalls, actedAfterEnd, deepDelegation } };
}

/**
 * The compliance report of a tenant's log for one framework.
 * @throws RangeError for an unknown framework (the API and CLI check the name first)
 */
export async function complianceReport(
  ledger: Ledger,
  tenant: string,
  req: ReportRange & { framework: string; bundleHashes?: boolean; now?: Date },
): Promise<ComplianceReport> {
  if (!(COMPLIANCE_FRAMEWORKS as readonly string[]).includes(req.framework)) {
    throw new RangeError(`framework must be one of ${COMPLIANCE_FRAMEWORKS.join(', ')}`);
  }
  const framework = req.framework as ComplianceFramework;
  const range: ReportRange = { ...(req.since !== undefined ? { since: req.since } : {}), ...(req.until !== undefined ? { until: req.until } : {}) };
  const c = await ledger.latestCheckpoint(tenant);
  const checkpoint = { size: c.size, rootHash: toBase64url(c.rootHash) };
  const measures = await complianceMeasures(ledger, tenant, range, { bundleHashes: req.bundleHashes ?? true });
  const controls = FRAMEWORKS[framework].controls.map((spec): ControlResult => {
    const evidence = spec.evidence.map((name) => ({ measure: name, value: EVIDENCE[name]!.of(measures) }));
    const gaps = spec.gaps.map((g) =>
      g === 'openSessions'
        ? { measure: GAP_TITLES.openSessions, count: measures.sessions.open, capped: false, examples: [] }
        : { measure: GAP_TITLES[g], count: measures.gaps[g].count, capped: measures.gaps[g].capped, examples: measures.gaps[g].examples },
    );
    const anyEvidence = evidence.some((e) => e.value > 0);
    const anyGap = gaps.some((g) => g.count > 0);
    return { id: spec.id, title: spec.title, status: anyGap ? 'gap' : anyEvidence ? 'evidence' : 'no-data', evidence, gaps, method: spec.method };
  });
  return {
    framework,
    frameworkTitle: FRAMEWORKS[framework].title,
    tenant,
    range,
    generatedAt: (req.now ?? new Date()).toISOString(),
    checkpoint,
    measures,
    controls,
  };
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** The report as a self-contained HTML page; `base` prefixes session links (e.g. the server URL). */
export function complianceHtml(report: ComplianceReport, base = ''): string {
  const link = (x: ExampleSession) =>
    `<a href="${esc(base + x.sessionPath)}">${esc(x.session)}</a>${x.bundleSha256 ? ` <code title="SHA-256 of the bundle without disclosures">${esc(x.bundleSha256.slice(0, 16))}…</code>` : ''}`;
  const rows = report.controls
    .map(
      (c) => `<section class="${c.status}"><h2>${esc(c.id)} · ${esc(c.title)} <span class="status">${c.status}</span></h2>
<table><thead><tr><th>evidence</th><th>count</th></tr></thead><tbody>${c.evidence.map((e) => `<tr><td>${esc(e.measure)}</td><td>${e.value}</td></tr>`).join('')}</tbody></table>
${c.gaps.length === 0 ? '' : `<table><thead><tr><th>gap</th><th>count</th><th>example sessions</th></tr></thead><tbody>${c.gaps.map((g) => `<tr><td>${esc(g.measure)}</td><td>${g.capped ? '≥ ' : ''}${g.count}</td><td>${g.examples.map(link).join('<br>')}</td></tr>`).join('')}</tbody></table>`}
<p class="method"><strong>How measured:</strong> ${esc(c.method)}</p></section>`,
    )
    .join('\n');
  const range = `${report.range.since ?? 'the beginning'} to ${report.range.until ?? 'now'}`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(report.frameworkTitle)} — Custody compliance report</title>
<style>body{font:14px/1.45 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#1b1f24}table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border-bottom:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}td:nth-child(2){text-align:right;font-variant-numeric:tabular-nums}section{border-left:4px solid #8c959f;padding:.2rem 1rem;margin:1.2rem 0}section.evidence{border-color:#1a7f37}section.gap{border-color:#cf222e}.status{font-size:.8em;font-weight:normal;color:#57606a}.method{color:#57606a}</style></head><body>
<h1>${esc(report.frameworkTitle)}</h1>
<p>Tenant <strong>${esc(report.tenant)}</strong>, entries from ${esc(range)}. Generated ${esc(report.generatedAt)} at the signed checkpoint of size ${report.checkpoint.size}, root <code>${esc(report.checkpoint.rootHash)}</code>. ${report.measures.entries} entries, ${report.measures.sessions.sessions} sessions (${report.measures.sessions.sealed} sealed, ${report.measures.sessions.open} open).</p>
<p>Every number is measured from the log; "gap" means the data shows something the control should prevent. Gap counts stop at ${GAP_COUNT_CAP} (shown as ≥).</p>
${rows}
</body></html>
`;
}
