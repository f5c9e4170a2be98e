import { watch, promises as fs, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { ResolvedConfig } from '../config/load';
import type { Topics } from '../contracts/topics';
import type { Logger } from '../log';
import { PAYLOAD_SCHEMA_VERSION } from '../contracts/topics';
import { rejectInput } from './fasta';
import { fsyncFolder, isInboxCandidate, moveWithoutOverwrite, writeFileAtomic } from './files';
import type { NucleotideOptions } from './orf-jobs';
import { InboxProcessor, type InboxFolders, type InboxStore } from './processor';

/** Durable count of failed ingest attempts per claimed file, which the SQLite `Store` implements. */
export interface IngestAttemptStore {
  /** Counts one more failed attempt of the file and returns its attempts so far. */
  recordIngestFailure(fileKey: string, message: string): number;
  clearIngestFailures(fileKey: string): void;
}

export interface InboxWatcherOptions {
  folders: ResolvedConfig['folders'];
  /** Time a file's size and mtime must stay unchanged, checked twice, before it is claimed, in ms. */
  settleMs: number;
  /** Period of the full inbox rescan that catches missed watch events, in ms. */
  rescanMs: number;
  maxFileBytes: number;
  minLength: number;
  /** Records parsed per SQLite transaction; the default is DEFAULT_CHUNK_RECORDS (1000). */
  chunkRecords?: number;
  /** Genetic code and ORF settings for DNA and RNA records. The configuration defaults apply when absent. */
  nucleotide?: NucleotideOptions;
  logger: Logger;
  store: InboxStore & IngestAttemptStore;
  topics: Topics;
  /** Called after a file's jobs are committed. */
  onJobsQueued: () => void;
  /** Called after a new input was stored, with its counts of jobs and rejected records. */
  onInputStored?: (counts: { jobs: number; rejected: number }) => void;
  clock?: () => Date;
  /**
   * Ingest attempts of a claimed file, counted per name, size and mtime in the database, so
   * across restarts, before it moves to `failed/` with a QUARANTINED error file. Default 3.
   */
  maxAttempts?: number;
  /** Wait before a failed ingest is tried again, in ms. Default `rescanMs`. */
  retryDelayMs?: number;
}

/** Content of `failed/<name>.errors.json` for a file that failed ingestion; no input exists for it. */
interface QuarantineFile {
  schemaVersion: number;
  source: string;
  inputId: null;
  createdAt: string;
  attempts: number;
  errors: ReturnType<typeof rejectInput>[];
}

const DEFAULT_MAX_ATTEMPTS = 3;

/** Size and mtime of a file waiting to settle. */
interface Observation {
  size: number;
  mtimeMs: number;
  unchangedChecks: number;
  timer: NodeJS.Timeout | null;
}

/** Number of consecutive settle checks that must see the same size and mtime. */
const REQUIRED_UNCHANGED_CHECKS = 2;

/** Name of the folder inside the inbox that contains claimed files until they are finished. */
export const PROCESSING_FOLDER = '.processing';

/**
 * Watches the inbox folder. A file whose size and mtime stay unchanged for two settle
 * periods is claimed by rename into `.processing/`, stored as an input with its jobs, and
 * moved to `done/` or `failed/` once its jobs are finished (see `finalizeCompletedInputs`).
 * `fs.watch` events start the settle check early, and a rescan at start and every `rescanMs`
 * finds files whose events were missed.
 */
export class InboxWatcher {
  private readonly logger: Logger;
  private readonly folders: InboxFolders;
  private readonly processor: InboxProcessor;
  private readonly observations = new Map<string, Observation>();
  private watcher: FSWatcher | null = null;
  private rescanTimer: NodeJS.Timeout | null = null;
  /** Claims, ingests and finalizations run one at a time on this chain. */
  private queue: Promise<void> = Promise.resolve();
  private running = false;
  /** Code of the last rescan failure, so a folder that stays unreadable is logged as an error once. */
  private lastRescanError: string | null = null;
  private readonly retryTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly options: InboxWatcherOptions) {
    this.logger = options.logger.child({ component: 'inbox' });
    this.folders = {
      inbox: options.folders.inbox,
      processing: path.join(options.folders.inbox, PROCESSING_FOLDER),
      outbox: options.folders.outbox,
      done: options.folders.done,
      failed: options.folders.failed,
    };
    this.processor = new InboxProcessor({
      folders: this.folders,
      maxFileBytes: options.maxFileBytes,
      minLength: options.minLength,
      chunkRecords: options.chunkRecords,
      isStopping: () => !this.running,
      nucleotide: options.nucleotide,
      logger: this.logger,
      store: options.store,
      topics: options.topics,
      onJobsQueued: options.onJobsQueued,
      onInputStored: options.onInputStored,
      clock: options.clock ?? (() => new Date()),
    });
  }

  /**
   * Creates the folders, re-ingests files left in `.processing/` by a crash, finalizes
   * inputs that completed while the service was down, then starts watching and rescanning.
   */
  async start(): Promise<void> {
    if (this.running) return;
    for (const folder of [this.folders.inbox, this.folders.processing, this.folders.outbox, this.folders.done, this.folders.failed]) {
      await fs.mkdir(folder, { recursive: true });
    }
    this.running = true;

    await this.enqueue(() => this.recoverProcessing());
    await this.enqueue(async () => {
      await this.processor.finalizeCompleted();
    });

    this.watcher = watch(this.folders.inbox, { persistent: false }, (_event, filename) => {
      if (filename === null) this.rescan();
      else this.observe(filename.toString());
    });
    this.watcher.on('error', (err) => {
      this.logger.error({ err, folder: this.folders.inbox }, 'inbox watch failed, so only the periodic rescan finds new files');
    });
    this.rescanTimer = setInterval(() => this.rescan(), this.options.rescanMs);
    this.rescan();
    this.logger.info({ folder: this.folders.inbox, settleMs: this.options.settleMs, rescanMs: this.options.rescanMs }, 'inbox watcher started');
  }

  /** Stops watching, cancels settle checks and waits for the file being processed, which stops after its current chunk. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;

    if (this.rescanTimer !== null) clearInterval(this.rescanTimer);
    this.rescanTimer = null;
    this.watcher?.close();
    this.watcher = null;
    for (const timer of this.retryTimers) clearTimeout(timer);
    this.retryTimers.clear();
    for (const observation of this.observations.values()) {
      if (observation.timer !== null) clearTimeout(observation.timer);
    }
    this.observations.clear();

    await this.queue;
    this.logger.info({ folder: this.folders.inbox }, 'inbox watcher stopped');
  }

  /**
   * Writes the results of every complete open inbox input, moves its source file out of
   * `.processing/` and marks it finished. Returns the number of inputs finished.
   */
  async finalizeCompletedInputs(): Promise<number> {
    let finished = 0;
    await this.enqueue(async () => {
      finished = await this.processor.finalizeCompleted();
    });
    return finished;
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const next = this.queue.then(task).catch((err: unknown) => {
      this.logger.error({ err, folder: this.folders.inbox }, 'inbox task failed');
    });
    this.queue = next;
    return next;
  }

  private async recoverProcessing(): Promise<void> {
    const names = (await fs.readdir(this.folders.processing)).filter(isInboxCandidate).sort();
    if (names.length > 0) this.logger.info({ files: names.length }, 'inbox recovering files left in .processing');
    for (const name of names) await this.ingest(name);
  }

  private rescan(): void {
    if (!this.running) return;
    fs.readdir(this.folders.inbox).then(
      (names) => {
        if (this.lastRescanError !== null) this.logger.info({ folder: this.folders.inbox }, 'inbox rescan recovered');
        this.lastRescanError = null;
        for (const name of names) this.observe(name);
      },
      (err: unknown) => {
        const code = (err as NodeJS.ErrnoException).code ?? 'unknown';
        const level = code === this.lastRescanError ? 'debug' : 'error';
        this.lastRescanError = code;
        this.logger[level]({ err, folder: this.folders.inbox }, 'inbox rescan failed');
      },
    );
  }

  /** Starts the settle check of a name unless it is already waiting or is not a candidate. */
  private observe(name: string): void {
    if (!this.running || !isInboxCandidate(name) || this.observations.has(name)) return;
    const observation: Observation = { size: -1, mtimeMs: -1, unchangedChecks: 0, timer: null };
    this.observations.set(name, observation);
    this.checkSettled(name, observation);
  }

  private checkSettled(name: string, observation: Observation): void {
    observation.timer = null;
    fs.stat(path.join(this.folders.inbox, name)).then(
      (stat) => {
        if (!this.running) return;
        if (!stat.isFile()) {
          this.observations.delete(name);
          return;
        }
        if (stat.size === observation.size && stat.mtimeMs === observation.mtimeMs) observation.unchangedChecks += 1;
        else Object.assign(observation, { size: stat.size, mtimeMs: stat.mtimeMs, unchangedChecks: 0 });

        if (observation.unchangedChecks >= REQUIRED_UNCHANGED_CHECKS) {
          void this.enqueue(() => this.claim(name));
          return;
        }
        observation.timer = setTimeout(() => this.checkSettled(name, observation), this.options.settleMs);
      },
      (err: unknown) => {
        // ENOENT: the file was removed or renamed before it settled, which is not an error.
        this.observations.delete(name);
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.error({ err, file: name }, 'inbox stat failed');
      },
    );
  }

  private async claim(name: string): Promise<void> {
    this.observations.delete(name);
    if (!this.running) return;

    const target = path.join(this.folders.processing, name);
    if (await pathExists(target)) {
      // A file of the same name is still being processed, and rename would overwrite it.
      // This one waits in the inbox, and a rescan after that file is finished claims it.
      this.logger.debug({ file: name }, 'inbox claim deferred: same name still in .processing');
      return;
    }

    try {
      await fs.rename(path.join(this.folders.inbox, name), target);
      await fsyncFolder(this.folders.processing);
      await fsyncFolder(this.folders.inbox);
    } catch (err) {
      // ENOENT: another process claimed or removed the file first.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.logger.error({ err, file: name }, 'inbox claim failed');
      return;
    }
    await this.ingest(name);
  }

  private async ingest(name: string): Promise<void> {
    const fileKey = await this.fileKeyOf(name);
    try {
      await this.processor.ingest(name);
    } catch (err) {
      await this.handleIngestFailure(name, err);
      return;
    }
    if (fileKey !== null) this.options.store.clearIngestFailures(fileKey);
  }

  /** Returns `name:size:mtimeMs` of a claimed file, the key of its ingest attempts, or null when it is gone. */
  private async fileKeyOf(name: string): Promise<string | null> {
    try {
      const stat = await fs.stat(path.join(this.folders.processing, name));
      return `${name}:${stat.size}:${stat.mtimeMs}`;
    } catch {
      return null;
    }
  }

  /** Schedules another ingest of a claimed file, or quarantines it after `maxAttempts` failures. */
  private async handleIngestFailure(name: string, err: unknown): Promise<void> {
    const file = path.join(this.folders.processing, name);
    const key = await this.fileKeyOf(name);
    if (key === null) {
      this.logger.error({ err, file: name }, 'inbox file ingest failed and the file is gone from .processing');
      return;
    }

    const maxAttempts = this.options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    let attempts: number;
    try {
      attempts = this.options.store.recordIngestFailure(key, err instanceof Error ? err.message : String(err));
    } catch (storeErr) {
      // Without a durable count the file is tried again, as after a restart.
      this.logger.error({ err, storeErr, file: name }, 'inbox file ingest failed and counting the attempt failed');
      attempts = 1;
    }
    if (attempts < maxAttempts) {
      const retryDelayMs = this.options.retryDelayMs ?? this.options.rescanMs;
      this.logger.error({ err, file: name, attempts, maxAttempts, retryDelayMs }, 'inbox file ingest failed, retrying');
      const timer = setTimeout(() => {
        this.retryTimers.delete(timer);
        if (this.running) void this.enqueue(() => this.ingest(name));
      }, retryDelayMs);
      this.retryTimers.add(timer);
      return;
    }

    this.logger.error({ err, file: name, attempts, maxAttempts }, 'inbox file ingest failed in every attempt, moving it to failed/');
    await this.quarantine(name, file, attempts, err);
    this.options.store.clearIngestFailures(key);
  }

  /** Writes a QUARANTINED error file into `failed/` and moves the claimed file there. */
  private async quarantine(name: string, file: string, attempts: number, err: unknown): Promise<void> {
    const reason = err instanceof Error ? err.message : String(err);
    const content: QuarantineFile = {
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      source: name,
      inputId: null,
      createdAt: (this.options.clock ?? (() => new Date()))().toISOString(),
      attempts,
      errors: [rejectInput('QUARANTINED', `ingesting the file failed ${attempts} times, last error: ${reason}`)],
    };
    try {
      await writeFileAtomic(this.folders.failed, `${name}.errors.json`, `${JSON.stringify(content, null, 2)}\n`);
      const target = await moveWithoutOverwrite(file, this.folders.failed, name);
      this.logger.warn({ file: name, movedTo: path.basename(path.dirname(target)), attempts }, 'inbox file quarantined');
    } catch (moveErr) {
      this.logger.error({ err: moveErr, file: name }, 'moving a quarantined inbox file to failed/ failed, so it stays in .processing');
    }
  }
}

async function pathExists(file: string): Promise<boolean> {
  try {
    await fs.lstat(file);
    return true;
  } catch {
    return false;
  }
}
