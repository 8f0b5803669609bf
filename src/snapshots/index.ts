// Public surface of the snapshot layer (format v1, docs/formats/snapshot.md).
export { SnapshotStore, notFound, type SnapshotStoreOptions, type Family, type BlockData, type ChangedBlock } from './snapshot-store.js';
export { UploadSession, aggregateOf, type StartOptions } from './session.js';
export { uploadImage, uploadReadable, downloadSnapshot, type UploadImageOptions, type UploadResult, type DownloadOptions, type DownloadResult, type TransferProgress } from './transfer.js';
export { collectGarbage, type GcOptions, type GcResult } from './gc.js';
export { computeUsage, type UsageReport, type SnapshotUsage } from './usage.js';
export { DEFAULT_BLOCK_SIZE, FORMAT_VERSION, keys, type SnapshotRoot } from './format.js';
