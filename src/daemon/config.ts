// The daemon's YAML configuration: parsed, validated, and normalised once.
// Every problem is a CONFIG error whose message names the offending key
// (e.g. "volumes[1].size: '12XB' is not a size"). Unknown keys are errors
// too: a typo must not silently fall back to a default. Relative paths are
// resolved against the config file's directory.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import type { LogFormat, LogLevel } from '../log.js';
import type { TlsPolicy } from '../nbd/export.js';
import type { ListenSpec } from '../nbd/server.js';
import { parseHostPort } from '../util/host-port.js';
import type { TlsFiles } from '../nbd/tls.js';
import { parseSize } from '../util/size.js';
import { parseControlSection, type ControlConfig } from './control-config.js';
import { parseCachedVolume, type CachedVolumeConfig } from '../volumes/cached/config.js';

export interface RawVolumeConfig {
  readonly name: string;
  readonly mode: 'raw';
  readonly size: number | undefined;
  readonly disk: string;
  readonly readOnly: boolean;
  readonly description: string | undefined;
  readonly tls: TlsPolicy;
}

/** Mode `stored`: a local disk is primary; every write is journaled and shadowed into the object store. */
export interface StoredVolumeConfig {
  readonly name: string;
  readonly mode: 'stored';
  readonly size: number | undefined;
  readonly disk: string;
  readonly readOnly: false;
  readonly description: string | undefined;
  readonly tls: TlsPolicy;
  readonly writeLog: { readonly dir: string; readonly size: number };
  /** Snapshot block size (power of two, 64 KiB..4 MiB). */
  readonly blockSize: number;
  /** Scheduled snapshots. */
  readonly snapshots: { readonly intervalMs: number; readonly keep: number | undefined } | undefined;
  /** Re-create the volume from this snapshot (lazily, while serving) when it has no local state. */
  readonly restoreFrom: string | undefined;
  /** Cut an internal snapshot marker at most this often (upload cadence). */
  readonly uploadIntervalMs: number;
}

export type { CachedVolumeConfig } from '../volumes/cached/config.js';

export type VolumeConfig = RawVolumeConfig | StoredVolumeConfig | CachedVolumeConfig;

/** The object store shared by every volume mode that needs one (top-level `store:`). */
export interface StoreConfig {
  /** file:///path, a path, or s3://bucket/prefix. */
  readonly url: string;
  readonly endpoint: string | undefined;
  readonly region: string | undefined;
  readonly accessKeyId: string | undefined;
  readonly secretAccessKey: string | undefined;
  readonly pathStyle: boolean | undefined;
  /** Concurrent uploads (upload workers, shared by all volumes). */
  readonly uploadWorkers: number;
}

export const DEFAULT_ADMIN_SOCKET = '/run/blockgate/admin.sock';

export interface DaemonConfig {
  readonly log: { readonly level: LogLevel; readonly format: LogFormat };
  /** Admin API unix socket (root-only). */
  readonly admin: { readonly socket: string };
  /** Prometheus endpoint (host:port), off when undefined. */
  readonly metrics: { readonly listen: string } | undefined;
  readonly listen: readonly ListenSpec[];
  readonly tls: TlsFiles | undefined;
  readonly nbd: { readonly handshakeTimeoutMs: number; readonly shutdownGraceMs: number };
  readonly volumes: readonly VolumeConfig[];
  readonly store: StoreConfig | undefined;
  /** Daemon state: gateway id (lease holder), run-time volume configs (default /var/lib/blockgate). */
  readonly dataDir: string;
  /** Gateway activation and the control channel (absent: a standalone gateway). */
  readonly control: ControlConfig | undefined;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
const LOG_FORMATS = ['json', 'text'] as const;
const TLS_POLICIES = ['off', 'on', 'require'] as const;
const VOLUME_MODES = ['raw', 'stored', 'cached'] as const;
/** Keys every volume accepts; each mode adds its own (see parseVolume). */
const COMMON_VOLUME_KEYS = ['name', 'mode', 'size', 'disk', 'description', 'tls'] as const;
const EXPORT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function fail(key: string, message: string): never {
  throw new BlockgateError(ErrorCodes.CONFIG, `${key}: ${message}`);
}

type Obj = Record<string, unknown>;

function obj(value: unknown, key: string): Obj {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(key, 'must be a mapping');
  return value as Obj;
}

function onlyKeys(o: Obj, key: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) fail(key ? `${key}.${k}` : k, `unknown key (allowed: ${allowed.join(', ')})`);
  }
}

