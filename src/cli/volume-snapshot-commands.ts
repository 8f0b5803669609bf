// Daemon-backed snapshot commands for stored volumes, added to the existing
// `blockgate snapshot` group (whose other commands are offline store tools):
//   snapshot create VOLUME... [--description T] [--no-wait] [--timeout 10m]
//   snapshot volume-list [--volume V]     user snapshots (volume-snapshots/ records)
//   snapshot volume-delete ID
// All go through the admin API (POST/GET/DELETE /v1/snapshots).
import type { Command } from 'commander';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { adminRequest } from '../daemon/admin-api.js';
import type { GroupView } from '../volumes/stored/coordinator.js';
import { durationArg } from './arguments.js';
import { addAdminSocketOptions, resolveAdminSocket, type AdminSocketOptions } from './status-command.js';

function render(g: GroupView): string {
  const members = g.members.map((m) => `${m.volume}${m.snapshot ? `=${m.snapshot}` : ''}`).join(' ');
  return `${g.id}  ${g.state.padEnd(8)} ${g.createdAt}  ${members}${g.description ? `  "${g.description}"` : ''}${g.error ? `  error: ${g.error}` : ''}\n`;
}

export function registerVolumeSnapshotCommands(program: Command): void {
  const snapshot = program.commands.find((c) => c.name() === 'snapshot') ?? program.command('snapshot').description('snapshots');

  addAdminSocketOptions(snapshot.command('create')
    .description('snapshot stored volumes through the running daemon (several volumes: one crash-consistent, all-or-nothing set)')
    .argument('<volume...>', 'stored volume name(s)'))
    .option('--description <text>', 'free text stored with the snapshot')
    .option('--no-wait', 'return once the snapshot markers are in the logs (the upload continues)')
    .option('--timeout <duration>', 'how long to wait for the upload', '1h')
    .option('--json', 'print the snapshot as JSON')
    .action(async (volumes: string[], opts: AdminSocketOptions & { description?: string; wait: boolean; timeout: string; json?: boolean }) => {
      const socket = resolveAdminSocket(opts);
      let g = (await adminRequest(socket, 'POST', '/v1/snapshots', { volumes, ...(opts.description ? { description: opts.description } : {}) })) as GroupView;
      if (opts.wait) {
        const deadline = Date.now() + durationArg(opts.timeout, '--timeout');
        while (g.state === 'pending' && Date.now() < deadline) {
          const left = Math.max(1, Math.min(30, Math.ceil((deadline - Date.now()) / 1000)));
          g = (await adminRequest(socket, 'GET', `/v1/snapshots/${g.id}?waitSeconds=${left}`)) as GroupView;
        }
      }
      process.stdout.write(opts.json ? JSON.stringify(g, null, 2) + '\n' : render(g));
      if (g.state === 'failed') throw new BlockgateError(ErrorCodes.SNAPSHOT_STATE, `snapshot ${g.id} failed: ${g.error ?? 'unknown error'}`);
      if (opts.wait && g.state === 'pending') throw new BlockgateError(ErrorCodes.STORE_TIMEOUT, `snapshot ${g.id} is still uploading after ${opts.timeout} (it continues in the daemon)`);
    });

  addAdminSocketOptions(snapshot.command('volume-list')
    .description('list snapshots of stored volumes (through the running daemon)'))
    .option('--volume <name>', 'only snapshots that include this volume')
    .option('--json', 'print JSON')
    .action(async (opts: AdminSocketOptions & { volume?: string; json?: boolean }) => {
      const q = opts.volume ? `?volume=${encodeURIComponent(opts.volume)}` : '';
      const r = (await adminRequest(resolveAdminSocket(opts), 'GET', `/v1/snapshots${q}`)) as { snapshots: GroupView[] };
      if (opts.json) process.stdout.write(JSON.stringify(r.snapshots, null, 2) + '\n');
      else process.stdout.write(r.snapshots.length === 0 ? 'no snapshots\n' : r.snapshots.map(render).join(''));
    });

  addAdminSocketOptions(snapshot.command('volume-delete')
    .description('delete a stored-volume snapshot (through the running daemon)')
    .argument('<id>', 'snapshot id (vsnap-...)'))
    .action(async (id: string, opts: AdminSocketOptions) => {
      await adminRequest(resolveAdminSocket(opts), 'DELETE', `/v1/snapshots/${encodeURIComponent(id)}`);
      process.stdout.write(`deleted ${id}\n`);
    });
}
