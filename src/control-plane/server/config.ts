// YAML configuration of `blockgate control serve`, validated once. Every
// problem is a CONFIG error naming the key; unknown keys are errors; relative
// paths are resolved against the config file's directory.
//
//   listen: 127.0.0.1:8443            # host:port (port 0 = kernel-chosen)
//   advertiseUrl: https://ctl-a:8443  # how peers reach this server (default from listen)
//   tls: {cert: cert.pem, key: key.pem}
//   dataDir: ./control-data           # this server owns the registry...
//   registry: {url: https://ctl-a:8443, ca: ca.pem}   # ...or uses another server's
//   peerSecret: <random>              # shared by all servers of one registry
//   activationKeyTtl: 30m
//   longPollHold: 30s
//   challengeTtl: 2m
//   objectStore: {endpoint, bucket, region, prefix}   # default credentials location
//   accounts:
//     - name: acme
//       tokenHashes: [<sha256 hex of the token>]      # preferred
//       tokens: [<plain token>]                        # hashed at load, never stored
//       objectStore: {endpoint, bucket, region, prefix, accessKeyId, secretAccessKey}
//   log: {level: info, format: json}
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';
import type { LogFormat, LogLevel } from '../../log.js';
import { parseHostPort } from '../../util/host-port.js';
import { hashToken, type AccountRecord } from '../protocol.js';

export interface ControlAccountConfig {
  name: string;
  tokenHashes: string[];
  objectStore: AccountRecord['objectStore'] | null;
}

export interface ControlServerConfig {
  log: { level: LogLevel; format: LogFormat };
  listen: { host: string; port: number };
  advertiseUrl: string | undefined;
  tls: { cert: string; key: string } | undefined;
  dataDir: string | undefined;
  registry: { url: string; ca: string | undefined } | undefined;
  peerSecret: string | undefined;
  activationKeyTtlMs: number;
  longPollHoldMs: number;
  challengeTtlMs: number;
  objectStore: AccountRecord['objectStore'] | null;
  accounts: ControlAccountConfig[];
}

type Obj = Record<string, unknown>;

function fail(key: string, message: string): never {
  throw new BlockgateError(ErrorCodes.CONFIG, `${key}: ${message}`);
}

function obj(v: unknown, key: string): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(key, 'must be a mapping');
  return v as Obj;
}

function onlyKeys(o: Obj, key: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(key ? `${key}.${k}` : k, `unknown key (allowed: ${allowed.join(', ')})`);
}

function str(o: Obj, k: string, key: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') fail(key ? `${key}.${k}` : k, 'must be a non-empty string');
  return v;
}

function strList(o: Obj, k: string, key: string): string[] {
  const v = o[k];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) fail(`${key}.${k}`, 'must be a list of non-empty strings');
  return v as string[];
}

export function parseDuration(v: unknown, key: string): number {
  const m = typeof v === 'number' ? [String(v), String(v), 's'] : /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(v).trim());
  if (!m) fail(key, `'${String(v)}' is not a duration (e.g. 30s, 500ms, 30m)`);
  const ms = Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h']);
  if (ms <= 0) fail(key, 'must be positive');
  return ms;
}

function objectStoreLocation(v: unknown, key: string, allowKeys: boolean): AccountRecord['objectStore'] | null {
  if (v === undefined || v === null) return null;
  const o = obj(v, key);
  const allowed = ['endpoint', 'bucket', 'region', 'prefix', ...(allowKeys ? ['accessKeyId', 'secretAccessKey'] : [])];
  onlyKeys(o, key, allowed);
  const out: Record<string, string> = {};
  for (const k of allowed) { const s = str(o, k, key); if (s !== undefined) out[k] = s; }
  if ((out.accessKeyId === undefined) !== (out.secretAccessKey === undefined)) fail(key, 'accessKeyId and secretAccessKey must be given together');
  return out;
}