function str(o: Obj, k: string, key: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') fail(`${key}.${k}`.replace(/^\./, ''), 'must be a non-empty string');
  return v;
}

function oneOf<T extends string>(o: Obj, k: string, key: string, allowed: readonly T[], dflt: T): T {
  const v = o[k] ?? dflt;
  if (!allowed.includes(v as T)) fail(`${key}.${k}`.replace(/^\./, ''), `must be one of ${allowed.join(', ')} (got '${String(v)}')`);
  return v as T;
}

function bool(o: Obj, k: string, key: string, dflt: boolean): boolean {
  const v = o[k] ?? dflt;
  if (typeof v !== 'boolean') fail(`${key}.${k}`, 'must be true or false');
  return v;
}

function duration(o: Obj, k: string, key: string, dfltMs: number): number {
  const v = o[k];
  if (v === undefined) return dfltMs;
  const m = typeof v === 'number' ? [String(v), String(v), 's'] : /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(v).trim());
  if (!m) fail(`${key}.${k}`, `'${String(v)}' is not a duration (e.g. 30s, 500ms, 5m)`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * mult);
}

export function parseConfig(text: string, baseDir: string, source = 'config'): DaemonConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new BlockgateError(ErrorCodes.CONFIG, `${source}: invalid YAML: ${doc.errors[0]!.message}`);
  }
  const root = obj(doc.toJS() ?? {}, '(top level)');
  onlyKeys(root, '', ['log', 'admin', 'metrics', 'listen', 'tls', 'nbd', 'volumes', 'store', 'dataDir', 'control']);
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));

  const logObj = obj(root.log ?? {}, 'log');
  onlyKeys(logObj, 'log', ['level', 'format']);
  const log = { level: oneOf(logObj, 'level', 'log', LOG_LEVELS, 'info'), format: oneOf(logObj, 'format', 'log', LOG_FORMATS, 'json') };

  const adminObj = obj(root.admin ?? {}, 'admin');
  onlyKeys(adminObj, 'admin', ['socket']);
  const admin = { socket: path(str(adminObj, 'socket', 'admin') ?? DEFAULT_ADMIN_SOCKET) };

  let metrics: DaemonConfig['metrics'];
  if (root.metrics !== undefined && root.metrics !== null) {
    const m = obj(root.metrics, 'metrics');
    onlyKeys(m, 'metrics', ['listen']);
    const listen = str(m, 'listen', 'metrics') ?? fail('metrics.listen', 'is required (host:port)');
    try { parseHostPort(listen); } catch (err) { fail('metrics.listen', errorMessage(err)); }
    metrics = { listen };
  }

  const listenRaw = root.listen ?? [{ tcp: '127.0.0.1:10809' }];
  if (!Array.isArray(listenRaw) || listenRaw.length === 0) fail('listen', 'must be a non-empty list of {tcp: host:port} or {unix: path}');
  const listen = listenRaw.map((entry, i): ListenSpec => {
    const key = `listen[${i}]`;
    const e = obj(entry, key);
    onlyKeys(e, key, ['tcp', 'unix', 'mode']);
    const tcp = str(e, 'tcp', key);
    const unix = str(e, 'unix', key);
    if ((tcp === undefined) === (unix === undefined)) fail(key, 'needs exactly one of tcp or unix');
    if (tcp !== undefined) {
      try { parseHostPort(tcp); } catch (err) { fail(`${key}.tcp`, errorMessage(err)); }
      return { tcp };
    }
    const mode = e.mode === undefined ? undefined : Number.parseInt(String(e.mode), 8);
    if (mode !== undefined && (!Number.isInteger(mode) || mode < 0 || mode > 0o777)) fail(`${key}.mode`, 'must be an octal file mode such as 0660');
    return mode === undefined ? { unix: path(unix!) } : { unix: path(unix!), mode };
  });

  let tls: TlsFiles | undefined;
  if (root.tls !== undefined && root.tls !== null) {
    const t = obj(root.tls, 'tls');
    onlyKeys(t, 'tls', ['cert', 'key', 'ca', 'psk']);
    const files: Record<string, string> = {};
    for (const k of ['cert', 'key', 'ca', 'psk']) {
      const v = str(t, k, 'tls');
      if (v !== undefined) files[k] = path(v);
    }
    if ((files.cert === undefined) !== (files.key === undefined)) fail('tls', 'cert and key must be given together');
    if (files.cert === undefined && files.psk === undefined) fail('tls', 'needs cert+key, psk, or both');
    tls = files;
  }

  const nbdObj = obj(root.nbd ?? {}, 'nbd');
  onlyKeys(nbdObj, 'nbd', ['handshakeTimeout', 'shutdownGrace']);
  const nbd = {
    handshakeTimeoutMs: duration(nbdObj, 'handshakeTimeout', 'nbd', 120_000),
    shutdownGraceMs: duration(nbdObj, 'shutdownGrace', 'nbd', 30_000),
  };

  const volumesRaw = root.volumes ?? [];
  if (!Array.isArray(volumesRaw)) fail('volumes', 'must be a list');
  const names = new Set<string>();
  const volumes = volumesRaw.map((entry, i): VolumeConfig => {
    const key = `volumes[${i}]`;
    const v = obj(entry, key);
    const mode = oneOf(v, 'mode', key, VOLUME_MODES, 'raw');
    const name = str(v, 'name', key) ?? fail(`${key}.name`, 'is required');
    if (!EXPORT_NAME.test(name)) fail(`${key}.name`, `'${name}' must be 1-128 characters of letters, digits, '.', '_' or '-'`);
    if (names.has(name)) fail(`${key}.name`, `duplicate volume name '${name}'`);
    names.add(name);
    let size: number | undefined;
    if (v.size !== undefined) {
      size = parseSize(v.size as string | number);
      if (size === undefined || size <= 0) fail(`${key}.size`, `'${String(v.size)}' is not a size (e.g. 10GiB, 512MiB, 1073741824)`);
    }
    if (mode === 'cached') {
      // The store is primary: no local disk (cache: and writeLog: instead).
      if (root.store === undefined || root.store === null) fail(key, "mode 'cached' needs a top-level store section (store: {url: ...})");
      const cachedTls = oneOf(v, 'tls', key, TLS_POLICIES, tls ? 'on' : 'off');
      if (cachedTls !== 'off' && !tls) fail(`${key}.tls`, `'${cachedTls}' needs a top-level tls section (cert/key or psk)`);
      return { name, mode, readOnly: false, description: str(v, 'description', key), tls: cachedTls, ...parseCachedVolume(v, key, path) };
    }
    const disk = str(v, 'disk', key) ?? fail(`${key}.disk`, 'is required (a file or block device path)');
    const tlsPolicy = oneOf(v, 'tls', key, TLS_POLICIES, tls ? 'on' : 'off');
    if (tlsPolicy !== 'off' && !tls) fail(`${key}.tls`, `'${tlsPolicy}' needs a top-level tls section (cert/key or psk)`);
    const common = { name, size, disk: path(disk), description: str(v, 'description', key), tls: tlsPolicy };
    // One case per volume mode: each validates its own keys.
    switch (mode) {
      case 'raw':
        onlyKeys(v, key, [...COMMON_VOLUME_KEYS, 'readOnly']);
        return { ...common, mode, readOnly: bool(v, 'readOnly', key, false) };
      case 'stored':
        onlyKeys(v, key, [...COMMON_VOLUME_KEYS, 'writeLog', 'blockSize', 'snapshots', 'restoreFrom', 'uploadInterval']);
        if (root.store === undefined || root.store === null) fail(key, "mode 'stored' needs a top-level store section (store: {url: ...})");
        return { ...common, mode, readOnly: false, ...parseStoredVolume(v, key, path) };
    }
  });
  if (volumes.length === 0) fail('volumes', 'at least one volume is required');
  const store = root.store === undefined || root.store === null ? undefined : parseStore(obj(root.store, 'store'), path);
  const dataDir = path(str(root, 'dataDir', '') ?? '/var/lib/blockgate');
  const control = parseControlSection(root.control, baseDir, dataDir);
  return { log, admin, metrics, listen, tls, nbd, volumes, store, dataDir, control };
}

