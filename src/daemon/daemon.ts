// The gateway daemon: assembles volumes → CheckedDevice → NBD exports →
// listeners from one validated config, in one readable function, and tears
// them down in reverse. States: starting → running → stopping → stopped.
// Invariant: on stop, listeners close first, in-flight requests finish and
// every device is flushed before it is closed.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BlockDevice } from '../block-device/block-device.js';
import { CheckedDevice } from '../block-device/checked-device.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { newExportCounters, type NbdExport } from '../nbd/export.js';
import { NbdServer } from '../nbd/server.js';
import { loadTlsConfig } from '../nbd/tls.js';
import { RawVolume } from '../volumes/raw.js';
import { packageVersion } from '../util/version.js';
import { AdminServer, type AdminRoute } from './admin-api.js';
import type { DaemonConfig, VolumeConfig } from './config.js';
import { MetricsRegistry } from './metrics.js';
import { startMetricsServer } from './metrics-server.js';
import { collectStatus, statusMetrics, type DaemonStatus, type StatusSource } from './status.js';

export interface RunningDaemon {
  readonly server: NbdServer;
  readonly exports: readonly NbdExport[];
  readonly addresses: readonly string[];
  readonly metricsAddress: string | undefined;
  status(): DaemonStatus;
  stop(): Promise<void>;
}

async function openVolume(v: VolumeConfig, logger: Logger): Promise<BlockDevice> {
  switch (v.mode) {
    case 'raw':
      // A new disk file may live in a directory that does not exist yet (e.g. the demo's var/).
      if (!existsSync(v.disk) && v.size !== undefined) mkdirSync(dirname(v.disk), { recursive: true });
      return RawVolume.open({ path: v.disk, ...(v.size !== undefined ? { size: v.size } : {}), readOnly: v.readOnly, logger });
  }
}

export async function startDaemon(config: DaemonConfig, logger: Logger): Promise<RunningDaemon> {
  const tls = config.tls ? loadTlsConfig(config.tls) : undefined;
  const exports: NbdExport[] = [];
  const closeAll = async (): Promise<void> => {
    for (const e of exports) await e.device.close().catch((err) => logger.error('close failed', { volume: e.name, err: errorMessage(err) }));
  };
  try {
    for (const v of config.volumes) {
      const device = new CheckedDevice(await openVolume(v, logger.child({ volume: v.name })), v.name);
      exports.push({ name: v.name, description: v.description, device, tls: v.tls, counters: newExportCounters() });
      logger.info('volume opened', { volume: v.name, mode: v.mode, size: device.size, disk: v.disk, readOnly: device.caps.readOnly });
    }
  } catch (err) {
    await closeAll();
    throw err;
  }
  const server = new NbdServer({ exports, logger, handshakeTimeoutMs: config.nbd.handshakeTimeoutMs, ...(tls ? { tls } : {}) });
  const addresses: string[] = [];
  try {
    for (const spec of config.listen) addresses.push(await server.listen(spec));
  } catch (err) {
    await server.close(0);
    await closeAll();
    throw err;
  }
  const statusSource: StatusSource = {
    version: packageVersion(), startedAt: new Date(), addresses, server, exports,
    modes: new Map(config.volumes.map((v) => [v.name, v.mode])),
  };
  const registry = new MetricsRegistry();
  registry.register(() => statusMetrics(statusSource));
  const routes: AdminRoute[] = [
    { method: 'GET', path: '/v1/status', handler: () => collectStatus(statusSource) },
  ];
  let admin: AdminServer | undefined;
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  try {
    admin = await AdminServer.start(config.admin.socket, routes, logger);
    if (config.metrics) metrics = await startMetricsServer(config.metrics.listen, registry, logger);
  } catch (err) {
    await admin?.close();
    await server.close(0);
    await closeAll();
    throw err;
  }
  let stopping: Promise<void> | undefined;
  return {
    server, exports, addresses,
    metricsAddress: metrics?.address,
    status: () => collectStatus(statusSource),
    stop: () => (stopping ??= (async () => {
      logger.info('stopping');
      await server.close(config.nbd.shutdownGraceMs);
      await metrics?.close();
      await admin?.close();
      await closeAll();
      logger.info('stopped');
    })()),
  };
}

/** Tells systemd (Type=notify) that the daemon is ready, when run under it. */
export function notifySystemd(state: string, logger: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  execFile('systemd-notify', [`--pid=${process.pid}`, state], (err) => {
    if (err) logger.warn('systemd-notify failed', { err: errorMessage(err) });
  });
}
