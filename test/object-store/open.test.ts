import { join, relative } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { FsObjectStore } from '../../src/object-store/fs.js';
import { openObjectStore } from '../../src/object-store/open.js';
import { RetryingObjectStore } from '../../src/object-store/retry.js';
import { S3ObjectStore } from '../../src/object-store/s3.js';
import { tempDirs } from './tmp.js';

const tmp = tempDirs('blockgate-open-');

describe('openObjectStore', () => {
  test('file:// URLs and plain paths open an FsObjectStore', async () => {
    const dir = tmp();
    const a = await openObjectStore(`file://${dir}/a`);
    expect(a).toBeInstanceOf(FsObjectStore);
    expect(a.location).toBe(`file://${dir}/a`);
    const b = await openObjectStore(join(dir, 'b'));
    expect(b.location).toBe(`file://${dir}/b`);
    const c = await openObjectStore(relative(process.cwd(), join(dir, 'c')));
    expect(c.location).toBe(`file://${dir}/c`);
    await a.put('k', Buffer.from('x'));
    expect((await (await openObjectStore(`file://${dir}/a`)).get('k')).body.toString()).toBe('x');
  });

  test('s3:// URL: bucket, prefix, env fallbacks, retry wrapper by default', async () => {
    const env = {
      AWS_ACCESS_KEY_ID: 'AK',
      AWS_SECRET_ACCESS_KEY: 'SK',
      AWS_DEFAULT_REGION: 'eu-west-3',
      AWS_ENDPOINT_URL: 'http://127.0.0.1:1',
    };
    const s = await openObjectStore('s3://my-bucket/some/prefix', { env });
    expect(s).toBeInstanceOf(RetryingObjectStore);
    expect(s.location).toBe('s3://my-bucket/some/prefix/');
    const inner = (s as RetryingObjectStore).inner as S3ObjectStore;
    expect(inner.bucket).toBe('my-bucket');
    expect(await inner.client.config.region()).toBe('eu-west-3');
    expect((await inner.client.config.credentials()).accessKeyId).toBe('AK');
    expect(inner.client.config.forcePathStyle).toBe(true);
    const ep = await inner.client.config.endpoint!();
    expect(ep.port).toBe(1);
    await s.close();
    const bare = await openObjectStore('s3://b', { env: { ...env, AWS_REGION: 'us-west-2', AWS_ENDPOINT_URL_S3: 'http://127.0.0.1:2' }, retry: false, region: 'ap-south-1' });
    expect(bare).toBeInstanceOf(S3ObjectStore);
    expect(await (bare as S3ObjectStore).client.config.region()).toBe('ap-south-1');
    expect((await (bare as S3ObjectStore).client.config.endpoint!()).port).toBe(2);
    await bare.close();
  });

  test.each([
    [''],
    ['http://example.com/x'],
    ['s3://'],
    ['s3:///prefix'],
    ['s3://bucket:9000/x'],
    ['s3://bucket/a//b'],
    ['s3://bucket/../x'],
    ['file://relative/path'],
  ])('bad URL %j -> CONFIG', async (url) => {
    await expect(openObjectStore(url, { env: {} })).rejects.toMatchObject({ code: ErrorCodes.CONFIG });
  });

  test('bad options -> CONFIG', async () => {
    await expect(openObjectStore('s3://b', { env: {}, accessKeyId: 'only-id' })).rejects.toMatchObject({ code: ErrorCodes.CONFIG });
    await expect(openObjectStore('s3://b', { env: {}, endpoint: 'ftp://x' })).rejects.toMatchObject({ code: ErrorCodes.CONFIG });
    await expect(openObjectStore('s3://b', { env: {}, maxConcurrency: 0 })).rejects.toMatchObject({ code: ErrorCodes.CONFIG });
  });
});
