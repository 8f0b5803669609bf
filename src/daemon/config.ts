// The daemon's YAML configuration: parsed, validated, and normalised once,
// by one zod schema (daemonConfigSchema) built from the shared field and
// volume schemas in src/config/. Every problem is a CONFIG error whose message
// names the offending key (e.g. "volumes[1].size: '12XB' is not a size").
// Unknown keys are errors too: a typo must not silently fall back to a
// default. Relative paths are resolved against the config file's directory.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import type { LogFormat, LogLevel } from '../log.js';
import type { TlsPolicy } from '../nbd/export.js';
import type { ListenSpec } from '../nbd/server.js';
import type { TlsFiles } from '../nbd/tls.js';
import { defaultedSection, duration, hostPort, integer, nullIsAbsent, oneOf, parseWith, section, text } from '../config/fields.js';
import { tuningSchema, type Tuning } from '../config/tuning.js';
import { cachedVolumeSchema, rawVolumeSchema, storedVolumeSchema, withTls, type Resolve } from '../config/volumes.js';
import { controlConfig, controlSectionSchema, type ControlConfig } from './control-config.js';
import type { CachedVolumeConfig } from '../volumes/cached/config.js';

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
  /** Data-path knobs (docs/tuning.md). */
  readonly tuning: Tuning;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
const LOG_FORMATS = ['json', 'text'] as const;

const isMapping = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** One `listen:` entry: {tcp: host:port} or {unix: path, mode?: 0660}. */
function listenSchema(resolve: Resolve) {
  return section({
    tcp: hostPort.optional(),
    unix: text.transform((p) => resolve(p)).optional(),
    mode: z.union([z.string(), z.number()]).optional(),
  }).transform((e, ctx): ListenSpec => {
    if ((e.tcp === undefined) === (e.unix === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'needs exactly one of tcp or unix' });
      return z.NEVER;
    }
    if (e.tcp !== undefined) return { tcp: e.tcp };
    if (e.mode === undefined) return { unix: e.unix! };
    // YAML reads 0660 as the number 660: the digits are octal either way.
    const mode = Number.parseInt(String(e.mode), 8);
    if (!/^[0-7]{1,4}$/.test(String(e.mode)) || mode > 0o777) ctx.addIssue({ code: 'custom', path: ['mode'], message: 'must be an octal file mode such as 0660' });
    return { unix: e.unix!, mode };
  });
}

function storeSchema(resolve: Resolve) {
  return section({
    url: z.string({ error: (iss) => (iss.input === undefined ? 'is required (file:///path, a path, or s3://bucket/prefix)' : undefined) }).pipe(text),
    endpoint: text.optional(),
    region: text.optional(),
    accessKeyId: text.optional(),
    secretAccessKey: text.optional(),
    pathStyle: z.boolean().optional(),
    /** Concurrent uploads (upload workers, shared by all volumes). */
    uploadWorkers: integer(1, 256).default(8),
  }).transform((s, ctx): StoreConfig => {
    const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(s.url)?.[1]?.toLowerCase();
    if (scheme !== undefined && scheme !== 'file' && scheme !== 's3') {
      ctx.addIssue({ code: 'custom', path: ['url'], message: `unsupported scheme '${scheme}:' (use file:///path, a path, or s3://bucket/prefix)` });
    }
    if ((s.accessKeyId === undefined) !== (s.secretAccessKey === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'accessKeyId and secretAccessKey must be given together (or neither: AWS_* environment variables)' });
    }
    return {
      url: scheme === undefined ? resolve(s.url) : s.url, endpoint: s.endpoint, region: s.region,
      accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey, pathStyle: s.pathStyle, uploadWorkers: s.uploadWorkers,
    };
  });
}

