// "host:port" and "[v6]:port" as used by listeners and control URLs.
import { BlockgateError, ErrorCodes } from '../errors.js';

/** Parses host:port (an empty host means all interfaces); CONFIG error otherwise. */
export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text.trim());
  if (!m) throw new BlockgateError(ErrorCodes.CONFIG, `'${text}' is not host:port`);
  const port = Number(m[3]);
  if (port > 65535) throw new BlockgateError(ErrorCodes.CONFIG, `port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
