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
import { parseHostPort } from '../nbd/server.js';
import type { TlsFiles } from '../nbd/tls.js';
import { parseSize } from '../util/size.js';

export interface RawVolumeConfig {
  readonly name: string;
  readonly mode: 'raw';
  readonly size: number | undefined;
  readonly disk: string;
  readonly readOnly: boolean;
  readonly description: string | undefined;
  readonly tls: TlsPolicy;
}

export type VolumeConfig = RawVolumeConfig;

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
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
const LOG_FORMATS = ['json', 'text'] as const;
const TLS_POLICIES = ['off', 'on', 'require'] as const;
const VOLUME_MODES = ['raw'] as const;
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
  onlyKeys(root, '', ['log', 'admin', 'metrics', 'listen', 'tls', 'nbd', 'volumes']);
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
    onlyKeys(v, key, ['name', 'mode', 'size', 'disk', 'readOnly', 'description', 'tls']);
    const name = str(v, 'name', key) ?? fail(`${key}.name`, 'is required');
    if (!EXPORT_NAME.test(name)) fail(`${key}.name`, `'${name}' must be 1-128 characters of letters, digits, '.', '_' or '-'`);
    if (names.has(name)) fail(`${key}.name`, `duplicate volume name '${name}'`);
    names.add(name);
    const mode = oneOf(v, 'mode', key, VOLUME_MODES, 'raw');
    let size: number | undefined;
    if (v.size !== undefined) {
      size = parseSize(v.size as string | number);
      if (size === undefined || size <= 0) fail(`${key}.size`, `'${String(v.size)}' is not a size (e.g. 10GiB, 512MiB, 1073741824)`);
    }
    const disk = str(v, 'disk', key) ?? fail(`${key}.disk`, 'is required (a file or block device path)');
    const tlsPolicy = oneOf(v, 'tls', key, TLS_POLICIES, tls ? 'on' : 'off');
    if (tlsPolicy !== 'off' && !tls) fail(`${key}.tls`, `'${tlsPolicy}' needs a top-level tls section (cert/key or psk)`);
    return {
      name, mode, size, disk: path(disk),
      readOnly: bool(v, 'readOnly', key, false),
      description: str(v, 'description', key),
      tls: tlsPolicy,
    };
  });
  if (volumes.length === 0) fail('volumes', 'at least one volume is required');
  return { log, admin, metrics, listen, tls, nbd, volumes };
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
