import { runStoreConformance, sqliteConformanceOptions } from '../testing/index.js';

runStoreConformance(sqliteConformanceOptions());
