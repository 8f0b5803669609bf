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
//   activationKeyTtl: 30m              # durations: util/duration.ts (500ms, 30s, 5m, 2h, 1d; a number = seconds)
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
import { z } from 'zod';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';
import type { LogFormat, LogLevel } from '../../log.js';
import { defaultedSection, duration, nullIsAbsent, oneOf, parseWith, section, text } from '../../config/fields.js';
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

type Resolve = (p: string) => string;


/** Where an account's snapshots live; with credentials only inside an account. */
function objectStoreLocation(withKeys: boolean) {
  const shape = {
    endpoint: text.optional(), bucket: text.optional(), region: text.optional(), prefix: text.optional(),
    ...(withKeys ? { accessKeyId: text.optional(), secretAccessKey: text.optional() } : {}),
  };
  return nullIsAbsent(section(shape).transform((o, ctx): AccountRecord['objectStore'] => {
    const out = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Record<string, string>;
    if ((out.accessKeyId === undefined) !== (out.secretAccessKey === undefined)) ctx.addIssue({ code: 'custom', message: 'accessKeyId and secretAccessKey must be given together' });
    return out as AccountRecord['objectStore'];
  }).optional()).transform((o) => o ?? null);
}

const account = section({
  name: z.string().refine((n) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(n), { error: (iss) => `'${String(iss.input)}' must be 1-64 letters, digits, '.', '_' or '-'` }),
  tokenHashes: nullIsAbsent(z.array(z.string().transform((h, ctx) => {
    const hex = h.replace(/^sha256:/, '').toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) ctx.addIssue({ code: 'custom', message: 'must be a SHA-256 hex digest (blockgate control hash-token TOKEN)' });
    return hex;
  }), { error: 'must be a list of non-empty strings' }).default([])),
  tokens: nullIsAbsent(z.array(z.string().min(16, 'tokens must be at least 16 characters'), { error: 'must be a list of non-empty strings' }).default([])),
  objectStore: objectStoreLocation(true),
}).transform((a, ctx): ControlAccountConfig => {
  const hashes = [...a.tokenHashes, ...a.tokens.map(hashToken)];
  if (hashes.length === 0) ctx.addIssue({ code: 'custom', message: 'needs at least one of tokenHashes or tokens' });
  return { name: a.name, tokenHashes: [...new Set(hashes)], objectStore: a.objectStore };
});

/** The whole `blockgate control serve` config file; `resolve` makes relative paths absolute. */
export function controlServerConfigSchema(resolve: Resolve) {
  return section({
    log: defaultedSection({
      level: oneOf(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
      format: oneOf(['json', 'text']).default('json'),
    }),
    listen: z.string().transform((v, ctx) => {
      try {
        return parseHostPort(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: errorMessage(err) });
        return z.NEVER;
      }
    }).default(parseHostPort('127.0.0.1:8443')),
    advertiseUrl: z.string().refine((u) => /^https?:\/\/[^/]+\/?$/.test(u), { error: (iss) => `'${String(iss.input)}' must be http(s)://host:port` })
      .transform((u) => u.replace(/\/+$/, '')).optional(),
    tls: nullIsAbsent(section({ cert: text.transform((p) => resolve(p)), key: text.transform((p) => resolve(p)) }).optional()),
    dataDir: text.transform((p) => resolve(p)).optional(),
    registry: nullIsAbsent(section({
      url: z.string().refine((u) => /^https?:\/\//.test(u), { error: (iss) => `'${String(iss.input)}' must be an http(s) URL of the control server that owns the registry` }),
      ca: text.transform((p) => resolve(p)).optional(),
    }).optional()),
    peerSecret: text.refine((p) => p.length >= 16, { error: 'must be at least 16 characters' }).optional(),
    activationKeyTtl: duration(1).default(30 * 60_000),
    longPollHold: duration(1).default(30_000),
    challengeTtl: duration(1).default(2 * 60_000),
    objectStore: objectStoreLocation(false),
    accounts: nullIsAbsent(z.array(account).default([])),
  }).transform((c, ctx): ControlServerConfig => {
    if ((c.dataDir === undefined) === (c.registry === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['dataDir'], message: 'give exactly one of dataDir (this server owns the registry) or registry.url (another server owns it)' });
    } else if (c.registry && !c.peerSecret) {
      ctx.addIssue({ code: 'custom', path: ['peerSecret'], message: 'is required with registry.url (the owner authenticates peers with it)' });
    }
    const names = new Set<string>();
    c.accounts.forEach((a, i) => {
      if (names.has(a.name)) ctx.addIssue({ code: 'custom', path: ['accounts', i, 'name'], message: `duplicate account '${a.name}'` });
      names.add(a.name);
    });
    return {
      log: c.log, listen: c.listen, advertiseUrl: c.advertiseUrl, tls: c.tls, dataDir: c.dataDir,
      registry: c.registry ? { url: c.registry.url, ca: c.registry.ca } : undefined, peerSecret: c.peerSecret,
      activationKeyTtlMs: c.activationKeyTtl, longPollHoldMs: c.longPollHold, challengeTtlMs: c.challengeTtl,
      objectStore: c.objectStore, accounts: c.accounts,
    };
  });
}

export function parseControlConfig(text: string, baseDir: string, source = 'control config'): ControlServerConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) throw new BlockgateError(ErrorCodes.CONFIG, `${source}: invalid YAML: ${doc.errors[0]!.message}`);
  const resolvePath = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  return parseWith(controlServerConfigSchema(resolvePath), doc.toJS() ?? {}, { code: ErrorCodes.CONFIG });
}

export function loadControlConfig(file: string): ControlServerConfig {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (err) {
    throw new BlockgateError(ErrorCodes.CONFIG, `cannot read config file ${file}: ${errorMessage(err)}`);
  }
  return parseControlConfig(text, dirname(resolve(file)), file);
}
