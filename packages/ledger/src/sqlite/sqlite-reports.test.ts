import { runReportConformance, sqliteConformanceOptions } from '../testing/index.js';

runReportConformance(sqliteConformanceOptions());
