// `blockgate volume ...`: run-time volume operations through the running
// daemon's admin API (create a cached volume, from a snapshot or as a clone;
// snapshot a cached volume; list its snapshots; show its cache/log/upload/
// lease state).
import { Option, type Command } from 'commander';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { adminRequest } from '../daemon/admin-api.js';
import type { DaemonStatus } from '../daemon/status.js';
import { formatSize } from '../util/size.js';
import { durationArg, sizeArg } from './arguments.js';
import { addAdminSocketOptions, resolveAdminSocket, type AdminSocketOptions } from './status-command.js';

const size = sizeArg;

interface CreateOptions extends AdminSocketOptions {
  mode: string;
  size?: string;
  blockSize?: string;
  fromSnapshot?: string;
  clone?: string;
  cacheSize?: string;
  cacheDir?: string;
  logSize?: string;
  logDir?: string;
  description?: string;
  json?: boolean;
}

export function registerVolumeCommands(program: Command): void {
  const volume = program.command('volume').description('create and inspect volumes of the running daemon (admin API)');

  addAdminSocketOptions(
    volume.command('create <name>')
      .description('create a volume at run time and serve it at once (it persists across daemon restarts)'),
  )
    .addOption(new Option('--mode <mode>', 'volume mode').choices(['cached']).default('cached'))
    .option('--size <size>', 'size of a new empty volume (e.g. 20GiB)')
    .option('--block-size <size>', 'snapshot block size of a new empty volume (64KiB..4MiB, default 512KiB)')
    .option('--from-snapshot <id>', 'create the volume from this snapshot (snap-... or vsnap-...); blocks are fetched on first read')
    .option('--clone <volume>', "clone a volume: from its latest snapshot (taken now when it is a cached volume of this gateway)")
    .option('--cache-size <size>', 'chunk cache size (default 1GiB)')
    .option('--cache-dir <dir>', 'chunk cache directory (default DATADIR/volumes/NAME/cache)')
    .option('--log-size <size>', 'write log size (default 1GiB)')
    .option('--log-dir <dir>', 'write log directory (default DATADIR/volumes/NAME/log)')
    .option('--description <text>', 'export description')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, opts: CreateOptions) => {
      if (opts.fromSnapshot && opts.clone) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'give --from-snapshot or --clone, not both');
      if (!opts.size && !opts.fromSnapshot && !opts.clone) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'give --size for a new empty volume, or --from-snapshot / --clone');
      const cacheSize = opts.cacheSize ? size(opts.cacheSize, '--cache-size') : undefined;
      const logSize = opts.logSize ? size(opts.logSize, '--log-size') : undefined;
      const body: Record<string, unknown> = {
        name, mode: opts.mode,
        ...(opts.size ? { size: size(opts.size, '--size') } : {}),
        ...(opts.blockSize ? { blockSize: size(opts.blockSize, '--block-size') } : {}),
        ...(opts.fromSnapshot ? { fromSnapshot: opts.fromSnapshot } : {}),
        ...(opts.clone ? { cloneOf: opts.clone } : {}),
        ...(opts.description ? { description: opts.description } : {}),
        ...(opts.cacheDir ? { cache: { dir: opts.cacheDir, size: cacheSize ?? 1024 ** 3 } } : cacheSize ? { cacheSize } : {}),
        ...(opts.logDir ? { writeLog: { dir: opts.logDir, size: logSize ?? 1024 ** 3 } } : logSize ? { logSize } : {}),
      };
      const res = (await adminRequest(resolveAdminSocket(opts), 'POST', '/v1/volumes', body)) as { name: string; size: number; fromSnapshot: string | null; root: string | null };
      process.stdout.write(opts.json ? JSON.stringify(res, null, 2) + '\n'
        : `volume ${res.name} created (${formatSize(res.size)}${res.fromSnapshot ? `, from ${res.fromSnapshot}` : ''}); serving it now\n`);
    });

  addAdminSocketOptions(
    volume.command('snapshot <name>').description('snapshot a cached volume: the volume as of now, kept until deleted (prints the snapshot id)'),
  )
    .option('--description <text>', 'stored with the snapshot')
    .option('--wait <duration>', 'wait this long for the snapshot to be durable in the store (e.g. 10m; a number = seconds)', '600')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, opts: AdminSocketOptions & { description?: string; wait: string; json?: boolean }) => {
      const wait = durationArg(opts.wait, '--wait') / 1000;
      const res = (await adminRequest(resolveAdminSocket(opts), 'POST', `/v1/volumes/${encodeURIComponent(name)}/snapshots`, {
        waitSeconds: wait, ...(opts.description ? { description: opts.description } : {}),
      })) as { id: string; state: string };
      if (opts.json) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
      else if (res.state === 'complete') process.stdout.write(`${res.id}\n`);
      else throw new BlockgateError(ErrorCodes.STORE_TIMEOUT, `snapshot of ${name} is not durable yet after ${wait} s (${res.id}); it completes when the upload does`);
    });

  addAdminSocketOptions(volume.command('snapshots <name>').description('list the snapshots of a cached volume'))
    .option('--json', 'print as JSON')
    .action(async (name: string, opts: AdminSocketOptions & { json?: boolean }) => {
      const res = (await adminRequest(resolveAdminSocket(opts), 'GET', `/v1/volumes/${encodeURIComponent(name)}/snapshots`)) as { snapshots: Array<{ id: string; createdAt: string; description: string | null }> };
      if (opts.json) { process.stdout.write(JSON.stringify(res, null, 2) + '\n'); return; }
      for (const s of res.snapshots) process.stdout.write(`${s.id}  ${s.createdAt}  ${s.description ?? ''}\n`);
    });

  addAdminSocketOptions(volume.command('status <name>').description("a volume's mode-specific state: cache hit ratio and bytes, write log, uploads, lease"))
    .option('--json', 'print as JSON')
    .action(async (name: string, opts: AdminSocketOptions & { json?: boolean }) => {
      const s = (await adminRequest(resolveAdminSocket(opts), 'GET', '/v1/status')) as DaemonStatus;
      const v = s.volumes.find((x) => x.name === name);
      if (!v) throw new BlockgateError(ErrorCodes.OBJECT_NOT_FOUND, `no volume named ${name} on this gateway`);
      if (opts.json) { process.stdout.write(JSON.stringify(v, null, 2) + '\n'); return; }
      process.stdout.write(renderVolumeDetails(v.name, v.mode, v.size, v.details));
    });
}

