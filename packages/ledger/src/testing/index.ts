/**
 * `@custody/ledger/testing`: the LedgerStore conformance suite, batch fixtures
 * and the test environments of the SQLite and PostgreSQL stores.
 */
export { bulkDrafts, FIXTURE_SEED, FixtureLog, makeBatch, mulberry32, SCENARIO_PEOPLE, scenarioDrafts } from './batch-fixtures.js';
export type { FixtureLogOptions, ScenarioOptions } from './batch-fixtures.js';
export {
  DEFAULT_TEST_POSTGRES_URL,
  POSTGRES_START_HINT,
  postgresConformanceOptions,
  postgresTestEnv,
  selectedStores,
  storeExcluded,
} from './postgres-test-env.js';
export type { PostgresTestEnv } from './postgres-test-env.js';
export { sqliteConformanceOptions, walRestarts } from './sqlite-test-env.js';
export { runRecordsConformance } from './records-conformance.js';
export { runReportConformance } from './report-conformance.js';
export { runStoreConformance } from './store-conformance.js';
export type { CrashChildSpec, StoreConformanceOptions } from './store-conformance.js';
export { buildBatches, measureIngest, postgresPlain, sqlitePlain } from './ingest-baseline.js';
export type { IngestResult } from './ingest-baseline.js';
