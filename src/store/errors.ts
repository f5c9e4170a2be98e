import type { JobStatus } from '../contracts/jobs';

/** Raised when the database cannot be opened, fails its integrity check, or has an unknown schema. */
export class StoreOpenError extends Error {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot open database ${file}: ${message}`, options);
    this.name = 'StoreOpenError';
  }
}

/** Raised when a job is not found or is not in a status that allows the requested change. */
export class JobStateError extends Error {
  constructor(
    readonly jobId: number,
    readonly status: JobStatus | null,
    action: string,
  ) {
    super(
      status === null
        ? `cannot ${action} job ${jobId}: job not found`
        : `cannot ${action} job ${jobId}: its status is ${status}, expected pending or running`,
    );
    this.name = 'JobStateError';
  }
}
