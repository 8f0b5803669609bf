// S3DirectRequests: GET, PUT and HEAD of single objects as plain SigV4-signed
// node:http(s) requests, for S3ObjectStore's data path against a custom
// endpoint (RGW, MinIO, ...). Why: the AWS SDK v3 middleware stack (endpoint
// rules, schema serde, retry and logging layers) costs about 1–1.5 ms of
// event-loop CPU per request, and block objects are small and many; measured
// on 1024 × 512 KiB GETs from RGW: 1.2–1.5 s of CPU through the SDK against
// 0.85 s this way (docs/object-store.md). Listing, deleting and bucket
// creation stay on the SDK.
//
// Invariants:
//   - the same wire behaviour as the SDK path: path-style or virtual-hosted
//     addressing, SigV4 (signed by @smithy/signature-v4 with the client's own
//     credential provider, so refresh and session tokens behave the same),
//     If-None-Match / If-Match, Range;
//   - a PUT's body is covered by the signature (x-amz-content-sha256 = its
//     SHA-256, computed by the caller off the event loop); GET/HEAD sign the
//     empty payload;
//   - every non-2xx answer becomes an error shaped like the SDK's
//     ({ name: <S3 error code>, $metadata.httpStatusCode }) so mapS3Error maps
//     both paths identically; network errors keep their errno code;
//   - aborting `signal` destroys the request and its response body;
//   - an error body is read up to ERROR_BODY_MAX bytes, never more.
import { createHash, createHmac } from 'node:crypto';
import { request as httpRequest, type Agent as HttpAgent, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, Provider } from '@smithy/types';
import { packageVersion } from '../util/version.js';

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const ERROR_BODY_MAX = 64 * 1024;

export interface DirectResponse {
  status: number;
  headers: IncomingMessage['headers'];
  /** The response body stream (GET); already consumed for HEAD and PUT. */
  body: IncomingMessage;
}

/** node:crypto hashes behind the @smithy/types Checksum interface the signer wants. */
class NodeSha256 {
  private readonly h;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', typeof secret === 'string' ? secret : Buffer.from(secret as ArrayBuffer));
  }
  update(data: string | Uint8Array): void {
    this.h.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return this.h.digest();
  }
}

export interface S3DirectOptions {
  endpoint: string;
  bucket: string;
  region: string;
  forcePathStyle: boolean;
  credentials: Provider<AwsCredentialIdentity>;
  httpAgent: HttpAgent;
  httpsAgent: HttpsAgent;
}

export class S3DirectRequests {
  private readonly signer: SignatureV4;
  private readonly https: boolean;
  private readonly hostname: string;
  private readonly port: number | undefined;
  private readonly hostHeader: string;
  /** Path up to and including the bucket (path style) or the endpoint's base path. */
  private readonly basePath: string;
  private readonly agent: HttpAgent | HttpsAgent;
  private readonly userAgent = `blockgate/${packageVersion()}`;

  constructor(o: S3DirectOptions) {
    const url = new URL(o.endpoint);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`endpoint ${o.endpoint}: not http(s)`);
    this.https = url.protocol === 'https:';
    this.agent = this.https ? o.httpsAgent : o.httpAgent;
    const base = url.pathname.replace(/\/+$/, '');
    const host = url.hostname.replace(/^\[|\]$/g, '');
    this.port = url.port ? Number(url.port) : undefined;
    if (o.forcePathStyle) {
      this.hostname = host;
      this.hostHeader = url.host;
      this.basePath = `${base}/${encodeSegment(o.bucket)}`;
    } else {
      this.hostname = `${o.bucket}.${host}`;
      this.hostHeader = `${o.bucket}.${url.host}`;
      this.basePath = base;
    }
    this.signer = new SignatureV4({
      service: 's3',
      region: o.region,
      credentials: o.credentials,
      sha256: NodeSha256,
      uriEscapePath: false, // S3: the path is encoded once, by us
      applyChecksum: false,
    });
  }

  /** Sends one request; resolves on the response head. Non-2xx answers reject (see file comment). */
  async send(
    method: 'GET' | 'PUT' | 'HEAD',
    key: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    payloadSha256: string | undefined,
    signal: AbortSignal,
  ): Promise<DirectResponse> {
    const path = `${this.basePath}/${key.split('/').map(encodeSegment).join('/')}`;
    const signed = await this.signer.sign({
      method,
      protocol: this.https ? 'https:' : 'http:',
      hostname: this.hostname,
      ...(this.port !== undefined ? { port: this.port } : {}),
      path,
      query: {},
      headers: {
        ...headers,
        host: this.hostHeader,
        'x-amz-content-sha256': payloadSha256 ?? EMPTY_SHA256,
        ...(body ? { 'content-length': String(body.length) } : {}),
      },
    });
    signal.throwIfAborted();
    const send = this.https ? httpsRequest : httpRequest;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = send({
        agent: this.agent,
        method,
        hostname: this.hostname,
        ...(this.port !== undefined ? { port: this.port } : {}),
        path,
        headers: { ...signed.headers, 'user-agent': this.userAgent },
        signal,
      });
      req.once('response', (res: IncomingMessage) => {
        // A response broken mid-body is seen by whoever reads it (or not at
        // all, for drained HEAD/PUT answers); never an unhandled 'error'.
        res.on('error', ignore);
        resolve(res);
      });
      req.on('error', reject); // stays attached: a late second error is a no-op, not a crash
      req.end(body);
    });
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) {
      if (method !== 'GET') res.resume();
      return { status, headers: res.headers, body: res };
    }
    throw await responseError(res, method, status);
  }
}

function ignore(): void {}

/** RFC 3986 encoding of one path segment, as S3 canonicalises it. */
function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** An SDK-shaped error from a non-2xx answer: S3's XML <Code>/<Message> when there is a body. */
async function responseError(res: IncomingMessage, method: string, status: number): Promise<Error> {
  let text = '';
  if (method !== 'HEAD') {
    const chunks: Buffer[] = [];
    let n = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        if (n < ERROR_BODY_MAX) chunks.push(chunk.subarray(0, ERROR_BODY_MAX - n));
        n += chunk.length;
      }
    } catch { /* a broken error body still yields the status */ }
    text = Buffer.concat(chunks).toString('utf8');
  } else {
    res.resume();
  }
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? STATUS_NAMES[status] ?? `HTTP${status}`;
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? (res.statusMessage || code);
  const err = new Error(message) as Error & { $metadata: { httpStatusCode: number }; Code: string };
  err.name = code;
  err.Code = code;
  err.$metadata = { httpStatusCode: status };
  return err;
}

/** Names the SDK gives body-less answers (HEAD), so mapS3Error sees the same thing. */
const STATUS_NAMES: Record<number, string> = {
  304: 'NotModified',
  400: 'BadRequest',
  403: 'Forbidden',
  404: 'NotFound',
  412: 'PreconditionFailed',
  416: 'InvalidRange',
  429: 'TooManyRequests',
  503: 'ServiceUnavailable',
};
