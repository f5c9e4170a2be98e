import type { ErrorMessage, PredictionMessage, ResponseMessage, Topics } from '../contracts/topics';
import { PAYLOAD_SCHEMA_VERSION } from '../contracts/topics';
import type { RejectedRecord } from '../contracts/jobs';
import type { InputRow, JobOutcome, JobRow, OutboxMessage } from '../contracts/store';
import type { Prediction } from '../contracts/prediction';

/** Builds the predictions-topic message for one finished job. */
export function predictionMessage(
  topics: Topics,
  job: JobRow,
  prediction: Prediction,
  details: { cached: boolean; latencyMs: number; createdAt: Date },
): OutboxMessage {
  const message: PredictionMessage = {
    schemaVersion: PAYLOAD_SCHEMA_VERSION,
    jobId: job.id,
    source: job.source,
    requestId: job.requestId,
    recordId: job.recordId,
    origin: job.origin,
    sequenceHash: job.sequenceHash,
    length: job.residues.length,
    changes: job.changes,
    cached: details.cached,
    latencyMs: details.latencyMs,
    createdAt: details.createdAt.toISOString(),
    prediction,
    ...(job.orf ? { orf: job.orf } : {}),
  };
  return { topic: topics.predictions, payload: JSON.stringify(message), qos: 1, retain: false };
}

/** Builds the errors-topic message for rejected records or failed jobs of one input. */
export function errorMessage(
  topics: Topics,
  input: { source: InputRow['source']; requestId: string | null; origin: string },
  errors: ErrorMessage['errors'],
  createdAt: Date,
): OutboxMessage {
  const message: ErrorMessage = {
    schemaVersion: PAYLOAD_SCHEMA_VERSION,
    source: input.source,
    requestId: input.requestId,
    origin: input.origin,
    errors,
    createdAt: createdAt.toISOString(),
  };
  return { topic: topics.errors, payload: JSON.stringify(message), qos: 1, retain: false };
}

/**
 * Builds the reply to an MQTT request once all its jobs are finished: every result and
 * every error, in record order, sent to the request's response topic.
 */
export function responseMessage(input: InputRow, outcomes: JobOutcome[], rejections: RejectedRecord[], fallbackTopic: string): OutboxMessage {
  const results: ResponseMessage['results'] = [];
  const errors: ResponseMessage['errors'] = rejections.map((rejection) => ({ ...rejection }));

  for (const outcome of outcomes) {
    if (outcome.status === 'done' && outcome.prediction) {
      results.push({
        jobId: outcome.jobId,
        source: input.source,
        recordId: outcome.recordId,
        sequenceHash: outcome.sequenceHash,
        length: outcome.length,
        changes: outcome.changes,
        cached: outcome.cached,
        latencyMs: outcome.latencyMs ?? 0,
        createdAt: outcome.finishedAt,
        prediction: outcome.prediction,
        ...(outcome.orf ? { orf: outcome.orf } : {}),
      });
    } else {
      errors.push({
        recordId: outcome.recordId,
        recordIndex: outcome.recordIndex,
        code: outcome.errorCode ?? 'INTERNAL',
        message: outcome.errorMessage ?? 'the job failed',
      });
    }
  }
  errors.sort((a, b) => a.recordIndex - b.recordIndex);

  let status: ResponseMessage['status'] = 'partial';
  if (errors.length === 0) status = 'ok';
  else if (results.length === 0) status = 'error';
  const message: ResponseMessage = { schemaVersion: PAYLOAD_SCHEMA_VERSION, id: input.requestId, status, results, errors };
  return {
    topic: input.replyTopic ?? fallbackTopic,
    payload: JSON.stringify(message),
    qos: 1,
    retain: false,
    correlationData: input.correlationData,
  };
}
