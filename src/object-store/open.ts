// openObjectStore: turns a store URL plus options into a ready ObjectStore.
//   file:///abs/path, a plain path (absolute or relative)  -> FsObjectStore
//   s3://bucket[/prefix]                                     -> S3ObjectStore,
//                                                              wrapped in RetryingObjectStore
// Options win over environment variables, which win over defaults:
//   endpoint        AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL
//   region          AWS_REGION, then AWS_DEFAULT_REGION, then 'us-east-1'
//   credentials     AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN),
//                   else the SDK default chain (profile, SSO, IMDS, ...)
//   forcePathStyle  default true when an endpoint is set (on-prem servers), else false
// Bad URLs and option values fail with ErrorCodes.CONFIG naming the problem.
// No state of its own; `env` is injectable for tests.
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BlockgateError, ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import { FsObjectStore, type FsObjectStoreOptions } from './fs.js';
import type { ObjectStore } from './object-store.js';
import { RetryingObjectStore, type RetryOptions } from './retry.js';
import { S3ObjectStore } from './s3.js';

export interface OpenObjectStoreOptions {
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  forcePathStyle?: boolean;
  maxConcurrency?: number;
  /** Per-request timeout for S3 (ms). */
  timeoutMs?: number;
  /** Retry settings for S3; `false` returns the bare S3ObjectStore. */
  retry?: RetryOptions | false;
  /** RGW 16.2 needs 'unquoted' (the default). */
  ifMatchQuoting?: 'unquoted' | 'quoted';
  /** FsObjectStore settings. */
  fs?: FsObjectStoreOptions;
  /** Environment to read AWS_* from (default process.env). */
  env?: Record<string, string | undefined>;
  logger?: Logger;
}

export async function openObjectStore(url: string, options: OpenObjectStoreOptions = {}): Promise<ObjectStore> {
  if (typeof url !== 'string' || url.trim() === '') throw configError('object store URL is empty');
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) return FsObjectStore.open(resolve(url), options.fs);
  if (scheme === 'file') return FsObjectStore.open(filePath(url), options.fs);
  if (scheme === 's3') return openS3(url, options);
  throw configError(`unsupported object store URL ${JSON.stringify(url)}: use file:///path, a path, or s3://bucket/prefix`);
}

function filePath(url: string): string {
  let path: string;
  try {
    path = fileURLToPath(url);
  } catch (err) {
    throw configError(`invalid file URL ${JSON.stringify(url)}: ${(err as Error).message} (use file:///absolute/path)`);
  }
  if (!isAbsolute(path)) throw configError(`invalid file URL ${JSON.stringify(url)}: path must be absolute`);
  return path;
}

function openS3(url: string, options: OpenObjectStoreOptions): ObjectStore {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw configError(`invalid S3 URL ${JSON.stringify(url)} (use s3://bucket/prefix)`);
  }
  const bucket = parsed.hostname;
  if (!bucket) throw configError(`S3 URL ${JSON.stringify(url)} names no bucket (use s3://bucket/prefix)`);
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) && !/^[A-Za-z0-9._-]{1,255}$/.test(bucket)) {
    throw configError(`S3 URL ${JSON.stringify(url)}: invalid bucket name ${JSON.stringify(bucket)}`);
  }
  if (parsed.port || parsed.username || parsed.password || parsed.search || parsed.hash) {
    throw configError(`S3 URL ${JSON.stringify(url)}: only s3://bucket/prefix is allowed (put the endpoint in the endpoint option)`);
  }
  // The raw text, not parsed.pathname: URL parsing silently resolves "..".
  const rawPath = url.slice(url.indexOf('//') + 2).replace(/^[^/]*/, '');
  let prefix: string;
  try {
    prefix = decodeURIComponent(rawPath.replace(/^\//, ''));
  } catch {
    throw configError(`S3 URL ${JSON.stringify(url)}: prefix is not valid percent-encoding`);
  }
  if (prefix.split('/').some((s, i, a) => (s === '' && i < a.length - 1) || s === '.' || s === '..')) {
    throw configError(`S3 URL ${JSON.stringify(url)}: prefix has an empty, '.' or '..' segment`);
  }
  const env = options.env ?? process.env;
  const endpoint = options.endpoint ?? nonEmpty(env['AWS_ENDPOINT_URL_S3']) ?? nonEmpty(env['AWS_ENDPOINT_URL']);
  if (endpoint !== undefined) {
    let ep: URL;
    try {
      ep = new URL(endpoint);
    } catch {
      throw configError(`invalid S3 endpoint ${JSON.stringify(endpoint)} (use http(s)://host:port)`);
    }
    if (ep.protocol !== 'http:' && ep.protocol !== 'https:') throw configError(`S3 endpoint ${JSON.stringify(endpoint)} must be http or https`);
  }
  const region = options.region ?? nonEmpty(env['AWS_REGION']) ?? nonEmpty(env['AWS_DEFAULT_REGION']) ?? 'us-east-1';
  const accessKeyId = options.accessKeyId ?? nonEmpty(env['AWS_ACCESS_KEY_ID']);
  const secretAccessKey = options.secretAccessKey ?? nonEmpty(env['AWS_SECRET_ACCESS_KEY']);
  const sessionToken = options.sessionToken ?? (options.accessKeyId ? undefined : nonEmpty(env['AWS_SESSION_TOKEN']));
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw configError('S3 credentials: accessKeyId and secretAccessKey must be given together');
  }
  for (const [name, v] of [['maxConcurrency', options.maxConcurrency], ['timeoutMs', options.timeoutMs]] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) throw configError(`S3 option ${name} must be a positive integer, got ${v}`);
  }
  const s3 = new S3ObjectStore({
    bucket,
    prefix,
    region,
    forcePathStyle: options.forcePathStyle ?? endpoint !== undefined,
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(accessKeyId !== undefined && secretAccessKey !== undefined
      ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } }
      : {}),
    ...(options.maxConcurrency !== undefined ? { maxConcurrency: options.maxConcurrency } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.ifMatchQuoting !== undefined ? { ifMatchQuoting: options.ifMatchQuoting } : {}),
  });
  if (options.retry === false) return s3;
  const retry: RetryOptions = { ...(options.retry ?? {}) };
  if (retry.attemptTimeoutMs === undefined && options.timeoutMs !== undefined) retry.attemptTimeoutMs = options.timeoutMs;
  if (retry.logger === undefined && options.logger !== undefined) retry.logger = options.logger;
  return new RetryingObjectStore(s3, retry);
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function configError(message: string): BlockgateError {
  return new BlockgateError(ErrorCodes.CONFIG, message, { retryable: false });
}
