import type { ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../support/ports';
import { waitUntil } from '../support/mqtt-probe';
import { countDone, dbFileIn, exitOf, fastaOf, killHard, makeTempDir, queryDb, sleep, startDaemon, syntheticProteins, waitForListener } from './harness';

const SLOW_RECORDS = 40;
const SLOW_CHUNKS = 12;
const CHUNK_INTERVAL_MS = 300;
const SETTLE_MS = 1000;
const BURST_FILES = 1000;

/** Starts the daemon with its embedded broker on a free port and waits until the broker listens. */
async function startWithEmbeddedBroker(dir: string, env: Record<string, string>): Promise<ChildProcess> {
  const port = await freePort();
  const daemon = startDaemon(dir, `mqtt://127.0.0.1:${port}`, {
    BITNET_EDGE_MQTT_BROKER: 'embedded',
    BITNET_EDGE_MQTT_EMBEDDED_PORT: String(port),
    ...env,
  });
  await waitForListener(port, 60_000);
  return daemon;
}

async function stopDaemon(daemon: ChildProcess): Promise<void> {
  const exited = exitOf(daemon);
  daemon.kill('SIGTERM');
  expect(await exited).toBe(0);
}

interface InputFigures {
  origin: string;
  inputs: number;
  jobs: number;
  rejected: number;
  results: number;
}

function inputFigures(dbFile: string): InputFigures[] {
  return queryDb(
    dbFile,
    (db) =>
      db
        .prepare(
          `SELECT i.origin AS origin, COUNT(DISTINCT i.id) AS inputs, COUNT(DISTINCT j.id) AS jobs,
             (SELECT COUNT(*) FROM rejections x WHERE x.input_id IN (SELECT id FROM inputs WHERE origin = i.origin)) AS rejected,
             COUNT(r.id) AS results
           FROM inputs i LEFT JOIN jobs j ON j.input_id = i.id LEFT JOIN results r ON r.job_id = j.id
           WHERE i.source = 'inbox' GROUP BY i.origin ORDER BY i.origin`,
        )
        .all() as InputFigures[],
    [],
  );
}

describe('inbox faults', () => {
  let dir: string;
  let daemon: ChildProcess | null = null;

  beforeEach(() => {
    dir = makeTempDir('bitnet-inbox-faults-');
    mkdirSync(path.join(dir, 'inbox'), { recursive: true });
  });

  afterEach(async () => {
    if (daemon) await killHard(daemon);
    daemon = null;
    rmSync(dir, { recursive: true, force: true });
  });

  test('slowly written file is read whole', async () => {
    daemon = await startWithEmbeddedBroker(dir, { BITNET_EDGE_INBOX_SETTLE_MS: String(SETTLE_MS) });
    const records = syntheticProteins(SLOW_RECORDS, 303).map((sequence, index) => ({ id: `slow-${index}`, sequence }));
    const text = fastaOf(records);

    // Chunks are cut at fixed byte offsets, so most of them end inside a header or a sequence
    // line, and a file read between two appends would lose or truncate records.
    const target = path.join(dir, 'inbox', 'slow.fasta');
    const chunkBytes = Math.ceil(text.length / SLOW_CHUNKS);
    writeFileSync(target, '');
    for (let offset = 0; offset < text.length; offset += chunkBytes) {
      await sleep(CHUNK_INTERVAL_MS);
      expect(existsSync(target)).toBe(true);
      appendFileSync(target, text.slice(offset, offset + chunkBytes));
    }

    await waitUntil(() => existsSync(path.join(dir, 'done', 'slow.fasta')), 60_000, 'slow.fasta in done/');
    await stopDaemon(daemon);
    daemon = null;

    const figures = inputFigures(dbFileIn(dir));
    console.log(`slow file figures: ${SLOW_CHUNKS} chunks every ${CHUNK_INTERVAL_MS} ms, settle ${SETTLE_MS} ms, ${JSON.stringify(figures)}`);
    expect(figures).toEqual([{ origin: 'slow.fasta', inputs: 1, jobs: SLOW_RECORDS, rejected: 0, results: SLOW_RECORDS }]);
    expect(existsSync(path.join(dir, 'outbox', 'slow.fasta.json'))).toBe(true);
    expect(readdirSync(path.join(dir, 'failed'))).toEqual([]);
  }, 120_000);

  test('burst of 1,000 files each processed once', async () => {
    daemon = await startWithEmbeddedBroker(dir, { BITNET_EDGE_INBOX_SETTLE_MS: '200' });
    const proteins = syntheticProteins(BURST_FILES, 404);
    const names = proteins.map((_, index) => `burst-${String(index).padStart(4, '0')}.fasta`);

    // Each file is written with one write call, straight into the watched folder. The time the
    // burst took is printed, not asserted.
    const burstStartedMs = Date.now();
    for (let index = 0; index < BURST_FILES; index++) {
      writeFileSync(path.join(dir, 'inbox', names[index]), fastaOf([{ id: `burst-${index}`, sequence: proteins[index] }]));
    }
    const burstMs = Date.now() - burstStartedMs;

    const dbFile = dbFileIn(dir);
    await waitUntil(() => countDone(dbFile) >= BURST_FILES, 180_000, `${BURST_FILES} finished jobs`);
    await waitUntil(() => readdirSync(path.join(dir, 'done')).length >= BURST_FILES, 60_000, `${BURST_FILES} files in done/`);
    await stopDaemon(daemon);
    daemon = null;

    const figures = inputFigures(dbFile);
    const done = readdirSync(path.join(dir, 'done')).sort();
    const resultFiles = readdirSync(path.join(dir, 'outbox')).filter((name) => name.endsWith('.json')).sort();
    const notOnce = figures.filter((row) => row.inputs !== 1 || row.jobs !== 1 || row.results !== 1 || row.rejected !== 0);
    console.log(`burst figures: files ${BURST_FILES} written in ${burstMs} ms, in done/ ${done.length}, results files ${resultFiles.length}, inputs ${figures.length}, not processed exactly once ${notOnce.length}`);

    expect(done).toEqual(names);
    expect(resultFiles).toEqual(names.map((name) => `${name}.json`));
    expect(figures.map((row) => row.origin)).toEqual(names);
    expect(notOnce).toEqual([]);
    expect(readdirSync(path.join(dir, 'inbox')).filter((name) => !name.startsWith('.'))).toEqual([]);
  }, 240_000);
});
