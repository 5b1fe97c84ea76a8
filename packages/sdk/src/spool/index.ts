/**
 * `@custody/sdk/spool`: the durable, fsync'd spool (Node-only). See docs/sdk.md, "The spool".
 */
export { FileSpool } from './file-spool.js';
export type { FileSpoolOptions } from './file-spool.js';