function parseStore(s: Obj, path: (p: string) => string): StoreConfig {
  onlyKeys(s, 'store', ['url', 'endpoint', 'region', 'accessKeyId', 'secretAccessKey', 'pathStyle', 'uploadWorkers']);
  let url = str(s, 'url', 'store') ?? fail('store.url', 'is required (file:///path, a path, or s3://bucket/prefix)');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) url = path(url);
  else if (scheme !== 'file' && scheme !== 's3') fail('store.url', `unsupported scheme '${scheme}:' (use file:///path, a path, or s3://bucket/prefix)`);
  if ((s.accessKeyId === undefined) !== (s.secretAccessKey === undefined)) fail('store', 'accessKeyId and secretAccessKey must be given together (or neither: AWS_* environment variables)');
  const workers = s.uploadWorkers ?? 8;
  if (typeof workers !== 'number' || !Number.isInteger(workers) || workers < 1 || workers > 256) fail('store.uploadWorkers', 'must be an integer in 1..256');
  return {
    url,
    endpoint: str(s, 'endpoint', 'store'),
    region: str(s, 'region', 'store'),
    accessKeyId: str(s, 'accessKeyId', 'store'),
    secretAccessKey: str(s, 'secretAccessKey', 'store'),
    pathStyle: s.pathStyle === undefined ? undefined : bool(s, 'pathStyle', 'store', false),
    uploadWorkers: workers,
  };
}

