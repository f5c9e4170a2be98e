import type Database from 'better-sqlite3';
import type { NewVariantRequest, OutboxMessage, StoredVariantRequest, VariantRequestRow } from '../contracts/store';
import type { VariantRequestRecord } from './migrations';

/** The reply to a variant request and the messages that publish it, committed together. */
export interface VariantAnswer {
  /** The reply as JSON. */
  reply: string;
  publications: OutboxMessage[];
}

/** Adds outbox rows inside the caller's transaction. */
type AddPublications = (publications: OutboxMessage[], createdAt: string) => void;

/** Wraps a transaction body so that it ends by enforcing the outbox bound. */
type Bounded = <A extends unknown[], R>(body: (...args: A) => R) => (...args: A) => R;

/** Prepares the statements of `variant_requests`. All values are bound parameters. */
export function prepareVariantStatements(db: Database.Database) {
  return {
    requestById: db.prepare<[number], VariantRequestRecord>('SELECT * FROM variant_requests WHERE id = ?'),
    requestIdByKey: db.prepare<[string], number>('SELECT id FROM variant_requests WHERE request_key = ?').pluck(),
    redeliveredRequestId: db.prepare<[number, string, string], number>(
      'SELECT id FROM variant_requests WHERE packet_id = ? AND payload_hash = ? AND created_at >= ? ORDER BY id DESC LIMIT 1',
    ).pluck(),
    insertRequest: db.prepare<[Omit<VariantRequestRecord, 'id' | 'attempts'>]>(
      `INSERT INTO variant_requests (request_key, request_id, origin, payload, payload_hash, packet_id, reply_topic, correlation_data,
         status, reply, created_at, finished_at)
       VALUES (@request_key, @request_id, @origin, @payload, @payload_hash, @packet_id, @reply_topic, @correlation_data,
         @status, @reply, @created_at, @finished_at)`,
    ),
    pendingRequests: db.prepare<[], VariantRequestRecord>(`SELECT * FROM variant_requests WHERE status = 'pending' ORDER BY id`),
    addAttempt: db.prepare<[number], number>(
      `UPDATE variant_requests SET attempts = attempts + 1 WHERE id = ? AND status = 'pending' RETURNING attempts`,
    ).pluck(),
    releaseAttempt: db.prepare<[number]>(
      `UPDATE variant_requests SET attempts = attempts - 1 WHERE id = ? AND status = 'pending' AND attempts > 0`,
    ),
    pruneAnswered: db.prepare<[string]>(`DELETE FROM variant_requests WHERE status = 'answered' AND finished_at < ?`),
    markAnswered: db.prepare<[{ id: number; reply: string; finished_at: string }]>(
      `UPDATE variant_requests SET status = 'answered', reply = @reply, finished_at = @finished_at WHERE id = @id AND status = 'pending'`,
    ),

    // A packet id names the last message the broker delivered under it, on any topic.
    setPacketId: db.prepare<[number, number]>('UPDATE variant_requests SET packet_id = ? WHERE id = ?'),
    forgetPacketIdOfOthers: db.prepare<[number, number]>('UPDATE variant_requests SET packet_id = NULL WHERE packet_id = ? AND id <> ?'),
    forgetPacketId: db.prepare<[number]>('UPDATE variant_requests SET packet_id = NULL WHERE packet_id = ?'),
    forgetPredictionDelivery: db.prepare<[number]>('DELETE FROM mqtt_deliveries WHERE packet_id = ?'),
    clearPacketIds: db.prepare('UPDATE variant_requests SET packet_id = NULL WHERE packet_id IS NOT NULL'),
  };
}

export type VariantStatements = ReturnType<typeof prepareVariantStatements>;

/** Statements and transaction functions of `variant_requests`, which exist only while the store is open. */
export interface VariantRequestTransactions {
  statements: VariantStatements;
  store: Database.Transaction<(request: NewVariantRequest, redeliverySince: Date | null, answer: VariantAnswer | null) => StoredVariantRequest>;
  answer: Database.Transaction<(id: number, answer: VariantAnswer) => boolean>;
}

