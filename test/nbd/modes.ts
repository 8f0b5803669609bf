// One daemon, every volume mode: the NBD client suites (nbdsh, nbdinfo,
// nbdcopy, qemu, protocol-raw) start one daemon per file whose config holds
// each of their volumes three times, as a raw, a stored and a cached export
// (`raw-NAME`, `stored-NAME`, `cached-NAME`, all on one fs object store),
// and run each case per mode (describe.each(MODES)).
//
// Mode-specific checks go through `content()`: the bytes a volume holds, as
// its own durable copy has them: the disk file for raw and stored (a write
// reaches the disk before it is acknowledged), and for cached a fresh read
// path that does not touch the daemon's log or cache: once the log is
// drained, the live root is downloaded from the store into a file.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { adminRequest } from '../../src/daemon/admin-api.js';
import type { DaemonStatus } from '../../src/daemon/status.js';
import { FsObjectStore } from '../../src/object-store/fs.js';
import { SnapshotStore, downloadSnapshot } from '../../src/snapshots/index.js';
import { startDaemon, tempDir, type DaemonHandle, type StartDaemonOptions } from '../harness/daemon.js';
import { waitFor } from '../harness/nbd-tools.js';

export const MODES = ['raw', 'stored', 'cached'] as const;
export type Mode = (typeof MODES)[number];

export interface BaseVolume {
  /** Base name: the exports are raw-NAME, stored-NAME, cached-NAME. */
  name: string;
  size: string;
  description?: string;
}

/**
 * What each mode's device can do, from its BlockDevice capabilities:
 * truthful extents (else BLOCK_STATUS answers one data extent), and fast
 * zero (every writable export advertises FAST_ZERO; without it such a
 * request fails with ENOTSUP).
 */
export const MODE_CAPS: Record<Mode, { extents: boolean; fastZero: boolean }> = {
  raw: { extents: true, fastZero: true },
  // StoredVolume.capabilities(): extents false, fastZero false
  // (src/volumes/stored/stored-volume.ts). Over NBD: BLOCK_STATUS answers one
  // data extent (CheckedDevice's emulation), FAST_ZERO fails with ENOTSUP
  // (docs/nbd.md: "with FAST_ZERO it fails at once with ENOTSUP unless the
  // device can zero quickly").
  stored: { extents: false, fastZero: false },
  // docs/cached-volumes.md: block status reports holes for blocks neither
  // the root nor the log hold; fast zero is native (a log record).
  cached: { extents: true, fastZero: true },
};

export function exportName(mode: Mode, base: string): string {
  return `${mode}-${base}`;
}

export interface ModesDaemon {
  /** The running daemon (a new handle after restart()). */
  readonly d: DaemonHandle;
  readonly dir: string;
  uri(mode: Mode, base: string): string;
  /** Path of the raw or stored volume's disk file. */
  diskPath(mode: 'raw' | 'stored', base: string): string;
  /** Waits until the volume's write log holds no record the store lacks (stored and cached). */
  drained(mode: 'stored' | 'cached', base: string): Promise<void>;
  /** The volume's bytes from its own durable copy (see the file comment). */
  content(mode: Mode, base: string): Promise<Buffer>;
  /** A user snapshot of a stored or cached volume through the admin API (waits until complete); its snap-... id. */
  snapshot(mode: 'stored' | 'cached', base: string): Promise<string>;
  /** The bytes of snapshot `id`, downloaded from the store. */
  snapshotContent(id: string): Promise<Buffer>;
  /** Stops the daemon (expects exit 0) and starts it again on the same config and state. */
  restart(): Promise<void>;
  /** Stops the daemon (expects exit 0) and removes the directory. */
  close(): Promise<number | null>;
}

/** The daemon config entries for `v` in every mode, under `dir`. */
function volumeEntries(dir: string, v: BaseVolume): Array<Record<string, unknown>> {
  const common = (mode: Mode): Record<string, unknown> => ({
    name: exportName(mode, v.name), mode, size: v.size, ...(v.description !== undefined ? { description: v.description } : {}),
  });
  return [
    { ...common('raw'), disk: join(dir, 'disks', `raw-${v.name}.img`) },
    {
      ...common('stored'), disk: join(dir, 'disks', `stored-${v.name}.img`), blockSize: '64KiB', uploadInterval: '200ms',
      writeLog: { dir: join(dir, 'log', `stored-${v.name}`), size: '256MiB' },
    },
    {
      ...common('cached'), blockSize: '64KiB', uploadInterval: '200ms',
      cache: { dir: join(dir, 'cache', `cached-${v.name}`), size: '64MiB' },
      writeLog: { dir: join(dir, 'log', `cached-${v.name}`), size: '256MiB' },
    },
  ];
}

