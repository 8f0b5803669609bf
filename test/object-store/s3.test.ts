import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, test } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { CountingObjectStore } from '../../src/object-store/counting.js';
import { openObjectStore } from '../../src/object-store/open.js';
import { RetryingObjectStore } from '../../src/object-store/retry.js';
import { S3ObjectStore } from '../../src/object-store/s3.js';
import { createTestBucket } from '../harness/rgw.js';
import { settle, until } from '../harness/until.js';
import { objectStoreCompliance } from './compliance.js';

const s3 = inject('s3');
let bucket: string;
beforeAll(async () => {
  bucket = await createTestBucket(s3, 'compliance');
});

const creds = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
const rgwStore = (prefix: string, extra: Partial<ConstructorParameters<typeof S3ObjectStore>[0]> = {}): S3ObjectStore =>
  new S3ObjectStore({ bucket, prefix, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: creds, ...extra });

objectStoreCompliance('S3ObjectStore on Ceph RGW', async () => rgwStore(`t-${randomBytes(6).toString('hex')}`), { manyKeys: 1100 });

// get/put/head through the AWS SDK instead of the direct signed requests (the
// path used for AWS itself, and with BLOCKGATE_S3_DIRECT=0).
objectStoreCompliance(
  'S3ObjectStore on Ceph RGW, SDK data path',
  async () => rgwStore(`sdk-${randomBytes(6).toString('hex')}`, { directRequests: false }),
  { manyKeys: 1001 },
);

objectStoreCompliance(
  'openObjectStore(s3://…) on Ceph RGW (retry wrapper)',
  async () =>
    openObjectStore(`s3://${bucket}/o-${randomBytes(6).toString('hex')}`, {
      env: { AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region },
    }),
  { manyKeys: 1001 },
);

