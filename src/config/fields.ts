// The building blocks of every config schema (zod): field types shared by the
// YAML configs, the admin API bodies and the control commands, and the one
// place where a zod failure becomes a BlockgateError whose message names the
// key: "volumes[2].blockSize: must be a power of two between 64 KiB and 4 MiB
// (got '3MiB')". Objects are strict: an unknown key is an error (a typo must
// not silently fall back to a default).
import { z } from 'zod';
import { BlockgateError, ErrorCodes, type ErrorCode } from '../errors.js';
import { DURATION_EXAMPLES, formatDuration, parseDuration } from '../util/duration.js';
import { formatSize, parseSize } from '../util/size.js';
import { parseHostPort } from '../util/host-port.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;

/** A value as messages quote it: strings in quotes, numbers bare, anything else as JSON. */
const show = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v));

/**
 * Messages for the generic failures (wrong type, missing key, unknown key,
 * value outside a list), so fields only spell out what is specific to them.
 */
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type':
      if (iss.input === undefined) return 'is required';
      switch (iss.expected) {
        case 'object': return 'must be a mapping';
        case 'array': return 'must be a list';
        case 'string': return 'must be a non-empty string';
        case 'boolean': return 'must be true or false';
        case 'number': case 'int': return `must be a number (got ${show(iss.input)})`;
        default: return undefined;
      }
    case 'unrecognized_keys': {
      const shape = (iss.inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def?.shape;
      return `unknown key${shape ? ` (allowed: ${Object.keys(shape).join(', ')})` : ''}`;
    }
    case 'invalid_value':
      return `must be one of ${iss.values.map(String).join(', ')} (got ${show(iss.input)})`;
    default:
      return undefined;
  }
}

/** `volumes[2].blockSize` from a zod path (and an optional prefix such as "volume"). */
export function keyPath(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out === '' ? '(top level)' : out;
}

export interface ParseOptions {
  /** ErrorCodes.CONFIG for config files; the admin API and commands keep the code their callers know. */
  readonly code?: ErrorCode;
  /** Put before every key ("volume" → "volume.size: ..."). */
  readonly prefix?: string;
  /** Put before the whole message ("create-volume" → "create-volume: size: ..."). */
  readonly context?: string;
}

/** Parses `input` with `schema`, or throws one BlockgateError naming the first offending key (unknown keys first: a typo explains the rest). */
export function parseWith<S extends z.ZodType>(schema: S, input: unknown, options: ParseOptions = {}): z.output<S> {
  const r = schema.safeParse(input, { error: issueMessage });
  if (r.success) return r.data;
  const issue = r.error.issues.find((i) => i.code === 'unrecognized_keys') ?? r.error.issues[0]!;
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
  const message = `${keyPath(options.prefix ?? '', path)}: ${issue.message}`;
  throw new BlockgateError(options.code ?? ErrorCodes.CONFIG, options.context ? `${options.context}: ${message}` : message);
}

/** A strict mapping: unknown keys are errors. */
export function section<T extends z.ZodRawShape>(shape: T) {
  return z.strictObject(shape);
}

/** YAML writes an empty section (`log:`) as null: treat it as absent. */
export function nullIsAbsent<S extends z.ZodType>(schema: S) {
  return z.preprocess((v) => (v === null ? undefined : v), schema);
}

/** A section that may be left out (or empty): its fields' defaults apply. */
export function defaultedSection<T extends z.ZodRawShape>(shape: T) {
  return nullIsAbsent(z.strictObject(shape).prefault({} as never));
}

export const text = z.string().min(1, 'must be a non-empty string');

export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values);
}

export const EXPORT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** An NBD export / volume name. */
export const volumeName = z.string().refine((v) => EXPORT_NAME.test(v), {
  error: (iss) => `${show(iss.input)} must be 1-128 characters of letters, digits, '.', '_' or '-'`,
});

/** A snapshot id: snap-... (one volume) or vsnap-... (a group). */
export const snapshotId = z.string().refine((v) => /^v?snap-[0-9a-f]+$/.test(v), {
  error: (iss) => `${show(iss.input)} is not a snapshot id (snap-... or vsnap-...)`,
});

export const hostPort = z.string().superRefine((v, ctx) => {
  try {
    parseHostPort(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

/** An integer in [min, max] (max unbounded by default). */
export function integer(min: number, max = Number.MAX_SAFE_INTEGER, what = 'an integer') {
  const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..${max}`;
  const message = (iss: { input?: unknown }): string => (iss.input === undefined ? 'is required' : `must be ${what} ${range} (got ${show(iss.input)})`);
  return z.number({ error: message }).refine((n) => Number.isSafeInteger(n) && n >= min && n <= max, { error: message });
}

/** Bytes: "512KiB", "1G" (binary), "1GB" (decimal), or a number of bytes; at least `min`. */
export function size(min = 0) {
  const example = '(e.g. 10GiB, 512MiB, 1073741824)';
  return z.union([z.string(), z.number()], { error: (iss) => (iss.input === undefined ? 'is required' : `${show(iss.input)} is not a size ${example}`) })
    .transform((v, ctx) => {
      const n = parseSize(v);
      if (n === undefined || n < min || (min > 0 && n === 0)) {
        ctx.addIssue({ code: 'custom', message: n === undefined ? `${show(v)} is not a size ${example}` : `${show(v)} is not a size of at least ${formatSize(Math.max(min, 1))}` });
        return z.NEVER;
      }
      return n;
    });
}

/** A snapshot block size: a power of two, 64 KiB..4 MiB (fixed per volume). */
export const DEFAULT_BLOCK_SIZE = 512 * KiB;
export const blockSize = z.union([z.string(), z.number()], {
  error: (iss) => (iss.input === undefined ? 'is required' : `must be a power of two between 64 KiB and 4 MiB (got ${show(iss.input)})`),
})
  .transform((v, ctx) => {
    const n = parseSize(v);
    if (n === undefined || n < 64 * KiB || n > 4 * MiB || (n & (n - 1)) !== 0) {
      ctx.addIssue({ code: 'custom', message: `must be a power of two between 64 KiB and 4 MiB (got ${show(v)})` });
      return z.NEVER;
    }
    return n;
  });

/** Milliseconds from the one duration grammar (util/duration.ts); at least `minMs`. */
export function duration(minMs = 0) {
  return z.union([z.string(), z.number()], {
    error: (iss) => (iss.input === undefined ? 'is required' : `${show(iss.input)} is not a duration (e.g. ${DURATION_EXAMPLES})`),
  })
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `${show(v)} is not a duration (e.g. ${DURATION_EXAMPLES})` });
        return z.NEVER;
      }
      if (ms < minMs) {
        ctx.addIssue({ code: 'custom', message: minMs === 1 ? 'must be positive' : `must be at least ${formatDuration(minMs)}` });
        return z.NEVER;
      }
      return ms;
    });
}
