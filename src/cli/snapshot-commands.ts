// `blockgate snapshot ...` and `blockgate gc`: offline snapshot tools that
// talk straight to an object store (no daemon). Every command takes the store
// options, --json and --help; human output goes to stdout, progress (TTY
// only) and errors to stderr. Expected failures (BlockgateError: unknown
// snapshot, access denied, unreachable store, corrupt block, bad argument)
// print one line `blockgate: <message> [<code>]` and exit 1 — no stack trace.
// State per invocation: open store → run → close store.
import { basename } from 'node:path';
import { Command, Option } from 'commander';
import { BlockgateError, ErrorCodes, isBlockgateError } from '../errors.js';
import { Logger, silentLogger } from '../log.js';
import { openObjectStore, type OpenObjectStoreOptions } from '../object-store/open.js';
import type { ObjectStore } from '../object-store/object-store.js';
import {
  SnapshotStore, collectGarbage, computeUsage, downloadSnapshot, uploadImage, type SnapshotRoot,
} from '../snapshots/index.js';
import { formatSize, parseSize } from '../util/size.js';
import { durationArg } from './arguments.js';
import { createProgressBar } from './progress.js';

interface StoreFlags {
  store?: string;
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  pathStyle?: boolean;
  concurrency?: string;
  json?: boolean;
  verbose?: boolean;
}

function addStoreOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('-s, --store <url>', 'object store: s3://bucket/prefix or file:///path').env('BLOCKGATE_STORE'))
    .option('--endpoint <url>', 'S3 endpoint URL (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)')
    .option('--region <region>', 'S3 region (default: AWS_REGION, else us-east-1)')
    .option('--access-key-id <id>', 'S3 access key id (default: AWS_ACCESS_KEY_ID)')
    .option('--secret-access-key <key>', 'S3 secret access key (default: AWS_SECRET_ACCESS_KEY)')
    .option('--path-style', 'use path-style S3 addressing (default when --endpoint is set)')
    .option('--concurrency <n>', 'parallel object-store requests', '32')
    .option('--json', 'machine-readable JSON output on stdout')
    .option('-v, --verbose', 'log to stderr');
}

function parseCount(text: string | undefined, name: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `--${name} must be an integer in 1..256, got ${JSON.stringify(text)}`);
  return n;
}

async function withStore<T>(flags: StoreFlags, fn: (snaps: SnapshotStore, store: ObjectStore) => Promise<T>): Promise<T> {
  if (!flags.store) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'no object store given: use --store s3://bucket/prefix or --store file:///path (or BLOCKGATE_STORE)');
  const logger = flags.verbose ? new Logger({ level: 'info', format: 'text' }) : silentLogger;
  const opts: OpenObjectStoreOptions = {
    logger,
    retry: { maxAttempts: 5, deadlineMs: 60_000 },
    timeoutMs: 60_000,
    ...(flags.endpoint !== undefined ? { endpoint: flags.endpoint } : {}),
    ...(flags.region !== undefined ? { region: flags.region } : {}),
    ...(flags.accessKeyId !== undefined ? { accessKeyId: flags.accessKeyId } : {}),
    ...(flags.secretAccessKey !== undefined ? { secretAccessKey: flags.secretAccessKey } : {}),
    ...(flags.pathStyle ? { forcePathStyle: true } : {}),
  };
  const store = await openObjectStore(flags.store, opts);
  const concurrency = parseCount(flags.concurrency, 'concurrency', 32);
  try {
    return await fn(new SnapshotStore(store, { logger, concurrency }), store);
  } finally {
    await store.close().catch(() => {});
  }
}

