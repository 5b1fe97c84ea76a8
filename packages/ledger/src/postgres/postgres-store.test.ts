import { postgresConformanceOptions, runStoreConformance } from '../testing/index.js';

runStoreConformance(await postgresConformanceOptions());
