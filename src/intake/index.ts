export {
  detectTextFormat,
  detectUnsupportedFormat,
  FastaLineParser,
  formatFasta,
  parseFasta,
  INPUT_RECORD_ID,
  INPUT_RECORD_INDEX,
  type ParsedRecords,
  type TextFormat,
} from './fasta';
export { FastqLineParser, formatFastq, parseFastq, type FastqRecord, type ParsedFastq } from './fastq';
export { gunzipBounded, isGzip, type GunzipResult } from './gzip';
export { LineSplitter, splitLines } from './lines';
export { inspectInboxFile, readRecordChunks, type InspectedFile } from './file-input';
export { hashResidues, normalizeSequence, type NormalizeResult } from './normalize';
export { prepareRecords } from './records';
export { parseJsonRecords, parseSequenceText } from './text';
export { InboxWatcher, PROCESSING_FOLDER, type InboxWatcherOptions } from './inbox';
export { DEFAULT_CHUNK_RECORDS, type InboxStore } from './processor';
export type { ErrorsFile, RecordError, ResultsFile, ResultsFileRecord } from './results';
