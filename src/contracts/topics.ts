import type { OrfOrigin } from './jobs';
import type { Prediction } from './prediction';

/** Version of every JSON payload the daemon publishes; bumped on incompatible changes. */
export const PAYLOAD_SCHEMA_VERSION = 1;

/** MQTT topics of one device, built from the base topic and the device id. */
export interface Topics {
  request: string;
  predictions: string;
  response: string;
  /** Variant-scoring requests (subscribed). */
  variantsRequest: string;
  /** Replies to variant-scoring requests without an MQTT 5 response topic. */
  variantsResponse: string;
  errors: string;
  telemetry: string;
  status: string;
}

/** Builds the topic set `<base>/<device>/...`. */
export function buildTopics(baseTopic: string, deviceId: string): Topics {
  const root = `${baseTopic}/${deviceId}`;
  return {
    request: `${root}/request/predict`,
    predictions: `${root}/predictions`,
    response: `${root}/response/predict`,
    variantsRequest: `${root}/request/variants`,
    variantsResponse: `${root}/response/variants`,
    errors: `${root}/errors`,
    telemetry: `${root}/telemetry`,
    status: `${root}/status`,
  };
}

/** Retained value of the status topic. */
export type DeviceStatus = 'online' | 'offline' | 'stopped';

/** Message on the predictions topic: one per result. */
export interface PredictionMessage {
  schemaVersion: number;
  jobId: number;
  source: 'mqtt' | 'inbox' | 'cli';
  requestId: string | null;
  recordId: string;
  /** Inbox file name or MQTT topic the input came from. */
  origin: string;
  sequenceHash: string;
  length: number;
  changes: string[];
  cached: boolean;
  latencyMs: number;
  createdAt: string;
  prediction: Prediction;
  /** Present when the protein was translated from an ORF of a DNA or RNA record. */
  orf?: OrfOrigin;
}

/** Reply to one MQTT request, on the response topic. */
export interface ResponseMessage {
  schemaVersion: number;
  /** The request's `id`, echoed; null when the request had none. */
  id: string | null;
  status: 'ok' | 'partial' | 'error';
  results: Array<Omit<PredictionMessage, 'schemaVersion' | 'requestId' | 'origin'>>;
  errors: ErrorMessage['errors'];
}

/** Message on the errors topic for a rejected input or record. */
export interface ErrorMessage {
  schemaVersion: number;
  source: 'mqtt' | 'inbox' | 'cli';
  requestId: string | null;
  origin: string;
  errors: Array<{ recordId: string; recordIndex: number; code: string; message: string }>;
  createdAt: string;
}
