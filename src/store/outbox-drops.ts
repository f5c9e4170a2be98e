import type { Logger } from '../log';

/** Default minimum time between two warnings about dropped outbox messages, in ms. */
export const DEFAULT_DROP_WARNING_INTERVAL_MS = 60_000;

/**
 * Rate-limited warnings about outbox messages dropped at the outbox bound. The first drop warns
 * at once. Drops within `intervalMs` of the last warning are summed, and the next drop after the
 * interval, or `flush()`, warns with the sum.
 */
export class OutboxDropWarnings {
  private unreported = 0;
  private lastWarningAt: number | null = null;

  constructor(
    private readonly logger: Logger,
    private readonly maxMessages: number,
    private readonly intervalMs: number,
    private readonly now: () => number,
  ) {}

  /** Counts `dropped` messages and warns unless a warning was logged within the interval. */
  record(dropped: number, droppedTotal: number): void {
    if (dropped <= 0) return;
    this.unreported += dropped;
    const time = this.now();
    if (this.lastWarningAt !== null && time - this.lastWarningAt < this.intervalMs) return;
    this.warn(droppedTotal, time);
  }

  /** Warns about drops not yet reported, if any. */
  flush(droppedTotal: number): void {
    if (this.unreported > 0) this.warn(droppedTotal, this.now());
  }

  private warn(droppedTotal: number, time: number): void {
    this.logger.warn(
      { dropped: this.unreported, droppedTotal, outboxMaxMessages: this.maxMessages },
      'outbox full, so the oldest messages were dropped unsent',
    );
    this.unreported = 0;
    this.lastWarningAt = time;
  }
}