describe('S3ObjectStore against Ceph RGW', () => {
  test('keys live under the prefix; list strips it', async () => {
    const a = rgwStore('pfx-a');
    const b = rgwStore('pfx-a/sub/');
    await b.put('k', Buffer.from('x'));
    const keys: string[] = [];
    for await (const i of a.list('')) keys.push(i.key);
    expect(keys).toContain('sub/k');
    expect(a.location).toBe(`s3://${bucket}/pfx-a/`);
    await a.close();
    await b.close();
  });

  test('wrong credentials: STORE_ACCESS_DENIED, not retried', async () => {
    const bad = rgwStore('denied', { credentials: { accessKeyId: 'NOSUCHKEY00000000000', secretAccessKey: 'wrong' } });
    const counted = new CountingObjectStore(bad);
    let retries = 0;
    const s = new RetryingObjectStore(counted, { onRetry: () => retries++ });
    await expect(s.put('k', Buffer.from('x'))).rejects.toMatchObject({ code: ErrorCodes.STORE_ACCESS_DENIED, retryable: false });
    await expect(s.get('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_ACCESS_DENIED, retryable: false });
    const wrongSecret = new RetryingObjectStore(rgwStore('denied', { credentials: { ...creds, secretAccessKey: 'not-the-secret' } }));
    await expect(wrongSecret.head('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_ACCESS_DENIED });
    expect(retries).toBe(0);
    expect(counted.snapshot().put.requests).toBe(1);
    await s.close();
    await wrongSecret.close();
  });

  test('a custom endpoint uses the direct data path unless told otherwise', async () => {
    const direct = rgwStore('path');
    const sdk = rgwStore('path', { directRequests: false });
    expect(direct.directRequests).toBe(true);
    expect(sdk.directRequests).toBe(false);
    expect(new S3ObjectStore({ bucket, region: 'us-east-1', credentials: creds }).directRequests).toBe(false);
    await direct.close();
    await sdk.close();
  });

  test('a put body that does not match its signed SHA-256 is refused by the server (why puts carry no Content-MD5)', async () => {
    const { S3DirectRequests } = await import('../../src/object-store/s3-direct.js');
    const { Agent } = await import('node:http');
    const { Agent: HttpsAgent } = await import('node:https');
    const agent = new Agent({ keepAlive: false });
    const direct = new S3DirectRequests({
      endpoint: s3.endpoint, bucket, region: s3.region, forcePathStyle: true,
      credentials: async () => creds, httpAgent: agent, httpsAgent: new HttpsAgent(),
    });
    const body = randomBytes(100_000);
    const signedFor = createHash('sha256').update(Buffer.concat([body.subarray(0, 99_999), Buffer.from([body[99_999]! ^ 1])])).digest('hex');
    const err = await direct.send('PUT', 'integrity/k', {}, body, signedFor, AbortSignal.timeout(10_000)).then(() => undefined, (e: unknown) => e);
    expect(err).toMatchObject({ $metadata: { httpStatusCode: 400 } });
    expect((err as Error).name).toMatch(/SHA256Mismatch|BadDigest/);
    // The object was not created.
    const store = rgwStore('');
    await expect(store.head('integrity/k')).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND });
    // And the right hash is accepted.
    await direct.send('PUT', 'integrity/k', {}, body, createHash('sha256').update(body).digest('hex'), AbortSignal.timeout(10_000));
    expect((await store.get('integrity/k')).body.equals(body)).toBe(true);
    await store.close();
    agent.destroy();
  });

  test('get reads into the caller\'s buffer when it fits, on both data paths', async () => {
    for (const directRequests of [true, false]) {
      const st = rgwStore(`into-${randomBytes(4).toString('hex')}`, { directRequests });
      const data = randomBytes(200_000);
      await st.put('k', data);
      const into = Buffer.alloc(256 * 1024);
      const got = await st.get('k', { into });
      expect(got.body.equals(data)).toBe(true);
      expect(got.body.buffer).toBe(into.buffer);
      await st.close();
    }
  });

  test('missing bucket: STORE_BAD_REQUEST naming the bucket, not retryable', async () => {
    const s = new S3ObjectStore({ bucket: 'no-such-bucket-' + randomBytes(4).toString('hex'), endpoint: s3.endpoint, forcePathStyle: true, credentials: creds });
    await expect(s.get('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_BAD_REQUEST, retryable: false });
    await s.close();
  });

  test('bounded concurrency: never more than maxConcurrency requests in flight', async () => {
    const s = rgwStore(`conc-${randomBytes(4).toString('hex')}`, { maxConcurrency: 4 });
    let peak = 0;
    const timer = setInterval(() => (peak = Math.max(peak, s.inFlight.active)), 1);
    await Promise.all(Array.from({ length: 40 }, (_, i) => s.put(`k${i}`, randomBytes(64 * 1024))));
    clearInterval(timer);
    expect(peak).toBeLessThanOrEqual(4);
    expect(peak).toBeGreaterThan(1);
    await s.close();
  });
});

describe('S3ObjectStore error mapping (fake servers)', () => {
  let server: Server;
  let port = 0;
  let reply: { status: number; code: string } = { status: 500, code: 'InternalError' };
  let hits = 0;
  let blackhole: TcpServer;
  let blackholePort = 0;
  const blackholeSockets = new Set<import('node:net').Socket>();
  beforeAll(async () => {
    server = createServer((req, res) => {
      hits++;
      req.resume();
      req.on('end', () => {
        res.writeHead(reply.status, { 'content-type': 'application/xml' });
        res.end(req.method === 'HEAD' ? undefined : `<?xml version="1.0"?><Error><Code>${reply.code}</Code><Message>fake</Message></Error>`);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
    // Accepts connections and never answers.
    blackhole = createTcpServer((sock) => {
      blackholeSockets.add(sock);
      sock.on('error', () => undefined);
      sock.on('close', () => blackholeSockets.delete(sock));
    });
    await new Promise<void>((r) => blackhole.listen(0, '127.0.0.1', r));
    blackholePort = (blackhole.address() as { port: number }).port;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    for (const sock of blackholeSockets) sock.destroy();
    await new Promise((r) => blackhole.close(r));
  });
  const fake = (p = port, timeoutMs = 5000, directRequests = true): S3ObjectStore =>
    new S3ObjectStore({ bucket: 'b', endpoint: `http://127.0.0.1:${p}`, forcePathStyle: true, credentials: creds, timeoutMs, directRequests });

  test.each([
    [503, 'SlowDown', ErrorCodes.STORE_THROTTLED, true],
    [429, 'TooManyRequests', ErrorCodes.STORE_THROTTLED, true],
    [500, 'InternalError', ErrorCodes.STORE_UNAVAILABLE, true],
    [502, 'BadGateway', ErrorCodes.STORE_UNAVAILABLE, true],
    [503, 'ServiceUnavailable', ErrorCodes.STORE_UNAVAILABLE, true],
    [403, 'SignatureDoesNotMatch', ErrorCodes.STORE_ACCESS_DENIED, false],
    [403, 'InvalidAccessKeyId', ErrorCodes.STORE_ACCESS_DENIED, false],
    [404, 'NoSuchKey', ErrorCodes.OBJECT_NOT_FOUND, false],
    [412, 'PreconditionFailed', ErrorCodes.PRECONDITION_FAILED, false],
    [400, 'InvalidArgument', ErrorCodes.STORE_BAD_REQUEST, false],
    [400, 'RequestTimeout', ErrorCodes.STORE_TIMEOUT, true],
  ] as const)('HTTP %i %s -> %s (retryable %s)', async (status, code, want, retryable) => {
    reply = { status, code };
    for (const direct of [true, false]) {
      const s = fake(port, 5000, direct);
      await expect(s.get('k')).rejects.toMatchObject({ code: want, retryable });
      await expect(s.put('k', Buffer.from('x'))).rejects.toMatchObject({ code: want, retryable });
      // HEAD answers have no body, so only the status speaks.
      await expect(s.head('k')).rejects.toMatchObject({ retryable: status >= 500 || status === 429 });
      await s.close();
    }
  });

  test('a connection cut mid-body: STORE_UNAVAILABLE (retryable) on both paths, for get, head and put answers', async () => {
    // Answers 200 with a Content-Length of 100 000, sends 10 bytes, then resets the connection.
    let cuts = 0;
    const cutter = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-length': '100000', etag: '"abc"' });
        res.write(Buffer.alloc(10));
        setTimeout(() => { res.socket?.destroy(); cuts++; }, 20);
      });
    });
    await new Promise<void>((r) => cutter.listen(0, '127.0.0.1', r));
    const cutPort = (cutter.address() as { port: number }).port;
    try {
      for (const direct of [true, false]) {
        const s = fake(cutPort, 5000, direct);
        await expect(s.get('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_UNAVAILABLE, retryable: true });
        // PUT/HEAD answers are drained, not read: the cut must not surface as an uncaught error.
        const before = cuts;
        await s.put('k', Buffer.from('x')).catch(() => undefined);
        await s.head('k').catch(() => undefined);
        // Both answers were cut (server side); let the client's socket callbacks run before closing.
        await until(() => cuts === before + 2, 10_000, 'the put and head answers to be cut');
        await settle(5);
        await s.close();
      }
    } finally {
      cutter.closeAllConnections();
      await new Promise((r) => cutter.close(r));
    }
  });

  test('server that never answers: STORE_TIMEOUT after timeoutMs', async () => {
    const s = fake(blackholePort, 300);
    // A server that accepts and never answers can only end in the client's own timeout.
    await expect(s.get('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_TIMEOUT, retryable: true });
    await s.close();
  });

  test('unreachable endpoint: STORE_UNAVAILABLE, retried until the deadline', async () => {
    const closed = await new Promise<number>((r) => {
      const srv = createTcpServer();
      srv.listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => r(p));
      });
    });
    const attempts: number[] = [];
    const s = await openObjectStore('s3://b/p', {
      endpoint: `http://127.0.0.1:${closed}`,
      accessKeyId: 'x',
      secretAccessKey: 'y',
      retry: { deadlineMs: 1500, baseDelayMs: 20, maxDelayMs: 200, maxAttempts: 1000, random: () => 0.5, onRetry: (i) => attempts.push(i.attempt) },
    });
    const err = await s.get('k').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCodes.STORE_UNAVAILABLE, retryable: true });
    // Retried several times, and stopped by the deadline long before maxAttempts (1000): with jitter
    // fixed at 0.5 the backoffs are 10, 20, 40, 80, then 100 ms each, so 1.5 s holds at most 18 of them.
    expect(attempts.length).toBeGreaterThan(3);
    expect(attempts.length).toBeLessThanOrEqual(18);
    expect(attempts).toEqual(Array.from({ length: attempts.length }, (_, i) => i + 1));
    await s.close();
  });

  test('retry wrapper retries 5xx and gives up at maxAttempts; 4xx is tried once', async () => {
    reply = { status: 500, code: 'InternalError' };
    hits = 0;
    const s = new RetryingObjectStore(fake(), { maxAttempts: 3, baseDelayMs: 1 });
    await expect(s.get('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_UNAVAILABLE, details: expect.objectContaining({ attempts: 3 }) });
    expect(hits).toBe(3);
    reply = { status: 400, code: 'InvalidArgument' };
    hits = 0;
    await expect(s.get('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_BAD_REQUEST });
    expect(hits).toBe(1);
    await s.close();
  });
});
