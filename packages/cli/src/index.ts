export { buildProgram, main } from './main.js';
export { buildDemo, seededRandom } from './demo-session.js';
export type { DemoOptions, DemoResult } from './demo-session.js';
