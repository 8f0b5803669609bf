// S3ObjectStore: ObjectStore over an S3-compatible service with
// @aws-sdk/client-s3 v3 (tested against Ceph RGW 16.2 and the AWS API shape).
//
// States: open -> closed (close() destroys the client and its sockets).
// Invariants:
//   - at most `maxConcurrency` requests are in flight (a FIFO semaphore; a
//     get holds its slot until its body is fully read); the keep-alive agent
//     has the same number of sockets, so requests never queue in the agent;
//   - every request has a deadline (timeoutMs, covering connect, send and
//     reading the body); expiry is STORE_TIMEOUT (retryable);
//   - the SDK's own retries are off (maxAttempts 1): retry.ts is the single
//     retry layer, so attempts never multiply;
//   - every failure is mapped by mapS3Error to a BlockgateError code;
//   - keys are "prefix + key"; list strips the prefix again;
//   - ETags are returned without quotes (as FsObjectStore's);
//   - a put's body is covered by its SigV4 signature: the payload SHA-256
//     (x-amz-content-sha256) is computed on the thread pool before signing and
//     the server recomputes it, so it rejects a body damaged in transit
//     (XAmzContentSHA256Mismatch). No Content-MD5 on top: MD5 was the slowest
//     hash of the put path (docs/object-store.md);
//   - conditional puts use If-None-Match: * / If-Match headers, which RGW 16.2
//     honours atomically (exactly one of N racing creators wins), but RGW 16.2
//     compares If-Match against the *unquoted* ETag: a quoted value never
//     matches. `ifMatchQuoting` (default 'unquoted') chooses the form sent.
//   - get never copies a body twice: with a Content-Length it is collected
//     into one Buffer allocated once.
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { BlockgateError, ErrorCodes, isBlockgateError } from '../errors.js';
import { checkConditions, normalizeEtag } from './fs.js';
import { abortError, throwIfAborted, validateKey, validatePrefix, validateRange } from './keys.js';
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';
import { Semaphore } from './semaphore.js';
import { sha256Async } from '../util/sha256.js';
import { S3DirectRequests } from './s3-direct.js';
import { tuning } from '../config/tuning.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3ObjectStoreOptions {
  bucket: string;
  /** Key prefix inside the bucket ("" or "a/b"; a trailing '/' is added). */
  prefix?: string;
  /** Custom endpoint, e.g. http://127.0.0.1:7480 (RGW, MinIO). */
  endpoint?: string;
  /** Default 'us-east-1'. */
  region?: string;
  /** Path-style addressing (http://host/bucket/key); needed by most on-prem servers. */
  forcePathStyle?: boolean;
  /** Explicit credentials; otherwise the SDK default chain (env, profile, IMDS, ...). */
  credentials?: S3Credentials;
  /** Most requests in flight (default 32). */
  maxConcurrency?: number;
  /** Deadline of one request including its body (ms, default 30 000). */
  timeoutMs?: number;
  /** TCP connect timeout (ms, default 5 000). */
  connectTimeoutMs?: number;
  /** How If-Match values are sent (default 'unquoted': see the file comment). */
  ifMatchQuoting?: 'unquoted' | 'quoted';
  /**
   * GET/PUT/HEAD as plain signed HTTP requests instead of through the SDK's
   * middleware stack (s3-direct.ts). Default: on with a custom endpoint
   * (off for AWS itself, whose endpoint rules only the SDK knows), unless the
   * daemon config sets tuning.s3DirectRequests: false.
   */
  directRequests?: boolean;
}

const DEFAULT_CONCURRENCY = 32;
const DEFAULT_TIMEOUT_MS = 30_000;

export class S3ObjectStore implements ObjectStore {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;
  private readonly sem: Semaphore;
  private readonly timeoutMs: number;
  private readonly quoteIfMatch: boolean;
  private readonly agents: Array<HttpAgent | HttpsAgent>;
  /** The data path for get/put/head when directRequests is on. */
  private readonly direct: S3DirectRequests | undefined;
  private closed = false;

