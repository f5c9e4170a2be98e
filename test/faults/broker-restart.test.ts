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
/** Predictions the daemon publishes while the subscriber is offline, before each broker restart. */
const QUEUED_PER_RESTART = 10;

interface Figures {
  doneAtRestart: number[];
  /** Predictions the broker acknowledged to the daemon while the subscriber was offline, per restart. */
  queuedAtRestart: number[];
  received: Map<number, number>;
  stored: Set<number>;
}

/**
 * Returns the number of predictions the broker has acknowledged: a result and its prediction
 * message are committed together, and the message leaves the outbox once the broker acknowledged it.
 */
function publishedPredictions(dbFile: string): number {
  return queryDb(
    dbFile,
    (db) =>
      (db.prepare(`SELECT (SELECT COUNT(*) FROM results) - (SELECT COUNT(*) FROM outbox WHERE topic = ?) AS n`).get(`${TOPIC_ROOT}/predictions`) as { n: number }).n,
    0,
  );
}

/**
 * Runs the daemon on `broker` and restarts the broker under load. Before each restart the
 * subscriber disconnects, keeping its session, and the daemon publishes QUEUED_PER_RESTART
 * predictions that the broker queues for it. They reach the subscriber only when the broker
 * keeps its sessions across the restart, so the figures show whether it does.
 */
async function runUnderRestarts(dir: string, broker: RestartableBroker, seed: number): Promise<Figures> {
  const dbFile = dbFileIn(dir);
  const received = new Map<number, number>();
  let status = '';
  let subscriber: MqttClient | null = null;
  let daemon: ChildProcess | null = null;

  // The subscriber has a fixed client id and a persistent session, and subscribes again whenever
  // the broker has no session for it, as a consumer of the predictions would.
  // The listeners are attached before the connection opens, because a resumed session's queued
  // messages can arrive in the same read as the CONNACK.
  const connectSubscriber = async (): Promise<MqttClient> => {
    const client = mqtt.connect(broker.url, { clientId: 'fault-subscriber', clean: false, reconnectPeriod: 100 });
    client.on('message', (topic, payload) => {
      if (topic === `${TOPIC_ROOT}/status`) {
        status = payload.toString('utf8');
        return;
      }
      const message = JSON.parse(payload.toString('utf8')) as { jobId: number };
      received.set(message.jobId, (received.get(message.jobId) ?? 0) + 1);
    });
    const subscribe = (): Promise<unknown> => client.subscribeAsync([`${TOPIC_ROOT}/predictions`, `${TOPIC_ROOT}/status`], { qos: 1 });
    const connected = new Promise<void>((resolve) => client.once('connect', () => resolve()));
    client.on('connect', (connack) => {
      if (!connack.sessionPresent) void subscribe().catch(() => undefined);
    });
    await connected;
    return client;
  };

  try {
    subscriber = await connectSubscriber();
    daemon = startDaemon(dir, broker.url);
    await waitUntil(() => status === 'online', 60_000, 'online status');

    // Each restart follows a new batch of work, and the broker goes down once the daemon has
    // finished the first job of that batch, so every restart happens under load.
    const records = syntheticProteins(JOBS, seed).map((sequence, index) => ({ id: `record-${index}`, sequence }));
    const perBatch = JOBS / RESTARTS;
    mkdirSync(path.join(dir, 'inbox'), { recursive: true });
    const doneAtRestart: number[] = [];
    const queuedAtRestart: number[] = [];
    for (let restart = 0; restart < RESTARTS; restart++) {
      const staging = path.join(dir, `batch-${restart}.tmp`);
      writeFileSync(staging, fastaOf(records.slice(restart * perBatch, (restart + 1) * perBatch)));
      renameSync(staging, path.join(dir, 'inbox', `batch-${restart}.fasta`));
      await waitUntil(() => countDone(dbFile) > restart * perBatch, 60_000, `first finished job of batch ${restart}`);

      await subscriber.endAsync();
      subscriber = null;
      const publishedAtOffline = publishedPredictions(dbFile);
      await waitUntil(() => publishedPredictions(dbFile) >= publishedAtOffline + QUEUED_PER_RESTART, 60_000, 'predictions queued for the offline subscriber');
      queuedAtRestart.push(publishedPredictions(dbFile) - publishedAtOffline);

      doneAtRestart.push(countDone(dbFile));
      await broker.stop();
      await sleep(BROKER_DOWN_MS);
      await broker.start();
      subscriber = await connectSubscriber();
    }

    await waitUntil(() => countDone(dbFile) >= JOBS, 120_000, `${JOBS} finished jobs`);
    await waitUntil(() => publishedPredictions(dbFile) >= JOBS, 60_000, `${JOBS} predictions published`);
    // Whatever the broker still delivers arrives within this time, and a lost message never does.
    const settled = Date.now() + 3000;
    await waitUntil(() => received.size >= JOBS || Date.now() > settled, 60_000, 'the last deliveries');

    const exited = exitOf(daemon);
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    daemon = null;

    const stored = new Set(queryDb(dbFile, (db) => (db.prepare('SELECT job_id AS jobId FROM results').all() as Array<{ jobId: number }>).map((row) => row.jobId), []));
    return { doneAtRestart, queuedAtRestart, received, stored };
  } finally {
    if (daemon) await killHard(daemon);
    await subscriber?.endAsync(true);
  }
}

