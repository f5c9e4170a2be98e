import { request as httpRequest } from 'node:http';
import path from 'node:path';
import pino from 'pino';
import { PrefixCache } from '../../src/cache/prefix-cache';
import { HttpServer } from '../../src/http/server';
import { InferenceEngine } from '../../src/inference/engine';
import { VariantService, type VariantResponse } from '../../src/variants/service';
import { UBIQUITIN_HUMAN } from '../support/proteins';

const SMOKE_MODEL_DIR = path.join(__dirname, '..', 'fixtures', 'model-smoke');
const MAX_BODY_BYTES = 4096;

describe('HTTP variant API', () => {
  let engine: InferenceEngine;
  let server: HttpServer;
  let base: string;

  beforeAll(async () => {
    const logger = pino({ level: 'silent' });
    engine = new InferenceEngine({ modelDir: SMOKE_MODEL_DIR, intraOpThreads: 1, logger });
    await engine.start();
    const variants = new VariantService({
      engine,
      cache: new PrefixCache({ maxBytes: 8 * 1024 * 1024, blockSize: 16 }),
      limits: { maxPayloadBytes: MAX_BODY_BYTES, minLength: 10, maxVariants: 2000 },
      logger,
    });
    server = new HttpServer({ host: '127.0.0.1', port: 0, maxBodyBytes: MAX_BODY_BYTES, variants, logger, health: () => ({ modelId: engine.modelId }) });
    const { port } = await server.start();
    base = `http://127.0.0.1:${port}`;
  });

  afterAll(async () => {
    await server.stop();
    await engine.stop();
  });

  async function post(body: string): Promise<{ status: number; reply: VariantResponse }> {
    const response = await fetch(`${base}/v1/variants`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    return { status: response.status, reply: (await response.json()) as VariantResponse };
  }

  test('healthz answers ok', async () => {
    const response = await fetch(`${base}/healthz`);

    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.json()).toEqual({ status: 'ok', modelId: engine.modelId });
  });

  test('variants are scored', async () => {
    const { status, reply } = await post(JSON.stringify({ id: 'ubq', sequence: UBIQUITIN_HUMAN, variants: ['K48R', 'I44A:L8A', 'K48K'] }));

    expect(status).toBe(200);
    expect(reply.status).toBe('ok');
    expect(reply.id).toBe('ubq');
    expect(reply.modelId).toBe(engine.modelId);
    expect(reply.length).toBe(UBIQUITIN_HUMAN.length);
    expect(reply.variants?.map((variant) => variant.variant)).toEqual(['K48R', 'I44A:L8A', 'K48K']);
    expect(reply.variants?.[1].substitutions).toEqual([
      { position: 8, from: 'L', to: 'A' },
      { position: 44, from: 'I', to: 'A' },
    ]);
    expect(reply.variants?.[0].llr).not.toBe(0);
    expect(Math.abs(reply.variants?.[2].llr ?? Number.NaN)).toBeLessThan(1e-4);
    expect(reply.variants?.[0].logLikelihood).toBeCloseTo((reply.wildType?.logLikelihood ?? 0) + (reply.variants?.[0].llr ?? 0), 9);
    expect(reply.variants?.[0].prediction?.localization.top).toHaveLength(5);
    expect(reply.wildType?.prediction.modelId).toBe(engine.modelId);
  });

  test('all substitutions without predictions', async () => {
    const sequence = UBIQUITIN_HUMAN.slice(0, 20) + 'X' + UBIQUITIN_HUMAN.slice(21, 30);
    const { status, reply } = await post(JSON.stringify({ sequence, variants: 'all', options: { predictions: false } }));

    expect(status).toBe(200);
    expect(reply.skippedPositions).toEqual([21]);
    expect(reply.variants).toHaveLength(29 * 19);
    expect(reply.variants?.[0].prediction).toBeUndefined();
    expect(reply.variants?.[0].variant).toBe('M1A');
  });

  test('bad variants are rejected by name', async () => {
    const { status, reply } = await post(JSON.stringify({ id: 7, sequence: UBIQUITIN_HUMAN, variants: ['K48R', 'A48G', 'K48Z', 'K99R', 'K48R:K48A', '48R'] }));

    expect(status).toBe(400);
    expect(reply.status).toBe('error');
    expect(reply.id).toBe('7');
    expect(reply.errors.map((error) => [error.recordIndex, error.code])).toEqual([
      [1, 'INVALID_VARIANT'],
      [2, 'INVALID_VARIANT'],
      [3, 'INVALID_VARIANT'],
      [4, 'INVALID_VARIANT'],
      [5, 'INVALID_VARIANT'],
    ]);
    expect(reply.errors[0].message).toBe('variant "A48G": residue 48 of the sequence is K, not A');
    expect(reply.errors[1].message).toMatch(/^variant "K48Z": "Z" is not one of the 20 standard amino acids/);
    expect(reply.errors[2].message).toBe('variant "K99R": position 99 is outside the sequence, whose residues are numbered 1 to 76');
    expect(reply.errors[3].message).toBe('variant "K48R:K48A": position 48 is changed more than once');
    expect(reply.errors[4].message).toMatch(/^variant "48R": "48R" is not a substitution/);
  });

  test('invalid JSON is a 400', async () => {
    const { status, reply } = await post('{"sequence": ');

    expect(status).toBe(400);
    expect(reply.errors[0].code).toBe('INVALID_JSON');
  });

  test('missing variants field is a 400', async () => {
    const { status, reply } = await post(JSON.stringify({ sequence: UBIQUITIN_HUMAN }));

    expect(status).toBe(400);
    expect(reply.errors[0].code).toBe('INVALID_REQUEST');
    expect(reply.errors[0].message).toMatch(/"variants" must be "all" or a non-empty list/);
  });

  test('invalid sequence is a 400', async () => {
    const { status, reply } = await post(JSON.stringify({ sequence: 'MKV1!', variants: ['M1A'] }));

    expect(status).toBe(400);
    expect(reply.errors[0].code).toBe('INVALID_RESIDUE');
  });

  test('too many variants is a 422', async () => {
    const { status, reply } = await post(JSON.stringify({ sequence: 'M'.repeat(120), variants: 'all' }));

    expect(status).toBe(422);
    expect(reply.errors[0].code).toBe('TOO_MANY_VARIANTS');
  });

  test('oversized body is a 413', async () => {
    const { status, reply } = await post(JSON.stringify({ sequence: 'M'.repeat(MAX_BODY_BYTES), variants: ['M1A'] }));

    expect(status).toBe(413);
    expect(reply.errors[0].code).toBe('PAYLOAD_TOO_LARGE');
  });

  test('oversized chunked body is a 413', async () => {
    // Without Content-Length the limit applies while the body streams in.
    const status = await new Promise<number>((resolve, reject) => {
      const request = httpRequest(`${base}/v1/variants`, { method: 'POST', headers: { 'Transfer-Encoding': 'chunked' } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      request.on('error', reject);
      for (let chunk = 0; chunk < 4; chunk++) request.write('M'.repeat(MAX_BODY_BYTES / 2));
      request.end();
    });

    expect(status).toBe(413);
  });

  test('wrong method is a 405', async () => {
    const response = await fetch(`${base}/v1/variants`);

    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
  });

  test('unknown path is a 404', async () => {
    const response = await fetch(`${base}/v1/unknown`, { method: 'POST', body: '{}' });

    expect(response.status).toBe(404);
    expect(((await response.json()) as VariantResponse).status).toBe('error');
  });
});