  constructor(options: S3ObjectStoreOptions) {
    if (!options.bucket) throw new BlockgateError(ErrorCodes.CONFIG, 'S3 object store: bucket is required');
    this.bucket = options.bucket;
    const p = (options.prefix ?? '').replace(/^\/+/, '');
    this.prefix = p === '' || p.endsWith('/') ? p : p + '/';
    this.location = `s3://${this.bucket}/${this.prefix}`;
    const maxConcurrency = options.maxConcurrency ?? DEFAULT_CONCURRENCY;
    this.sem = new Semaphore(maxConcurrency);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.quoteIfMatch = options.ifMatchQuoting === 'quoted';
    const agentOptions = { keepAlive: true, maxSockets: maxConcurrency, maxFreeSockets: maxConcurrency, scheduling: 'lifo' as const };
    const httpAgent = new HttpAgent(agentOptions);
    const httpsAgent = new HttpsAgent(agentOptions);
    this.agents = [httpAgent, httpsAgent];
    const config: S3ClientConfig = {
      region: options.region ?? 'us-east-1',
      forcePathStyle: options.forcePathStyle ?? false,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({
        httpAgent,
        httpsAgent,
        connectionTimeout: options.connectTimeoutMs ?? 5_000,
        socketTimeout: this.timeoutMs,
      }),
    };
    if (options.endpoint) config.endpoint = options.endpoint;
    if (options.credentials) config.credentials = { ...options.credentials };
    this.client = new S3Client(config);
    const direct = options.directRequests ?? (options.endpoint !== undefined && tuning().s3DirectRequests);
    if (direct && options.endpoint) {
      this.direct = new S3DirectRequests({
        endpoint: options.endpoint,
        bucket: this.bucket,
        region: config.region as string,
        forcePathStyle: options.forcePathStyle ?? false,
        credentials: this.client.config.credentials,
        httpAgent,
        httpsAgent,
      });
    }
  }

  /** True when get/put/head bypass the SDK (see directRequests). */
  get directRequests(): boolean {
    return this.direct !== undefined;
  }

  /** Requests in flight / waiting for a slot (for metrics and tests). */
  get inFlight(): { active: number; queued: number } {
    return { active: this.sem.inUse, queued: this.sem.queued };
  }

  private full(key: string): string {
    return this.prefix + key;
  }

