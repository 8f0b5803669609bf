// The gateway daemon: assembles volumes → CheckedDevice → NBD exports →
// listeners from one validated config, in one readable function, and tears
// them down in reverse. States: starting → running → stopping → stopped.
// Invariant: on stop, listeners close first, in-flight requests finish and
// every device is flushed before it is closed; stop is bounded by
// nbd.shutdownGrace (then every wait on the store or on write-log space
// fails, see cutOff) plus local I/O.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BlockDevice } from '../block-device/block-device.js';
import { CheckedDevice } from '../block-device/checked-device.js';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { newExportCounters, type NbdExport } from '../nbd/export.js';
import { NbdServer } from '../nbd/server.js';
import { loadTlsConfig } from '../nbd/tls.js';
import { RawVolume } from '../volumes/raw.js';
import { StoredRuntime } from '../volumes/stored/runtime.js';
import { CachedRuntime, persistedCachedVolumes } from '../volumes/cached/runtime.js';
import { packageVersion } from '../util/version.js';
import { applyTuning } from '../config/tuning.js';
import { claimUnixSocketPath } from '../util/unix-socket.js';
import { loadRuntimeVolumes, runtimeVolumeConfig, saveRuntimeVolume } from './runtime-volumes.js';
import { GatewayAgent } from '../control-plane/agent/agent.js';
import { AbortableObjectStore } from '../object-store/abortable.js';
import { BandwidthLimitedObjectStore } from '../object-store/bandwidth.js';
import { MeteredObjectStore } from '../object-store/metered.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { DaemonCommandHandler } from './command-handler.js';
import { AdminServer, type AdminRoute } from './admin-api.js';
import type { DaemonConfig, VolumeConfig } from './config.js';
import { DaemonMetrics, type VolumeMode } from './metrics.js';
import { startMetricsServer } from './metrics-server.js';
import { cachedRoutes } from './routes/cached.js';
import { storedRoutes } from './routes/stored.js';
import { collectStatus, type DaemonStatus, type StatusSource } from './status.js';
import { openStore } from './store.js';

export interface RunningDaemon {
  readonly server: NbdServer;
  readonly exports: readonly NbdExport[];
  readonly addresses: readonly string[];
  readonly metricsAddress: string | undefined;
  status(): DaemonStatus;
  stop(): Promise<void>;
}

/** Per-mode runtimes shared by the volumes of that mode (present whenever a store is configured; all use it). */
interface ModeRuntimes {
  stored?: StoredRuntime;
  cached?: CachedRuntime;
}

async function openVolume(v: VolumeConfig, logger: Logger, runtimes: ModeRuntimes): Promise<BlockDevice> {
  switch (v.mode) {
    case 'stored':
      if (!runtimes.stored) throw new BlockgateError(ErrorCodes.CONFIG, `volume ${v.name}: stored volumes need a store: section`);
      return runtimes.stored.openVolume(v, logger);
    case 'cached':
      return runtimes.cached!.openVolume(v, logger);
    case 'raw':
      // A new disk file may live in a directory that does not exist yet (e.g. the demo's var/).
      if (!existsSync(v.disk) && v.size !== undefined) mkdirSync(dirname(v.disk), { recursive: true });
      return RawVolume.open({ path: v.disk, ...(v.size !== undefined ? { size: v.size } : {}), readOnly: v.readOnly, logger });
  }
}

