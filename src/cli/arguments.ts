// Command-line values in the same grammars as the config files: durations
// (util/duration.ts: 500ms, 30s, 5m, 2h, 1d, 1w; a bare number = seconds)
// and sizes (util/size.ts: 512KiB, 10GiB, 1G; a bare number = bytes). A bad
// value is an INVALID_ARGUMENT naming the option.
import { BlockgateError, ErrorCodes } from '../errors.js';
import { DURATION_EXAMPLES, parseDuration } from '../util/duration.js';
import { parseSize } from '../util/size.js';

/** Milliseconds. */
export function durationArg(text: string, option: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `${option}: '${text}' is not a duration (e.g. ${DURATION_EXAMPLES}, 0)`);
  return ms;
}

/** Bytes, more than 0. */
export function sizeArg(text: string, option: string): number {
  const n = parseSize(text);
  if (n === undefined || n <= 0) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `${option}: '${text}' is not a size (e.g. 10GiB)`);
  return n;
}
