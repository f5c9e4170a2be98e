import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import Database from 'better-sqlite3';
import { openDatabase, quickCheckProblems, withSynchronousFull } from '../../src/store/db';
import { createLogger } from '../../src/log';
import { MIGRATIONS, StoreOpenError } from '../../src/store';
import { createStoreFixture, mqttInput, newJob, type StoreFixture } from './fixtures';

const latestVersion = MIGRATIONS[MIGRATIONS.length - 1].version;

// Values of PRAGMA synchronous.
const SYNCHRONOUS_NORMAL = 1;
const SYNCHRONOUS_FULL = 2;

function readMigrations(file: string): Array<{ version: number; name: string; applied_at: string }> {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare<[], { version: number; name: string; applied_at: string }>('SELECT * FROM schema_migrations ORDER BY version').all();
  } finally {
    db.close();
  }
}

/** Overwrites the cell pointers of the telemetry table's rightmost leaf page with 0xff bytes. */
function damageTelemetryPage(file: string): void {
  const db = new Database(file, { readonly: true });
  const rootPage = db.prepare<[], number>("SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'telemetry'").pluck().get()!;
  db.close();

  const content = readFileSync(file);
  const pageSize = content.readUInt16BE(16);
  let page = rootPage;
  // An interior table page (type 0x05) stores its rightmost child at bytes 8-11. A leaf page
  // (type 0x0d) has an 8-byte header followed by the cell pointers.
  while (content[(page - 1) * pageSize] === 0x05) page = content.readUInt32BE((page - 1) * pageSize + 8);
  expect(content[(page - 1) * pageSize]).toBe(0x0d);

  const pointers = (page - 1) * pageSize + 8;
  content.fill(0xff, pointers, pointers + 64);
  writeFileSync(file, content);
}