export async function startDaemon(config: DaemonConfig, logger: Logger): Promise<RunningDaemon> {
  // The data-path knobs, before anything that reads them (volumes, chunk caches, S3 stores) opens.
  applyTuning(config.tuning);
  const tls = config.tls ? loadTlsConfig(config.tls) : undefined;
  const exports: NbdExport[] = [];
  const runtimes: ModeRuntimes = {};
  let sharedStore: BandwidthLimitedObjectStore | undefined;
  let server: NbdServer | undefined;
  let admin: AdminServer | undefined;
  let metrics: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
  let agent: GatewayAgent | undefined;
  let storeSwitch: AbortableObjectStore | undefined;
  let cut = false;
  /**
   * The shutdown grace period is over: from now on nothing waits for what may
   * never come. Writes waiting for write-log space (only an upload frees it)
   * and every object store operation, in flight or later (an unreachable
   * store: retries, backoff sleeps, attempts), fail with SHUTTING_DOWN.
   */
  const cutOff = (): void => {
    if (cut) return;
    cut = true;
    logger.warn('shutdown grace period over: failing writes that wait for log space and every object store operation');
    for (const v of [...(runtimes.stored?.volumes.values() ?? []), ...(runtimes.cached?.volumes.values() ?? [])]) v.log.refuseAppends();
    storeSwitch?.abort('the daemon is stopping and its grace period is over');
  };
  /**
   * Closes whatever has been started, in reverse order of dependency; used by
   * stop() and by a failed start. Bounded: after `graceMs` cutOff() fails every
   * wait that depends on the store, and what remains is local I/O.
   */
  const teardown = async (graceMs: number): Promise<void> => {
    const deadline = setTimeout(cutOff, graceMs);
    try {
      await agent?.stop();
      await server?.close(graceMs, cutOff);
      await metrics?.close();
      await admin?.close();
      await runtimes.stored?.stopBackground();
      await runtimes.cached?.stopBackground();
      for (const e of exports) await e.device.close().catch((err) => logger.error('close failed', { volume: e.name, err: errorMessage(err) }));
      await runtimes.stored?.close();
      await runtimes.cached?.close();
      await sharedStore?.close().catch(() => undefined);
    } finally {
      clearTimeout(deadline);
    }
  };
  // Fail before opening volumes (which may take leases in the store) if another daemon owns the admin socket.
  await claimUnixSocketPath(config.admin.socket, 'admin.socket');
  // Volumes created at run time (admin API) were persisted under dataDir; they open after the configured ones.
  const volumes: VolumeConfig[] = [...config.volumes];
  const modes = new Map<string, string>();
  const addresses: string[] = [];
  let statusSource: StatusSource | undefined;
  // Metrics only when an endpoint is configured: without one, no request pays for observers.
  const meters = config.metrics ? new DaemonMetrics({
    status: () => collectStatus(statusSource!),
    stored: () => runtimes.stored?.statuses() ?? [],
    cached: () => runtimes.cached?.statuses() ?? [],
  }) : undefined;
  /** One mode's view of the shared store: metered per mode when metrics are on. */
  const storeFor = (store: ObjectStore, mode: VolumeMode): ObjectStore => (meters ? new MeteredObjectStore(store, meters.storeObserver(mode)) : store);
  /** The NBD export of a volume (with its request observer when metrics are on). */
  const newExport = (name: string, description: string | undefined, device: CheckedDevice, tls: NbdExport['tls'], mode: VolumeMode): NbdExport => ({
    name, description, device, tls, counters: newExportCounters(), ...(meters ? { observer: meters.nbdObserver(name, mode) } : {}),
  });
  try {
    if (config.store) {
      // One store for every mode, behind a bandwidth limit the control channel can change, and
      // behind a kill switch that teardown pulls when the shutdown grace period is over; each
      // mode sees it through its own metrics.
      sharedStore = new BandwidthLimitedObjectStore(storeSwitch = new AbortableObjectStore(await openStore(config.store, logger)));
      runtimes.stored = StoredRuntime.create(storeFor(sharedStore, 'stored'), logger.child({ mode: 'stored' }), { uploadWorkers: config.store.uploadWorkers });
      runtimes.cached = CachedRuntime.create(storeFor(sharedStore, 'cached'), logger.child({ mode: 'cached' }), { dataDir: config.dataDir, uploadWorkers: config.store.uploadWorkers });
      for (const v of [...persistedCachedVolumes(config.dataDir), ...loadRuntimeVolumes(config.dataDir)]) {
        if (volumes.some((x) => x.name === v.name)) logger.warn('run-time volume is also in the configuration; using the configuration', { volume: v.name });
        else volumes.push(v);
      }
    }
    for (const v of volumes) {
      const device = new CheckedDevice(await openVolume(v, logger.child({ volume: v.name }), runtimes), v.name);
      exports.push(newExport(v.name, v.description, device, v.tls, v.mode));
      modes.set(v.name, v.mode);
      logger.info('volume opened', { volume: v.name, mode: v.mode, size: device.size, disk: 'disk' in v ? v.disk : undefined, readOnly: device.caps.readOnly });
    }
    const nbd = new NbdServer({ exports, logger, handshakeTimeoutMs: config.nbd.handshakeTimeoutMs, ...(tls ? { tls } : {}) });
    server = nbd;
    for (const spec of config.listen) addresses.push(await nbd.listen(spec));
    const status: StatusSource = {
      version: packageVersion(), startedAt: new Date(), addresses, server: nbd, exports, modes, store: sharedStore,
      details: (name) => (runtimes.stored?.details(name) ?? runtimes.cached?.details(name)) as Record<string, unknown> | undefined,
    };
    statusSource = status;
    runtimes.cached?.setExportHooks((cfg, vol) => {
      const exp = newExport(cfg.name, cfg.description, new CheckedDevice(vol, cfg.name), cfg.tls, cfg.mode);
      nbd.addExport(exp);
      exports.push(exp);
      modes.set(cfg.name, cfg.mode);
    }, (name) => nbd.hasExport(name));

    /** Creates, serves and persists a volume at run time (admin API, control channel, restores). */
    const createVolume = async (body: Record<string, unknown>): Promise<unknown> => {
      const mode = body.mode ?? 'cached';
      if (mode === 'cached') {
        if (!runtimes.cached) throw new BlockgateError(ErrorCodes.CONFIG, 'this gateway has no store: section, so it cannot create cached volumes');
        return runtimes.cached.createVolume(body);
      }
      const cfg = runtimeVolumeConfig(body, config.dataDir, tls ? 'on' : 'off');
      if (nbd.hasExport(cfg.name)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `a volume named ${JSON.stringify(cfg.name)} is already served by this gateway`);
      const vlog = logger.child({ volume: cfg.name });
      const device = new CheckedDevice(await openVolume(cfg, vlog, runtimes), cfg.name);
      saveRuntimeVolume(config.dataDir, cfg);
      const exp = newExport(cfg.name, cfg.description, device, cfg.tls, cfg.mode);
      nbd.addExport(exp);
      exports.push(exp);
      modes.set(cfg.name, cfg.mode);
      vlog.info('volume created at run time', { mode: cfg.mode, size: device.size, disk: cfg.disk, restoreFrom: cfg.mode === 'stored' ? cfg.restoreFrom : undefined });
      return { name: cfg.name, mode: cfg.mode, size: device.size, disk: cfg.disk, ...(cfg.mode === 'stored' && cfg.restoreFrom ? { restoreFrom: cfg.restoreFrom } : {}) };
    };
    const restores = (): unknown => ({
      restores: exports.flatMap((e) => {
        const d = runtimes.stored?.details(e.name) as { restore?: unknown } | undefined;
        return d?.restore ? [{ volume: e.name, ...(d.restore as object) }] : [];
      }),
    });

    const routes: AdminRoute[] = [
      { method: 'GET', path: '/v1/status', handler: () => collectStatus(status) },
      // Any mode: cached volumes are created by the cached runtime, raw and stored ones here.
      { method: 'POST', path: '/v1/volumes', handler: (req) => createVolume(bodyObject(req.body)) },
      {
        method: 'POST', path: '/v1/restores',
        handler: (req) => {
          const b = bodyObject(req.body);
          if (typeof b.snapshot !== 'string' || typeof b.volume !== 'string') {
            throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'body must be {"snapshot": "vsnap-...|snap-...", "volume": "NAME", "size"?: ...}: the volume is served at once and filled lazily');
          }
          const { snapshot, volume, ...rest } = b;
          return createVolume({ ...rest, name: volume, mode: 'stored', fromSnapshot: snapshot });
        },
      },
      { method: 'GET', path: '/v1/restores', handler: restores },
      ...(runtimes.stored ? storedRoutes(runtimes.stored) : []),
      ...(runtimes.cached ? cachedRoutes(runtimes.cached) : []),
      // No store, no snapshots: the snapshot commands get that answer, not "no such endpoint".
      ...(config.store ? [] : noStoreSnapshotRoutes()),
    ];
    admin = await AdminServer.start(config.admin.socket, routes, logger);
    if (config.metrics && meters) metrics = await startMetricsServer(config.metrics.listen, meters, logger);
    await runtimes.stored?.start();
    await runtimes.cached?.start();

    if (config.control) {
      const c = config.control;
      const handler = new DaemonCommandHandler({
        modes, stored: () => runtimes.stored, cached: () => runtimes.cached, createVolume, store: sharedStore, logger: logger.child({ component: 'commands' }),
      });
      const started = await GatewayAgent.start({
        stateDir: c.stateDir, controlUrl: c.url, activationListen: c.activationListen, handler,
        logger: logger.child({ component: 'control' }), ...(c.ca ? { controlCa: readFileSync(c.ca) } : {}),
      });
      agent = started;
      status.gateway = () => started.status();
    }
  } catch (err) {
    await teardown(0);
    throw err;
  }
  let stopping: Promise<void> | undefined;
  const status = statusSource!;
  return {
    server: status.server, exports, addresses,
    metricsAddress: metrics?.address,
    status: () => collectStatus(status),
    stop: () => (stopping ??= (async () => {
      logger.info('stopping');
      await teardown(config.nbd.shutdownGraceMs);
      logger.info('stopped');
    })()),
  };
}

function bodyObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'request body must be a JSON object');
  return body as Record<string, unknown>;
}

/** The snapshot endpoints of a gateway without a store: every method answers CONFIG. */
function noStoreSnapshotRoutes(): AdminRoute[] {
  const handler = (): never => {
    throw new BlockgateError(ErrorCodes.CONFIG, 'this gateway has no store: section, so it has no snapshots (stored and cached volumes need one)');
  };
  return ['/v1/snapshots', '/v1/snapshots/:id', '/v1/volumes/:name/snapshots'].flatMap((path) =>
    (['GET', 'POST', 'DELETE'] as const).map((method) => ({ method, path, handler })));
}

/** Tells systemd (Type=notify) that the daemon is ready, when run under it. */
export function notifySystemd(state: string, logger: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  execFile('systemd-notify', [`--pid=${process.pid}`, state], (err) => {
    if (err) logger.warn('systemd-notify failed', { err: errorMessage(err) });
  });
}
