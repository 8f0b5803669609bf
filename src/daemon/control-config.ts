// The daemon's `control:` section: where the gateway agent activates and
// keeps its control channel. Parsed here so config.ts only delegates.
import { isAbsolute, resolve } from 'node:path';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { parseHostPort } from '../util/host-port.js';

export interface ControlConfig {
  /** Control endpoint, http(s)://host:port */
  readonly url: string;
  /** Local activation endpoint (host:port) where `blockgate activate` fetches the key. */
  readonly activationListen: string;
  /** Extra CA (PEM file) trusted for an https control URL. */
  readonly ca: string | undefined;
  /** Gateway identity and credentials (0700 dir; key and credentials 0600). */
  readonly stateDir: string;
}

function fail(key: string, message: string): never {
  throw new BlockgateError(ErrorCodes.CONFIG, `control.${key}: ${message}`);
}

export function parseControlSection(raw: unknown, baseDir: string, dataDir: string): ControlConfig | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new BlockgateError(ErrorCodes.CONFIG, 'control: must be a mapping');
  const o = raw as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['url', 'activationListen', 'ca', 'stateDir'].includes(k)) fail(k, 'unknown key (allowed: url, activationListen, ca, stateDir)');
  }
  const path = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  if (typeof o.url !== 'string' || !/^https?:\/\/[^/]+/.test(o.url)) fail('url', 'is required: http(s)://host:port of the control server');
  const activationListen = o.activationListen ?? '127.0.0.1:8080';
  if (typeof activationListen !== 'string') fail('activationListen', 'must be host:port');
  try { parseHostPort(activationListen); } catch (err) { fail('activationListen', (err as Error).message); }
  if (o.ca !== undefined && typeof o.ca !== 'string') fail('ca', 'must be a file path');
  if (o.stateDir !== undefined && typeof o.stateDir !== 'string') fail('stateDir', 'must be a directory path');
  return {
    url: o.url,
    activationListen,
    ca: o.ca === undefined ? undefined : path(o.ca),
    stateDir: o.stateDir === undefined ? resolve(dataDir, 'gateway') : path(o.stateDir),
  };
}