function missingOf(figures: Figures): number[] {
  return [...figures.stored].filter((jobId) => !figures.received.has(jobId));
}

function report(name: string, figures: Figures): void {
  const duplicates = [...figures.received.values()].reduce((sum, n) => sum + n - 1, 0);
  console.log(
    [
      `broker restart figures (${name}):`,
      `  restarts ${RESTARTS}, broker down ${BROKER_DOWN_MS} ms each, finished jobs at each restart ${figures.doneAtRestart.join(' ')}`,
      `  predictions queued for the offline subscriber at each restart ${figures.queuedAtRestart.join(' ')}`,
      `  results in the database ${figures.stored.size}, distinct predictions received ${figures.received.size}, missing ${missingOf(figures).length}, duplicate deliveries ${duplicates}`,
    ].join('\n'),
  );
}

function expectEveryPrediction(figures: Figures): void {
  figures.doneAtRestart.forEach((done, restart) => expect(done).toBeLessThan(((restart + 1) * JOBS) / RESTARTS));
  figures.queuedAtRestart.forEach((queued) => expect(queued).toBeGreaterThanOrEqual(QUEUED_PER_RESTART));
  expect(figures.stored.size).toBe(JOBS);
  expect(missingOf(figures)).toEqual([]);
  expect([...figures.received.keys()].sort((a, b) => a - b)).toEqual([...figures.stored].sort((a, b) => a - b));
}

/** Checks the control case, where a broker that loses its sessions must show up as missing predictions. */
function expectLostPredictions(figures: Figures): void {
  expect(figures.stored.size).toBe(JOBS);
  figures.queuedAtRestart.forEach((queued) => expect(queued).toBeGreaterThanOrEqual(QUEUED_PER_RESTART));
  // At least the predictions queued for the offline subscriber are gone with the sessions.
  expect(missingOf(figures).length).toBeGreaterThanOrEqual(QUEUED_PER_RESTART * RESTARTS);
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
  if (!isMosquittoInstalled()) console.log(`Mosquitto broker restart tests skipped: ${MOSQUITTO} is not installed`);

  testIfMosquitto('Mosquitto restart loses no prediction', async () => {
    const broker = new MosquittoBroker(dir, await freePort(), true);
    await broker.start();
    try {
      const figures = await runUnderRestarts(dir, broker, 202);
      report('Mosquitto, persistence true', figures);
      expectEveryPrediction(figures);
    } finally {
      await broker.kill();
    }
  }, 180_000);

  testIfMosquitto('Mosquitto without persistence shows loss', async () => {
    const broker = new MosquittoBroker(dir, await freePort(), false);
    await broker.start();
    try {
      const figures = await runUnderRestarts(dir, broker, 303);
      report('Mosquitto, persistence false (control)', figures);
      expectLostPredictions(figures);
    } finally {
      await broker.kill();
    }
  }, 180_000);
});
