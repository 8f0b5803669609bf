// `blockgate restore SNAPSHOT --to DISK`: recover a local disk from the object
// store (offline: the volume must not be served meanwhile). Full by default;
// --incremental writes only blocks whose content differs from what DISK holds.
// The store comes from --store (and S3 options / AWS_* env) or from the
// daemon config's `store:` section (--config). Progress bar on a TTY.
// For a lazy restore (serve at once, fill in the background) configure the
// stored volume with `restoreFrom: SNAPSHOT` instead (docs/stored-volumes.md).
import { Command, Option } from 'commander';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { silentLogger } from '../log.js';
import { loadConfig } from '../daemon/config.js';
import { openObjectStore } from '../object-store/open.js';
import { restoreToDisk } from '../restore/restore.js';
import { formatSize } from '../util/size.js';
import { openStore } from '../daemon/store.js';
import { createProgressBar } from './progress.js';

interface RestoreFlags {
  to: string;
  incremental?: boolean;
  volume?: string;
  store?: string;
  config?: string;
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  pathStyle?: boolean;
  concurrency: string;
  json?: boolean;
}

export function registerRestoreCommand(program: Command): void {
  program.command('restore')
    .description('restore a stored-volume snapshot onto a local disk (file or block device)')
    .argument('<snapshot>', 'snapshot id: vsnap-... (from `snapshot create`) or snap-... (a snapshot root)')
    .requiredOption('--to <disk>', 'target file (created if missing) or block device')
    .option('--incremental', 'read DISK and write only the blocks that differ from the snapshot')
    .option('--volume <name>', 'which volume of a multi-volume snapshot')
    .addOption(new Option('-s, --store <url>', 'object store: s3://bucket/prefix or file:///path').env('BLOCKGATE_STORE'))
    .option('-c, --config <file>', "take the object store from this daemon config's store: section")
    .option('--endpoint <url>', 'S3 endpoint URL (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)')
    .option('--region <region>', 'S3 region')
    .option('--access-key-id <id>', 'S3 access key id (default: AWS_ACCESS_KEY_ID)')
    .option('--secret-access-key <key>', 'S3 secret access key (default: AWS_SECRET_ACCESS_KEY)')
    .option('--path-style', 'path-style S3 addressing')
    .option('--concurrency <n>', 'parallel block fetches', '32')
    .option('--json', 'print the result as JSON')
    .action(async (snapshot: string, f: RestoreFlags) => {
      const concurrency = Number(f.concurrency);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, '--concurrency must be an integer in 1..256');
      let store;
      if (f.store) {
        store = await openObjectStore(f.store, {
          ...(f.endpoint ? { endpoint: f.endpoint } : {}), ...(f.region ? { region: f.region } : {}),
          ...(f.accessKeyId ? { accessKeyId: f.accessKeyId } : {}), ...(f.secretAccessKey ? { secretAccessKey: f.secretAccessKey } : {}),
          ...(f.pathStyle ? { forcePathStyle: true } : {}), maxConcurrency: Math.max(16, concurrency),
        });
      } else if (f.config) {
        const cfg = loadConfig(f.config);
        if (!cfg.store) throw new BlockgateError(ErrorCodes.CONFIG, `${f.config} has no store: section`);
        store = await openStore(cfg.store, silentLogger);
      } else {
        throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'no object store given: use --store URL, BLOCKGATE_STORE, or --config daemon.yaml');
      }
      const bar = createProgressBar(f.incremental ? 'restore (incremental)' : 'restore', !f.json);
      try {
        const r = await restoreToDisk(store, snapshot, f.to, {
          incremental: f.incremental ?? false, concurrency, ...(f.volume ? { volume: f.volume } : {}),
          onProgress: (p) => bar.update(p.doneBytes, p.totalBytes, `fetched ${formatSize(p.transferredBytes)}`),
        });
        bar.done();
        if (f.json) {
          process.stdout.write(JSON.stringify({ snapshot: r.snapshot, target: f.to, size: r.root.size, writtenBlocks: r.writtenBlocks, writtenBytes: r.writtenBytes, fetchedBlocks: r.fetchedBlocks, skippedBlocks: r.skippedBlocks, elapsedMs: r.elapsedMs }, null, 2) + '\n');
        } else {
          const secs = r.elapsedMs / 1000;
          process.stdout.write(`restored ${r.snapshot} (${formatSize(r.root.size)}) to ${f.to}: ${r.writtenBlocks} blocks written (${formatSize(r.writtenBytes)}), ${r.skippedBlocks} unchanged/zero skipped, ${secs.toFixed(1)} s (${formatSize(r.root.size / Math.max(secs, 0.001))}/s)\n`);
        }
      } finally {
        bar.done();
        await store.close();
      }
    });
}
