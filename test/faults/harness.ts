import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { createBroker } from 'aedes';
import Database from 'better-sqlite3';
import { isBrokerListening } from '../../src/mqtt/broker';

export const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'cli', 'main.js');
export const MOSQUITTO = '/usr/sbin/mosquitto';
export const DEVICE = 'fault-test';
export const TOPIC_ROOT = `bitnet-edge/${DEVICE}`;

const RESIDUES = 'ACDEFGHIKLMNPQRSTVWY';

/** Seeded pseudo-random numbers (mulberry32), so a failing run can be repeated with its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Builds `count` distinct proteins of 30 to 60 residues, so no job is a cache hit of another. */
export function syntheticProteins(count: number, seed: number): string[] {
  const random = seededRandom(seed);
  const seen = new Set<string>();
  const proteins: string[] = [];
  while (proteins.length < count) {
    const length = 30 + Math.floor(random() * 31);
    let sequence = 'M';
    while (sequence.length < length) sequence += RESIDUES[Math.floor(random() * RESIDUES.length)];
    if (seen.has(sequence)) continue;
    seen.add(sequence);
    proteins.push(sequence);
  }
  return proteins;
}

export function fastaOf(records: Array<{ id: string; sequence: string }>): string {
  return `${records.map((record) => `>${record.id}\n${record.sequence}`).join('\n')}\n`;
}

export function makeTempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Starts the compiled daemon in `cwd` against an external broker at `brokerUrl`. */
export function startDaemon(cwd: string, brokerUrl: string, env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, [MAIN, 'run'], {
    cwd,
    env: {
      ...process.env,
      BITNET_EDGE_DEVICE_ID: DEVICE,
      BITNET_EDGE_MQTT_BROKER: 'external',
      BITNET_EDGE_MQTT_URL: brokerUrl,
      BITNET_EDGE_MQTT_RECONNECT_PERIOD_MS: '200',
      BITNET_EDGE_INBOX_SETTLE_MS: '200',
      BITNET_EDGE_INBOX_RESCAN_MS: '1000',
      BITNET_EDGE_MODEL_INTRA_OP_THREADS: '1',
      BITNET_EDGE_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // The pipe must be drained, or a chatty child blocks on a full stderr buffer.
  child.stderr?.resume();
  return child;
}

export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Sends SIGKILL and waits for the exit. */
export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = exitOf(child);
  child.kill('SIGKILL');
  await exited;
}

export function isMosquittoInstalled(): boolean {
  return existsSync(MOSQUITTO);
}

/**
 * A Mosquitto broker on loopback with a temporary configuration, which can be stopped and
 * started again on the same port. With `persistent`, sessions and queued messages are saved to its
 * folder on SIGTERM and loaded at the next start, as Debian's /etc/mosquitto/mosquitto.conf also sets.
 */
export class MosquittoBroker implements RestartableBroker {
  private child: ChildProcess | null = null;

  /**
   * `autosaveSeconds` makes a persistent broker also save its state every that many seconds,
   * so a broker killed with SIGKILL restarts with the state of its last save.
   */
  constructor(
    readonly dir: string,
    readonly port: number,
    private readonly persistent = false,
    private readonly autosaveSeconds: number | null = null,
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const configFile = path.join(this.dir, 'mosquitto.conf');
    // max_queued_messages 0 lifts the per-client queue limit (1000 by default), so a
    // disconnected persistent session keeps every QoS 1 message of the test. Mosquitto started
    // as root switches to the user named here, so it stays the user who owns the folder.
    const lines = [
      `listener ${this.port} 127.0.0.1`,
      'allow_anonymous true',
      'max_queued_messages 0',
      'log_dest none',
      `user ${userInfo().username}`,
      ...(this.persistent ? ['persistence true', `persistence_location ${this.dir}${path.sep}`] : ['persistence false']),
      ...(this.persistent && this.autosaveSeconds !== null ? ['autosave_on_changes false', `autosave_interval ${this.autosaveSeconds}`] : []),
      '',
    ];
    writeFileSync(configFile, lines.join('\n'));
    this.child = spawn(MOSQUITTO, ['-c', configFile], { stdio: 'ignore' });
    await waitForListener(this.port);
  }

  /** Stops the broker with SIGTERM, so a persistent one saves its state. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = exitOf(child);
    child.kill('SIGTERM');
    await exited;
  }

  /** Stops the broker process with SIGSTOP, so it reads and acknowledges nothing until it is killed. */
  freeze(): void {
    this.child?.kill('SIGSTOP');
  }

  async kill(): Promise<void> {
    if (this.child) await killHard(this.child);
    this.child = null;
  }
}

/** A broker that the test can stop and start again on the same port, keeping its sessions. */
export interface RestartableBroker {
  readonly url: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

type Aedes = ReturnType<typeof createBroker>;

/**
 * An aedes broker in the test process. Each start creates a new aedes instance and TCP server
 * on the same port, handing over the previous instance's persistence (sessions, subscriptions
 * and queued QoS 1 messages), as a broker with a persistent store would keep them.
 */
export class AedesBroker implements RestartableBroker {
  private broker: Aedes | null = null;
  private server: Server | null = null;
  private persistence: unknown = undefined;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly port: number) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const broker = createBroker(this.persistence === undefined ? {} : { persistence: this.persistence });
    this.persistence = (broker as unknown as { persistence: unknown }).persistence;
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      broker.handle(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.broker = broker;
    this.server = server;
  }

  async stop(): Promise<void> {
    const { broker, server } = this;
    this.broker = null;
    this.server = null;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
  }
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
export async function waitForListener(port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await isBrokerListening('127.0.0.1', port, 500))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for a listener on port ${port}`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs `query` on a read-only connection to the daemon's database, or returns `fallback` before the file exists. */
export function queryDb<T>(dbFile: string, query: (db: Database.Database) => T, fallback: T): T {
  if (!existsSync(dbFile)) return fallback;
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    db.pragma('busy_timeout = 5000');
    return query(db);
  } finally {
    db.close();
  }
}

export function dbFileIn(dir: string): string {
  return path.join(dir, 'data', 'bitnet-edge.db');
}

export function countDone(dbFile: string): number {
  return queryDb(dbFile, (db) => (db.prepare("SELECT COUNT(*) AS n FROM jobs WHERE status IN ('done', 'failed')").get() as { n: number }).n, 0);
}

/** Returns true when `ps` lists the process. A zombie or a missing pid counts as exited. */
export function isAlive(child: ChildProcess): boolean {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return false;
  const ps = spawnSync('ps', ['-o', 'stat=', '-p', String(child.pid)], { encoding: 'utf8' });
  const state = ps.stdout.trim();
  return state.length > 0 && !state.startsWith('Z');
}
