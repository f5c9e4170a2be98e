import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { readStatusBytes } from './memory-stage';

/** Throughput and resident memory of a daemon process over one inbox file. */
export interface DaemonRunFigures {
  proteins: number;
  /** Results committed for the file, counted in the database after it moved to done/. */
  results: number;
  /** Time from the file's rename into inbox/ to its move to done/, in seconds. */
  secondsToDone: number;
  idleRssBytes: number;
  rssAfterBytes: number;
  /** VmHWM: the largest resident size since the process started. */
  peakRssBytes: number;
  /**
   * Largest RssAnon and RssFile seen while the file was processed, sampled every 25 ms.
   * Anonymous memory is the process's own: heaps and onnxruntime's arena. File pages are the
   * mapped code of node and the native libraries, which the kernel can drop and read again.
   */
  peakAnonBytes: number;
  peakFileBytes: number;
  /** CPU time of the daemon's main thread (intake, SQLite, MQTT, result files) during the file, in seconds. */
  mainThreadCpuSeconds: number;
  /** CPU time of the whole daemon during the file, inference threads included, in seconds. */
  processCpuSeconds: number;
}

/**
 * Node options of the daemon as `npm start`, the systemd unit and the Docker image start it. A
 * young-generation semi-space of 1 MiB in place of V8's default of up to 16 MiB lowered the
 * daemon's peak resident memory on the 500 proteins by about 20 MiB, at the same speed.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1'];

/** Linux's USER_HZ: /proc reports CPU times in ticks of 1/100 s on every architecture Node supports. */
const TICKS_PER_SECOND = 100;

/** Returns utime + stime of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat, in seconds. */
function cpuSeconds(statFile: string): number {
  const stat = readFileSync(statFile, 'utf8');
  // The command name in field 2 can contain spaces, so the fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

export interface DaemonRunOptions {
  /** dist/cli/main.js */
  mainScript: string;
  /** Model folder of the daemon, absolute because the daemon runs in a temporary folder. */
  modelDir: string;
  /** Embedded broker port on 127.0.0.1. */
  port: number;
  proteinsFile: string;
  proteins: number;
  /** Extra BITNET_EDGE_* configuration variables and Node options of the daemon. */
  env?: Record<string, string>;
}

async function waitFor(predicate: () => boolean, timeoutMs: number, awaited: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${awaited}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function countResults(dataDir: string): number {
  const db = new Database(path.join(dataDir, 'bitnet-edge.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM results').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/**
 * Starts the compiled daemon as a child process on temporary folders with an embedded broker and
 * reads its resident memory when idle. Then moves the FASTA file into its inbox and measures the
 * time until the file is in done/, which the daemon does after it committed every job's result.
 * Reads the resident and peak resident memory at that point.
 */
export async function measureDaemonRun(options: DaemonRunOptions): Promise<DaemonRunFigures> {
  const dir = mkdtempSync(path.join(tmpdir(), 'bitnet-bench-'));
  mkdirSync(path.join(dir, 'inbox'));
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, options.mainScript, 'run'], {
    cwd: dir,
    env: {
      ...process.env,
      BITNET_EDGE_DEVICE_ID: 'bench',
      BITNET_EDGE_MQTT_BROKER: 'embedded',
      BITNET_EDGE_MQTT_EMBEDDED_PORT: String(options.port),
      BITNET_EDGE_INBOX_SETTLE_MS: '100',
      BITNET_EDGE_LOG_LEVEL: 'warn',
      BITNET_EDGE_MODEL_DIR: options.modelDir,
      ...options.env,
    },
    // pino writes to stdout, so the daemon's warnings and errors show in the bench output.
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const running = (awaited: string): boolean => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the daemon exited while the bench was waiting for ${awaited}`);
    return true;
  };

  try {
    const pid = child.pid!;
    await waitFor(() => running('its start') && existsSync(path.join(dir, 'data', 'bitnet-edge.db')), 60_000, 'daemon start');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    running('the idle memory reading');
    const idleRssBytes = readStatusBytes('VmRSS', pid);

    copyFileSync(options.proteinsFile, path.join(dir, 'bench.tmp'));
    const mainThreadStat = `/proc/${pid}/task/${pid}/stat`;
    const cpuBefore = { main: cpuSeconds(mainThreadStat), process: cpuSeconds(`/proc/${pid}/stat`) };
    const peaks = { anon: 0, file: 0 };
    const sample = (): void => {
      try {
        peaks.anon = Math.max(peaks.anon, readStatusBytes('RssAnon', pid));
        peaks.file = Math.max(peaks.file, readStatusBytes('RssFile', pid));
      } catch {
        // The process ended between two samples; running() reports it.
      }
    };
    const sampler = setInterval(sample, 25);
    const startedAt = performance.now();
    renameSync(path.join(dir, 'bench.tmp'), path.join(dir, 'inbox', 'bench.fasta'));
    try {
      await waitFor(() => running('bench.fasta in done/') && existsSync(path.join(dir, 'done', 'bench.fasta')), 900_000, 'bench.fasta in done/');
    } finally {
      clearInterval(sampler);
    }
    const secondsToDone = (performance.now() - startedAt) / 1000;
    sample();
    const mainThreadCpuSeconds = cpuSeconds(mainThreadStat) - cpuBefore.main;
    const processCpuSeconds = cpuSeconds(`/proc/${pid}/stat`) - cpuBefore.process;

    return {
      proteins: options.proteins,
      results: countResults(path.join(dir, 'data')),
      secondsToDone,
      idleRssBytes,
      rssAfterBytes: readStatusBytes('VmRSS', pid),
      peakRssBytes: readStatusBytes('VmHWM', pid),
      peakAnonBytes: peaks.anon,
      peakFileBytes: peaks.file,
      mainThreadCpuSeconds,
      processCpuSeconds,
    };
  } finally {
    child.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}
