import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { freePort } from '../support/ports';
import { waitUntil } from '../support/mqtt-probe';
import {
  dbFileIn,
  exitOf,
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

const REQUESTS = 240;
const KILLS = 4;
const WAVES = 2 * KILLS;
const BROKER_DOWN_MS = 300;
/** The requester sends a request again when no reply came within this time. */
const REPLY_TIMEOUT_MS = 8000;
const SEED = Number(process.env.FAULT_SEED ?? Date.now() % 1_000_000);

interface RequestRow {
  requestId: string;
  inputs: number;
  jobs: number;
  results: number;
}

function requestRows(dbFile: string): RequestRow[] {
  return queryDb(
    dbFile,
    (db) =>
      db
        .prepare(
          `SELECT i.request_id AS requestId, COUNT(DISTINCT i.id) AS inputs, COUNT(DISTINCT j.id) AS jobs, COUNT(r.id) AS results
           FROM inputs i LEFT JOIN jobs j ON j.input_id = i.id LEFT JOIN results r ON r.job_id = j.id
           WHERE i.source = 'mqtt' GROUP BY i.request_id`,
        )
        .all() as RequestRow[],
    [],
  );
}

/**
 * A client that sends requests with ids at QoS 1 from a persistent session, as a careful
 * requester would. mqtt.js keeps its unacknowledged publishes and resends them after a
 * reconnect. A request without a reply after REPLY_TIMEOUT_MS is sent again with the same id
 * and payload. The client subscribes again whenever the broker has no session for it.
 */
class Requester {
  readonly replies = new Map<string, number>();
  resends = 0;
  status = '';
  private readonly sent = new Map<string, { payload: string; sentAt: number }>();
  private readonly client: MqttClient;
  private timer: NodeJS.Timeout | null = null;

  constructor(url: string) {
    this.client = mqtt.connect(url, { clientId: 'fault-broker-kill-requester', clean: false, reconnectPeriod: 200 });
    this.client.on('message', (topic, payload) => this.receive(topic, payload));
    this.client.on('connect', (connack) => {
      if (!connack.sessionPresent) void this.subscribe().catch(() => undefined);
    });
  }

  async start(): Promise<void> {
    await waitUntil(() => this.client.connected, 30_000, 'requester connection');
    await this.subscribe();
    this.timer = setInterval(() => this.resendOverdue(), 500);
  }

  /** Publishes without waiting for the PUBACK, so publishes are in flight when the broker dies. */
  send(id: string, payload: string): void {
    this.sent.set(id, { payload, sentAt: Date.now() });
    this.client.publish(`${TOPIC_ROOT}/request/predict`, payload, { qos: 1 });
  }

  /** Publishes that mqtt.js has sent or queued and the broker has not acknowledged. */
  inFlight(): number {
    return Object.keys((this.client as unknown as { outgoing: Record<string, unknown> }).outgoing).length;
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.client.endAsync(true);
  }

  private subscribe(): Promise<unknown> {
    return this.client.subscribeAsync([`${TOPIC_ROOT}/response/predict`, `${TOPIC_ROOT}/status`], { qos: 1 });
  }

  private receive(topic: string, payload: Buffer): void {
    if (topic === `${TOPIC_ROOT}/status`) {
      this.status = payload.toString('utf8');
      return;
    }
    const reply = JSON.parse(payload.toString('utf8')) as { id: string | null };
    if (reply.id !== null) this.replies.set(reply.id, (this.replies.get(reply.id) ?? 0) + 1);
  }

  private resendOverdue(): void {
    if (!this.client.connected) return;
    const now = Date.now();
    for (const [id, request] of this.sent) {
      if (this.replies.has(id) || now - request.sentAt < REPLY_TIMEOUT_MS) continue;
      this.resends += 1;
      this.send(id, request.payload);
    }
  }
}

const describeIfMosquitto = isMosquittoInstalled() ? describe : describe.skip;
if (!isMosquittoInstalled()) console.log(`broker kill -9 test skipped: ${MOSQUITTO} is not installed`);

describeIfMosquitto('broker kill -9 under load', () => {
  let dir: string;
  let broker: MosquittoBroker;
  let requester: Requester | null = null;
  let daemon: ChildProcess | null = null;

  beforeAll(async () => {
    dir = makeTempDir('bitnet-broker-kill9-');
    // Persistence with a save every second, so each restart loads a state up to a second old.
    broker = new MosquittoBroker(dir, await freePort(), true, 1);
    await broker.start();
  });

  afterAll(async () => {
    if (daemon) await killHard(daemon);
    await requester?.stop();
    await broker.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every request gets exactly one result', async () => {
    console.log(`broker kill -9 test seed ${SEED} (set FAULT_SEED=${SEED} to repeat)`);
    const random = seededRandom(SEED);
    const proteins = syntheticProteins(REQUESTS, SEED);
    const dbFile = dbFileIn(dir);

    const client = new Requester(broker.url);
    requester = client;
    await client.start();
    daemon = startDaemon(dir, broker.url);
    await waitUntil(() => client.status === 'online', 60_000, 'online status');

    // Requests arrive in waves, and after every second wave Mosquitto is killed with SIGKILL at
    // a random point and restarted on the same port. Before every second kill the broker is
    // frozen with SIGSTOP while the wave is sent, so that wave's publishes are certainly
    // unacknowledged when it dies.
    const perWave = REQUESTS / WAVES;
    const killPointsMs: number[] = [];
    const inFlightAtKill: number[] = [];
    for (let wave = 0; wave < WAVES; wave++) {
      const freeze = wave % 4 === 3;
      if (freeze) broker.freeze();
      for (let index = wave * perWave; index < (wave + 1) * perWave; index++) {
        client.send(`req-${index}`, JSON.stringify({ id: `req-${index}`, sequence: proteins[index] }));
      }
      if (wave % 2 === 0) {
        await sleep(300);
        continue;
      }
      const delayMs = 20 + Math.floor(random() * 400);
      await sleep(delayMs);
      killPointsMs.push(delayMs);
      inFlightAtKill.push(client.inFlight());
      await broker.kill();
      await sleep(BROKER_DOWN_MS);
      await broker.start();
    }

    await waitUntil(() => client.replies.size >= REQUESTS, 150_000, `${REQUESTS} replies`);

    const exited = exitOf(daemon);
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    daemon = null;

    const rows = requestRows(dbFile);
    const lost = Array.from({ length: REQUESTS }, (_, index) => `req-${index}`).filter(
      (id) => !rows.some((row) => row.requestId === id && row.results === 1),
    );
    const duplicated = rows.filter((row) => row.inputs > 1 || row.jobs > 1 || row.results > 1);
    const repliedTwice = [...client.replies.values()].filter((n) => n > 1).length;

    console.log(
      [
        'broker kill -9 figures:',
        `  seed ${SEED}, kills ${killPointsMs.length}, kill points (ms after a wave) ${killPointsMs.join(' ')}, broker down ${BROKER_DOWN_MS} ms each`,
        `  requester publishes in flight at each kill ${inFlightAtKill.join(' ')}, requests sent again after ${REPLY_TIMEOUT_MS} ms without a reply ${client.resends}`,
        `  requests ${REQUESTS}, request ids stored ${rows.length}, lost ${lost.length}, duplicated ${duplicated.length}`,
        `  replies ${client.replies.size} of ${REQUESTS}, ids replied more than once ${repliedTwice}`,
      ].join('\n'),
    );

    expect(killPointsMs).toHaveLength(KILLS);
    // The frozen broker never acknowledged the wave sent to it.
    for (let kill = 1; kill < KILLS; kill += 2) expect(inFlightAtKill[kill]).toBeGreaterThanOrEqual(perWave);
    expect(rows).toHaveLength(REQUESTS);
    expect(lost).toEqual([]);
    expect(duplicated).toEqual([]);
    expect(client.replies.size).toBe(REQUESTS);
  }, 180_000);
});
