import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { freePort } from '../support/ports';
import { MqttProbe, waitUntil } from '../support/mqtt-probe';
import { UBIQUITIN_HUMAN } from '../support/proteins';
import {
  AedesBroker,
  exitOf,
  isAlive,
  isMosquittoInstalled,
  killHard,
  makeTempDir,
  MosquittoBroker,
  sleep,
  startDaemon,
  TOPIC_ROOT,
  waitForListener,
  type RestartableBroker,
} from './harness';

const MIB = 1024 * 1024;
// Defaults of the configuration schema: mqtt.maxPayloadBytes and inbox.maxFileBytes.
const DEFAULT_MAX_PAYLOAD_BYTES = MIB;
const DEFAULT_MAX_FILE_BYTES = 50 * MIB;
const NESTING_LEVELS = 100_000;

interface ErrorEntry {
  code: string;
}

interface ErrorMessage {
  requestId: string | null;
  origin: string;
  errors: ErrorEntry[];
}

/** One bad input: how it is sent and the error code the daemon must report (null: none expected). */
interface BadInput {
  name: string;
  channel: 'mqtt' | 'inbox';
  expectedCode: string | null;
  send: (context: SendContext) => Promise<void> | void;
}

interface SendContext {
  dir: string;
  probe: MqttProbe;
}

interface Outcome {
  name: string;
  channel: string;
  expected: string;
  reported: string;
  alive: boolean;
}

const REQUEST_TOPIC = `${TOPIC_ROOT}/request/predict`;

/** Writes a file under a temporary name and renames it into the inbox, so it is complete when seen. */
function dropFile(dir: string, name: string, content: Buffer | string): void {
  const staging = path.join(dir, `${name}.tmp`);
  writeFileSync(staging, content);
  renameSync(staging, path.join(dir, 'inbox', name));
}

/** Creates a sparse file of `bytes` bytes: one FASTA record, a hole, and one byte at the end. */
function dropSparseFile(dir: string, name: string, bytes: number): void {
  const staging = path.join(dir, `${name}.tmp`);
  const fd = openSync(staging, 'w');
  try {
    writeSync(fd, `>huge\n${UBIQUITIN_HUMAN}\n`);
    writeSync(fd, 'A', bytes - 1);
  } finally {
    closeSync(fd);
  }
  renameSync(staging, path.join(dir, 'inbox', name));
}

function corruptGzip(): Buffer {
  const gzip = gzipSync(Buffer.from(`>p1\n${UBIQUITIN_HUMAN}\n`.repeat(50)));
  const corrupt = Buffer.from(gzip);
  // Keep the magic bytes and header, overwrite the deflate stream.
  corrupt.fill(0xff, 10, corrupt.length - 8);
  return corrupt;
}