/** Text form of a volume's details (cached volumes in full; other modes as JSON). */
export function renderVolumeDetails(name: string, mode: string, volSize: number, details: Record<string, unknown> | undefined): string {
  let out = `volume ${name}: ${mode}, ${formatSize(volSize)}\n`;
  if (!details) return out;
  if (mode !== 'cached') return out + JSON.stringify(details, null, 2) + '\n';
  const d = details as {
    root: { id: string; createdAt: string } | null; fenced: boolean; family: string; origin: string | null;
    cache: { hits: number; misses: number; hitRatio: number; bytesCached: number; capacityBytes: number; evictions: number; fetchErrors: number };
    log: { usedBytes: number; capacityBytes: number; waitingWriters: number; records: number };
    upload: { state: string; lagSeconds: number; lagBytes: number; uploadedBytes: number; lastError: string | null; throughputBytesPerSec: number };
    lease: { epoch: number; state: string; renewFailures: number };
  };
  out += `  live root   ${d.root ? `${d.root.id} (${d.root.createdAt})` : 'none (all zeros)'}; family ${d.family}${d.origin ? `, from ${d.origin}` : ''}\n`;
  out += `  cache       ${formatSize(d.cache.bytesCached)} of ${formatSize(d.cache.capacityBytes)}; hit ratio ${(d.cache.hitRatio * 100).toFixed(1)}% (${d.cache.hits} hits, ${d.cache.misses} misses); ${d.cache.evictions} evictions${d.cache.fetchErrors ? `; ${d.cache.fetchErrors} fetch errors` : ''}\n`;
  out += `  write log   ${formatSize(d.log.usedBytes)} of ${formatSize(d.log.capacityBytes)}; ${d.log.records} records${d.log.waitingWriters ? `; ${d.log.waitingWriters} writers WAITING (log full)` : ''}\n`;
  out += `  upload      ${d.upload.state}; lag ${d.upload.lagSeconds} s / ${formatSize(d.upload.lagBytes)}; ${formatSize(d.upload.throughputBytesPerSec)}/s; ${formatSize(d.upload.uploadedBytes)} uploaded${d.upload.lastError ? `; last error: ${d.upload.lastError}` : ''}\n`;
  out += `  lease       epoch ${d.lease.epoch}, ${d.fenced ? 'FENCED (another gateway took over; writes refused)' : d.lease.state}${d.lease.renewFailures ? `; ${d.lease.renewFailures} renewal failures` : ''}\n`;
  return out;
}