  /**
   * Run one request under the semaphore with a deadline. `fn` gets the signal
   * to pass to the SDK and to any body read it does.
   */
  private async request<T>(what: string, signal: AbortSignal | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.closed) throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, `${what}: store ${this.location} is closed`);
    throwIfAborted(signal, what);
    const release = await this.sem.acquire(signal);
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    try {
      return await fn(combined);
    } catch (err) {
      if (signal?.aborted) throw abortError(signal, what);
      if (timeout.aborted) {
        throw new BlockgateError(ErrorCodes.STORE_TIMEOUT, `${what}: no complete answer within ${this.timeoutMs} ms`, {
          retryable: true,
          cause: err,
          details: { location: this.location },
        });
      }
      throw mapS3Error(err, what, this.location);
    } finally {
      release();
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    validateKey(key);
    validateRange(options.range);
    const what = `get ${this.location}${key}`;
    const range = options.range;
    if (range && range.length === 0) {
      const info = await this.head(key, options.signal ? { signal: options.signal } : {});
      return { body: Buffer.alloc(0), etag: info.etag, size: info.size };
    }
    try {
      return await this.request(what, options.signal, async (signal) => {
        const rangeHeader = range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined;
        if (this.direct) {
          const res = await this.direct.send('GET', this.full(key), rangeHeader ? { range: rangeHeader } : {}, undefined, undefined, signal);
          const cl = res.headers['content-length'];
          const body = await collect(res.body, cl !== undefined ? Number(cl) : undefined, signal, what, options.into);
          return { body, etag: normalizeEtag(headerValue(res.headers.etag)), size: sizeFromContentRange(headerValue(res.headers['content-range'])) ?? body.length };
        }
        const out = await this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: this.full(key),
            ...(range ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}),
          }),
          { abortSignal: signal },
        );
        const length = out.ContentLength;
        const body = await collect(out.Body as Readable | undefined, length, signal, what, options.into);
        return { body, etag: normalizeEtag(out.ETag ?? ''), size: sizeFromContentRange(out.ContentRange) ?? body.length };
      });
    } catch (err) {
      // Range starting at/after the end (416): the interface clamps, so answer an empty body.
      if (range && isBlockgateError(err) && err.details?.['status'] === 416) {
        const info = await this.head(key, options.signal ? { signal: options.signal } : {});
        return { body: Buffer.alloc(0), etag: info.etag, size: info.size };
      }
      throw err;
    }
  }

  async head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo> {
    validateKey(key);
    return this.request(`head ${this.location}${key}`, options.signal, async (signal) => {
      if (this.direct) {
        const { headers } = await this.direct.send('HEAD', this.full(key), {}, undefined, undefined, signal);
        const lastModified = headers['last-modified'] ? new Date(headers['last-modified']) : new Date(0);
        return {
          key,
          size: Number(headers['content-length'] ?? 0),
          etag: normalizeEtag(headerValue(headers.etag)),
          lastModified: Number.isNaN(lastModified.getTime()) ? new Date(0) : lastModified,
        };
      }
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.full(key) }), { abortSignal: signal });
      return {
        key,
        size: out.ContentLength ?? 0,
        etag: normalizeEtag(out.ETag ?? ''),
        lastModified: out.LastModified ?? new Date(0),
      };
    });
  }

  async put(key: string, body: Buffer, options: PutOptions = {}): Promise<{ etag: string }> {
    validateKey(key);
    checkConditions(options);
    const what = `put ${this.location}${key}`;
    let ifMatch: string | undefined;
    if (options.ifMatch !== undefined) {
      const bare = normalizeEtag(options.ifMatch);
      ifMatch = this.quoteIfMatch ? `"${bare}"` : bare;
    }
    try {
      const payloadSha256 = (await sha256Async(body)).toString('hex');
      const etag = await this.request(what, options.signal, async (signal) => {
        if (this.direct) {
          const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
          if (options.ifNoneMatch) headers['if-none-match'] = '*';
          if (ifMatch !== undefined) headers['if-match'] = ifMatch;
          const res = await this.direct.send('PUT', this.full(key), headers, body, payloadSha256, signal);
          const e = headerValue(res.headers.etag);
          return e ? normalizeEtag(e) : undefined;
        }
        const command = new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.full(key),
          Body: body,
          ContentLength: body.length,
          ContentType: 'application/octet-stream',
          ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
          ...(ifMatch !== undefined ? { IfMatch: ifMatch } : {}),
        });
        // The signer uses a payload hash already present instead of hashing the body itself.
        command.middlewareStack.add(
          (next) => (args) => {
            (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = payloadSha256;
            return next(args);
          },
          { step: 'build', name: 'blockgatePayloadSha256' },
        );
        const out = await this.client.send(command, { abortSignal: signal });
        return out.ETag ? normalizeEtag(out.ETag) : undefined;
      });
      // A server that answers without an ETag: ask for it (conditional puts need it).
      return { etag: etag ?? (await this.head(key, options.signal ? { signal: options.signal } : {})).etag };
    } catch (err) {
      // AWS answers If-Match on a missing key with 404; the interface says PRECONDITION_FAILED.
      if (ifMatch !== undefined && isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) {
        throw new BlockgateError(ErrorCodes.PRECONDITION_FAILED, `${what}: ifMatch on a missing object`, { cause: err, details: err.details });
      }
      throw err;
    }
  }

  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    validateKey(key);
    const what = `delete ${this.location}${key}`;
    try {
      await this.request(what, options.signal, (signal) =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.full(key) }), { abortSignal: signal }),
      );
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND) && err.details?.['s3Code'] !== 'NoSuchBucket') return;
      throw err;
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    const what = `list ${this.location}${prefix}`;
    let token: string | undefined;
    let startAfter = options.startAfter !== undefined ? this.full(options.startAfter) : undefined;
    for (;;) {
      const page = await this.request(what, options.signal, (signal) =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: this.full(prefix),
            ...(token ? { ContinuationToken: token } : startAfter ? { StartAfter: startAfter } : {}),
          }),
          { abortSignal: signal },
        ),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || !o.Key.startsWith(this.prefix)) continue;
        yield {
          key: o.Key.slice(this.prefix.length),
          size: o.Size ?? 0,
          etag: normalizeEtag(o.ETag ?? ''),
          lastModified: o.LastModified ?? new Date(0),
        };
      }
      if (!page.IsTruncated) return;
      token = page.NextContinuationToken;
      if (!token) {
        // Some servers omit the token: continue after the last key instead.
        const last = page.Contents?.at(-1)?.Key;
        if (!last) return;
        startAfter = last;
      }
    }
  }

  /** Create the bucket if it does not exist (for setup tools and tests). */
  async ensureBucket(options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.request(`create bucket ${this.bucket}`, options.signal, (signal) =>
        this.client.send(new CreateBucketCommand({ Bucket: this.bucket }), { abortSignal: signal }),
      );
    } catch (err) {
      const code = isBlockgateError(err) ? err.details?.['s3Code'] : undefined;
      if (code === 'BucketAlreadyOwnedByYou' || code === 'BucketAlreadyExists') return;
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.destroy();
    for (const a of this.agents) a.destroy();
  }
}

/**
 * Read a response body into one Buffer. With a known length the Buffer is
 * allocated once and chunks are copied into it; a short or long body is a
 * retryable STORE_UNAVAILABLE (the connection broke mid-body).
 */
