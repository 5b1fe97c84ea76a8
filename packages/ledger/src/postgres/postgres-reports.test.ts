import { postgresConformanceOptions, runReportConformance } from '../testing/index.js';

runReportConformance(await postgresConformanceOptions());