/** The whole daemon config file; `resolve` makes relative paths absolute. */
export function daemonConfigSchema(resolve: Resolve) {
  const volume = z.preprocess(
    // mode defaults to raw
    (v) => (isMapping(v) && v.mode === undefined ? { ...v, mode: 'raw' } : v),
    z.discriminatedUnion('mode', [rawVolumeSchema(resolve), storedVolumeSchema(resolve), cachedVolumeSchema(resolve)], {
      error: (iss) => (iss.code === 'invalid_union' && isMapping(iss.input)
        ? `must be one of raw, stored, cached (got '${String(iss.input.mode)}')` : undefined),
    }),
  );
  return section({
    log: defaultedSection({ level: oneOf(LOG_LEVELS).default('info'), format: oneOf(LOG_FORMATS).default('json') }),
    admin: defaultedSection({ socket: text.transform((p) => resolve(p)).default(DEFAULT_ADMIN_SOCKET) }),
    metrics: nullIsAbsent(section({ listen: hostPort }).optional()),
    listen: nullIsAbsent(z.array(listenSchema(resolve)).min(1, 'must be a non-empty list of {tcp: host:port} or {unix: path}')
      .prefault([{ tcp: '127.0.0.1:10809' }])),
    tls: nullIsAbsent(section({
      cert: text.transform((p) => resolve(p)).optional(),
      key: text.transform((p) => resolve(p)).optional(),
      ca: text.transform((p) => resolve(p)).optional(),
      psk: text.transform((p) => resolve(p)).optional(),
    }).transform((t, ctx): TlsFiles => {
      if ((t.cert === undefined) !== (t.key === undefined)) ctx.addIssue({ code: 'custom', message: 'cert and key must be given together' });
      else if (t.cert === undefined && t.psk === undefined) ctx.addIssue({ code: 'custom', message: 'needs cert+key, psk, or both' });
      return Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined)) as TlsFiles;
    }).optional()),
    nbd: defaultedSection({ handshakeTimeout: duration(1).default(120_000), shutdownGrace: duration().default(30_000) }),
    volumes: nullIsAbsent(z.array(volume).min(1, 'at least one volume is required').prefault([])),
    store: nullIsAbsent(storeSchema(resolve).optional()),
    dataDir: text.transform((p) => resolve(p)).default('/var/lib/blockgate'),
    control: nullIsAbsent(controlSectionSchema(resolve).optional()),
    tuning: tuningSchema,
  }).transform((c, ctx): DaemonConfig => {
    const names = new Set<string>();
    const volumes = c.volumes.map((v, i): VolumeConfig => {
      if (names.has(v.name)) ctx.addIssue({ code: 'custom', path: ['volumes', i, 'name'], message: `duplicate volume name '${v.name}'` });
      names.add(v.name);
      if (v.tls !== undefined && v.tls !== 'off' && !c.tls) {
        ctx.addIssue({ code: 'custom', path: ['volumes', i, 'tls'], message: `'${v.tls}' needs a top-level tls section (cert/key or psk)` });
      }
      if (v.mode !== 'raw' && !c.store) ctx.addIssue({ code: 'custom', path: ['volumes', i], message: `mode '${v.mode}' needs a top-level store section (store: {url: ...})` });
      return withTls(v, c.tls ? 'on' : 'off') as VolumeConfig;
    });
    return {
      log: c.log, admin: c.admin, metrics: c.metrics, listen: c.listen, tls: c.tls,
      nbd: { handshakeTimeoutMs: c.nbd.handshakeTimeout, shutdownGraceMs: c.nbd.shutdownGrace },
      volumes, store: c.store, dataDir: c.dataDir,
      control: c.control ? controlConfig(c.control, c.dataDir) : undefined,
      tuning: c.tuning,
    };
  });
}

export function parseConfig(text: string, baseDir: string, source = 'config'): DaemonConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new BlockgateError(ErrorCodes.CONFIG, `${source}: invalid YAML: ${doc.errors[0]!.message}`);
  }
  const resolvePath = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  return parseWith(daemonConfigSchema(resolvePath), doc.toJS() ?? {}, { code: ErrorCodes.CONFIG });
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