function parseStoredVolume(v: Obj, key: string, path: (p: string) => string): Omit<StoredVolumeConfig, 'name' | 'mode' | 'size' | 'disk' | 'readOnly' | 'description' | 'tls'> {
  const wl = obj(v.writeLog ?? fail(`${key}.writeLog`, 'is required ({dir, size})'), `${key}.writeLog`);
  onlyKeys(wl, `${key}.writeLog`, ['dir', 'size']);
  const dir = str(wl, 'dir', `${key}.writeLog`) ?? fail(`${key}.writeLog.dir`, 'is required');
  const logSize = parseSize((wl.size ?? fail(`${key}.writeLog.size`, 'is required (e.g. 8GiB)')) as string | number);
  if (logSize === undefined || logSize < 1024 * 1024) fail(`${key}.writeLog.size`, `'${String(wl.size)}' is not a size of at least 1MiB`);
  let blockSize = 512 * 1024;
  if (v.blockSize !== undefined) {
    const bs = parseSize(v.blockSize as string | number);
    if (bs === undefined || bs < 64 * 1024 || bs > 4 * 1024 * 1024 || (bs & (bs - 1)) !== 0) fail(`${key}.blockSize`, `'${String(v.blockSize)}' must be a power of two between 64KiB and 4MiB`);
    blockSize = bs;
  }
  let snapshots: StoredVolumeConfig['snapshots'];
  if (v.snapshots !== undefined && v.snapshots !== null) {
    const sn = obj(v.snapshots, `${key}.snapshots`);
    onlyKeys(sn, `${key}.snapshots`, ['interval', 'keep']);
    if (sn.interval === undefined) fail(`${key}.snapshots.interval`, 'is required (e.g. 1h)');
    const intervalMs = duration(sn, 'interval', `${key}.snapshots`, 0);
    if (intervalMs < 1000) fail(`${key}.snapshots.interval`, 'must be at least 1s');
    const keep = sn.keep;
    if (keep !== undefined && (typeof keep !== 'number' || !Number.isInteger(keep) || keep < 1)) fail(`${key}.snapshots.keep`, 'must be a positive integer');
    snapshots = { intervalMs, keep: keep as number | undefined };
  }
  const restoreFrom = str(v, 'restoreFrom', key);
  if (restoreFrom !== undefined && !/^v?snap-[0-9a-f]+$/.test(restoreFrom)) fail(`${key}.restoreFrom`, `'${restoreFrom}' is not a snapshot id (vsnap-... or snap-...)`);
  const uploadIntervalMs = duration(v, 'uploadInterval', key, 1000);
  return { writeLog: { dir: path(dir), size: logSize }, blockSize, snapshots, restoreFrom, uploadIntervalMs };
}

export function loadConfig(file: string): DaemonConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new BlockgateError(ErrorCodes.CONFIG, `cannot read config file ${file}: ${errorMessage(err)}`);
  }
  return parseConfig(text, dirname(resolve(file)), file);
}
