import { gunzipSync } from 'node:zlib';

/** First two bytes of every gzip member (RFC 1952). */
export const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

/** True when `bytes` start with the gzip magic bytes 1f 8b. */
export function isGzip(bytes: Buffer): boolean {
  return bytes.length >= 2 && bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];
}

/** Outcome of `gunzipBounded`. */
export type GunzipResult =
  | { ok: true; bytes: Buffer }
  | { ok: false; code: 'PAYLOAD_TOO_LARGE' | 'CORRUPT_GZIP'; message: string };

/**
 * Decompresses a gzip buffer held in memory, such as an MQTT payload. zlib stops at
 * `maxBytes` of output, so a small payload that expands to gigabytes (a zip bomb) is rejected
 * with PAYLOAD_TOO_LARGE without allocating more. Corrupt or truncated data is CORRUPT_GZIP.
 */
export function gunzipBounded(compressed: Buffer, maxBytes: number): GunzipResult {
  try {
    return { ok: true, bytes: gunzipSync(compressed, { maxOutputLength: maxBytes }) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      return { ok: false, code: 'PAYLOAD_TOO_LARGE', message: `the decompressed payload is larger than the limit of ${maxBytes} bytes` };
    }
    return { ok: false, code: 'CORRUPT_GZIP', message: `the payload starts like gzip but does not decompress: ${(err as Error).message}` };
  }
}

/**
 * Checks an MQTT payload against `maxBytes` and decompresses it when it starts with the gzip
 * magic bytes, so the limit holds before and after decompression.
 */
export function unpackPayload(payload: Buffer, maxBytes: number): GunzipResult {
  if (payload.length > maxBytes) {
    return { ok: false, code: 'PAYLOAD_TOO_LARGE', message: `payload of ${payload.length} bytes exceeds the limit of ${maxBytes} bytes` };
  }
  return isGzip(payload) ? gunzipBounded(payload, maxBytes) : { ok: true, bytes: payload };
}
