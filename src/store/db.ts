import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from '../log';
import { StoreOpenError } from './errors';
import { MIGRATIONS, type Migration, type SchemaMigrationRecord } from './migrations';

/** Name of the database file inside the data folder. */
export const DATABASE_FILE_NAME = 'bitnet-edge.db';

/** Time to wait for a lock held by another connection (the sqlite3 CLI, a backup) before SQLITE_BUSY, in ms. */
export const BUSY_TIMEOUT_MS = 5000;

const RESTORE_ADVICE = 'stop the service and restore the file from a backup, or move it away to start with an empty database';

/** Returns the path of the database file in the data folder. */
export function databaseFile(dataFolder: string): string {
  return path.join(dataFolder, DATABASE_FILE_NAME);
}

/** Connection opened by `openDatabase`, with its schema version and the migrations applied now. */
export interface OpenedDatabase {
  db: Database.Database;
  schemaVersion: number;
  appliedVersions: number[];
}

/**
 * Opens the database file (creating its folder), sets the base pragmas, runs
 * `PRAGMA quick_check` and applies the migrations that are missing. Closes the connection
 * again when any step fails.
 */
export function openDatabase(file: string, logger: Logger, clock: () => Date, migrations: readonly Migration[] = MIGRATIONS): OpenedDatabase {
  mkdirSync(path.dirname(file), { recursive: true });

  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    throw new StoreOpenError(file, (err as Error).message, { cause: err });
  }

  try {
    setBasePragmas(db, file);
    checkIntegrity(db, file);
    const appliedVersions = applyMigrations(db, file, logger, clock, migrations);
    return { db, schemaVersion: currentVersion(db), appliedVersions };
  } catch (err) {
    db.close();
    if (err instanceof StoreOpenError) throw err;
    throw new StoreOpenError(file, describeOpenFailure(err), { cause: err });
  }
}

/** Adds what to do next to the SQLite errors that mean the file is damaged or is not a database. */
function describeOpenFailure(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // The code is read by shape: better-sqlite3's native addon keeps the SqliteError class of the
  // first copy of the module that loaded it, so `instanceof` fails when a module registry (jest's)
  // loads the JavaScript part again.
  const codeValue = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  const code = typeof codeValue === 'string' ? codeValue : '';
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return `${message} (${code}); ${RESTORE_ADVICE}`;
  return message;
}

function setBasePragmas(db: Database.Database, file: string): void {
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal') {
    throw new StoreOpenError(file, `journal_mode is ${String(mode)}, expected wal; put the data folder on a local file system`);
  }
  db.pragma('foreign_keys = ON');
  // In WAL mode NORMAL keeps every commit across application crashes, and only a power loss or
  // OS crash can roll back the last commits (SQLite documentation of PRAGMA synchronous).
  // Transactions that acknowledge input switch to FULL with withSynchronousFull.
  db.pragma('synchronous = NORMAL');
}

/**
 * Returns the problems in the rows of `PRAGMA quick_check`, or an empty list when it returned
 * `ok`. One row can hold several problems, one a line, under a "*** in database main ***" heading.
 */
export function quickCheckProblems(rows: Array<{ quick_check: string }>): string[] {
  return rows.flatMap((row) => row.quick_check.split('\n')).filter((line) => line !== 'ok' && !line.startsWith('***'));
}

// Damage that quick_check cannot walk past makes the pragma throw SQLITE_CORRUPT instead of
// returning rows, and openDatabase reports that error with the same advice.
function checkIntegrity(db: Database.Database, file: string): void {
  const problems = quickCheckProblems(db.pragma('quick_check') as Array<{ quick_check: string }>);
  if (problems.length === 0) return;

  const firstProblems = problems.slice(0, 3).join('; ');
  throw new StoreOpenError(
    file,
    `PRAGMA quick_check found ${problems.length} problems (${firstProblems}); ${RESTORE_ADVICE}`,
  );
}

function currentVersion(db: Database.Database): number {
  const row = db.prepare<[], { version: number | null }>('SELECT max(version) AS version FROM schema_migrations').get();
  return row?.version ?? 0;
}

/** Applies each missing migration in its own IMMEDIATE transaction and returns their versions. */
function applyMigrations(
  db: Database.Database,
  file: string,
  logger: Logger,
  clock: () => Date,
  migrations: readonly Migration[],
): number[] {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL
  )`);

  const applied = db.prepare<[], SchemaMigrationRecord>('SELECT version, name, applied_at FROM schema_migrations ORDER BY version').all();
  const latestKnown = migrations.length > 0 ? migrations[migrations.length - 1].version : 0;
  checkAppliedMigrations(file, applied, migrations, latestKnown);

  const appliedVersions = new Set(applied.map((row) => row.version));
  const record = db.prepare<[number, string, string]>('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  const newlyApplied: number[] = [];

  for (const migration of migrations) {
    if (appliedVersions.has(migration.version)) continue;

    const apply = db.transaction(() => {
      db.exec(migration.sql);
      record.run(migration.version, migration.name, clock().toISOString());
    });
    apply.immediate();

    newlyApplied.push(migration.version);
    logger.info({ version: migration.version, name: migration.name }, 'migration applied');
  }
  return newlyApplied;
}

function checkAppliedMigrations(
  file: string,
  applied: SchemaMigrationRecord[],
  migrations: readonly Migration[],
  latestKnown: number,
): void {
  const newest = applied.length > 0 ? applied[applied.length - 1].version : 0;
  if (newest > latestKnown) {
    throw new StoreOpenError(
      file,
      `schema version ${newest} is newer than this build supports (${latestKnown}); upgrade bitnet-edge or use another data folder`,
    );
  }

  const known = new Map(migrations.map((migration) => [migration.version, migration.name]));
  for (const row of applied) {
    const name = known.get(row.version);
    if (name !== row.name) {
      throw new StoreOpenError(
        file,
        `migration ${row.version} was applied as "${row.name}" but this build names it "${String(name)}"; the file was written by a different build`,
      );
    }
  }
}

/**
 * Runs `work` with `synchronous=FULL` and restores NORMAL afterwards, also when `work` throws.
 * Transactions that acknowledge input run inside it, so their commit is on disk before the
 * caller acks. Other writes (claims, telemetry) stay at NORMAL to save an fsync per commit on
 * SD cards: in WAL mode NORMAL can lose the last commits on a power cut but keeps the file
 * consistent (SQLite documentation of PRAGMA synchronous). The pragma is a connection setting,
 * so it is switched before BEGIN and after COMMIT or ROLLBACK.
 */
export function withSynchronousFull<T>(db: Database.Database, work: () => T): T {
  db.pragma('synchronous = FULL');
  try {
    return work();
  } finally {
    db.pragma('synchronous = NORMAL');
  }
}
