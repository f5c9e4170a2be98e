import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PAYLOAD_SCHEMA_VERSION } from '../contracts/topics';
import type { Logger } from '../log';
import type { VariantResponse, VariantService } from '../variants/service';

export interface HttpServerOptions {
  /** Address to listen on; 127.0.0.1 keeps the API on this machine. */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Largest accepted request body in bytes. */
  maxBodyBytes: number;
  variants: VariantService;
  /** Fields added to the `GET /healthz` reply. */
  health?: () => Record<string, unknown>;
  logger: Logger;
}

/** HTTP status of an error reply, by error code. Codes not listed are invalid input (400). */
const STATUS_BY_CODE: Record<string, number> = {
  PAYLOAD_TOO_LARGE: 413,
  TOO_MANY_VARIANTS: 422,
  INFERENCE_FAILED: 500,
  INTERNAL: 500,
};

/** Time that open keep-alive connections get to finish their request at stop(), in ms. */
const STOP_GRACE_MS = 2000;

/**
 * The JSON API: `POST /v1/variants` scores substitutions (see VariantService) and `GET /healthz`
 * reports that the daemon serves requests. Every reply is JSON, errors included, with the
 * status code of the first error.
 */
export class HttpServer {
  private readonly log: Logger;
  private server: Server | null = null;

  constructor(private readonly options: HttpServerOptions) {
    this.log = options.logger.child({ component: 'http' });
  }

  /** Starts listening and returns the bound address. Rejects when the port cannot be bound. */
  async start(): Promise<{ host: string; port: number }> {
    const server = createServer((request, response) => this.route(request, response));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.error({ err }, 'HTTP server error'));
    this.server = server;

    const address = server.address() as AddressInfo;
    this.log.info({ host: address.address, port: address.port }, 'HTTP server listening');
    return { host: address.address, port: address.port };
  }

  /** Stops accepting connections and closes open ones. Safe to call more than once. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;

    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const timer = setTimeout(() => server.closeAllConnections(), STOP_GRACE_MS);
    await closed;
    clearTimeout(timer);
    this.log.info('HTTP server stopped');
  }

  private route(request: IncomingMessage, response: ServerResponse): void {
    const path = (request.url ?? '/').split('?')[0];

    if (path === '/healthz') {
      if (request.method !== 'GET' && request.method !== 'HEAD') return this.methodNotAllowed(response, 'GET');
      this.send(response, 200, { status: 'ok', ...(this.options.health?.() ?? {}) });
      return;
    }
    if (path === '/v1/variants') {
      if (request.method !== 'POST') return this.methodNotAllowed(response, 'POST');
      this.readBody(request, response).then(
        async (body) => {
          if (body === null) return;
          const reply = await this.options.variants.handlePayload(body, this.options.maxBodyBytes);
          this.send(response, statusOf(reply), reply);
        },
        (err: unknown) => {
          this.log.warn({ err }, 'reading an HTTP request body failed');
          if (!response.headersSent) this.sendError(response, 400, 'INVALID_REQUEST', `reading the request body failed: ${(err as Error).message}`);
        },
      );
      return;
    }
    this.sendError(response, 404, 'INVALID_REQUEST', `no resource at ${path}; use POST /v1/variants or GET /healthz`);
  }

  /**
   * Reads the whole body, or replies 413 and returns null when it exceeds maxBodyBytes. The
   * connection of an oversized body is closed after the reply, so its rest is never read.
   */
  private readBody(request: IncomingMessage, response: ServerResponse): Promise<Buffer | null> {
    const limit = this.options.maxBodyBytes;
    const tooLarge = (): null => {
      response.setHeader('Connection', 'close');
      response.once('finish', () => request.destroy());
      this.sendError(response, 413, 'PAYLOAD_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`);
      return null;
    };

    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) return Promise.resolve(tooLarge());

    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let received = 0;
      request.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > limit) {
          request.removeAllListeners('data');
          request.pause();
          resolve(tooLarge());
          return;
        }
        chunks.push(chunk);
      });
      request.once('end', () => resolve(Buffer.concat(chunks)));
      request.once('error', reject);
    });
  }

  private methodNotAllowed(response: ServerResponse, allowed: string): void {
    response.setHeader('Allow', allowed);
    this.sendError(response, 405, 'INVALID_REQUEST', `method not allowed; use ${allowed}`);
  }

  private sendError(response: ServerResponse, status: number, code: string, message: string): void {
    this.send(response, status, { schemaVersion: PAYLOAD_SCHEMA_VERSION, id: null, status: 'error', errors: [{ recordId: 'request', recordIndex: 0, code, message }] });
  }

  private send(response: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    response.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
    response.end(text);
  }
}

function statusOf(reply: VariantResponse): number {
  if (reply.status === 'ok') return 200;
  return STATUS_BY_CODE[reply.errors[0]?.code ?? ''] ?? 400;
}