/**
 * Starts one daemon serving every volume of `volumes` in every mode, plus
 * `extra` config entries (e.g. a read-only raw volume) after them.
 */
export async function startModesDaemon(prefix: string, volumes: BaseVolume[], options: {
  extra?: (dir: string) => Array<Record<string, unknown>>;
  config?: Record<string, unknown>;
  start?: StartDaemonOptions;
} = {}): Promise<ModesDaemon> {
  const dir = tempDir(prefix);
  let d: DaemonHandle;
  let config: Record<string, unknown>;
  try {
    config = {
      dataDir: join(dir, 'data'),
      store: { url: join(dir, 'store') },
      volumes: [...volumes.flatMap((v) => volumeEntries(dir, v)), ...(options.extra?.(dir) ?? [])],
      ...options.config,
    };
    d = await startDaemon(config, { dir, timeoutMs: 90_000, ...options.start });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  async function status(name: string): Promise<{ size: number; log?: { records: number }; root?: { id: string } | null }> {
    const st = (await adminRequest(d.adminSocket, 'GET', '/v1/status')) as DaemonStatus;
    const v = st.volumes.find((x) => x.name === name);
    if (!v) throw new Error(`no volume ${name} in the daemon's status`);
    return { size: v.size, ...(v.details as { log?: { records: number }; root?: { id: string } | null } | undefined) };
  }

  async function download(id: string, size: number): Promise<Buffer> {
    const file = join(dir, `fresh-${id}.img`);
    const store = await FsObjectStore.open(join(dir, 'store'));
    try {
      await downloadSnapshot(new SnapshotStore(store), id, file);
      const b = readFileSync(file);
      if (b.length !== size) throw new Error(`snapshot ${id} downloaded as ${b.length} bytes, expected ${size}`);
      return b;
    } finally {
      await store.close();
      rmSync(file, { force: true });
    }
  }

  const m: ModesDaemon = {
    get d() { return d; },
    dir,
    uri: (mode, base) => d.uri(exportName(mode, base)),
    diskPath: (mode, base) => join(dir, 'disks', `${mode}-${base}.img`),
    async drained(mode, base) {
      const name = exportName(mode, base);
      const ok = await waitFor(async () => (await status(name)).log?.records === 0, 120_000, 50);
      if (!ok) throw new Error(`volume ${name}: write log not drained to the store in 120 s`);
    },
    async content(mode, base) {
      if (mode !== 'cached') return readFileSync(m.diskPath(mode, base));
      await m.drained(mode, base);
      const name = exportName(mode, base);
      const { root, size } = await status(name);
      if (!root) return Buffer.alloc(size); // nothing was ever uploaded: all zeros
      return download(root.id, size);
    },
    async snapshot(mode, base) {
      const name = exportName(mode, base);
      if (mode === 'stored') {
        const g = (await adminRequest(d.adminSocket, 'POST', '/v1/snapshots', { volumes: [name], waitSeconds: 110 })) as { state: string; members: Array<{ snapshot: string | null }> };
        if (g.state !== 'complete' || !g.members[0]?.snapshot) throw new Error(`snapshot of ${name} not complete: ${JSON.stringify(g)}`);
        return g.members[0].snapshot;
      }
      const s = (await adminRequest(d.adminSocket, 'POST', `/v1/volumes/${name}/snapshots`, { waitSeconds: 110 })) as { id: string; state: string };
      if (s.state !== 'complete') throw new Error(`snapshot of ${name} not complete: ${JSON.stringify(s)}`);
      return s.id;
    },
    async snapshotContent(id) {
      const store = await FsObjectStore.open(join(dir, 'store'));
      let size: number;
      try {
        size = (await new SnapshotStore(store).getRoot(id)).size;
      } finally {
        await store.close();
      }
      return download(id, size);
    },
    async restart() {
      const code = await d.stop();
      if (code !== 0) throw new Error(`daemon exited ${code} on SIGTERM:\n${d.output().split('\n').slice(-30).join('\n')}`);
      d = await startDaemon(config, { dir, timeoutMs: 90_000, ...options.start });
    },
    async close() {
      try {
        return await d.stop();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return m;
}