const BAD_INPUTS: BadInput[] = [
  { name: 'corrupt gzip file', channel: 'inbox', expectedCode: 'CORRUPT_GZIP', send: ({ dir }) => dropFile(dir, 'corrupt.fasta.gz', corruptGzip()) },
  { name: 'binary file', channel: 'inbox', expectedCode: 'UNSUPPORTED_FORMAT', send: ({ dir }) => dropFile(dir, 'binary.fasta', randomBytes(64 * 1024)) },
  {
    name: '50 MiB + 1 KiB file',
    channel: 'inbox',
    expectedCode: 'PAYLOAD_TOO_LARGE',
    send: ({ dir }) => dropSparseFile(dir, 'huge.fasta', DEFAULT_MAX_FILE_BYTES + 1024),
  },
  {
    name: 'deeply nested JSON file',
    channel: 'inbox',
    expectedCode: 'INVALID_REQUEST',
    send: ({ dir }) => dropFile(dir, 'nested.json', `${'['.repeat(NESTING_LEVELS)}${']'.repeat(NESTING_LEVELS)}`),
  },
  { name: '10 MiB MQTT payload', channel: 'mqtt', expectedCode: 'PAYLOAD_TOO_LARGE', send: ({ probe }) => probe.publish(REQUEST_TOPIC, Buffer.alloc(10 * MIB, 'A')) },
  {
    name: 'invalid UTF-8 payload',
    channel: 'mqtt',
    expectedCode: 'UNSUPPORTED_FORMAT',
    send: ({ probe }) => probe.publish(REQUEST_TOPIC, Buffer.from([0x3e, 0x70, 0x0a, 0xc3, 0x28, 0xff, 0xfe, 0x41])),
  },
  { name: 'corrupt gzip payload', channel: 'mqtt', expectedCode: 'CORRUPT_GZIP', send: ({ probe }) => probe.publish(REQUEST_TOPIC, corruptGzip()) },
  {
    name: 'topic with 150 levels',
    channel: 'mqtt',
    expectedCode: null,
    send: ({ probe }) => probe.publish(`${TOPIC_ROOT}/${Array.from({ length: 150 }, (_, level) => `l${level}`).join('/')}`, 'MKV'),
  },
  {
    name: 'unclosed nested JSON payload',
    channel: 'mqtt',
    expectedCode: 'INVALID_JSON',
    send: ({ probe }) => probe.publish(REQUEST_TOPIC, '['.repeat(NESTING_LEVELS)),
  },
  {
    name: 'nested JSON in "options"',
    channel: 'mqtt',
    expectedCode: null,
    send: ({ probe }) =>
      probe.publish(REQUEST_TOPIC, `{"id":"nested-options","sequence":"${UBIQUITIN_HUMAN}","options":{"a":${'['.repeat(NESTING_LEVELS)}${']'.repeat(NESTING_LEVELS)}}}`),
  },
  {
    name: 'nested JSON as "sequence"',
    channel: 'mqtt',
    expectedCode: 'INVALID_REQUEST',
    send: ({ probe }) => probe.publish(REQUEST_TOPIC, `{"id":"nested-sequence","sequence":${'['.repeat(NESTING_LEVELS)}${']'.repeat(NESTING_LEVELS)}}`),
  },
];

