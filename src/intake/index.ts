export { detectTextFormat, detectUnsupportedFormat, formatFasta, parseFasta, INPUT_RECORD_ID, INPUT_RECORD_INDEX, type ParsedRecords, type TextFormat } from './fasta';
export { hashResidues, normalizeSequence, type NormalizeResult } from './normalize';
export { prepareRecords } from './records';
export { parseJsonRecords, parseSequenceText } from './text';
export { InboxWatcher, PROCESSING_FOLDER, type InboxWatcherOptions } from './inbox';
export type { InboxStore } from './processor';
export type { ErrorsFile, RecordError, ResultsFile, ResultsFileRecord } from './results';
