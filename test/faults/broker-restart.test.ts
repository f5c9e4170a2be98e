import type { ChildProcess } from 'node:child_process';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { freePort } from '../support/ports';
import { waitUntil } from '../support/mqtt-probe';
import {
  AedesBroker,
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
  type RestartableBroker,
  sleep,
  startDaemon,
  syntheticProteins,
  TOPIC_ROOT,
} from './harness';

const JOBS = 400;
const RESTARTS = 2;
const BROKER_DOWN_MS = 1000;

interface Figures {
  doneAtRestart: number[];
  received: Map<number, number>;
  stored: Set<number>;
}

/** Runs the daemon on `broker`, restarts the broker under load and collects what the subscriber received. */
async function runUnderRestarts(dir: string, broker: RestartableBroker, seed: number): Promise<Figures> {
  const dbFile = dbFileIn(dir);
  const received = new Map<number, number>();
  let status = '';
  let subscriber: MqttClient | null = null;
  let daemon: ChildProcess | null = null;

  try {
    subscriber = await mqtt.connectAsync(broker.url, { clientId: 'fault-subscriber', clean: false, reconnectPeriod: 100 });
    subscriber.on('message', (topic, payload) => {
      if (topic === `${TOPIC_ROOT}/status`) {
        status = payload.toString('utf8');
        return;
      }
      const message = JSON.parse(payload.toString('utf8')) as { jobId: number };
      received.set(message.jobId, (received.get(message.jobId) ?? 0) + 1);
    });
    await subscriber.subscribeAsync([`${TOPIC_ROOT}/predictions`, `${TOPIC_ROOT}/status`], { qos: 1 });

    daemon = startDaemon(dir, broker.url);
    await waitUntil(() => status === 'online', 60_000, 'online status');

    // Each restart follows a new batch of work, and the broker goes down once the daemon has
    // finished the first job of that batch, so every restart happens under load.
    const records = syntheticProteins(JOBS, seed).map((sequence, index) => ({ id: `record-${index}`, sequence }));
    const perBatch = JOBS / RESTARTS;
    mkdirSync(path.join(dir, 'inbox'), { recursive: true });
    const doneAtRestart: number[] = [];
    for (let restart = 0; restart < RESTARTS; restart++) {
      const staging = path.join(dir, `batch-${restart}.tmp`);
      writeFileSync(staging, fastaOf(records.slice(restart * perBatch, (restart + 1) * perBatch)));
      renameSync(staging, path.join(dir, 'inbox', `batch-${restart}.fasta`));
      await waitUntil(() => countDone(dbFile) > restart * perBatch, 60_000, `first finished job of batch ${restart}`);

      doneAtRestart.push(countDone(dbFile));
      await broker.stop();
      await sleep(BROKER_DOWN_MS);
      await broker.start();
      await waitUntil(() => subscriber?.connected === true, 30_000, 'subscriber reconnect');
    }

    await waitUntil(() => countDone(dbFile) >= JOBS, 120_000, `${JOBS} finished jobs`);
    await waitUntil(() => received.size >= JOBS, 60_000, `${JOBS} predictions`);

    const exited = exitOf(daemon);
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    daemon = null;

    const stored = new Set(queryDb(dbFile, (db) => (db.prepare('SELECT job_id AS jobId FROM results').all() as Array<{ jobId: number }>).map((row) => row.jobId), []));
    return { doneAtRestart, received, stored };
  } finally {
    if (daemon) await killHard(daemon);
    await subscriber?.endAsync(true);
  }
}

function report(name: string, figures: Figures): void {
  const duplicates = [...figures.received.values()].reduce((sum, n) => sum + n - 1, 0);
  console.log(
    [
      `broker restart figures (${name}):`,
      `  restarts ${RESTARTS}, broker down ${BROKER_DOWN_MS} ms each, finished jobs at each restart ${figures.doneAtRestart.join(' ')}`,
      `  results in the database ${figures.stored.size}, distinct predictions received ${figures.received.size}, duplicate deliveries ${duplicates}`,
    ].join('\n'),
  );
}

function expectEveryPrediction(figures: Figures): void {
  figures.doneAtRestart.forEach((done, restart) => expect(done).toBeLessThan(((restart + 1) * JOBS) / RESTARTS));
  expect(figures.stored.size).toBe(JOBS);
  expect([...figures.received.keys()].sort((a, b) => a - b)).toEqual([...figures.stored].sort((a, b) => a - b));
}

describe('broker restart under load', () => {
  let dir: string;

  beforeEach(() => {
    dir = makeTempDir('bitnet-broker-restart-');
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test('aedes restart loses no prediction', async () => {
    const broker = new AedesBroker(await freePort());
    await broker.start();
    try {
      const figures = await runUnderRestarts(dir, broker, 101);
      report('aedes', figures);
      expectEveryPrediction(figures);
    } finally {
      await broker.stop();
    }
  }, 180_000);

  const testIfMosquitto = isMosquittoInstalled() ? test : test.skip;
  if (!isMosquittoInstalled()) console.log(`Mosquitto broker restart test skipped: ${MOSQUITTO} is not installed`);

  testIfMosquitto('Mosquitto restart loses no prediction', async () => {
    const broker = new MosquittoBroker(dir, await freePort(), true);
    await broker.start();
    try {
      const figures = await runUnderRestarts(dir, broker, 202);
      report('Mosquitto', figures);
      expectEveryPrediction(figures);
    } finally {
      await broker.kill();
    }
  }, 180_000);
});
