// Runs the BlockDevice compliance suite on StoredVolume (local disk + write
// log, fs object store): bare, and under StoredRuntime with the uploader
// shadowing every change into the store while the suite runs. Reopen opens
// the same disk and log again (redo).
import { blockDeviceCompliance } from './compliance.js';
import { storedFactory } from './volume-factories.js';

const MiB = 1024 * 1024;

blockDeviceCompliance('StoredVolume (disk + write log)', storedFactory(), { size: 32 * MiB, reopenReadOnly: false });
blockDeviceCompliance('StoredVolume under StoredRuntime (uploads on)', storedFactory({ uploads: true }), { size: 32 * MiB, reopenReadOnly: false });
