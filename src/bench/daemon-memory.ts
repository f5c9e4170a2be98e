import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { syntheticProtein } from './model-latency';

/** Resident memory of a daemon process, from /proc/<pid>/status. */
export interface DaemonMemoryFigures {
  proteins: number;
  residuesEach: number;
  secondsToDone: number;
  idleRssBytes: number;
  rssAfterBytes: number;
  peakRssBytes: number;
}

function readStatusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!match) throw new Error(`${field} not found in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

async function waitFor(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Starts the compiled daemon as a child process on temporary folders with an embedded broker on
 * `port`, reads its resident memory when idle, feeds it an inbox file of synthetic proteins and
 * reads its resident and peak resident memory when the file is done.
 */
export async function measureDaemonMemory(mainScript: string, port: number, proteins: number, residuesEach: number): Promise<DaemonMemoryFigures> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bitnet-bench-'));
  mkdirSync(path.join(dir, 'inbox'));
  const child = spawn(process.execPath, [mainScript, 'run'], {
    cwd: dir,
    env: {
      ...process.env,
      BITNET_EDGE_DEVICE_ID: 'bench',
      BITNET_EDGE_MQTT_BROKER: 'embedded',
      BITNET_EDGE_MQTT_EMBEDDED_PORT: String(port),
      BITNET_EDGE_INBOX_SETTLE_MS: '100',
      BITNET_EDGE_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  try {
    const pid = child.pid!;
    await waitFor(() => existsSync(path.join(dir, 'data', 'bitnet-edge.db')), 60_000, 'daemon start');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const idleRssBytes = readStatusBytes(pid, 'VmRSS');

    const lines: string[] = [];
    for (let i = 0; i < proteins; i++) lines.push(`>bench-${i}`, syntheticProtein(residuesEach, i + 1));
    writeFileSync(path.join(dir, 'bench.tmp'), `${lines.join('\n')}\n`);
    const startedAt = performance.now();
    renameSync(path.join(dir, 'bench.tmp'), path.join(dir, 'inbox', 'bench.fasta'));
    await waitFor(() => existsSync(path.join(dir, 'done', 'bench.fasta')), 600_000, 'bench.fasta in done/');
    const secondsToDone = (performance.now() - startedAt) / 1000;

    return {
      proteins,
      residuesEach,
      secondsToDone,
      idleRssBytes,
      rssAfterBytes: readStatusBytes(pid, 'VmRSS'),
      peakRssBytes: readStatusBytes(pid, 'VmHWM'),
    };
  } finally {
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}
