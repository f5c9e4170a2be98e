import type { PredictOptions } from './prediction';

/** Source of a sequence: an MQTT request, an inbox file or the command line. */
export type JobSource = 'mqtt' | 'inbox' | 'cli';

/** One sequence record as parsed from an input, before normalization. */
export interface SequenceRecord {
  /** FASTA identifier (first word of the header), or the request id, or `record-<n>`. */
  recordId: string;
  /** Rest of the FASTA header line; empty when there is none. */
  description: string;
  /** Residues as received (may contain whitespace, lower case, `*`). */
  rawSequence: string;
  /** 0-based position of the record in its input. */
  index: number;
  /** Request options of the record, from a JSON request or inbox record. */
  options?: PredictOptions;
}

/** A sequence after normalization, ready for the model. */
export interface NormalizedSequence {
  /** Upper-case residues, non-standard letters mapped to X. */
  residues: string;
  /** Hex SHA-256 of `residues`. */
  sequenceHash: string;
  /** Human-readable notes on what normalization changed, e.g. "removed trailing *". */
  changes: string[];
}

/** Reply routing of an MQTT request, kept with its jobs so a restart can still reply. */
export interface ReplyRoute {
  /** Topic of the reply: the request's MQTT 5 response topic, or the default response topic. */
  responseTopic: string;
  /** Base64 of the MQTT 5 correlation data, when the request carried it. */
  correlationData?: string;
}

/** An input (one MQTT message or one inbox file or one CLI file) before it is stored. */
export interface NewInput {
  source: JobSource;
  /** Idempotency key: the same input stored twice maps to the same row. */
  inputKey: string;
  /** Request id from the MQTT payload, or null. */
  requestId: string | null;
  /** File name for inbox inputs (base name only), or the MQTT topic. */
  origin: string;
  reply: ReplyRoute | null;
}

/** Location of an ORF job's protein in its DNA or RNA record. */
export interface OrfOrigin {
  /** Record id of the DNA or RNA record the ORF was found in. */
  parentRecordId: string;
  /** 0-based position of that record in its input. */
  parentRecordIndex: number;
  /** 1-based number of the ORF within its record, in the order of `start`. */
  orfNumber: number;
  /** `+` for the sequence as given, `-` for its reverse complement. */
  strand: '+' | '-';
  /** Reading frame 1 to 3 on `strand`, counted from that strand's 5' end. */
  frame: 1 | 2 | 3;
  /** First nucleotide, 1-based on the forward strand. On the `-` strand it is the ORF's 3' end. */
  start: number;
  /** Last nucleotide, 1-based and inclusive on the forward strand, stop codon included. */
  end: number;
  /** False when the ORF runs to the sequence end without a stop codon. */
  hasStopCodon: boolean;
  /** Length of the parent record in nucleotides, after normalization. */
  nucleotideLength: number;
  /** NCBI genetic code (translation table) used for the translation. */
  geneticCode: number;
}

/** A valid record of an input, to become a job. */
export interface NewJob {
  recordId: string;
  /**
   * 0-based position of the record in its input. An ORF job has a synthetic index above
   * ORF_RECORD_INDEX_BASE (see intake/orf-jobs.ts), because the jobs of an input need distinct
   * indexes and one DNA record can give many ORFs.
   */
  recordIndex: number;
  description: string;
  sequence: NormalizedSequence;
  /** Present when the protein was translated from an ORF of a DNA or RNA record. */
  orf?: OrfOrigin;
  /** Request options that change the prediction; absent for none. */
  options?: PredictOptions;
}

/** A record rejected during parsing or validation. */
export interface RejectedRecord {
  recordId: string;
  recordIndex: number;
  code: string;
  message: string;
}

export type JobStatus = 'pending' | 'running' | 'done' | 'failed';
export type InputStatus = 'open' | 'finished';