describe('Store.open', () => {
  let fixture: StoreFixture;

  beforeEach(() => {
    fixture = createStoreFixture();
  });

  afterEach(() => {
    fixture.cleanup();
  });

  test('creates the folder and applies migrations', () => {
    fixture.store.open();
    fixture.store.close();

    expect(existsSync(fixture.file)).toBe(true);
    const applied = readMigrations(fixture.file);
    expect(applied.map((row) => row.version)).toEqual(MIGRATIONS.map((migration) => migration.version));
    expect(applied[0].applied_at).toBe('2026-01-01T00:00:00.000Z');
  });

  test('reopen does not reapply migrations', () => {
    fixture.store.open();
    fixture.store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR')], [], []);
    fixture.store.close();
    const before = readMigrations(fixture.file);

    const reopened = fixture.newStore();
    reopened.open();

    expect(readMigrations(fixture.file)).toEqual(before);
    expect(reopened.findInputByKey('a')?.jobCount).toBe(1);
  });

  test('sets WAL and the base pragmas', () => {
    fixture.store.open();
    // A second connection reads the journal mode, which is stored in the file.
    const outside = new Database(fixture.file, { readonly: true });
    try {
      expect(outside.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      outside.close();
    }
    expect(existsSync(`${fixture.file}-wal`)).toBe(true);
  });

  test('close truncates the WAL and is idempotent', () => {
    fixture.store.open();
    fixture.store.enqueueInput(mqttInput('a'), [newJob(0, 'MKTAYIAKQR')], [], []);
    expect(statSync(`${fixture.file}-wal`).size).toBeGreaterThan(0);

    fixture.store.close();
    fixture.store.close();

    const walFile = `${fixture.file}-wal`;
    expect(existsSync(walFile) ? statSync(walFile).size : 0).toBe(0);
  });

  test('methods before open throw', () => {
    expect(() => fixture.store.countOutbox()).toThrow(/is not open; call open\(\) first/);
  });

  test('open twice throws', () => {
    fixture.store.open();
    expect(() => fixture.store.open()).toThrow(/already open/);
  });

  test('rejects a newer schema version', () => {
    fixture.store.open();
    fixture.store.close();
    const db = new Database(fixture.file);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(latestVersion + 1, 'future', '2030-01-01T00:00:00.000Z');
    db.close();

    const reopened = fixture.newStore();
    expect(() => reopened.open()).toThrow(StoreOpenError);
    expect(() => reopened.open()).toThrow(`schema version ${latestVersion + 1} is newer than this build supports (${latestVersion})`);
  });

  test('rejects a file that is not a database', () => {
    fixture.store.open();
    fixture.store.close();
    writeFileSync(fixture.file, 'this is a text file, not SQLite'.repeat(200));

    const reopened = fixture.newStore();
    expect(() => reopened.open()).toThrow(StoreOpenError);
    expect(() => reopened.open()).toThrow(/file is not a database/);
  });

  test('rejects a file that fails quick_check', () => {
    fixture.store.open();
    for (let i = 0; i < 2000; i++) {
      fixture.store.insertTelemetry(new Date(Date.UTC(2026, 0, 1, 0, 0, i)), JSON.stringify({ sample: i, padding: 'x'.repeat(80) }));
    }
    fixture.store.close();
    damageTelemetryPage(fixture.file);

    // SQLite either lists the damage or stops the check with SQLITE_CORRUPT, depending on how
    // far it walks the damaged page, so both outcomes are accepted here.
    const reopened = fixture.newStore();
    expect(() => reopened.open()).toThrow(StoreOpenError);
    expect(() => reopened.open()).toThrow(/PRAGMA quick_check found \d+ problems \(Tree \d+ page \d+ cell|SQLITE_CORRUPT/);
    expect(() => reopened.open()).toThrow(/restore the file from a backup/);
    expect(() => reopened.countOutbox()).toThrow(/is not open/);
  });

  test('rejects a damaged first page', () => {
    fixture.store.open();
    fixture.store.close();
    const fd = openSync(fixture.file, 'r+');
    // Bytes 16-17 of the header are the page size, and 3 is not a power of two.
    writeSync(fd, Buffer.from([0x00, 0x03]), 0, 2, 16);
    closeSync(fd);

    const reopened = fixture.newStore();
    expect(() => reopened.open()).toThrow(StoreOpenError);
    expect(() => reopened.open()).toThrow(/SQLITE_NOTADB|SQLITE_CORRUPT/);
  });
});

describe('openDatabase migrations', () => {
  let fixture: StoreFixture;

  beforeEach(() => {
    fixture = createStoreFixture();
  });

  afterEach(() => {
    fixture.cleanup();
  });

  const logger = createLogger('silent');
  const clock = (): Date => new Date('2026-01-01T00:00:00.000Z');

  test('failed migration rolls back', () => {
    const broken = [...MIGRATIONS, { version: latestVersion + 1, name: 'broken', sql: 'CREATE TABLE extra (a TEXT); SELECT * FROM missing_table;' }];
    expect(() => openDatabase(fixture.file, logger, clock, broken)).toThrow(/no such table: missing_table/);

    const tables = new Database(fixture.file, { readonly: true });
    try {
      expect(tables.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").pluck().get()).toBe(0);
      expect(tables.prepare('SELECT max(version) FROM schema_migrations').pluck().get()).toBe(latestVersion);
    } finally {
      tables.close();
    }
  });

  test('new migration applies once', () => {
    const extended = [...MIGRATIONS, { version: latestVersion + 1, name: 'extra table', sql: 'CREATE TABLE extra (a TEXT);' }];

    const first = openDatabase(fixture.file, logger, clock, extended);
    first.db.close();
    const second = openDatabase(fixture.file, logger, clock, extended);
    second.db.close();

    expect(first.appliedVersions).toEqual([...MIGRATIONS.map((migration) => migration.version), latestVersion + 1]);
    expect(second.appliedVersions).toEqual([]);
    expect(second.schemaVersion).toBe(latestVersion + 1);
  });

  test('rejects a renamed migration', () => {
    openDatabase(fixture.file, logger, clock).db.close();
    const renamed = [{ ...MIGRATIONS[0], name: 'other name' }, ...MIGRATIONS.slice(1)];

    expect(() => openDatabase(fixture.file, logger, clock, renamed)).toThrow(/migration 1 was applied as "initial schema" but this build names it "other name"/);
  });
});

describe('withSynchronousFull', () => {
  let fixture: StoreFixture;
  let db: Database.Database;

  beforeEach(() => {
    fixture = createStoreFixture();
    fixture.store.open();
    fixture.store.close();
    db = new Database(fixture.file);
    db.pragma('synchronous = NORMAL');
  });

  afterEach(() => {
    db.close();
    fixture.cleanup();
  });

  test('runs work at FULL', () => {
    const inside = withSynchronousFull(db, () => db.pragma('synchronous', { simple: true }));
    expect(inside).toBe(SYNCHRONOUS_FULL);
    expect(db.pragma('synchronous', { simple: true })).toBe(SYNCHRONOUS_NORMAL);
  });

  test('restores NORMAL when work throws', () => {
    expect(() =>
      withSynchronousFull(db, () => {
        throw new Error('work failed');
      }),
    ).toThrow('work failed');
    expect(db.pragma('synchronous', { simple: true })).toBe(SYNCHRONOUS_NORMAL);
  });

  test('commits a transaction run inside', () => {
    const insert = db.transaction(() => db.prepare('INSERT INTO telemetry (created_at, payload) VALUES (?, ?)').run('2026-01-01T00:00:00.000Z', '{}'));
    withSynchronousFull(db, () => insert.immediate());
    expect(db.prepare('SELECT count(*) FROM telemetry').pluck().get()).toBe(1);
  });
});

describe('quickCheckProblems', () => {
  test('ok means no problems', () => {
    expect(quickCheckProblems([{ quick_check: 'ok' }])).toEqual([]);
  });

  test('splits multi-line rows', () => {
    const rows = [
      { quick_check: '*** in database main ***\nTree 2 page 11 cell 1: Offset 65535 out of range 137..4092\nTree 2 page 11 cell 0: Offset 65535 out of range 137..4092' },
      { quick_check: 'database disk image is malformed' },
    ];
    expect(quickCheckProblems(rows)).toEqual([
      'Tree 2 page 11 cell 1: Offset 65535 out of range 137..4092',
      'Tree 2 page 11 cell 0: Offset 65535 out of range 137..4092',
      'database disk image is malformed',
    ]);
  });
});
