import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { NewInput, NewJob, RejectedRecord } from '../contracts/jobs';
import type { EnqueueResult, InputRow, JobOutcome, OutboxMessage } from '../contracts/store';
import { PAYLOAD_SCHEMA_VERSION, type ErrorMessage, type Topics } from '../contracts/topics';
import type { Logger } from '../log';
import { rejectInput } from './fasta';
import { isBaseName, moveWithoutOverwrite, unsupportedFormatOfName, writeFileAtomic } from './files';
import { prepareRecords } from './records';
import { buildResultsFile, collectRecordErrors, type ErrorsFile } from './results';
import { parseSequenceText } from './text';

/** Store methods the inbox uses, which the SQLite `Store` implements. */
export interface InboxStore {
  enqueueInput(input: NewInput, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[]): EnqueueResult;
  listCompleteOpenInputs(source?: 'mqtt' | 'inbox' | 'cli'): InputRow[];
  inputOutcomes(inputId: number): JobOutcome[];
  inputRejections(inputId: number): RejectedRecord[];
  finishInput(inputId: number, publications: OutboxMessage[]): boolean;
  getInput(id: number): InputRow | null;
}

/** Folders the inbox works in, all absolute. */
export interface InboxFolders {
  inbox: string;
  processing: string;
  outbox: string;
  done: string;
  failed: string;
}

export interface InboxProcessorOptions {
  folders: InboxFolders;
  maxFileBytes: number;
  minLength: number;
  logger: Logger;
  store: InboxStore;
  topics: Topics;
  onJobsQueued: () => void;
  /** Called after a new input was stored, with its counts of jobs and rejected records. */
  onInputStored?: (counts: { jobs: number; rejected: number }) => void;
  clock: () => Date;
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

/**
 * Turns claimed inbox files into stored inputs and finished inputs back into files. A file
 * stays in `.processing/` until its input is finished, so that folder is the list of work to
 * recover after a crash.
 */
export class InboxProcessor {
  /** Claimed files whose bytes equal an input that is still open under another file name. */
  private readonly duplicateFiles = new Map<number, string[]>();

  constructor(private readonly options: InboxProcessorOptions) {}

  /** Stores the input of one file in `.processing/` and returns the stored input's id. */
  async ingest(name: string): Promise<number> {
    const file = path.join(this.options.folders.processing, name);
    const { input, jobs, rejected } = await this.readInput(name, file);
    const publications = rejected.length > 0 ? [this.errorPublication(name, rejected)] : [];
    const result = this.options.store.enqueueInput(input, jobs, rejected, publications);
    const log = this.options.logger;

    if (result.inserted) {
      log.info({ file: name, inputId: result.inputId, jobs: jobs.length, rejected: rejected.length }, 'inbox file queued');
      this.options.onInputStored?.({ jobs: jobs.length, rejected: rejected.length });
      if (jobs.length > 0) this.notifyJobsQueued(name);
      else await this.finalizeById(result.inputId);
      return result.inputId;
    }

    const existing = this.options.store.getInput(result.inputId);
    if (existing === null) throw new Error(`input ${result.inputId} returned by enqueueInput was not found`);
    log.info({ file: name, inputId: existing.id, origin: existing.origin, status: existing.status }, 'inbox file matches a stored input');
    if (existing.status === 'finished') {
      await this.finalizeFiles(existing, [name], false);
      return existing.id;
    }

    if (existing.origin !== name) this.duplicateFiles.set(existing.id, [...(this.duplicateFiles.get(existing.id) ?? []), name]);
    // The stored input may already be complete, and then no finished job would trigger its finalization.
    await this.finalizeCompleted();
    return existing.id;
  }

  private notifyJobsQueued(name: string): void {
    try {
      this.options.onJobsQueued();
    } catch (err) {
      this.options.logger.error({ err, file: name }, 'inbox onJobsQueued callback failed');
    }
  }

  /** Writes the files of every complete open inbox input and finishes it. Returns how many inputs were finished. */
  async finalizeCompleted(): Promise<number> {
    const inputs = this.options.store.listCompleteOpenInputs('inbox');
    let finished = 0;
    for (const input of inputs) {
      try {
        await this.finalizeInput(input);
        finished += 1;
      } catch (err) {
        this.options.logger.error({ err, file: input.origin, inputId: input.id }, 'inbox input finalization failed');
      }
    }
    return finished;
  }

