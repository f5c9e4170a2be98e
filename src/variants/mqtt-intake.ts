import type { OutboxMessage } from '../contracts/store';
import type { Topics } from '../contracts/topics';
import type { Logger } from '../log';
import type { IncomingRequest } from '../mqtt/connection';
import { errorMessage } from '../queue/messages';
import { parseVariantPayload } from './request';
import type { VariantResponse, VariantService } from './service';

export interface VariantRequestIntakeOptions {
  service: VariantService;
  /** The store's outbox, which sends replies and error messages once the broker acknowledges them. */
  outbox: { addPublications(publications: OutboxMessage[]): void };
  topics: Topics;
  logger: Logger;
  /** Called after replies or error messages were added to the outbox. */
  onCommitted: () => void;
  clock?: () => Date;
}

/**
 * Replies to MQTT variant requests. A request is parsed and checked while the message is handled,
 * and the message is acknowledged as soon as that is done, because scoring can take minutes and
 * mqtt.js reads no other packet until the handler returns. The reply, and for a rejected
 * request an error message on the errors topic, go through the outbox. Requests are not stored,
 * so one that is being scored when the daemon stops gets no reply.
 */
export class VariantRequestIntake {
  private readonly log: Logger;
  private readonly clock: () => Date;
  private readonly inFlight = new Set<Promise<void>>();
  private stopping = false;

  constructor(private readonly options: VariantRequestIntakeOptions) {
    this.log = options.logger.child({ component: 'mqtt-variants' });
    this.clock = options.clock ?? (() => new Date());
  }

  /** Checks the request and starts scoring it. Resolves once the request may be acknowledged. */
  handle(request: IncomingRequest): Promise<void> {
    const parsed = parseVariantPayload(request.payload, this.options.service.limits);
    const work = this.options.service.respond(parsed).then(
      (reply) => this.publish(request, reply),
      (err: unknown) => this.log.error({ err, topic: request.topic }, 'variant request failed without a reply'),
    );
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
    return Promise.resolve();
  }

  /** Stops publishing replies; requests still being scored end without one. */
  stop(): void {
    this.stopping = true;
    if (this.inFlight.size > 0) this.log.warn({ requests: this.inFlight.size }, 'variant requests still being scored get no reply');
  }

  private publish(request: IncomingRequest, reply: VariantResponse): void {
    if (this.stopping) return;
    const { topics } = this.options;

    const publications: OutboxMessage[] = [
      {
        topic: request.responseTopic ?? topics.variantsResponse,
        payload: JSON.stringify(reply),
        qos: 1,
        retain: false,
        ...(request.correlationData ? { correlationData: request.correlationData.toString('base64') } : {}),
      },
    ];
    if (reply.status === 'error') {
      publications.push(errorMessage(topics, { source: 'mqtt', requestId: reply.id, origin: request.topic }, reply.errors, this.clock()));
    }
    try {
      this.options.outbox.addPublications(publications);
      this.options.onCommitted();
    } catch (err) {
      this.log.error({ err, requestId: reply.id }, 'storing the variant reply failed');
    }
  }
}
