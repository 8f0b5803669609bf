// `blockgate status`: asks the running daemon (admin API) what it is doing.
import type { Command } from 'commander';
import { adminRequest } from '../daemon/admin-api.js';
import { DEFAULT_ADMIN_SOCKET, loadConfig } from '../daemon/config.js';
import type { DaemonStatus, DataPaths } from '../daemon/status.js';
import { formatSize } from '../util/size.js';

export interface AdminSocketOptions {
  adminSocket?: string;
  config?: string;
}

/** The admin socket named by --admin-socket, else by --config's admin.socket, else $BLOCKGATE_ADMIN_SOCKET, else the default. */
export function resolveAdminSocket(opts: AdminSocketOptions): string {
  if (opts.adminSocket) return opts.adminSocket;
  if (opts.config) return loadConfig(opts.config).admin.socket;
  return process.env.BLOCKGATE_ADMIN_SOCKET ?? DEFAULT_ADMIN_SOCKET;
}

export function addAdminSocketOptions(cmd: Command): Command {
  return cmd
    .option('--admin-socket <path>', `daemon admin socket (default: $BLOCKGATE_ADMIN_SOCKET or ${DEFAULT_ADMIN_SOCKET})`)
    .option('-c, --config <file>', 'find the admin socket in this daemon config');
}

function duration(seconds: number): string {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return [d ? `${d}d` : '', h ? `${h}h` : '', m ? `${m}m` : '', `${s}s`].filter(Boolean).slice(0, 2).join(' ');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

type Details = {
  log?: { usedBytes: number; capacityBytes: number; waitingWriters?: number };
  upload?: { state?: string; lagSeconds?: number; lagBytes?: number; throughputBytesPerSec?: number };
  root?: { createdAt?: string } | null;
  restore?: { totalBlocks: number; restoredBlocks: number } | null;
  cache?: { hitRatio: number; bytesCached: number; capacityBytes: number };
};

/** One line of what a stored or cached volume is doing: log use, upload lag (RPO), cache, restore. */
function describeDetails(raw: Record<string, unknown>): string {
  const d = raw as Details;
  const parts: string[] = [];
  if (d.log) {
    parts.push(`log ${formatSize(d.log.usedBytes)}/${formatSize(d.log.capacityBytes)}${d.log.waitingWriters ? ` (${d.log.waitingWriters} writes waiting: log full)` : ''}`);
  }
  if (d.upload) {
    const u = d.upload;
    parts.push(`upload ${u.state ?? '?'}, lag ${u.lagSeconds ?? 0}s/${formatSize(u.lagBytes ?? 0)}${u.throughputBytesPerSec ? ` at ${formatSize(u.throughputBytesPerSec)}/s` : ''}`);
  }
  if (d.cache) parts.push(`cache ${formatSize(d.cache.bytesCached)}/${formatSize(d.cache.capacityBytes)}, hit ratio ${(100 * d.cache.hitRatio).toFixed(1)}%`);
  if (d.restore && d.restore.totalBlocks > 0) {
    parts.push(`restoring ${d.restore.restoredBlocks}/${d.restore.totalBlocks} blocks (${((100 * d.restore.restoredBlocks) / d.restore.totalBlocks).toFixed(1)}%)`);
  }
  if (d.root?.createdAt) parts.push(`last snapshot ${d.root.createdAt}`);
  return parts.join('; ');
}

/** One line naming the implementation of each hot path (docs/tuning.md). */
function describeDataPaths(p: DataPaths): string {
  return [
    p.nativeAddon.loaded ? 'native addon loaded' : 'native addon NOT loaded (zero/trim emulated)',
    `crc32c ${p.crc32c}`,
    `sha256 ${p.sha256}`,
    p.nowaitMax > 0 ? `RWF_NOWAIT up to ${formatSize(p.nowaitMax)}` : 'RWF_NOWAIT off',
    p.s3DirectRequests === 'none' ? 'no S3 store' : `S3 direct requests ${p.s3DirectRequests}`,
  ].join(', ');
}

export function renderStatus(s: DaemonStatus): string {
  let out = `blockgate ${s.version} (pid ${s.pid}), up ${duration(s.uptimeSeconds)}\n`;
  out += `listening on ${s.listeners.join(', ')}\n`;
  if (s.dataPaths) out += `data paths: ${describeDataPaths(s.dataPaths)}\n`;
  if (s.gateway) {
    const g = s.gateway;
    out += `gateway: ${g.state}${g.name ? ` as ${g.name}` : ''}${g.account ? ` (account ${g.account})` : ''}, control ${g.controlUrl} ${g.connected ? 'connected' : 'not connected'}, ${g.commandsApplied} command(s) applied\n`;
  }
  out += '\n';
  out += table([
    ['VOLUME', 'MODE', 'SIZE', 'CONNS', 'REQUESTS', 'READ', 'WRITTEN', 'ERRORS'],
    ...s.volumes.map((v) => [
      v.name + (v.readOnly ? ' (ro)' : ''), v.mode, formatSize(v.size), String(v.connections),
      String(Object.values(v.requests).reduce((a, b) => a + b, 0)), formatSize(v.bytesRead), formatSize(v.bytesWritten), String(v.errors),
    ]),
  ]);
  const detailLines = s.volumes.flatMap((v) => (v.details ? [`${v.name}: ${describeDetails(v.details)}`] : []));
  if (detailLines.length > 0) out += '\n' + detailLines.join('\n') + '\n';
  if (s.connections.length > 0) {
    out += '\n' + table([
      ['CONN', 'REMOTE', 'EXPORT', 'PHASE', 'TLS', 'REQUESTS', 'IN-FLIGHT', 'READ', 'WRITTEN'],
      ...s.connections.map((c) => [
        `#${c.id}`, c.remote, c.export ?? '-', c.phase, c.tls ? 'yes' : 'no', String(c.requests), String(c.inFlight),
        formatSize(c.bytesRead), formatSize(c.bytesWritten),
      ]),
    ]);
  } else {
    out += '\nno clients connected\n';
  }
  return out;
}

export function registerStatusCommand(program: Command): void {
  addAdminSocketOptions(
    program.command('status').description('show what the running gateway is doing: volumes, connections, traffic'),
  )
    .option('--json', 'print the raw status as JSON')
    .action(async (opts: AdminSocketOptions & { json?: boolean }) => {
      const status = (await adminRequest(resolveAdminSocket(opts), 'GET', '/v1/status')) as DaemonStatus;
      process.stdout.write(opts.json ? JSON.stringify(status, null, 2) + '\n' : renderStatus(status));
    });
}