  private async finalizeById(inputId: number): Promise<void> {
    const input = this.options.store.getInput(inputId);
    if (input !== null) await this.finalizeInput(input);
  }

  private async finalizeInput(input: InputRow): Promise<void> {
    const names = [input.origin, ...(this.duplicateFiles.get(input.id) ?? [])];
    await this.finalizeFiles(input, names, true);
    this.options.store.finishInput(input.id, []);
    this.duplicateFiles.delete(input.id);
  }

  /**
   * Writes the results file and, when a record was rejected or failed, the errors file for
   * each name, then moves the source out of `.processing/`. A name whose source is no longer
   * in `.processing/` was finished before a crash and is skipped.
   */
  private async finalizeFiles(input: InputRow, names: string[], logMissing: boolean): Promise<void> {
    const { folders, logger, store } = this.options;
    const outcomes = store.inputOutcomes(input.id);
    const rejections = store.inputRejections(input.id);
    const errors = collectRecordErrors(outcomes, rejections);
    const succeeded = outcomes.some((outcome) => outcome.status === 'done');
    const createdAt = this.options.clock().toISOString();

    for (const name of names) {
      if (!isBaseName(name)) {
        logger.error({ file: name, inputId: input.id }, 'inbox input origin is not a base name');
        continue;
      }
      const source = path.join(folders.processing, name);
      if (!(await exists(source))) {
        if (logMissing) logger.warn({ file: name, inputId: input.id }, 'inbox source file missing from .processing');
        continue;
      }

      const results = buildResultsFile(name, input.id, outcomes, rejections, createdAt);
      const resultsPath = await writeFileAtomic(folders.outbox, `${name}.json`, `${JSON.stringify(results, null, 2)}\n`);
      if (errors.length > 0) {
        const errorsFile: ErrorsFile = { schemaVersion: PAYLOAD_SCHEMA_VERSION, source: name, inputId: input.id, createdAt, errors };
        await writeFileAtomic(folders.failed, `${name}.errors.json`, `${JSON.stringify(errorsFile, null, 2)}\n`);
      }
      const target = await moveWithoutOverwrite(source, succeeded ? folders.done : folders.failed, name);
      logger.info(
        { file: name, inputId: input.id, results: path.basename(resultsPath), movedTo: path.basename(path.dirname(target)), errors: errors.length },
        'inbox file finished',
      );
    }
  }

  private async readInput(name: string, file: string): Promise<{ input: NewInput; jobs: NewJob[]; rejected: RejectedRecord[] }> {
    const input: NewInput = { source: 'inbox', inputKey: '', requestId: null, origin: name, reply: null };
    const stat = await fs.stat(file);

    if (stat.size > this.options.maxFileBytes) {
      // The file is not read, so its key comes from what identifies it on disk.
      input.inputKey = `inbox:oversized:${name}:${stat.size}:${stat.mtimeMs}`;
      const message = `the file has ${stat.size} bytes, more than the maximum of ${this.options.maxFileBytes} (inbox.maxFileBytes)`;
      return { input, jobs: [], rejected: [rejectInput('PAYLOAD_TOO_LARGE', message)] };
    }

    const bytes = await fs.readFile(file);
    input.inputKey = `inbox:${createHash('sha256').update(bytes).digest('hex')}`;

    const unsupported = bytes.subarray(0, 2).equals(GZIP_MAGIC) ? 'gzip-compressed' : unsupportedFormatOfName(name);
    if (unsupported !== null) {
      const message = `${unsupported} input is not supported yet. Convert the file to uncompressed protein FASTA and drop it into the inbox again`;
      return { input, jobs: [], rejected: [rejectInput('UNSUPPORTED_FORMAT', message)] };
    }

    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return { input, jobs: [], rejected: [rejectInput('UNSUPPORTED_FORMAT', 'the file is not UTF-8 text')] };
    }

    const parsed = parseSequenceText(text);
    const prepared = prepareRecords(parsed.records, parsed.rejected, { minLength: this.options.minLength });
    return { input, ...prepared };
  }

  private errorPublication(name: string, rejected: RejectedRecord[]): OutboxMessage {
    const message: ErrorMessage = {
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      source: 'inbox',
      requestId: null,
      origin: name,
      errors: rejected.map(({ recordId, recordIndex, code, message: text }) => ({ recordId, recordIndex, code, message: text })),
      createdAt: this.options.clock().toISOString(),
    };
    return { topic: this.options.topics.errors, payload: JSON.stringify(message), qos: 1, retain: false };
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}
