import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { freePort } from '../support/ports';
import { MqttProbe, waitUntil } from '../support/mqtt-probe';
import { isBrokerListening } from '../../src/mqtt/broker';

const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const RECORDS = 300;
const RESIDUES = 'ACDEFGHIKLMNPQRSTVWY';

/** Deterministic pseudo-random proteins (a linear congruential generator), distinct so none is a cache hit. */
function syntheticFasta(count: number, length: number): string {
  let state = 12345;
  const next = (): number => {
    state = (state * 1103515245 + 12345) % 2147483648;
    return state;
  };
  const lines: string[] = [];
  for (let record = 0; record < count; record++) {
    let sequence = 'M';
    while (sequence.length < length) sequence += RESIDUES[next() % RESIDUES.length];
    lines.push(`>synthetic-${record}`, sequence);
  }
  return `${lines.join('\n')}\n`;
}

function startDaemon(cwd: string, port: number): ChildProcess {
  return spawn(process.execPath, [MAIN, 'run'], {
    cwd,
    env: {
      ...process.env,
      BITNET_EDGE_DEVICE_ID: 'restart-test',
      BITNET_EDGE_MQTT_BROKER: 'embedded',
      BITNET_EDGE_MQTT_EMBEDDED_PORT: String(port),
      BITNET_EDGE_INBOX_SETTLE_MS: '100',
      BITNET_EDGE_MODEL_INTRA_OP_THREADS: '1',
      BITNET_EDGE_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

function countJobs(dbFile: string): Record<string, number> {
  const db = new Database(dbFile, { readonly: true });
  try {
    const rows = db.prepare('SELECT status, COUNT(*) AS n FROM jobs GROUP BY status').all() as Array<{ status: string; n: number }>;
    return Object.fromEntries(rows.map((row) => [row.status, row.n]));
  } finally {
    db.close();
  }
}

/** Resolves once the daemon's embedded broker accepts connections. */
async function waitForBroker(port: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await isBrokerListening('127.0.0.1', port, 500))) {
    if (Date.now() > deadline) throw new Error(`no broker on port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('stop and restart', () => {
  let dir: string;
  const children: ChildProcess[] = [];

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'bitnet-restart-'));
  });

  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  test('pending jobs at SIGTERM are done after a restart', async () => {
    const port = await freePort();
    const dbFile = path.join(dir, 'data', 'bitnet-edge.db');
    mkdirSync(path.join(dir, 'inbox'), { recursive: true });
    writeFileSync(path.join(dir, 'batch.tmp'), syntheticFasta(RECORDS, 400));

    const first = startDaemon(dir, port);
    children.push(first);
    const firstExit = exitOf(first);
    await waitForBroker(port);

    const probe = new MqttProbe(`mqtt://127.0.0.1:${port}`);
    await probe.connect(['bitnet-edge/restart-test/status']);
    renameSync(path.join(dir, 'batch.tmp'), path.join(dir, 'inbox', 'batch.fasta'));

    await waitUntil(() => (countJobs(dbFile).done ?? 0) > 0, 60_000, 'first finished job');
    first.kill('SIGTERM');
    await probe.waitFor(() => probe.on('bitnet-edge/restart-test/status').some((m) => m.text === 'stopped'), 15_000, 'stopped status');
    await probe.close();
    expect(await firstExit).toBe(0);

    const atStop = countJobs(dbFile);
    expect(atStop.running ?? 0).toBe(0);
    expect(atStop.pending ?? 0).toBeGreaterThan(0);

    const second = startDaemon(dir, port);
    children.push(second);
    const secondExit = exitOf(second);
    await waitUntil(() => existsSync(path.join(dir, 'done', 'batch.fasta')), 120_000, 'batch.fasta in done/');
    second.kill('SIGTERM');
    expect(await secondExit).toBe(0);

    const db = new Database(dbFile, { readonly: true });
    const jobs = db.prepare('SELECT COUNT(*) AS n FROM jobs').get() as { n: number };
    const done = db.prepare("SELECT COUNT(*) AS n FROM jobs WHERE status = 'done'").get() as { n: number };
    const results = db.prepare('SELECT COUNT(*) AS n, COUNT(DISTINCT job_id) AS distinctJobs FROM results').get() as { n: number; distinctJobs: number };
    db.close();

    expect(jobs.n).toBe(RECORDS);
    expect(done.n).toBe(RECORDS);
    expect(results.n).toBe(RECORDS);
    expect(results.distinctJobs).toBe(RECORDS);
  });
});
