// Taking over a unix socket path safely: a socket file left by a crashed
// process is removed, but one that a live process still accepts on is never
// stolen (that would silently cut another daemon off its clients).
import { existsSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { BlockgateError, ErrorCodes } from '../errors.js';

export async function claimUnixSocketPath(path: string, key: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new BlockgateError(ErrorCodes.CONFIG, `${key}: ${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const s = connect({ path });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
  if (live) throw new BlockgateError(ErrorCodes.CONFIG, `${key}: ${path} is in use by another running process`);
  unlinkSync(path);
}