/** Prepares the statements and transactions of `variant_requests` on an open connection. */
export function prepareVariantRequests(
  db: Database.Database,
  options: { clock: () => Date; addPublications: AddPublications; bounded: Bounded },
): VariantRequestTransactions {
  const statements = prepareVariantStatements(db);
  const { clock, addPublications, bounded } = options;
  return {
    statements,
    store: db.transaction(
      bounded((request: NewVariantRequest, redeliverySince: Date | null, answer: VariantAnswer | null) =>
        storeInTransaction(statements, addPublications, clock().toISOString(), request, redeliverySince, answer),
      ),
    ),
    answer: db.transaction(
      bounded((id: number, answer: VariantAnswer) => answerInTransaction(statements, addPublications, clock().toISOString(), id, answer)),
    ),
  };
}

/**
 * Stores a request, or finds the stored request it repeats. A repeat has the same key (same id
 * and payload hash). When `redeliverySince` is set, a repeat may also be the request delivered
 * under the same packet id with the same payload hash at or after that time. With `answer`, a
 * new request is stored answered and its messages are added to the outbox.
 */
function storeInTransaction(
  statements: VariantStatements,
  addPublications: AddPublications,
  now: string,
  request: NewVariantRequest,
  redeliverySince: Date | null,
  answer: VariantAnswer | null,
): StoredVariantRequest {
  const existingId = statements.requestIdByKey.get(request.requestKey) ?? findRedelivery(statements, request, redeliverySince);
  if (existingId !== undefined) {
    if (request.packetId !== null) claimPacketId(statements, request.packetId, existingId);
    return { request: readRequest(statements, existingId), inserted: false };
  }

  const id = Number(
    statements.insertRequest.run({
      request_key: request.requestKey,
      request_id: request.requestId,
      origin: request.origin,
      payload: answer === null ? request.payload : null,
      payload_hash: request.payloadHash,
      packet_id: request.packetId,
      reply_topic: request.replyTopic,
      correlation_data: request.correlationData,
      status: answer === null ? 'pending' : 'answered',
      reply: answer?.reply ?? null,
      created_at: now,
      finished_at: answer === null ? null : now,
    }).lastInsertRowid,
  );
  if (request.packetId !== null) claimPacketId(statements, request.packetId, id);
  if (answer !== null) addPublications(answer.publications, now);
  return { request: readRequest(statements, id), inserted: true };
}

function answerInTransaction(statements: VariantStatements, addPublications: AddPublications, now: string, id: number, answer: VariantAnswer): boolean {
  if (statements.markAnswered.run({ id, reply: answer.reply, finished_at: now }).changes === 0) {
    if (statements.requestById.get(id) === undefined) throw new Error(`cannot answer variant request ${id}: request not found`);
    return false;
  }
  addPublications(answer.publications, now);
  return true;
}

function findRedelivery(statements: VariantStatements, request: NewVariantRequest, redeliverySince: Date | null): number | undefined {
  if (request.packetId === null || redeliverySince === null) return undefined;
  return statements.redeliveredRequestId.get(request.packetId, request.payloadHash, redeliverySince.toISOString());
}

/**
 * Records that the broker last delivered the request `id` under `packetId`, and clears the
 * packet id from every other stored request, prediction requests included. A broker reuses a
 * packet id only after the earlier message under it was acknowledged, so that message can no
 * longer be redelivered.
 */
function claimPacketId(statements: VariantStatements, packetId: number, id: number): void {
  statements.forgetPacketIdOfOthers.run(packetId, id);
  statements.forgetPredictionDelivery.run(packetId);
  statements.setPacketId.run(packetId, id);
}

function readRequest(statements: VariantStatements, id: number): VariantRequestRow {
  const record = statements.requestById.get(id);
  if (record === undefined) throw new Error(`variant request ${id} not found after it was stored`);
  return toVariantRequestRow(record);
}

export function toVariantRequestRow(record: VariantRequestRecord): VariantRequestRow {
  return {
    id: record.id,
    requestKey: record.request_key,
    requestId: record.request_id,
    origin: record.origin,
    payload: record.payload,
    payloadHash: record.payload_hash,
    packetId: record.packet_id,
    replyTopic: record.reply_topic,
    correlationData: record.correlation_data,
    status: record.status,
    attempts: record.attempts,
    reply: record.reply,
    createdAt: record.created_at,
    finishedAt: record.finished_at,
  };
}