describe('bad inputs', () => {
  let dir: string;
  let broker: RestartableBroker;
  let daemon: ChildProcess | null = null;
  let probe: MqttProbe | null = null;

  beforeAll(async () => {
    dir = makeTempDir('bitnet-bad-inputs-');
    mkdirSync(path.join(dir, 'inbox'), { recursive: true });
    // Mosquitto with its default message_size_limit and this aedes broker both deliver a 10 MiB
    // publish, so the oversized payload meets the daemon's own limit.
    const port = await freePort();
    broker = isMosquittoInstalled() ? new MosquittoBroker(dir, port) : new AedesBroker(port);
    await broker.start();
  });

  afterAll(async () => {
    await probe?.close();
    if (daemon) await killHard(daemon);
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('each is rejected and the daemon stays up', async () => {
    probe = new MqttProbe(broker.url);
    await probe.connect([`${TOPIC_ROOT}/errors`, `${TOPIC_ROOT}/response/predict`, `${TOPIC_ROOT}/status`]);
    daemon = startDaemon(dir, broker.url);
    const activeProbe = probe;
    await activeProbe.waitFor(() => activeProbe.on(`${TOPIC_ROOT}/status`).some((message) => message.text === 'online'), 60_000, 'online status');

    const outcomes: Outcome[] = [];
    for (const input of BAD_INPUTS) {
      const errorsBefore = activeProbe.on(`${TOPIC_ROOT}/errors`).length;
      await input.send({ dir, probe: activeProbe });

      let reported = 'none';
      if (input.expectedCode !== null) {
        await activeProbe.waitFor(() => activeProbe.on(`${TOPIC_ROOT}/errors`).length > errorsBefore, 60_000, `error message for ${input.name}`);
        const message = activeProbe.json<ErrorMessage>(`${TOPIC_ROOT}/errors`)[errorsBefore];
        reported = message.errors.map((entry) => entry.code).join(',');
      } else {
        await sleep(500);
      }
      outcomes.push({ name: input.name, channel: input.channel, expected: input.expectedCode ?? 'none', reported, alive: isAlive(daemon) });
    }

    // A good request and a good file after all the bad ones still get results.
    await activeProbe.publish(REQUEST_TOPIC, JSON.stringify({ id: 'after-bad-inputs', sequence: UBIQUITIN_HUMAN }));
    await activeProbe.waitFor(
      () => activeProbe.json<{ id: string | null; status: string }>(`${TOPIC_ROOT}/response/predict`).some((reply) => reply.id === 'after-bad-inputs' && reply.status === 'ok'),
      60_000,
      'reply to the good request',
    );
    dropFile(dir, 'good.fasta', `>good\n${UBIQUITIN_HUMAN}\n`);
    await waitUntil(() => existsSync(path.join(dir, 'done', 'good.fasta')), 60_000, 'good.fasta in done/');

    const crashes = outcomes.filter((outcome) => !outcome.alive).length;
    console.log(
      [
        `bad inputs tried ${outcomes.length}, crashes ${crashes}`,
        ...outcomes.map((outcome) => `  ${outcome.channel.padEnd(5)} ${outcome.name.padEnd(30)} expected ${outcome.expected.padEnd(18)} reported ${outcome.reported.padEnd(18)} ${outcome.alive ? 'alive' : 'CRASHED'}`),
      ].join('\n'),
    );

    expect(isAlive(daemon)).toBe(true);
    expect(crashes).toBe(0);
    for (const outcome of outcomes) expect(`${outcome.name}: ${outcome.reported}`).toBe(`${outcome.name}: ${outcome.expected}`);
    const replies = activeProbe.json<{ id: string | null; status: string }>(`${TOPIC_ROOT}/response/predict`);
    expect(replies.find((reply) => reply.id === 'nested-options')?.status).toBe('ok');

    for (const name of ['corrupt.fasta.gz', 'binary.fasta', 'huge.fasta', 'nested.json']) {
      expect(existsSync(path.join(dir, 'failed', name))).toBe(true);
      const errorsFile = JSON.parse(readFileSync(path.join(dir, 'failed', `${name}.errors.json`), 'utf8')) as { errors: ErrorEntry[] };
      expect(errorsFile.errors.length).toBeGreaterThan(0);
    }

    const exited = exitOf(daemon);
    daemon.kill('SIGTERM');
    expect(await exited).toBe(0);
    daemon = null;
  }, 240_000);

  test('embedded broker rejects a 10 MiB publish', async () => {
    // The embedded broker's packet limit (16 MiB by default) sits above the request limit, so the
    // daemon receives the oversized request and rejects it with PAYLOAD_TOO_LARGE.
    const embeddedDir = makeTempDir('bitnet-bad-embedded-');
    const port = await freePort();
    const embedded = startDaemon(embeddedDir, `mqtt://127.0.0.1:${port}`, { BITNET_EDGE_MQTT_BROKER: 'embedded', BITNET_EDGE_MQTT_EMBEDDED_PORT: String(port) });
    const sender = new MqttProbe(`mqtt://127.0.0.1:${port}`);
    try {
      await waitForListener(port, 60_000);
      await sender.connect([`${TOPIC_ROOT}/errors`, `${TOPIC_ROOT}/response/predict`]);
      await sender.publish(REQUEST_TOPIC, Buffer.alloc(10 * DEFAULT_MAX_PAYLOAD_BYTES, 'A'));
      await sender.waitFor(
        () => sender.json<ErrorMessage>(`${TOPIC_ROOT}/errors`).some((message) => message.errors.some((error) => error.code === 'PAYLOAD_TOO_LARGE')),
        60_000,
        'PAYLOAD_TOO_LARGE on the errors topic',
      );

      const good = new MqttProbe(`mqtt://127.0.0.1:${port}`);
      await good.connect([`${TOPIC_ROOT}/response/predict`]);
      await good.publish(REQUEST_TOPIC, JSON.stringify({ id: 'after-oversized', sequence: UBIQUITIN_HUMAN }));
      await good.waitFor(() => good.json<{ id: string | null }>(`${TOPIC_ROOT}/response/predict`).some((reply) => reply.id === 'after-oversized'), 60_000, 'reply after the oversized publish');
      await good.close();

      expect(isAlive(embedded)).toBe(true);
    } finally {
      await sender.close();
      await killHard(embedded);
      rmSync(embeddedDir, { recursive: true, force: true });
    }
  }, 120_000);
});
