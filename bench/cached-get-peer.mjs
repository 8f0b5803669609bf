// Peer for bench/cached-bench.sh: GETs every block object of a cached
// volume's live root straight from S3 with the AWS SDK (CONCURRENCY parallel
// requests, bodies discarded), as a reader that knows the keys would.
// Usage: node bench/cached-get-peer.mjs s3://bucket/prefix VOLUME  (AWS_* env, S3_ENDPOINT)
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { openObjectStore } from '../dist/object-store/open.js';
import { SnapshotStore } from '../dist/snapshots/index.js';
import { keys } from '../dist/snapshots/format.js';

const [url, volume] = process.argv.slice(2);
const concurrency = Number(process.env.CONCURRENCY ?? 16);
const store = await openObjectStore(url, { endpoint: process.env.S3_ENDPOINT, forcePathStyle: true });
const lease = JSON.parse((await store.get(`cached-volumes/${volume}.json`)).body.toString());
const snaps = new SnapshotStore(store);
const blockKeys = [];
for await (const b of snaps.listBlocks(lease.data.root.id)) blockKeys.push(keys.block(b.hash));
const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
const bucket = m[1];
const prefix = m[2] ? `${m[2].replace(/\/$/, '')}/` : '';
const s3 = new S3Client({ endpoint: process.env.S3_ENDPOINT, forcePathStyle: true, region: process.env.AWS_REGION ?? 'us-east-1' });
let next = 0;
let bytes = 0;
const t0 = process.hrtime.bigint();
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < blockKeys.length) {
    const key = blockKeys[next++];
    const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: prefix + key }));
    bytes += (await r.Body.transformToByteArray()).length;
  }
}));
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ blocks: blockKeys.length, bytes, seconds: s }));
s3.destroy();
await store.close();
