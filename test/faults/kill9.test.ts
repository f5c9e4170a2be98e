import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { freePort } from '../support/ports';
import { waitUntil } from '../support/mqtt-probe';
import {
  countDone,
  dbFileIn,
  exitOf,
  fastaOf,
  isMosquittoInstalled,
  killHard,
  makeTempDir,
  MOSQUITTO,
  MosquittoBroker,
  queryDb,
  seededRandom,
  sleep,
  startDaemon,
  syntheticProteins,
  TOPIC_ROOT,
} from './harness';

const MQTT_REQUESTS = 700;
const INBOX_FILES = 6;
const RECORDS_PER_FILE = 50;
const TOTAL_JOBS = MQTT_REQUESTS + INBOX_FILES * RECORDS_PER_FILE;
const KILLS = 20;
/** Work arrives in twice as many waves as kills, so the first KILLS kills always find unsubmitted work. */
const WAVES = 2 * KILLS;
// Every run prints its seed, and FAULT_SEED repeats a run with that seed.
const SEED = Number(process.env.FAULT_SEED ?? Date.now() % 1_000_000);

interface ResultCount {
  origin: string;
  requestId: string | null;
  recordIndex: number;
  results: number;
}

function resultCounts(dbFile: string): ResultCount[] {
  return queryDb(
    dbFile,
    (db) =>
      db
        .prepare(
          `SELECT i.origin AS origin, i.request_id AS requestId, j.record_index AS recordIndex, COUNT(r.id) AS results
           FROM jobs j JOIN inputs i ON i.id = j.input_id LEFT JOIN results r ON r.job_id = j.id
           GROUP BY j.id`,
        )
        .all() as ResultCount[],
    [],
  );
}

/** Writes inbox file `file` under a temporary name and renames it into the inbox. */
function dropInboxFile(dir: string, file: number, proteins: string[]): void {
  const start = MQTT_REQUESTS + file * RECORDS_PER_FILE;
  const records = proteins.slice(start, start + RECORDS_PER_FILE).map((sequence, index) => ({ id: `file${file}-record${index}`, sequence }));
  const staging = path.join(dir, `batch-${file}.tmp`);
  writeFileSync(staging, fastaOf(records));
  renameSync(staging, path.join(dir, 'inbox', `batch-${file}.fasta`));
}

const describeIfMosquitto = isMosquittoInstalled() ? describe : describe.skip;
if (!isMosquittoInstalled()) {
  console.log(`kill -9 test skipped: ${MOSQUITTO} is not installed (apt-get install mosquitto)`);
}