/** Runs a command body; expected errors become one line + exit code 1. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      if (!isBlockgateError(err)) throw err;
      const cmd = args[args.length - 1] as Command;
      const json = (cmd.opts() as StoreFlags).json;
      if (json) process.stdout.write(JSON.stringify({ error: { code: err.code, message: err.message } }) + '\n');
      process.stderr.write(`blockgate: ${err.message} [${err.code}]\n`);
      process.exitCode = 1;
    }
  };
}

function out(flags: StoreFlags, json: unknown, human: () => string): void {
  process.stdout.write(flags.json ? JSON.stringify(json, null, 2) + '\n' : human());
}

function table(rows: string[][], rightAlign: Set<number> = new Set()): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((v, c) => (rightAlign.has(c) ? v.padStart(widths[c]!) : v.padEnd(widths[c]!))).join('  ').trimEnd()).join('\n') + '\n';
}

function defaultVolumeName(image: string): string {
  const base = basename(image).replace(/\.(img|raw|bin|iso|qcow2|disk)$/i, '').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return (base || 'volume').slice(0, 128);
}

function ranges(indexes: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < indexes.length;) {
    let j = i;
    while (j + 1 < indexes.length && indexes[j + 1] === indexes[j]! + 1) j++;
    parts.push(i === j ? `${indexes[i]}` : `${indexes[i]}-${indexes[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

function describeRoot(r: SnapshotRoot): Record<string, unknown> {
  return {
    id: r.id, volume: r.volume, parent: r.parent, createdAt: r.createdAt, size: r.size, blockSize: r.blockSize,
    blocks: r.stats.blocks, newBlocks: r.stats.newBlocks, changedBlocks: r.changedBlocks,
    uploadedBytes: r.stats.uploadedBytes, storedBytes: r.stats.storedBytes, shards: r.shards.length,
    ...(r.description ? { description: r.description } : {}),
  };
}

export function registerSnapshotCommands(program: Command): void {
  const snapshot = program.command('snapshot').description('upload, download, list, inspect and delete block snapshots in an object store');

  addStoreOptions(snapshot.command('upload')
    .description('upload a raw image file or block device as a new snapshot; prints its id')
    .argument('<image>', 'raw image file or block device')
    .option('--parent <id>', 'incremental: only blocks that differ from this snapshot are sent')
    .option('--volume <name>', 'volume (snapshot family) name; default: the parent\'s, else the image file name')
    .option('--block-size <size>', 'block size of a new volume: 64KiB..4MiB, power of two (default 512KiB; an existing volume keeps its own)')
    .option('--description <text>', 'free text stored in the snapshot'))
    .action(action(async (image: string, flags: StoreFlags & { parent?: string; volume?: string; blockSize?: string; description?: string }) => {
      const blockSize = flags.blockSize === undefined ? undefined : parseSize(flags.blockSize);
      if (flags.blockSize !== undefined && blockSize === undefined) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `invalid --block-size ${JSON.stringify(flags.blockSize)}`);
      await withStore(flags, async (snaps) => {
        const bar = createProgressBar('upload', !flags.json);
        const volume = flags.volume ?? (flags.parent ? undefined : defaultVolumeName(image));
        const res = await uploadImage(snaps, image, {
          ...(volume !== undefined ? { volume } : {}),
          ...(flags.parent !== undefined ? { parent: flags.parent } : {}),
          ...(blockSize !== undefined ? { blockSize } : {}),
          ...(flags.description !== undefined ? { description: flags.description } : {}),
          onProgress: (p) => bar.update(p.doneBytes, p.totalBytes, `sent ${formatSize(p.transferredBytes)}`),
        });
        bar.done();
        out(flags, { ...describeRoot(res.root), zeroBlocks: res.zeroBlocks, unchangedBlocks: res.unchangedBlocks, elapsedMs: res.elapsedMs }, () => `${res.root.id}\n`);
        if (!flags.json) {
          process.stderr.write(`uploaded ${res.root.id} (volume ${res.root.volume}, ${formatSize(res.root.size)}): ${res.changedBlocks} changed block(s), ` +
            `${formatSize(res.uploadedBytes)} sent, ${formatSize(res.storedBytes)} stored, ${(res.elapsedMs / 1000).toFixed(1)}s\n`);
        }
      });
    }));

  addStoreOptions(snapshot.command('download')
    .description('restore a snapshot to a file (created/truncated, sparse) or block device')
    .argument('<id>', 'snapshot id')
    .argument('<target>', 'file or block device')
    .option('--incremental', 'read the target and write only blocks that differ from the snapshot'))
    .action(action(async (id: string, target: string, flags: StoreFlags & { incremental?: boolean }) => {
      await withStore(flags, async (snaps) => {
        const bar = createProgressBar('download', !flags.json);
        const res = await downloadSnapshot(snaps, id, target, {
          incremental: flags.incremental ?? false,
          onProgress: (p) => bar.update(p.doneBytes, p.totalBytes, `fetched ${formatSize(p.transferredBytes)}`),
        });
        bar.done();
        out(flags, { id, target, size: res.root.size, writtenBlocks: res.writtenBlocks, writtenBytes: res.writtenBytes, fetchedBlocks: res.fetchedBlocks, skippedBlocks: res.skippedBlocks, elapsedMs: res.elapsedMs },
          () => `restored ${id} to ${target} (${formatSize(res.root.size)}): ${res.writtenBlocks} block(s) written (${formatSize(res.writtenBytes)}), ${res.skippedBlocks} skipped, ${(res.elapsedMs / 1000).toFixed(1)}s\n`);
      });
    }));

  addStoreOptions(snapshot.command('list')
    .description('list snapshots, oldest first')
    .option('--volume <name>', 'only this volume'))
    .action(action(async (flags: StoreFlags & { volume?: string }) => {
      await withStore(flags, async (snaps) => {
        const roots = await snaps.list(flags.volume);
        out(flags, roots.map(describeRoot), () => roots.length === 0 ? 'no snapshots\n' : table([
          ['ID', 'VOLUME', 'SIZE', 'BLOCKS', 'NEW', 'PARENT', 'CREATED'],
          ...roots.map((r) => [r.id, r.volume, formatSize(r.size), String(r.stats.blocks), String(r.stats.newBlocks), r.parent ?? '-', r.createdAt]),
        ], new Set([2, 3, 4])));
      });
    }));

  addStoreOptions(snapshot.command('show')
    .description('show one snapshot')
    .argument('<id>', 'snapshot id'))
    .action(action(async (id: string, flags: StoreFlags) => {
      await withStore(flags, async (snaps) => {
        const r = await snaps.getRoot(id);
        const d = describeRoot(r);
        out(flags, { ...d, aggregateChecksum: r.aggregateChecksum, encryption: r.encryption, format: r.format, version: r.version }, () =>
          `id:            ${r.id}\nvolume:        ${r.volume}\nparent:        ${r.parent ?? '-'}\ncreated:       ${r.createdAt}\n` +
          `size:          ${formatSize(r.size)} (${r.size} bytes)\nblock size:    ${formatSize(r.blockSize)}\n` +
          `blocks:        ${r.stats.blocks} non-zero (${formatSize(r.stats.blocks * r.blockSize)})\n` +
          `new vs parent: ${r.stats.newBlocks} block(s)\nchanged:       ${r.changedBlocks} block(s) put in its upload\n` +
          `uploaded:      ${formatSize(r.stats.uploadedBytes)} (${formatSize(r.stats.storedBytes)} stored)\nshards:        ${r.shards.length}\n` +
          `format:        ${r.format} v${r.version}\n${r.description ? `description:   ${r.description}\n` : ''}`);
      });
    }));

  addStoreOptions(snapshot.command('diff')
    .description('list the blocks that differ between two snapshots')
    .argument('<a>', 'first snapshot id')
    .argument('<b>', 'second snapshot id'))
    .action(action(async (a: string, b: string, flags: StoreFlags) => {
      await withStore(flags, async (snaps) => {
        const ra = await snaps.getRoot(a);
        const changed: Array<{ index: number; first: string | null; second: string | null }> = [];
        for await (const c of snaps.listChangedBlocks(a, b)) changed.push(c);
        const idx = changed.map((c) => c.index);
        out(flags, { a, b, blockSize: ra.blockSize, changedBlocks: changed.length, changedBytes: changed.length * ra.blockSize, blocks: changed }, () =>
          `${changed.length} block(s) differ (${formatSize(changed.length * ra.blockSize)} at ${formatSize(ra.blockSize)} per block)\n${idx.length ? `blocks: ${ranges(idx)}\n` : ''}`);
      });
    }));

  addStoreOptions(snapshot.command('delete')
    .description('delete a snapshot (children keep working; space is reclaimed by gc after --grace)')
    .argument('<id>', 'snapshot id'))
    .action(action(async (id: string, flags: StoreFlags) => {
      await withStore(flags, async (snaps) => {
        await snaps.delete(id);
        out(flags, { deleted: id }, () => `deleted ${id}\n`);
      });
    }));

  addStoreOptions(snapshot.command('usage')
    .description('space per snapshot: unique and shared blocks, what deleting it would free')
    .option('--volume <name>', 'only this volume'))
    .action(action(async (flags: StoreFlags & { volume?: string }) => {
      await withStore(flags, async (snaps) => {
        const u = await computeUsage(snaps, flags.volume);
        const t = u.totals;
        out(flags, u, () => table([
          ['ID', 'VOLUME', 'SIZE', 'BLOCKS', 'EXCLUSIVE', 'SHARED', 'NEW', 'FREED IF DELETED'],
          ...u.snapshots.map((s) => [s.id, s.volume, formatSize(s.size), String(s.blocks), String(s.exclusiveBlocks), String(s.sharedBlocks), String(s.newBlocks), formatSize(s.freedOnDelete)]),
        ], new Set([2, 3, 4, 5, 6, 7])) +
          `store: ${t.storedBlocks} block object(s), ${formatSize(t.storedBlockBytes)} stored for ${formatSize(t.logicalBytes)} of snapshots; ` +
          `${formatSize(t.unreferencedBytes)} unreferenced (gc reclaims it after the grace period)\n`);
      });
    }));

  addStoreOptions(program.command('gc')
    .description('delete block and shard objects no snapshot references (safe while uploads run)')
    .option('--grace <duration>', 'keep unreferenced objects younger than this (and deleted snapshots for this long)', '1h')
    .option('--dry-run', 'report what would be deleted, delete nothing'))
    .action(action(async (flags: StoreFlags & { grace: string; dryRun?: boolean }) => {
      const graceMs = durationArg(flags.grace, '--grace');
      await withStore(flags, async (snaps) => {
        const r = await collectGarbage(snaps, { graceMs, dryRun: flags.dryRun ?? false });
        out(flags, r, () =>
          `${r.dryRun ? 'would delete' : 'deleted'} ${r.sweptBlocks} block(s) (${formatSize(r.sweptBlockBytes)}) and ${r.sweptShards} shard(s) (${formatSize(r.sweptShardBytes)}); ` +
          `${r.expiredTrash} deleted snapshot(s) expired; kept ${r.markedBlocks} referenced block(s) of ${r.liveSnapshots} snapshot(s), ` +
          `${r.keptYoungObjects} unreferenced object(s) younger than the cutoff; ${r.activeSessions} upload(s) in progress\n`);
      });
    }));
}
