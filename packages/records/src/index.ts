/**
 * @custody/records: records management over a Custody ledger: redaction after
 * sealing, erasure for a data subject, retention with legal hold, keyed-digest
 * search, and SIEM exports. Every name exported here is public API.
 */
export { RECORDS_STATUS, RecordsError } from './errors.js';
export type { RecordsErrorCode } from './errors.js';
export { checkPointer, digestText, isAtOrUnder, keyedDigest, valueAt } from './keyed-digest.js';
export { MAX_RETENTION_DAYS, checkHoldTarget, governingRule, holdCovering, isExpired } from './retention.js';
export type { HoldTarget } from './retention.js';
export { CSV_COLUMNS, EXPORT_FORMATS, csvCell, csvHeader, csvLine, formatExportLine } from './export-formats.js';
export type { ExportFormat, ExportItem } from './export-formats.js';
export { OCSF_VERSION, ocsfClassOf, ocsfFacts, toOcsf, validateOcsf } from './ocsf.js';
export type { OcsfEvent, OcsfFacts, OcsfIssue } from './ocsf.js';
export { Records } from './records.js';
export type { Acting, ErasureResult, PurgeResult, RecordsOptions, RedactResult } from './records.js';
export * from './streams/index.js';
