import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../support/ports';
import { MqttProbe, waitUntil } from '../support/mqtt-probe';
import { GFP_AEQVI } from '../support/proteins';
import {
  AedesBroker,
  dbFileIn,
  exitOf,
  isMosquittoInstalled,
  killHard,
  makeTempDir,
  MosquittoBroker,
  queryDb,
  sleep,
  startDaemon,
  TOPIC_ROOT,
  type RestartableBroker,
} from './harness';

/** A two-layer model; its scores are meaningless, but a full scan of GFP takes seconds on it. */
const SMOKE_MODEL_DIR = path.resolve(__dirname, '..', 'fixtures', 'model-smoke');
const REQUEST_ID = 'gfp-scan';
/** Time the scan runs before the kill, in ms. A full GFP scan took 14 s on the smoke model on a 2-core machine. */
const SCAN_BEFORE_KILL_MS = 2000;

interface StoredRequest {
  status: 'pending' | 'answered';
  attempts: number;
}

interface Reply {
  id: string | null;
  status: string;
  variants?: unknown[];
}

function storedRequests(dbFile: string): StoredRequest[] {
  return queryDb(
    dbFile,
    (db) => db.prepare('SELECT status, attempts FROM variant_requests WHERE request_id = ? ORDER BY id').all(REQUEST_ID) as StoredRequest[],
    [],
  );
}

describe('variant request and kill -9', () => {
  let dir: string;
  let broker: RestartableBroker;
  let probe: MqttProbe | null = null;
  let daemon: ChildProcess | null = null;

  beforeAll(async () => {
    dir = makeTempDir('bitnet-variant-kill9-');
    const port = await freePort();
    broker = isMosquittoInstalled() ? new MosquittoBroker(dir, port) : new AedesBroker(port);
    await broker.start();
  });

  afterAll(async () => {
    if (daemon) await killHard(daemon);
    await probe?.close();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('request killed while scored is answered once', async () => {
    const dbFile = dbFileIn(dir);
    const env = { BITNET_EDGE_MODEL_DIR: SMOKE_MODEL_DIR };
    probe = new MqttProbe(broker.url);
    await probe.connect([`${TOPIC_ROOT}/response/variants`, `${TOPIC_ROOT}/status`]);
    const online = (): boolean => probe!.on(`${TOPIC_ROOT}/status`).some((message) => message.text === 'online');
    const replies = (): string[] =>
      probe!.on(`${TOPIC_ROOT}/response/variants`).map((message) => message.text).filter((text) => (JSON.parse(text) as Reply).id === REQUEST_ID);

    daemon = startDaemon(dir, broker.url, env);
    await waitUntil(online, 60_000, 'online status');

    // Predictions are left out, so the reply of 4,522 variants stays small.
    const payload = JSON.stringify({ id: REQUEST_ID, sequence: GFP_AEQVI, variants: 'all', options: { predictions: false } });
    await probe.publish(`${TOPIC_ROOT}/request/variants`, payload);
    await waitUntil(() => storedRequests(dbFile)[0]?.attempts === 1, 30_000, 'the first scoring attempt');
    await sleep(SCAN_BEFORE_KILL_MS);
    await killHard(daemon);

    expect(storedRequests(dbFile)).toEqual([{ status: 'pending', attempts: 1 }]);
    expect(replies()).toEqual([]);

    probe.messages.length = 0;
    const restartedAt = Date.now();
    daemon = startDaemon(dir, broker.url, env);
    await waitUntil(() => replies().length > 0, 120_000, 'the reply after the restart');
    const replyAfterRestartMs = Date.now() - restartedAt;
    // A second reply, from a second scan or a second publish, would come within this time.
    await sleep(3000);

    const [text] = replies();
    const reply = JSON.parse(text) as Reply;
    console.log(
      [
        'variant kill -9 figures:',
        `  broker ${isMosquittoInstalled() ? 'Mosquitto' : 'aedes'}, ${GFP_AEQVI.length * 19} variants, killed ${SCAN_BEFORE_KILL_MS} ms after the first attempt was stored`,
        `  reply ${replyAfterRestartMs} ms after the restart, replies ${replies().length}, stored ${JSON.stringify(storedRequests(dbFile))}`,
      ].join('\n'),
    );
    expect(replies()).toHaveLength(1);
    expect(reply.status).toBe('ok');
    expect(reply.variants).toHaveLength(GFP_AEQVI.length * 19);
    expect(storedRequests(dbFile)).toEqual([{ status: 'answered', attempts: 2 }]);

    // The same request again is answered with the stored reply and not scored again.
    await probe.publish(`${TOPIC_ROOT}/request/variants`, payload);
    await waitUntil(() => replies().length === 2, 30_000, 'the reply to the repeated request');
    expect(replies()[1]).toBe(text);
    expect(storedRequests(dbFile)).toEqual([{ status: 'answered', attempts: 2 }]);

    const exited = exitOf(daemon);
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    daemon = null;
  }, 300_000);
});
