import { postgresConformanceOptions, runRecordsConformance } from '../testing/index.js';

runRecordsConformance(await postgresConformanceOptions());
