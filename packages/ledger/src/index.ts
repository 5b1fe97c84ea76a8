export { audit } from './audit.js';
export type { AuditOptions, AuditProblem, AuditProgress, AuditReport, TenantAudit } from './audit.js';
export { entryRowOf, principalsOf, scopeCovers, workloadId } from './entry-row.js';
export { decodeStoredEntry, disclosuresColumn } from './store-shared.js';
export { LedgerError, StoreError } from './errors.js';
export type { LedgerErrorCode, StoreErrorCode } from './errors.js';
export { Ledger, viewOf } from './ledger.js';
export type { CauseNode, EventView, LedgerOptions } from './ledger.js';
export {
  AFTER_END_ALLOWED,
  DEFAULT_DELEGATION_DEPTH,
  REPORT_NAMES,
  SESSION_END_TYPES,
  sessionPath,
} from './reports.js';
export type {
  ActedAfterEndRow,
  DeepDelegationRow,
  DeniedCallRow,
  PrincipalActivity,
  PrincipalEntry,
  ReportName,
  ReportPage,
  ReportRange,
  ReportRequest,
  ReportRowBase,
  StoreReports,
  TopPrincipal,
  UnapprovedCallRow,
} from './reports.js';
export type { LegalHoldRow, RetentionRuleRow, StoreRecords, ValueDigestRow } from './records-store.js';
export type { StoreStreams, StreamRow, StreamStatus } from './streams-store.js';
export { Sequencer } from './sequencer.js';
export type { AppendResult, SequencerOptions } from './sequencer.js';
export type {
  ApiKeyRow,
  AuditEntryRow,
  AuditHeadRow,
  EntryColumns,
  EntryFilter,
  EntryRow,
  LedgerStore,
  LogHead,
  Page,
  PageRequest,
  PrincipalRole,
  PostingsRow,
  PrincipalRow,
  SealedBatch,
  SessionColumns,
  SessionFilter,
  SessionRow,
  StoreCapabilities,
  StoredCheckpoint,
  StoredEntry,
} from './store.js';
export { SqliteStore } from './sqlite/sqlite-store.js';
export type { SqliteStoreConfig } from './sqlite/sqlite-store.js';
export { PostgresStore } from './postgres/postgres-store.js';
export type { PostgresStoreConfig } from './postgres/postgres-store.js';
export { COMPLIANCE_FRAMEWORKS, complianceHtml, complianceMeasures, complianceReport, GAP_COUNT_CAP } from './compliance.js';
export type { ComplianceFramework, ComplianceMeasures, ComplianceReport, ControlResult, ExampleSession, GapMeasure, GapName } from './compliance.js';
