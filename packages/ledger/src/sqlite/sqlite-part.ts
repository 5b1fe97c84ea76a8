/**
 * What the parts of `SqliteStore` that live in their own files (reports, records)
 * share: the store's database, its way of running a call, and a prepared-statement
 * cache keyed by SQL text.
 * @internal
 */
import type Database from 'better-sqlite3';

/** A prepared statement of the store's database. */
export type Statement = Database.Statement<unknown[], unknown>;

/** @internal */
export abstract class SqlitePart {
  protected readonly db: Database.Database;
  /** Runs a call the way the store does (maps driver errors, refuses when closed). */
  protected readonly run: <T>(fn: () => T) => T;
  readonly #statements = new Map<string, Statement>();

  /**
   * @param db the store's database
   * @param run runs a call the way the store does (maps driver errors, refuses when closed)
   */
  constructor(db: Database.Database, run: <T>(fn: () => T) => T) {
    this.db = db;
    this.run = run;
  }

  /** The prepared statement for `sql`, prepared once. */
  protected stmt(sql: string): Statement {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }
}