export function parseControlConfig(text: string, baseDir: string, source = 'control config'): ControlServerConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) throw new BlockgateError(ErrorCodes.CONFIG, `${source}: invalid YAML: ${doc.errors[0]!.message}`);
  const root = obj(doc.toJS() ?? {}, '(top level)');
  onlyKeys(root, '', ['log', 'listen', 'advertiseUrl', 'tls', 'dataDir', 'registry', 'peerSecret', 'activationKeyTtl',
    'longPollHold', 'challengeTtl', 'objectStore', 'accounts']);
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));

  const logObj = obj(root.log ?? {}, 'log');
  onlyKeys(logObj, 'log', ['level', 'format']);
  const level = (logObj.level ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(level)) fail('log.level', `must be one of debug, info, warn, error, silent (got '${String(level)}')`);
  const format = (logObj.format ?? 'json') as LogFormat;
  if (!['json', 'text'].includes(format)) fail('log.format', `must be json or text (got '${String(format)}')`);

  const listenText = str(root, 'listen', '') ?? '127.0.0.1:8443';
  let listen: { host: string; port: number };
  try { listen = parseHostPort(listenText); } catch (err) { fail('listen', errorMessage(err)); }

  const advertiseUrl = str(root, 'advertiseUrl', '');
  if (advertiseUrl !== undefined && !/^https?:\/\/[^/]+\/?$/.test(advertiseUrl)) fail('advertiseUrl', `'${advertiseUrl}' must be http(s)://host:port`);

  let tls: ControlServerConfig['tls'];
  if (root.tls !== undefined && root.tls !== null) {
    const t = obj(root.tls, 'tls');
    onlyKeys(t, 'tls', ['cert', 'key']);
    const cert = str(t, 'cert', 'tls') ?? fail('tls.cert', 'is required');
    const key = str(t, 'key', 'tls') ?? fail('tls.key', 'is required');
    tls = { cert: path(cert), key: path(key) };
  }

  const dataDirRaw = str(root, 'dataDir', '');
  let registry: ControlServerConfig['registry'];
  if (root.registry !== undefined && root.registry !== null) {
    const r = obj(root.registry, 'registry');
    onlyKeys(r, 'registry', ['url', 'ca']);
    const url = str(r, 'url', 'registry') ?? fail('registry.url', 'is required');
    if (!/^https?:\/\//.test(url)) fail('registry.url', `'${url}' must be an http(s) URL of the control server that owns the registry`);
    const ca = str(r, 'ca', 'registry');
    registry = { url, ca: ca === undefined ? undefined : path(ca) };
  }
  if ((dataDirRaw === undefined) === (registry === undefined)) {
    fail('dataDir', 'give exactly one of dataDir (this server owns the registry) or registry.url (another server owns it)');
  }
  const peerSecret = str(root, 'peerSecret', '');
  if (registry && !peerSecret) fail('peerSecret', 'is required with registry.url (the owner authenticates peers with it)');
  if (peerSecret !== undefined && peerSecret.length < 16) fail('peerSecret', 'must be at least 16 characters');

  const dur = (k: string, dflt: number): number => (root[k] === undefined ? dflt : parseDuration(root[k], k));

  const accountsRaw = root.accounts ?? [];
  if (!Array.isArray(accountsRaw)) fail('accounts', 'must be a list');
  const names = new Set<string>();
  const accounts = accountsRaw.map((entry, i): ControlAccountConfig => {
    const key = `accounts[${i}]`;
    const a = obj(entry, key);
    onlyKeys(a, key, ['name', 'tokenHashes', 'tokens', 'objectStore']);
    const name = str(a, 'name', key) ?? fail(`${key}.name`, 'is required');
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)) fail(`${key}.name`, `'${name}' must be 1-64 letters, digits, '.', '_' or '-'`);
    if (names.has(name)) fail(`${key}.name`, `duplicate account '${name}'`);
    names.add(name);
    const hashes = strList(a, 'tokenHashes', key).map((h, j) => {
      const hex = h.replace(/^sha256:/, '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(hex)) fail(`${key}.tokenHashes[${j}]`, 'must be a SHA-256 hex digest (blockgate control hash-token TOKEN)');
      return hex;
    });
    for (const [j, t] of strList(a, 'tokens', key).entries()) {
      if (t.length < 16) fail(`${key}.tokens[${j}]`, 'tokens must be at least 16 characters');
      hashes.push(hashToken(t));
    }
    if (hashes.length === 0) fail(key, 'needs at least one of tokenHashes or tokens');
    return { name, tokenHashes: [...new Set(hashes)], objectStore: objectStoreLocation(a.objectStore, `${key}.objectStore`, true) };
  });

  return {
    log: { level, format },
    listen,
    advertiseUrl: advertiseUrl?.replace(/\/+$/, ''),
    tls,
    dataDir: dataDirRaw === undefined ? undefined : path(dataDirRaw),
    registry,
    peerSecret,
    activationKeyTtlMs: dur('activationKeyTtl', 30 * 60_000),
    longPollHoldMs: dur('longPollHold', 30_000),
    challengeTtlMs: dur('challengeTtl', 2 * 60_000),
    objectStore: objectStoreLocation(root.objectStore, 'objectStore', false),
    accounts,
  };
}

export function loadControlConfig(file: string): ControlServerConfig {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (err) {
    throw new BlockgateError(ErrorCodes.CONFIG, `cannot read config file ${file}: ${errorMessage(err)}`);
  }
  return parseControlConfig(text, dirname(resolve(file)), file);
}
