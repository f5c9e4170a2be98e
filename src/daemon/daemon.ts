import path from 'node:path';
import type { ResolvedConfig } from '../config/load';
import type { Logger } from '../log';
import type { PredictOptions } from '../contracts/prediction';
import { buildTopics, type Topics } from '../contracts/topics';
import { oversizedReplacement } from '../mqtt/oversized';
import { Store } from '../store/store';
import { InferenceEngine } from '../inference/engine';
import { EmbeddedBroker, isBrokerListening } from '../mqtt/broker';
import { MqttConnection } from '../mqtt/connection';
import { OutboxPublisher } from '../mqtt/publisher';
import { InboxWatcher } from '../intake/inbox';
import { Metrics } from '../telemetry/metrics';
import { TelemetrySampler } from '../telemetry/sampler';
import { JobProcessor } from '../queue/processor';
import { ResultCache } from '../cache/result-cache';
import { PrefixCache } from '../cache/prefix-cache';
import { HttpServer } from '../http/server';
import { VariantService } from '../variants/service';
import { VariantRequestIntake } from '../variants/mqtt-intake';
import { RequestIntake } from './mqtt-requests';
import { brokerUrl, planBroker } from './broker-choice';
import { IdleCheckpoint } from './idle-checkpoint';

/** Jobs sent to the model at once. */
const BATCH_SIZE = 8;
/** Sequence lengths in tokens that model runs are padded to when model.padToFixedLengths is set. */
const FIXED_PAD_LENGTHS = [64, 128, 256, 512];
const BROKER_PROBE_TIMEOUT_MS = 500;
/** Smallest packet limit of the embedded broker: 16 MiB. */
const EMBEDDED_BROKER_MIN_PACKET_BYTES = 16 * 1024 * 1024;

/** Name and handle of a started component, stopped in reverse order. */
interface Started {
  name: string;
  stop: () => Promise<void> | void;
}

/** Addresses and ids of the running daemon, for logs and tests. */
export interface DaemonEndpoints {
  brokerUrl: string;
  embeddedBroker: boolean;
  topics: Topics;
  databaseFile: string;
  modelId: string;
  /** Base URL of the HTTP API, or null when http.enabled is false. */
  httpUrl: string | null;
}

/**
 * The composition root: builds every component from the configuration, starts them in
 * dependency order and stops them in reverse.
 */
export class Daemon {
  private readonly started: Started[] = [];
  private readonly logger: Logger;
  private endpointsValue: DaemonEndpoints | null = null;
  private stopping: Promise<void> | null = null;

  constructor(
    private readonly config: ResolvedConfig,
    private readonly rootLogger: Logger,
  ) {
    this.logger = rootLogger.child({ component: 'daemon' });
  }

  get endpoints(): DaemonEndpoints {
    if (!this.endpointsValue) throw new Error('the daemon is not started');
    return this.endpointsValue;
  }

  async start(): Promise<DaemonEndpoints> {
    try {
      return await this.startComponents();
    } catch (err) {
      await this.stopComponents();
      throw err;
    }
  }

