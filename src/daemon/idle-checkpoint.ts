import type { Logger } from '../log';

export interface IdleCheckpointOptions {
  /** Runs a PASSIVE WAL checkpoint, as `Store.checkpoint` does. */
  checkpoint: () => void;
  /** Minimum time between two checkpoints, in ms. */
  minIntervalMs: number;
  logger: Logger;
  /** Monotonic time in ms. */
  now?: () => number;
}

/**
 * Checkpoints the WAL when the queue is idle, at most once per `minIntervalMs`, so commits
 * reach the database file between bursts of work. A PASSIVE checkpoint skips the frames that
 * an open outside reader still needs. The first idle call after start checkpoints at once.
 */
export class IdleCheckpoint {
  private readonly logger: Logger;
  private readonly now: () => number;
  private lastCheckpointAt: number | null = null;

  constructor(private readonly options: IdleCheckpointOptions) {
    this.logger = options.logger.child({ component: 'idle-checkpoint' });
    this.now = options.now ?? (() => performance.now());
  }

  /** Checkpoints unless the last checkpoint is more recent than the interval. Returns true when it ran one. */
  onIdle(): boolean {
    const time = this.now();
    if (this.lastCheckpointAt !== null && time - this.lastCheckpointAt < this.options.minIntervalMs) return false;
    this.lastCheckpointAt = time;
    try {
      this.options.checkpoint();
    } catch (err) {
      this.logger.warn({ err }, 'idle WAL checkpoint failed');
    }
    return true;
  }
}
