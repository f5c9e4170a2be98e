/**
 * Stable error codes. The same code appears on the errors topic, in the database
 * (`jobs.error_code`, `rejections.code`), in `failed/` error files and in the README.
 */
export const ERROR_CODES = {
  EMPTY_INPUT: 'no sequence records found in the input',
  INVALID_JSON: 'the payload looks like JSON but does not parse',
  INVALID_REQUEST: 'the request object is missing a field or has a field of the wrong type',
  INVALID_FASTA: 'the input is not valid FASTA',
  INVALID_FASTQ: 'a FASTQ record is not four lines of title, sequence, "+" and quality of equal length',
  INVALID_RESIDUE: 'the sequence contains characters that are not amino-acid letters',
  EMPTY_SEQUENCE: 'the record has no residues',
  SEQUENCE_TOO_SHORT: 'the sequence is shorter than the minimum length',
  PAYLOAD_TOO_LARGE: 'the message or file is larger than the configured limit',
  UNSUPPORTED_FORMAT: 'the input format is not supported',
  CORRUPT_GZIP: 'the input starts with the gzip magic bytes but is corrupt or truncated',
  INVALID_VARIANT: 'a variant is malformed, lies outside the sequence, names the wrong wild-type residue or changes a position twice',
  TOO_MANY_VARIANTS: 'the variant request lists more variants than variants.maxVariants allows',
  NO_ORF_FOUND: 'the DNA or RNA record has no open reading frame of the minimum length on either strand',
  REPLY_TOO_LARGE: 'the reply is larger than mqtt.maxPublishBytes, so an error reply goes out in its place',
  INFERENCE_FAILED: 'the model failed on this sequence',
  QUARANTINED: 'the sequence failed inference in every allowed attempt (queue.maxAttempts), so it is not retried',
  INTERNAL: 'an unexpected error; see the log',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** An error with a stable code, safe to show to the sender of the input. */
export class InputError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'InputError';
  }
}