  /** Stops every component in reverse order. Safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= this.stopComponents();
    return this.stopping;
  }

  private async startComponents(): Promise<DaemonEndpoints> {
    const { config } = this;
    // Components take their own child of the root logger, so each line has one `component`.
    const root = this.rootLogger;
    const topics = buildTopics(config.mqtt.baseTopic, config.deviceId);

    const store = new Store({
      file: path.join(config.folders.data, 'bitnet-edge.db'),
      logger: root,
      outboxMaxMessages: config.mqtt.outboxMaxMessages,
    });
    store.open();
    this.started.push({ name: 'store', stop: () => store.close() });

    const engine = new InferenceEngine({
      modelDir: config.model.dir,
      intraOpThreads: config.model.intraOpThreads,
      maxBatchTokens: config.model.maxBatchTokens,
      chunkTokens: config.model.chunkTokens,
      padLengths: config.model.padToFixedLengths ? FIXED_PAD_LENGTHS : [],
      session: { allowSpinning: config.model.allowSpinning },
      logger: root,
    });
    await engine.start();
    this.started.push({ name: 'inference', stop: () => engine.stop() });
    // A crashed worker leaves the engine stopped; the next batch starts a fresh one.
    const predictor = {
      modelId: engine.modelId,
      predict: async (residues: string[], options?: ReadonlyArray<PredictOptions | undefined>) => {
        if (!engine.running) {
          this.logger.warn({ modelId: engine.modelId }, 'restarting the inference worker');
          await engine.start();
        }
        return engine.predict(residues, options);
      },
    };

    const { url, embedded } = await this.startBroker();
    // aedes, the embedded broker, speaks MQTT 3.1.1 only.
    const protocolVersion = !embedded && config.mqtt.protocolVersion === '5' ? 5 : 4;
    if (embedded && config.mqtt.protocolVersion === '5') {
      this.logger.warn('mqtt.protocolVersion 5 needs an external broker; the embedded broker speaks MQTT 3.1.1, so the daemon connects with it');
    }
    const metrics = new Metrics();
    const resultCache = new ResultCache({ maxBytes: config.cache.maxBytes });
    const prefixCache = new PrefixCache({ maxBytes: config.cache.prefixMaxBytes, blockSize: config.cache.prefixBlockResidues });
    const variantService = new VariantService({
      engine,
      cache: prefixCache,
      limits: { maxPayloadBytes: config.mqtt.maxPayloadBytes, minLength: config.sequence.minLength, maxVariants: config.variants.maxVariants },
      logger: root,
    });

    // Late-bound so the processor, the intake paths and the publisher can wake each other.
    let processor: JobProcessor | null = null;
    let publisher: OutboxPublisher | null = null;
    let inbox: InboxWatcher | null = null;
    const onCommitted = (): void => publisher?.notify();
    const onJobsQueued = (): void => {
      processor?.notify();
      publisher?.notify();
    };

    const requests = new RequestIntake({
      store,
      topics,
      maxPayloadBytes: config.mqtt.maxPayloadBytes,
      minLength: config.sequence.minLength,
      redeliveryWindowMs: config.mqtt.redeliveryWindowMs,
      nucleotide: config.sequence,
      logger: root,
      onCommitted: onJobsQueued,
      onReceived: (records, rejected) => {
        metrics.recordReceived(records);
        if (rejected > 0) metrics.recordRejected(rejected);
      },
    });

    const variantRequests = new VariantRequestIntake({
      service: variantService,
      store,
      topics,
      redeliveryWindowMs: config.mqtt.redeliveryWindowMs,
      maxAttempts: config.queue.maxAttempts,
      retentionMs: config.variants.retentionHours * 3_600_000,
      maxPublishBytes: config.mqtt.maxPublishBytes,
      logger: root,
      onCommitted,
    });
    // Pending requests are queued before the connection can deliver new ones, so they are
    // scored first, in arrival order. The intake stops after the connection.
    variantRequests.resume();
    this.started.push({ name: 'variant requests', stop: () => variantRequests.stop() });

    const connection = new MqttConnection({
      url,
      options: config.mqtt,
      topics,
      logger: root,
      onRequest: (request) => (request.topic === topics.variantsRequest ? variantRequests.handle(request) : requests.handle(request)),
      onSession: (sessionPresent) => requests.sessionStarted(sessionPresent),
      onConnect: () => publisher?.notify(),
      protocolVersion,
    });
    await connection.start();
    this.started.push({ name: 'mqtt', stop: () => connection.stop() });

    let httpUrl: string | null = null;
    if (config.http.enabled) {
      const http = new HttpServer({
        host: config.http.host,
        port: config.http.port,
        maxBodyBytes: config.http.maxBodyBytes,
        variants: variantService,
        health: () => ({ modelId: engine.modelId, inference: engine.running }),
        logger: root,
      });
      const address = await http.start();
      httpUrl = `http://${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
      this.started.push({ name: 'http', stop: () => http.stop() });
    }

    publisher = new OutboxPublisher({
      store,
      connection,
      logger: root,
      maxPerSecond: config.mqtt.outboxMaxPerSecond,
      batchSize: 50,
      maxPayloadBytes: config.mqtt.maxPublishBytes,
      replaceOversized: (row, bytes, limit) => oversizedReplacement(row, bytes, limit, topics, (jobId) => store.jobRecordIndex(jobId)),
    });
    publisher.start();
    const startedPublisher = publisher;
    this.started.push({ name: 'publisher', stop: () => startedPublisher.stop() });

    const idleCheckpoint = new IdleCheckpoint({ checkpoint: () => store.checkpoint(), minIntervalMs: config.queue.idleCheckpointMs, logger: root });
    processor = new JobProcessor({
      store,
      predictor,
      topics,
      metrics,
      logger: root,
      batchSize: BATCH_SIZE,
      batchWaitMs: config.queue.batchWaitMs,
      maxAttempts: config.queue.maxAttempts,
      retryBackoffMs: config.queue.retryBackoffMs,
      retryBackoffMaxMs: config.queue.retryBackoffMaxMs,
      resultCache,
      onIdle: () => idleCheckpoint.onIdle(),
      onCommitted,
      onInboxInputComplete: () => {
        void inbox?.finalizeCompletedInputs().catch((err: unknown) => this.logger.error({ err }, 'finalizing inbox files failed'));
      },
    });

    if (config.inbox.enabled) {
      inbox = new InboxWatcher({
        folders: config.folders,
        settleMs: config.inbox.settleMs,
        rescanMs: config.inbox.rescanMs,
        maxFileBytes: config.inbox.maxFileBytes,
        maxAttempts: config.queue.maxAttempts,
        minLength: config.sequence.minLength,
        nucleotide: config.sequence,
        logger: root,
        store,
        topics,
        onJobsQueued,
        onInputStored: ({ jobs, rejected }) => {
          metrics.recordReceived(jobs);
          if (rejected > 0) metrics.recordRejected(rejected);
          publisher?.notify();
        },
      });
      await inbox.start();
      const startedInbox = inbox;
      this.started.push({ name: 'inbox', stop: () => startedInbox.stop() });
    }

    processor.start();
    const startedProcessor = processor;
    this.started.push({ name: 'processor', stop: () => startedProcessor.stop() });

    const sampler = new TelemetrySampler({
      intervalMs: config.telemetry.intervalMs,
      retentionHours: config.telemetry.retentionHours,
      deviceId: config.deviceId,
      modelId: engine.modelId,
      topic: topics.telemetry,
      power: { idleWatts: config.telemetry.idleWatts, maxWatts: config.telemetry.maxWatts },
      counters: () => ({
        ...metrics.snapshot(),
        pendingJobs: pendingJobs(store.countJobsByStatus()),
        outboxDepth: store.countOutbox(),
        outboxDropped: store.outboxDroppedTotal(),
        memoryCache: resultCache.stats,
        prefixCacheHitRatio: hitRatio(prefixCache.stats),
        prefixCache: prefixCache.stats,
      }),
      store,
      publish: (topic, payload) => connection.publishVolatile(topic, payload),
      logger: root,
    });
    sampler.start();
    this.started.push({ name: 'telemetry', stop: () => sampler.stop() });

    this.endpointsValue = {
      brokerUrl: url,
      embeddedBroker: this.started.some((item) => item.name === 'broker'),
      topics,
      databaseFile: store.file,
      modelId: engine.modelId,
      httpUrl,
    };
    this.logger.info({ ...this.endpointsValue, deviceId: config.deviceId, inbox: config.folders.inbox }, 'daemon started');
    return this.endpointsValue;
  }

  /** Embeds a broker or picks the configured one, and returns the URL to connect to and whether the broker is embedded. */
  private async startBroker(): Promise<{ url: string; embedded: boolean }> {
    const plan = planBroker(this.config.mqtt);
    if (plan.kind === 'external') {
      this.logger.info({ url: redactUrl(plan.url) }, 'using external MQTT broker');
      return { url: plan.url, embedded: false };
    }
    if (plan.kind === 'probe-then-embed' && (await isBrokerListening(plan.probeHost, plan.probePort, BROKER_PROBE_TIMEOUT_MS))) {
      this.logger.info({ url: redactUrl(plan.url) }, 'a broker already listens on the configured port; using it');
      return { url: plan.url, embedded: false };
    }

    // The broker's own limit closes the sender's connection without a reply (MQTT 3.1.1 has no
    // negative ack), and mqtt.js then resends the publish after every reconnect. The limit sits
    // well above the request limit, so oversized requests reach the daemon and get an error.
    const brokerLimit = Math.max(2 * this.config.mqtt.maxPayloadBytes, EMBEDDED_BROKER_MIN_PACKET_BYTES);
    const broker = new EmbeddedBroker({ host: plan.host, port: plan.port, logger: this.rootLogger, maxPayloadBytes: brokerLimit });
    const address = await broker.start();
    this.started.push({ name: 'broker', stop: () => broker.stop() });
    return { url: brokerUrl(address.host, address.port), embedded: true };
  }

  private async stopComponents(): Promise<void> {
    while (this.started.length > 0) {
      const component = this.started.pop()!;
      try {
        await component.stop();
      } catch (err) {
        this.logger.error({ err, component: component.name }, 'stopping a component failed');
      }
    }
  }
}

/** Share of prefix-cache lookups that found a cached block, or null before the first lookup. */
function hitRatio({ hits, misses }: { hits: number; misses: number }): number | null {
  return hits + misses > 0 ? hits / (hits + misses) : null;
}

function pendingJobs(counts: Record<string, number>): number {
  return (counts.pending ?? 0) + (counts.running ?? 0);
}

/** Drops the password from a broker URL before it is logged. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}