async function collect(stream: Readable | undefined, length: number | undefined, signal: AbortSignal, what: string, into?: Buffer): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  const onAbort = (): void => {
    stream.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    if (length !== undefined && length >= 0) {
      const out = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
      let n = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (n + chunk.length > length) throw truncated(what, `body longer than Content-Length ${length}`);
        chunk.copy(out, n);
        n += chunk.length;
      }
      if (n !== length) throw truncated(what, `body ended after ${n} of ${length} bytes`);
      return out;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

function headerValue(v: string | string[] | undefined): string {
  return Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
}

/** The total size from a Content-Range such as "bytes 0-99/1234". */
function sizeFromContentRange(contentRange: string | undefined): number | undefined {
  const m = contentRange ? /\/(\d+)\s*$/.exec(contentRange) : null;
  return m ? Number(m[1]) : undefined;
}

function truncated(what: string, why: string): BlockgateError {
  return new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, `${what}: ${why}`, { retryable: true });
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EHOSTDOWN',
  'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ESOCKETTIMEDOUT', 'EADDRNOTAVAIL', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET',
]);
const THROTTLE_NAMES = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequests', 'TooManyRequestsException', 'RequestThrottled']);
const DENIED_NAMES = new Set([
  'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired',
  'RequestTimeTooSkewed', 'AllAccessDisabled', 'AccountProblem', 'CredentialsProviderError', 'InvalidSecurity',
]);

/** Map any error from the SDK or the network to a BlockgateError. */
export function mapS3Error(err: unknown, what: string, location: string): BlockgateError {
  if (isBlockgateError(err)) return err;
  const e = err as {
    name?: string;
    code?: string;
    Code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number };
    $response?: { statusCode?: number };
  };
  const status = e?.$metadata?.httpStatusCode ?? e?.$response?.statusCode;
  const name = e?.Code ?? e?.name ?? '';
  const netCode = e?.code ?? (e as { cause?: { code?: string } })?.cause?.code;
  const details: Record<string, unknown> = { location, s3Code: name, status };
  const msg = `${what}: ${name && name !== 'Error' ? name + ': ' : ''}${e?.message ?? String(err)}${status ? ` (HTTP ${status})` : ''}`;
  const make = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], retryable: boolean, text = msg): BlockgateError =>
    new BlockgateError(code, text, { retryable, cause: err, details });

  if (name === 'TimeoutError' || name === 'RequestTimeout' || name === 'RequestTimeoutException' || netCode === 'ETIMEDOUT') {
    return make(ErrorCodes.STORE_TIMEOUT, true);
  }
  if (THROTTLE_NAMES.has(name) || status === 429 || (status === 503 && /slow ?down|throttl/i.test(name + ' ' + (e?.message ?? '')))) {
    return make(ErrorCodes.STORE_THROTTLED, true);
  }
  if (name === 'NoSuchBucket') return make(ErrorCodes.STORE_BAD_REQUEST, false, `${msg}: bucket does not exist`);
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return make(ErrorCodes.OBJECT_NOT_FOUND, false);
  if (name === 'PreconditionFailed' || status === 412) return make(ErrorCodes.PRECONDITION_FAILED, false);
  if (DENIED_NAMES.has(name) || status === 403) return make(ErrorCodes.STORE_ACCESS_DENIED, false);
  // AWS: a concurrent conditional write on the same key; nothing was applied.
  if (name === 'ConditionalRequestConflict' || status === 409) {
    return name === 'ConditionalRequestConflict' ? make(ErrorCodes.STORE_UNAVAILABLE, true) : make(ErrorCodes.STORE_BAD_REQUEST, false);
  }
  if (status !== undefined && status >= 500) return make(ErrorCodes.STORE_UNAVAILABLE, true);
  if (status !== undefined && status >= 400) return make(ErrorCodes.STORE_BAD_REQUEST, false);
  if (name === 'AbortError') return make(ErrorCodes.STORE_TIMEOUT, true);
  if ((netCode && NETWORK_CODES.has(netCode)) || /socket hang up|ECONNRESET|ECONNREFUSED|EPIPE/i.test(e?.message ?? '')) {
    return make(ErrorCodes.STORE_UNAVAILABLE, true);
  }
  if (e?.$metadata !== undefined || e?.$response !== undefined) {
    // The SDK saw a response it could not make sense of (truncated XML, proxy page): transient.
    return make(ErrorCodes.STORE_UNAVAILABLE, true);
  }
  // A programming error (ours or the SDK's) will not go away by retrying.
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) return make(ErrorCodes.IO, false);
  return make(ErrorCodes.STORE_UNAVAILABLE, true);
}
