import type { JobSource, JobStatus, OrfOrigin } from './jobs';
import type { Prediction, PredictOptions } from './prediction';

/** A stored job as the processor reads it. */
export interface JobRow {
  id: number;
  inputId: number;
  source: JobSource;
  requestId: string | null;
  origin: string;
  recordId: string;
  recordIndex: number;
  description: string;
  residues: string;
  sequenceHash: string;
  changes: string[];
  status: JobStatus;
  attempts: number;
  createdAt: string;
  /** ORF of a job translated from DNA or RNA. Null or absent for a protein record. */
  orf?: OrfOrigin | null;
  /** Request options that change the prediction; absent for none. */
  options?: PredictOptions;
}

/** A stored input (MQTT message, inbox file, CLI file). */
export interface InputRow {
  id: number;
  source: JobSource;
  inputKey: string;
  requestId: string | null;
  origin: string;
  replyTopic: string | null;
  correlationData: string | null;
  status: 'open' | 'finished';
  jobCount: number;
  rejectedCount: number;
  createdAt: string;
}

/** A finished job with its result or error, for results files and replies. */
export interface JobOutcome {
  jobId: number;
  recordId: string;
  recordIndex: number;
  sequenceHash: string;
  length: number;
  changes: string[];
  status: 'done' | 'failed';
  prediction: Prediction | null;
  cached: boolean;
  latencyMs: number | null;
  errorCode: string | null;
  errorMessage: string | null;
  finishedAt: string;
  /** ORF of a job translated from DNA or RNA. Null or absent for a protein record. */
  orf?: OrfOrigin | null;
}

/** A message waiting to be published; deleted once the broker acknowledges it. */
export interface OutboxMessage {
  topic: string;
  payload: string;
  qos: 0 | 1;
  retain: boolean;
  /** MQTT 5 correlation data (base64) for replies. */
  correlationData?: string | null;
}

export interface OutboxRow extends OutboxMessage {
  id: number;
  createdAt: string;
}

/** Outcome of `enqueueInput`. */
export interface EnqueueResult {
  inputId: number;
  /** False when an input with the same key was already stored (nothing was inserted). */
  inserted: boolean;
  jobIds: number[];
}

/** Input row that `beginInput` found or stored. */
export interface BeginInputResult {
  inputId: number;
  /** False when an input with the same key was already stored (nothing was inserted). */
  inserted: boolean;
  /** True when every record of the input is stored. */
  complete: boolean;
  /** Highest index of a parsed record among the input's stored jobs (an ORF job counts as its parent record) and rejections, or null when it has none. */
  lastRecordIndex: number | null;
}

/** Result of a finished inference, to be stored with its job. */
export interface JobResult {
  prediction: Prediction;
  modelId: string;
  cached: boolean;
  latencyMs: number;
  queueWaitMs: number;
}

/** Telemetry record as stored (the JSON payload plus its time). */
export interface TelemetryRow {
  createdAt: string;
  payload: string;
}

/** An MQTT variant-scoring request as `storeVariantRequest` stores it. */
export interface NewVariantRequest {
  /** Unique key: the request's id with the payload hash, or a random key for a request without an id. */
  requestKey: string;
  requestId: string | null;
  /** Topic the request came on. */
  origin: string;
  /** Message body as received, possibly gzip. */
  payload: Buffer;
  /** SHA-256 of the payload, hex. */
  payloadHash: string;
  /** Packet id of a QoS 1 or 2 delivery, or null for QoS 0. */
  packetId: number | null;
  replyTopic: string;
  /** MQTT 5 correlation data, base64, or null. */
  correlationData: string | null;
}

/** A stored MQTT variant-scoring request. */
export interface VariantRequestRow {
  id: number;
  requestKey: string;
  requestId: string | null;
  origin: string;
  /** Message body as received, possibly gzip; null for a request rejected at intake. */
  payload: Buffer | null;
  payloadHash: string;
  packetId: number | null;
  replyTopic: string;
  correlationData: string | null;
  status: 'pending' | 'answered';
  /** Scoring runs started for the request. */
  attempts: number;
  /** The reply as JSON once answered, else null. */
  reply: string | null;
  createdAt: string;
  finishedAt: string | null;
}

/** Outcome of `storeVariantRequest` and `storeAnsweredVariantRequest`. */
export interface StoredVariantRequest {
  /** The new row, or the stored request that this one repeats. */
  request: VariantRequestRow;
  /** False when the request repeats a stored one, so nothing was inserted. */
  inserted: boolean;
}
