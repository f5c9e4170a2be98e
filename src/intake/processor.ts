import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { NewInput, NewJob, RejectedRecord } from '../contracts/jobs';
import type { BeginInputResult, InputRow, JobOutcome, OutboxMessage } from '../contracts/store';
import { PAYLOAD_SCHEMA_VERSION, type ErrorMessage, type Topics } from '../contracts/topics';
import type { Logger } from '../log';
import type { ParsedRecords } from './fasta';
import { inspectInboxFile, readRecordChunks, type InspectedFile } from './file-input';
import { isBaseName, moveWithoutOverwrite, writeFileAtomic } from './files';
import type { NucleotideOptions } from './orf-jobs';
import { prepareRecords } from './records';
import { collectRecordErrors, mergeResultsRecords, resultsFileText, type ErrorsFile, type ResultsFileHeader } from './results';

/** Store methods the inbox uses, which the SQLite `Store` implements. */
export interface InboxStore {
  findInputByKey(inputKey: string): InputRow | null;
  beginInput(input: NewInput): BeginInputResult;
  appendInputRecords(inputId: number, jobs: NewJob[], rejected: RejectedRecord[], publications: OutboxMessage[]): number[];
  completeInput(inputId: number): boolean;
  listCompleteOpenInputs(source?: 'mqtt' | 'inbox' | 'cli'): InputRow[];
  inputOutcomePage(inputId: number, after: Pick<JobOutcome, 'recordIndex' | 'jobId'> | null, limit: number): JobOutcome[];
  inputOutcomeCounts(inputId: number): { done: number; failed: number };
  inputRejections(inputId: number): RejectedRecord[];
  finishInput(inputId: number, publications: OutboxMessage[]): boolean;
  getInput(id: number): InputRow | null;
}

/** Folders the inbox works in, all absolute. */
/** Finished jobs read from the database at a time while a results file is written. */
const RESULTS_PAGE_SIZE = 100;

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
  /** Genetic code and ORF settings for DNA and RNA records. The configuration defaults apply when absent. */
  nucleotide?: NucleotideOptions;
  logger: Logger;
  store: InboxStore;
  topics: Topics;
  onJobsQueued: () => void;
  /** Called after an input's records were stored, with the counts of jobs and rejected records stored by this call. */
  onInputStored?: (counts: { jobs: number; rejected: number }) => void;
  clock: () => Date;
  /** Records parsed per SQLite transaction; the default is DEFAULT_CHUNK_RECORDS. */
  chunkRecords?: number;
  /** True once the service is stopping. A file being stored stops after its current chunk, and the next start resumes it. */
  isStopping?: () => boolean;
}

/**
 * Records parsed per SQLite transaction while a file is stored. Larger chunks mean fewer
 * fsyncs, smaller ones less memory and earlier inference of the first records.
 */
export const DEFAULT_CHUNK_RECORDS = 1000;

/**
 * Turns claimed inbox files into stored inputs and finished inputs back into files. A file
 * stays in `.processing/` until its input is finished, so that folder is the list of work to
 * recover after a crash.
 */
export class InboxProcessor {
  /** Claimed files whose bytes equal an input that is still open under another file name. */
  private readonly duplicateFiles = new Map<number, string[]>();

  constructor(private readonly options: InboxProcessorOptions) {}

  /**
   * Stores the input of one file in `.processing/` and returns the stored input's id. The file
   * is read as a stream and its records are committed in chunks, while the input row stays
   * incomplete, so no finalization reads a partly stored file. When a crash stopped an earlier
   * call midway, the same input key finds the incomplete input, and the records up to its
   * highest stored record index are skipped.
   */
  async ingest(name: string): Promise<number> {
    const file = path.join(this.options.folders.processing, name);
    const inspected = await inspectInboxFile(file, name, this.options.maxFileBytes);
    const input: NewInput = { source: 'inbox', inputKey: inspected.inputKey, requestId: null, origin: name, reply: null };
    const log = this.options.logger;

    // A new input row is inserted together with its first chunk (see `storeRecords`), so
    // readers never see a new input without records.
    let begun: BeginInputResult | null = null;
    if (this.options.store.findInputByKey(input.inputKey) !== null) {
      begun = this.options.store.beginInput(input);
      const existing = this.options.store.getInput(begun.inputId);
      if (existing === null) throw new Error(`input ${begun.inputId} returned by beginInput was not found`);
      log.info(
        { file: name, inputId: existing.id, origin: existing.origin, status: existing.status, complete: begun.complete },
        'inbox file matches a stored input',
      );
      if (existing.status === 'finished') {
        await this.finalizeFiles(existing, [name], false);
        return existing.id;
      }
      if (existing.origin !== name) this.duplicateFiles.set(existing.id, [...(this.duplicateFiles.get(existing.id) ?? []), name]);
    }

    if (begun === null || !begun.complete) {
      const stored = await this.storeRecords(name, file, input, inspected, begun);
      begun = stored.begun;
      if (stored.interrupted) {
        log.info({ file: name, inputId: begun.inputId, ...stored.counts }, 'inbox file interrupted by stop, so the next start resumes it');
        return begun.inputId;
      }
      this.options.store.completeInput(begun.inputId);
      log.info({ file: name, inputId: begun.inputId, resumed: !begun.inserted, ...stored.counts }, 'inbox file queued');
      this.options.onInputStored?.(stored.counts);
    }

    // The input may be complete already (no jobs, or its jobs finished before a crash), and
    // then no finished job would trigger its finalization.
    await this.finalizeCompleted();
    return begun.inputId;
  }

