// Starts a throw-away single-node Ceph RGW (S3) for tests with
// test/harness/ceph-rgw/start.sh, on free 127.0.0.1 ports, and stops it.
// The cluster lives in one temp dir; a watchdog inside start.sh stops it if
// this process dies without calling stop(). Startup is ~13 s on 2 cores;
// startRgw also does one CreateBucket so RGW's slow first write (~2 s, pool
// creation) happens here and not inside a test's timeout.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { run as runProcess } from './process.js';
import { freePort } from './free-port.js';

const HERE = resolve(import.meta.dirname, 'ceph-rgw');

/** What global setup provides as inject('s3'). */
export interface S3TestCoordinates {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

export interface RgwHandle extends S3TestCoordinates {
  /** The cluster's working dir (logs in DIR/log). */
  dir: string;
  stop(): Promise<void>;
}


async function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  const r = await runProcess(cmd, args, { env: env as Record<string, string>, timeoutMs });
  return { code: r.code, out: r.stdout + r.stderr };
}

export async function startRgw(options: { timeoutMs?: number } = {}): Promise<RgwHandle> {
  const timeoutMs = options.timeoutMs ?? 150_000;
  let last = '';
  for (let attempt = 1; attempt <= 3; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'blockgate-rgw-'));
    const rgwPort = await freePort();
    const monPort = await freePort();
    // Messenger range (100 ports): a random base well away from ephemeral ports.
    const osdPortMin = 20_000 + Math.floor(Math.random() * 100) * 100;
    const accessKeyId = 'BGTEST' + randomBytes(7).toString('hex').toUpperCase();
    const secretAccessKey = randomBytes(20).toString('hex');
    const env = {
      ...process.env,
      CEPH_RGW_DIR: dir,
      RGW_PORT: String(rgwPort),
      MON_PORT: String(monPort),
      OSD_PORT_MIN: String(osdPortMin),
      S3_ACCESS_KEY: accessKeyId,
      S3_SECRET_KEY: secretAccessKey,
      WATCH_PID: String(process.pid),
      TIMEOUT: String(Math.ceil(timeoutMs / 1000)),
    };
    const { code, out } = await run('bash', [join(HERE, 'start.sh')], env, timeoutMs);
    if (code === 2) {
      throw new Error(
        `Ceph RGW cannot start: ${out.trim()}\nS3 tests need it: install the Debian packages ceph-mon ceph-osd radosgw (run scripts/install-deps.sh as root).`,
      );
    }
    if (code !== 0) {
      last = `start.sh exited with ${code}:\n${out}`;
      await run('bash', [join(HERE, 'stop.sh'), dir], process.env, 30_000).catch(() => undefined);
      if (code === 3) continue; // port taken between our probe and start.sh: try other ports
      throw new Error(`Ceph RGW failed to start (logs were in ${dir}):\n${last}`);
    }
    const vars = Object.fromEntries(
      readFileSync(join(dir, 's3.env'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('='))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const handle: RgwHandle = {
      dir,
      endpoint: vars['S3_ENDPOINT']!,
      accessKeyId: vars['AWS_ACCESS_KEY_ID']!,
      secretAccessKey: vars['AWS_SECRET_ACCESS_KEY']!,
      region: vars['AWS_REGION'] ?? 'us-east-1',
      stop: async () => {
        await run('bash', [join(HERE, 'stop.sh'), dir], process.env, 60_000);
      },
    };
    try {
      await createTestBucket(handle, 'warmup');
    } catch (err) {
      await handle.stop();
      throw new Error(`Ceph RGW started but the first CreateBucket failed: ${(err as Error).message}`);
    }
    return handle;
  }
  throw new Error(`Ceph RGW failed to start after 3 attempts:\n${last}`);
}

/** An S3Client for the test RGW with the settings RGW 16.2 needs. */
export function testS3Client(s3: S3TestCoordinates): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * Create a fresh bucket named from `name` plus a random suffix (bucket names:
 * lowercase, 3..63 chars) and return its name. Use with inject('s3').
 */
export async function createTestBucket(s3: S3TestCoordinates, name: string): Promise<string> {
  const base = name.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'test';
  const bucket = `${base}-${randomBytes(4).toString('hex')}`;
  const client = testS3Client(s3);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}