describeIfMosquitto('kill -9 under load', () => {
  let dir: string;
  let broker: MosquittoBroker;
  let requester: MqttClient | null = null;
  let daemon: ChildProcess | null = null;

  beforeAll(async () => {
    dir = makeTempDir('bitnet-kill9-');
    broker = new MosquittoBroker(dir, await freePort());
    await broker.start();
  });

  afterAll(async () => {
    if (daemon) await killHard(daemon);
    await requester?.endAsync(true);
    await broker.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every input gets exactly one result', async () => {
    console.log(`kill -9 test seed ${SEED} (set FAULT_SEED=${SEED} to repeat)`);
    const random = seededRandom(SEED);
    const proteins = syntheticProteins(TOTAL_JOBS, SEED);
    const dbFile = dbFileIn(dir);
    mkdirSync(path.join(dir, 'inbox'), { recursive: true });

    // The requester is a plain mqtt.js client with a persistent session, so mqtt.js keeps and
    // resends its unacknowledged QoS 1 publishes. It subscribes to the replies with QoS 1.
    const replies = new Map<string, number>();
    let status = '';
    requester = await mqtt.connectAsync(broker.url, { clientId: 'fault-requester', clean: false, reconnectPeriod: 200 });
    requester.on('message', (topic, payload) => {
      if (topic === `${TOPIC_ROOT}/status`) {
        status = payload.toString('utf8');
        return;
      }
      const reply = JSON.parse(payload.toString('utf8')) as { id: string | null };
      if (reply.id !== null) replies.set(reply.id, (replies.get(reply.id) ?? 0) + 1);
    });
    await requester.subscribeAsync([`${TOPIC_ROOT}/response/predict`, `${TOPIC_ROOT}/status`], { qos: 1 });

    // The daemon's persistent session must exist before the requests, so the broker queues them.
    daemon = startDaemon(dir, broker.url);
    await waitUntil(() => status === 'online', 60_000, 'online status');

    // Work arrives in waves, one at the start of each kill interval, so kills land while jobs
    // are queued. Each kill point is a random delay after the daemon was started, so kills
    // land in startup, intake, inference and publishing alike.
    const client = requester;
    const publishes: Array<Promise<unknown>> = [];
    const requestsPerWave = Math.ceil(MQTT_REQUESTS / WAVES);
    const killPointsMs: number[] = [];
    const doneAtKill: number[] = [];
    let killsUnderLoad = 0;
    for (let wave = 0; wave < WAVES; wave++) {
      for (let index = wave * requestsPerWave; index < Math.min(MQTT_REQUESTS, (wave + 1) * requestsPerWave); index++) {
        const payload = JSON.stringify({ id: `req-${index}`, sequence: proteins[index] });
        publishes.push(client.publishAsync(`${TOPIC_ROOT}/request/predict`, payload, { qos: 1 }));
      }
      const file = wave / Math.floor(WAVES / INBOX_FILES);
      if (Number.isInteger(file) && file < INBOX_FILES) dropInboxFile(dir, file, proteins);

      const delayMs = 200 + Math.floor(random() * 1000);
      await sleep(delayMs);
      const done = countDone(dbFile);
      await killHard(daemon);
      killPointsMs.push(delayMs);
      doneAtKill.push(done);
      if (done < TOTAL_JOBS) killsUnderLoad++;
      status = '';
      daemon = startDaemon(dir, broker.url);
    }
    const published = Promise.all(publishes);

    await published;
    await waitUntil(() => status === 'online', 60_000, 'online status after the last restart');
    await waitUntil(() => countDone(dbFile) >= TOTAL_JOBS, 240_000, `${TOTAL_JOBS} finished jobs`);
    await waitUntil(() => replies.size >= MQTT_REQUESTS, 60_000, `${MQTT_REQUESTS} replies`);
    await waitUntil(() => readdirSync(path.join(dir, 'done')).length >= INBOX_FILES, 60_000, 'inbox files in done/');

    const exited = exitOf(daemon);
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    daemon = null;

    const counts = resultCounts(dbFile);
    const lost = counts.filter((row) => row.results === 0);
    const duplicated = counts.filter((row) => row.results > 1);
    const mqttIds = new Set(counts.filter((row) => row.requestId !== null).map((row) => row.requestId));
    const fileRows = counts.filter((row) => row.origin.endsWith('.fasta'));
    const duplicateReplies = [...replies.values()].filter((n) => n > 1).length;

    console.log(
      [
        'kill -9 figures:',
        `  seed ${SEED}, kills ${killPointsMs.length} (${killsUnderLoad} with jobs unfinished), kill points (ms after start) ${killPointsMs.join(' ')}`,
        `  finished jobs at each kill ${doneAtKill.join(' ')}`,
        `  jobs ${counts.length} (expected ${TOTAL_JOBS}), results ${counts.reduce((sum, row) => sum + row.results, 0)}`,
        `  lost ${lost.length}, duplicated ${duplicated.length}`,
        `  replies ${replies.size} of ${MQTT_REQUESTS} requests, ids replied more than once ${duplicateReplies}`,
      ].join('\n'),
    );

    expect(killsUnderLoad).toBeGreaterThanOrEqual(KILLS);
    expect(counts).toHaveLength(TOTAL_JOBS);
    expect(lost).toEqual([]);
    expect(duplicated).toEqual([]);
    expect(mqttIds.size).toBe(MQTT_REQUESTS);
    expect(fileRows).toHaveLength(INBOX_FILES * RECORDS_PER_FILE);
    expect(new Set(fileRows.map((row) => `${row.origin}#${row.recordIndex}`)).size).toBe(INBOX_FILES * RECORDS_PER_FILE);
    for (let index = 0; index < MQTT_REQUESTS; index++) expect(replies.has(`req-${index}`)).toBe(true);
    expect(readdirSync(path.join(dir, 'done')).sort()).toEqual(Array.from({ length: INBOX_FILES }, (_, file) => `batch-${file}.fasta`).sort());
  }, 420_000);
});