  /**
   * Parses the file in chunks and stores each chunk in one transaction with an errors message
   * for its rejected records. `resumed` is the stored input of an earlier, interrupted call, whose
   * records up to `lastRecordIndex` are skipped. Without it, the input is inserted right before
   * its first chunk. Returns the stored input, the counts of jobs and rejected records stored
   * now, and whether a stop interrupted the file.
   */
  private async storeRecords(
    name: string,
    file: string,
    input: NewInput,
    inspected: InspectedFile,
    resumed: BeginInputResult | null,
  ): Promise<{ begun: BeginInputResult; counts: { jobs: number; rejected: number }; interrupted: boolean }> {
    const { store, minLength, nucleotide } = this.options;
    const counts = { jobs: 0, rejected: 0 };
    const lastRecordIndex = resumed?.lastRecordIndex ?? null;
    const isNew = (index: number): boolean => lastRecordIndex === null || index > lastRecordIndex;
    let begun = resumed;
    const chunks: AsyncIterable<ParsedRecords> | Iterable<ParsedRecords> =
      inspected.rejection === null
        ? readRecordChunks(file, inspected, { maxFileBytes: this.options.maxFileBytes, chunkRecords: this.options.chunkRecords ?? DEFAULT_CHUNK_RECORDS })
        : [{ records: [], rejected: [inspected.rejection] }];

    for await (const parsed of chunks) {
      if (begun !== null && this.options.isStopping?.() === true) return { begun, counts, interrupted: true };
      const records = parsed.records.filter((record) => isNew(record.index));
      const prepared = prepareRecords(records, parsed.rejected.filter((rejection) => isNew(rejection.recordIndex)), { minLength, nucleotide });
      if (prepared.jobs.length === 0 && prepared.rejected.length === 0) continue;

      begun ??= store.beginInput(input);
      const publications = prepared.rejected.length > 0 ? [this.errorPublication(name, prepared.rejected)] : [];
      const jobIds = store.appendInputRecords(begun.inputId, prepared.jobs, prepared.rejected, publications);
      counts.jobs += jobIds.length;
      counts.rejected += prepared.rejected.length;
      if (jobIds.length > 0) this.notifyJobsQueued(name);
    }
    return { begun: begun ?? store.beginInput(input), counts, interrupted: false };
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
    const rejections = store.inputRejections(input.id);
    const counts = store.inputOutcomeCounts(input.id);
    // Failed jobs carry no prediction, so the errors list stays small however large the input.
    const failedOutcomes: JobOutcome[] = [];
    const succeeded = counts.done > 0;
    const createdAt = this.options.clock().toISOString();
    const header: ResultsFileHeader = {
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      source: '',
      inputId: input.id,
      createdAt,
      counts: { records: counts.done + counts.failed + rejections.length, done: counts.done, failed: counts.failed, rejected: rejections.length },
    };

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

      // The file is written from pages of RESULTS_PAGE_SIZE jobs, so a large input's predictions are never all in memory.
      let last: JobOutcome | null = null;
      failedOutcomes.length = 0;
      const nextPage = (): JobOutcome[] => {
        const page = store.inputOutcomePage(input.id, last, RESULTS_PAGE_SIZE);
        if (page.length > 0) last = page[page.length - 1];
        for (const outcome of page) if (outcome.status === 'failed') failedOutcomes.push(outcome);
        return page;
      };
      const records = mergeResultsRecords(nextPage, rejections);
      const resultsPath = await writeFileAtomic(folders.outbox, `${name}.json`, resultsFileText({ ...header, source: name }, records));
      const errors = collectRecordErrors(failedOutcomes, rejections);
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
