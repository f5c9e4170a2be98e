export { Store, type CompletedJob, type RequestDelivery, type StoreOptions } from './store';
export { databaseFile, DATABASE_FILE_NAME } from './db';
export { JobStateError, StoreOpenError } from './errors';
export { MIGRATIONS, type PredictionViewRecord } from './migrations';
export type { VariantAnswer } from './variant-requests';
