// What the stored runtime needs of a stored volume's configuration. The
// daemon's validated config (daemon/config.ts StoredVolumeConfig) has these
// fields and more (mode, tls, ...); declaring only these here keeps
// volumes/ free of imports from daemon/ (the layering test checks it).
// Fields that may be absent are optional, so a config type whose fields are
// `?:` (a schema's inferred type) satisfies this one as well as `| undefined`.

export interface StoredVolumeSettings {
  readonly name: string;
  /** Volume size; undefined: the disk's (or the restored snapshot's) size. */
  readonly size?: number | undefined;
  readonly disk: string;
  readonly writeLog: { readonly dir: string; readonly size: number };
  /** Snapshot block size (power of two, 64 KiB..4 MiB). */
  readonly blockSize: number;
  /** Scheduled snapshots. */
  readonly snapshots?: { readonly intervalMs: number; readonly keep?: number | undefined } | undefined;
  /** Re-create the volume from this snapshot (lazily, while serving) when it has no local state. */
  readonly restoreFrom?: string | undefined;
  /** Cut an internal snapshot marker at most this often (upload cadence). */
  readonly uploadIntervalMs: number;
}
