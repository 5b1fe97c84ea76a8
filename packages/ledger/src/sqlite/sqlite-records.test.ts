import { runRecordsConformance, sqliteConformanceOptions } from '../testing/index.js';

runRecordsConformance(sqliteConformanceOptions());
