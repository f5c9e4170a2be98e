import type { OutboxMessage, OutboxRow } from '../contracts/store';
import { PAYLOAD_SCHEMA_VERSION, type ErrorMessage, type PredictionMessage, type ResponseMessage, type Topics } from '../contracts/topics';

/**
 * Lookup of the index of a job's record in its input, null when there is no such job. The daemon
 * never deletes jobs, so null only comes from a database edited by hand, and the error then gives
 * index 0.
 */
export type RecordIndexOf = (jobId: number) => number | null;

const CODE = 'REPLY_TOO_LARGE';

function parse(payload: string): unknown {
  try {
    return JSON.parse(payload) as unknown;
  } catch {
    return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isPredictionMessage(value: unknown): value is PredictionMessage {
  return isObject(value) && typeof value.jobId === 'number' && typeof value.recordId === 'string' && isObject(value.prediction);
}

function isResponseMessage(value: unknown): value is ResponseMessage {
  return isObject(value) && Array.isArray(value.results) && Array.isArray(value.errors) && typeof value.status === 'string';
}

/** Returns the error text for a `subject` ("reply", "prediction message") of `bytes` bytes over `limit`. */
function tooLargeText(subject: string, bytes: number, limit: number, jobIds: number[]): string {
  const stored = jobIds.length === 1 ? `job ${jobIds[0]}` : `jobs ${jobIds.join(', ')}`;
  return (
    `the ${subject} is ${bytes} bytes, larger than mqtt.maxPublishBytes (${limit}); the result is stored in the database (${stored}). ` +
    'Ask without "residues", send fewer or shorter sequences, or raise mqtt.maxPublishBytes up to the broker\'s packet limit'
  );
}

/**
 * Returns the message to publish in place of an outbox row that is larger than the broker takes.
 * A prediction on the predictions topic becomes a REPLY_TOO_LARGE error on the errors topic. A
 * reply to a request becomes an error reply on the same topic, with the same correlation data. It
 * lists each record's result as REPLY_TOO_LARGE beside the errors the reply already had. Every
 * other row returns null and is dropped. A variant reply is replaced before it reaches the outbox.
 */
export function oversizedReplacement(
  row: OutboxRow,
  bytes: number,
  limit: number,
  topics: Pick<Topics, 'predictions' | 'errors'>,
  recordIndexOf: RecordIndexOf,
  now: () => Date = () => new Date(),
): OutboxMessage | null {
  const message = parse(row.payload);

  if (row.topic === topics.predictions && isPredictionMessage(message)) {
    const error: ErrorMessage = {
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      source: message.source,
      requestId: message.requestId,
      origin: message.origin,
      errors: [
        {
          recordId: message.recordId,
          recordIndex: recordIndexOf(message.jobId) ?? 0,
          code: CODE,
          message: tooLargeText('prediction message', bytes, limit, [message.jobId]),
        },
      ],
      createdAt: now().toISOString(),
    };
    return { topic: topics.errors, payload: JSON.stringify(error), qos: row.qos, retain: false };
  }

  if (isResponseMessage(message) && message.results.length > 0) {
    const jobIds = message.results.map((result) => result.jobId);
    const text = tooLargeText('reply', bytes, limit, jobIds);
    const reply: ResponseMessage = {
      schemaVersion: PAYLOAD_SCHEMA_VERSION,
      id: message.id,
      status: 'error',
      results: [],
      errors: [
        ...message.errors,
        ...message.results.map((result) => ({ recordId: result.recordId, recordIndex: recordIndexOf(result.jobId) ?? 0, code: CODE, message: text })),
      ],
    };
    return { topic: row.topic, payload: JSON.stringify(reply), qos: row.qos, retain: row.retain, correlationData: row.correlationData ?? null };
  }
  return null;
}
