// Golden format fixtures (issue #11 item 7). The bytes under test/fixtures/
// were written once by test/fixtures/generate-golden.mjs (by hand, never by
// a test) and are read here forever: a change that alters an encoder and
// its decoder alike fails, because
//   1. decoding each fixture must give exactly the values written below
//      (offsets, lengths, seqs, keys, CRCs, SHA-256 of the data), and
//   2. encoding the same logical content must give the fixture's bytes,
//      byte for byte.
// Fields that were not deterministic when the fixtures were written are
// pinned to the fixture's values: snapshot ids and createdAt, the family's
// random hash key and createdAt, write-log segment creation times. LZ4
// payloads are pinned too (the compressor's output is not part of the
// format, a new lz4 version may emit other valid bytes), so compressed
// block objects are re-encoded from the fixture's payload and the
// plaintext, and the compressor is only required to round-trip.
// Formats: docs/formats/snapshot.md (v1), docs/formats/write-log.md (v1),
// docs/chunk-cache.md (v2).
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { decodeEntry, decodeHeader, encodeEntry, encodeHeader, headerVersion, unitCrcs, unitsMatch } from '../../src/chunk-cache/format.js';
import { decodePayload, encodePayload } from '../../src/snapshots/codec.js';
import {
  Codec, blockHashFromDigest, decodeBlockObject, decodeRoot, decodeShard, encodeBlockObject, encodeRoot, encodeShard, parseFamily,
  type SnapshotRoot,
} from '../../src/snapshots/format.js';
import { SnapshotStore, aggregateOf } from '../../src/snapshots/index.js';
import {
  RecordType, decodeCheckpoint, decodeRecordHeader, decodeSegmentHeader, encodeCheckpoint, encodeRecordHeader, encodeSegmentHeader,
  dataCrc, recordBytes, recordCrcOk, volumeTag,
} from '../../src/write-log/format.js';
import { WriteLog } from '../../src/write-log/write-log.js';
import { MemoryStore } from '../snapshots/memory-store.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const KiB = 1024;
const BS = 64 * KiB;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function sha256(b: Uint8Array): Buffer {
  return createHash('sha256').update(b).digest();
}
function hex(b: Uint8Array): string {
  return sha256(b).toString('hex');
}

/** The generator's content: a text line repeated over the first `textBytes`, zeros after (as in generate-golden.mjs). */
function text(label: string, textBytes: number, length = BS): Buffer {
  const b = Buffer.alloc(length);
  const line = Buffer.from(`blockgate golden ${label}\n`);
  for (let o = 0; o < textBytes; o += line.length) line.copy(b, o, 0, Math.min(line.length, textBytes - o));
  return b;
}

// ================================================================== snapshot v1

const SNAP = join(FIXTURES, 'snapshot-v1', 'objects');
const obj = (key: string): Buffer => readFileSync(join(SNAP, key));

const PARENT = 'snap-01a242200f421df8f38b9e';
const CHILD = 'snap-01a242200fd388676818cf';
const HASH_KEY = '5vjFyfoxY6Gx6CW5LYjdYsl1z8FfsMag0WrwrfJD0yw=';
const SIZE = 2048 * BS + 4 * KiB;

/** Every block object of the pair: its key, its plaintext (as stored: a full block), codec, payload length and CRC-32 field. */
const BLOCKS = {
  b0: { key: '44c9abd1afac26fcc112cd4d4ba84c4afd4846d185028230b16885a410dd6ef1', plain: text('block 0', 1024), sha: 'a2a0c52022112aa65d67beb36d61c76feecfa9f67d0a681c75ac98c66fd257d0', codec: Codec.Lz4, payload: 302, crc: 0x603f488a },
  b5p: { key: '51594f4e2f0fad4ced05dd2bf2096bf9b8d4f849b3849b24e644cf1591d6eab0', plain: text('block 5 (parent)', 2048), sha: '771218d1e9cab8022b9a156797c0fa39c0a9d8c730c82b56a177e6be0c908b7a', codec: Codec.Lz4, payload: 311, crc: 0xc1682274 },
  b1500: { key: '583bf77e615bc0f71f99443af4d400bf0c47991b904166a3b36f9aa9496ceb37', plain: text('block 1500', 512), sha: '35b04302f0706b1cad76fb28100310fd587fdc3cbfdf14f6912338d30cc39a7a', codec: Codec.Lz4, payload: 305, crc: 0x12744185 },
  // The short last block (4 KiB of 4 KiB volume tail) is stored zero-padded to a full block.
  b2048: { key: '30acf3dc4cad799d46a3e85702d6f0ec9651f3e27658c3d91bba4d4b9ac3485b', plain: text('block 2048, the short last block', 4 * KiB, BS), sha: '8463a16bd386dcbd9c496a32200871dbc7492b34458931d9e7ac7fcbf28b6a84', codec: Codec.Lz4, payload: 325, crc: 0x68ab116b },
  b5c: { key: 'fbf044f57a9b354e3aac367f339c77f301b3c577a87869b0a157294624507a16', plain: text('block 5 (child)', 256), sha: '5c6d59a2a32961a8c46124ba80d5a70f8b62aae5331fc527baa38d0a821860e2', codec: Codec.None, payload: BS, crc: 0x99def0aa },
} as const;

/** Shard key -> entries (offset within the shard -> block key). */
const SHARDS: Record<string, Array<[number, string]>> = {
  '9fdf36ae26e5fd3ae061a8d32004657b01a600e9ad386142e8a6d5622898b96c': [[0, BLOCKS.b0.key], [5, BLOCKS.b5p.key]], // parent shard 0
  '3394f93eb7b1f0c3c9b0240ca902e0b9cfb857d62e33c8e7cf26d5c8b92259d2': [[476, BLOCKS.b1500.key]], // shard 1, shared by both
  'c42fdecd56ca9b2dc1760d2d0fc4da962bc54951d85b4fef9a2de75bef7bb75d': [[0, BLOCKS.b2048.key]], // parent shard 2
  '3a6957641bfe23d35aabca886a7ba25e6038d53728c1dacc8f144ebb6bd2ff39': [[0, BLOCKS.b0.key], [1, BLOCKS.b0.key], [5, BLOCKS.b5c.key]], // child shard 0
};

/** The roots' logical content, in the documented field order, without the digest. */
const ROOTS: Record<string, { root: Omit<SnapshotRoot, 'digest'>; digest: string }> = {
  [PARENT]: {
    root: {
      format: 'blockgate-snapshot', version: 1, id: PARENT, volume: 'golden', parent: null, blockSize: BS, size: SIZE, shardBlocks: 1024,
      createdAt: '2026-12-04T17:35:27.156Z', encryption: null, changedBlocks: 4, aggregateChecksum: 'czhSoLLX+c0dyeNWhYerhT7/IPaXCZ1EJVC6kEwkwBE=',
      stats: { blocks: 4, newBlocks: 4, uploadedBytes: 4 * BS, storedBytes: 1307 }, description: 'golden parent',
      shards: [
        { k: '9fdf36ae26e5fd3ae061a8d32004657b01a600e9ad386142e8a6d5622898b96c', n: 2 },
        { k: '3394f93eb7b1f0c3c9b0240ca902e0b9cfb857d62e33c8e7cf26d5c8b92259d2', n: 1 },
        { k: 'c42fdecd56ca9b2dc1760d2d0fc4da962bc54951d85b4fef9a2de75bef7bb75d', n: 1 },
      ],
    },
    digest: 'a20f16383ed6163bd6d8da71dd2eb2ce590d991e89111f4c7c129780073f84ff',
  },
  [CHILD]: {
    root: {
      format: 'blockgate-snapshot', version: 1, id: CHILD, volume: 'golden', parent: PARENT, blockSize: BS, size: SIZE, shardBlocks: 1024,
      createdAt: '2026-12-04T17:35:27.210Z', encryption: null, changedBlocks: 3, aggregateChecksum: 'PGPBKOu3nREEyOCXd86BAb2Wo71gay7OjAKWoYRzW0M=',
      stats: { blocks: 4, newBlocks: 2, uploadedBytes: BS, storedBytes: BS + 16 }, description: 'golden child',
      shards: [
        { k: '3a6957641bfe23d35aabca886a7ba25e6038d53728c1dacc8f144ebb6bd2ff39', n: 3 },
        { k: '3394f93eb7b1f0c3c9b0240ca902e0b9cfb857d62e33c8e7cf26d5c8b92259d2', n: 1 },
        null,
      ],
    },
    digest: 'cfbffa61c6c764be813653386c18b16816a6a208ad8808581af134ed1e244db3',
  },
};

function blockKey(hash: string): string {
  return `blocks/${hash.slice(0, 2)}/${hash}`;
}
function shardKey(hash: string): string {
  return `shards/${hash.slice(0, 2)}/${hash}`;
}

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? listFiles(p) : [p];
  });
}

describe('snapshot format v1 (golden)', () => {
  it('holds exactly the objects of the parent/child pair', () => {
    const keys = listFiles(SNAP).map((p) => relative(SNAP, p)).sort();
    expect(keys).toEqual([
      ...Object.values(BLOCKS).map((b) => blockKey(b.key)),
      'families/golden.json',
      ...Object.keys(SHARDS).map(shardKey),
      `snapshots/${PARENT}.json`,
      `snapshots/${CHILD}.json`,
    ].sort());
  });

  it('family object', () => {
    expect(parseFamily(obj('families/golden.json'), 'families/golden.json')).toEqual({
      format: 'blockgate-family', version: 1, volume: 'golden', blockSize: BS, shardBlocks: 1024,
      hash: 'hmac-sha256(sha256(plaintext))', hashKey: HASH_KEY, createdAt: '2026-12-04T17:35:27.017Z',
    });
    // (Its encoder is inline JSON in SnapshotStore.ensureFamily, not a format.ts function; the block keys below pin the key's use.)
  });

  it('roots decode to exact values and re-encode byte for byte', () => {
    for (const [id, { root, digest }] of Object.entries(ROOTS)) {
      const bytes = obj(`snapshots/${id}.json`);
      expect(decodeRoot(bytes, id)).toEqual({ ...root, digest });
      expect(encodeRoot(structuredClone(root) as SnapshotRoot).equals(bytes), `root ${id} re-encoded`).toBe(true);
    }
    // The aggregate checksum is EBS LINEAR: SHA-256 over the raw SHA-256 digests of the blocks put, ascending by index.
    const d = (b: Buffer): Buffer => sha256(b);
    const tail = (b: Buffer): Buffer => b.subarray(0, 4 * KiB); // the last block is put as its 4 KiB
    expect(aggregateOf([d(BLOCKS.b0.plain), d(BLOCKS.b5p.plain), d(BLOCKS.b1500.plain), d(tail(BLOCKS.b2048.plain))])).toBe(ROOTS[PARENT]!.root.aggregateChecksum);
    expect(aggregateOf([d(BLOCKS.b0.plain), d(BLOCKS.b5c.plain), d(Buffer.alloc(4 * KiB))])).toBe(ROOTS[CHILD]!.root.aggregateChecksum);
  });

  it('shards decode to exact entries and re-encode byte for byte', () => {
    for (const [key, entries] of Object.entries(SHARDS)) {
      const bytes = obj(shardKey(key));
      expect(hex(bytes)).toBe(key); // content-addressed
      expect(bytes.length).toBe(16 + 36 * entries.length);
      expect([...decodeShard(bytes, key, () => key)]).toEqual(entries);
      expect(encodeShard(1024, new Map(entries)).equals(bytes), `shard ${key} re-encoded`).toBe(true);
    }
  });

  it('block objects: header, CRC, codec, plaintext and content address; re-encoded byte for byte', async () => {
    const familyKey = Buffer.from(HASH_KEY, 'base64');
    for (const [name, b] of Object.entries(BLOCKS)) {
      const bytes = obj(blockKey(b.key));
      expect(hex(b.plain), `${name}: the test's own plaintext`).toBe(b.sha);
      expect(bytes.subarray(0, 8).toString('hex'), `${name} header`).toBe(`42474231${'01'}${b.codec === Codec.Lz4 ? '01' : '00'}0000`); // "BGB1", v1, codec, reserved
      expect(bytes.readUInt32BE(8)).toBe(BS);
      expect(bytes.readUInt32BE(12), `${name} CRC-32 field`).toBe(b.crc);
      const h = decodeBlockObject(bytes, () => name);
      expect({ codec: h.codec, plainLength: h.plainLength, payload: h.payload.length }).toEqual({ codec: b.codec, plainLength: BS, payload: b.payload });
      const plain = await decodePayload(h.codec, h.payload, h.plainLength, () => name);
      expect(plain.equals(b.plain), `${name} plaintext`).toBe(true);
      expect(blockHashFromDigest(familyKey, sha256(plain)), `${name} address`).toBe(b.key);
      // Re-encode: the header from the logical fields; a raw payload is the plaintext itself.
      const payload = b.codec === Codec.None ? b.plain : h.payload;
      expect(encodeBlockObject(b.codec, BS, payload).equals(bytes), `${name} re-encoded`).toBe(true);
      if (b.codec === Codec.None) {
        const enc = await encodePayload(b.plain, 'none');
        expect(enc.codec).toBe(Codec.None);
        expect(encodeBlockObject(enc.codec, BS, enc.payload).equals(bytes)).toBe(true);
      } else {
        const enc = await encodePayload(b.plain, 'lz4');
        expect(enc.codec).toBe(Codec.Lz4);
        expect((await decodePayload(enc.codec, enc.payload, BS, () => name)).equals(b.plain)).toBe(true);
      }
    }
  });

  it('reads through SnapshotStore: blocks, the zero override, the shared shard, changed blocks', async () => {
    const store = new MemoryStore();
    for (const p of listFiles(SNAP)) await store.put(relative(SNAP, p), readFileSync(p));
    const snaps = new SnapshotStore(store);
    const list = async (id: string): Promise<Array<[number, string]>> => {
      const out: Array<[number, string]> = [];
      for await (const b of snaps.listBlocks(id)) out.push([b.index, b.hash]);
      return out;
    };
    expect(await list(PARENT)).toEqual([[0, BLOCKS.b0.key], [5, BLOCKS.b5p.key], [1500, BLOCKS.b1500.key], [2048, BLOCKS.b2048.key]]);
    expect(await list(CHILD)).toEqual([[0, BLOCKS.b0.key], [1, BLOCKS.b0.key], [5, BLOCKS.b5c.key], [1500, BLOCKS.b1500.key]]);
    const changed = [];
    for await (const c of snaps.listChangedBlocks(PARENT, CHILD)) changed.push(c);
    expect(changed).toEqual([
      { index: 1, first: null, second: BLOCKS.b0.key },
      { index: 5, first: BLOCKS.b5p.key, second: BLOCKS.b5c.key },
      { index: 2048, first: BLOCKS.b2048.key, second: null },
    ]);
    const last = await snaps.getBlock(PARENT, 2048);
    expect(last.data.equals(BLOCKS.b2048.plain.subarray(0, 4 * KiB))).toBe(true); // read back truncated at the volume size
    expect(last.checksum).toBe(sha256(last.data).toString('base64'));
    expect((await snaps.getBlock(CHILD, 2048)).zero).toBe(true);
    expect((await snaps.getBlock(CHILD, 5)).data.equals(BLOCKS.b5c.plain)).toBe(true);
    expect((await snaps.getBlock(CHILD, 1)).data.equals(BLOCKS.b0.plain)).toBe(true);
    expect((await snaps.getBlock(CHILD, 3)).zero).toBe(true);
    // The decoders still verify: one flipped payload bit is a checksum failure.
    const bad = Buffer.from(obj(blockKey(BLOCKS.b5c.key)));
    bad[16 + 100]! ^= 1;
    await store.put(blockKey(BLOCKS.b5c.key), bad);
    await expect(snaps.getBlock(CHILD, 5)).rejects.toMatchObject({ code: ErrorCodes.CHECKSUM_MISMATCH });
  });
});

// ================================================================== write log v1

const WLOG = join(FIXTURES, 'write-log-v1');
const SEGMENT = 'seg-0000000000000001.wlog';
const VOLUME_ID = '6ba7b810-9dad-11d1-80b4-00c04fd430c8';
const TAG = Buffer.from('6ba7b8109dad11d180b400c04fd430c8', 'hex');

interface GoldenRecord {
  pos: number;
  type: RecordType;
  seq: number;
  offset: number;
  length: number;
  syncedSeq: number;
  crc: number;
  data: Buffer;
}

const MARKER_JSON = Buffer.from('{"kind":"user","group":"vsnap-0000000000000000golden"}');
/** The records of complete/ (and the first six of torn/), as written. */
const RECORDS: GoldenRecord[] = [
  { pos: 64, type: RecordType.Write, seq: 1, offset: 4096, length: 100, syncedSeq: 0, crc: 1333411418, data: text('write 1', 100, 100) },
  { pos: 216, type: RecordType.Zero, seq: 2, offset: 65536, length: 8192, syncedSeq: 0, crc: 770331232, data: Buffer.alloc(0) },
  { pos: 264, type: RecordType.Write, seq: 3, offset: 0, length: 512, syncedSeq: 2, crc: 24811665, data: text('write 3', 512, 512) },
  { pos: 824, type: RecordType.Marker, seq: 4, offset: 0, length: 54, syncedSeq: 2, crc: 3494613714, data: MARKER_JSON },
  { pos: 928, type: RecordType.Trim, seq: 5, offset: 131072, length: 4096, syncedSeq: 2, crc: 637970406, data: Buffer.alloc(0) },
  { pos: 976, type: RecordType.Write, seq: 6, offset: 4096, length: 16, syncedSeq: 5, crc: 2357807560, data: text('write 6', 16, 16) },
];
const SEGMENT_CREATED_MS = { complete: 1796405727307, torn: 1796405727350 };

function encodeSegment(createdMs: number, records: GoldenRecord[]): Buffer {
  const parts = [encodeSegmentHeader({ volumeTag: volumeTag(VOLUME_ID), segmentSeq: 1, firstSeq: 1, createdMs })];
  for (const r of records) {
    parts.push(encodeRecordHeader({ type: r.type, flags: 0, seq: r.seq, offset: r.offset, length: r.length, syncedSeq: r.syncedSeq }, r.data.length, dataCrc(r.data)));
    parts.push(r.data, Buffer.alloc(recordBytes(r.data.length) - 48 - r.data.length));
  }
  return Buffer.concat(parts);
}

/** A writable copy of a fixture log directory (opening a log may truncate a torn tail). */
function copyLog(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'bg-golden-log-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'log'));
  for (const f of readdirSync(join(WLOG, name))) copyFileSync(join(WLOG, name, f), join(dir, 'log', f));
  return join(dir, 'log');
}

describe('write-log format v1 (golden)', () => {
  it('segment header, records and checkpoint decode to exact values', () => {
    const seg = readFileSync(join(WLOG, 'complete', SEGMENT));
    expect(seg.length).toBe(1040);
    expect(decodeSegmentHeader(seg)).toEqual({ version: 1, volumeTag: TAG, segmentSeq: 1, firstSeq: 1, createdMs: SEGMENT_CREATED_MS.complete });
    expect(volumeTag(VOLUME_ID).equals(TAG)).toBe(true); // a UUID volume id is its own 16 bytes
    let pos = 64;
    for (const r of RECORDS) {
      expect(pos).toBe(r.pos);
      const h = decodeRecordHeader(seg, pos);
      expect(h).toEqual({ type: r.type, flags: 0, seq: r.seq, offset: r.offset, length: r.length, dataBytes: r.data.length, syncedSeq: r.syncedSeq, crc: r.crc });
      const data = seg.subarray(pos + 48, pos + 48 + r.data.length);
      expect(data.equals(r.data), `record ${r.seq} data`).toBe(true);
      expect(recordCrcOk(seg.subarray(pos, pos + 48), data)).toBe(true);
      pos += recordBytes(r.data.length);
    }
    expect(pos).toBe(seg.length);
    expect(decodeCheckpoint(readFileSync(join(WLOG, 'complete', 'checkpoint')))).toEqual({ volumeTag: TAG, releasedSeq: 0, nextSegmentSeq: 1 });
  });

  it('re-encodes byte for byte (segment and checkpoint)', () => {
    expect(encodeSegment(SEGMENT_CREATED_MS.complete, RECORDS).equals(readFileSync(join(WLOG, 'complete', SEGMENT)))).toBe(true);
    const cp = encodeCheckpoint({ volumeTag: TAG, releasedSeq: 0, nextSegmentSeq: 1 });
    expect(cp.equals(readFileSync(join(WLOG, 'complete', 'checkpoint')))).toBe(true);
    expect(cp.equals(readFileSync(join(WLOG, 'torn', 'checkpoint')))).toBe(true);
  });

  it('replays: records, marker, and the volume now and as of the marker', async () => {
    const wl = await WriteLog.open(copyLog('complete'), { capacityBytes: 1024 * KiB, volumeId: VOLUME_ID });
    cleanups.push(() => void wl.close());
    expect({ newest: wl.newestSeq, durable: wl.durableSeq, released: wl.releasedSeq }).toEqual({ newest: 6, durable: 6, released: 0 });
    expect(wl.markers()).toEqual([{ seq: 4, payload: JSON.parse(MARKER_JSON.toString()) }]);
    const recs = [];
    for await (const r of wl.pendingRecords(0, { withData: true })) recs.push(r);
    expect(recs.map((r) => [r.seq, r.type, r.offset, r.length])).toEqual([
      [1, 'write', 4096, 100], [2, 'zero', 65536, 8192], [3, 'write', 0, 512], [4, 'marker', 0, 54], [5, 'trim', 131072, 4096], [6, 'write', 4096, 16],
    ]);
    // Now: record 6 over record 1. As of marker 4: record 1 alone (the pre-image is kept).
    const now = Buffer.alloc(100, 0xaa);
    await wl.readDirty(4096, 100, now);
    expect(now.equals(Buffer.concat([text('write 6', 16, 16), text('write 1', 100, 100).subarray(16)]))).toBe(true);
    const asOf = Buffer.alloc(100, 0xaa);
    await wl.readDirty(4096, 100, asOf, { asOf: 4 });
    expect(asOf.equals(text('write 1', 100, 100))).toBe(true);
    expect(wl.changedBlocks(BS).map((b) => b.index)).toEqual([0, 1, 2]);
    await wl.close();
  });

  it('torn tail: the damaged last record is dropped, the rest replays, the file is cut back', async () => {
    const seg = readFileSync(join(WLOG, 'torn', SEGMENT));
    expect(seg.length).toBe(1040 + 48 + 100); // record 7's header and 100 of its 300 data bytes
    expect(decodeSegmentHeader(seg)).toEqual({ version: 1, volumeTag: TAG, segmentSeq: 1, firstSeq: 1, createdMs: SEGMENT_CREATED_MS.torn });
    expect(seg.subarray(0, 1040).equals(encodeSegment(SEGMENT_CREATED_MS.torn, RECORDS))).toBe(true);
    expect(decodeRecordHeader(seg, 1040)).toEqual({ type: RecordType.Write, flags: 0, seq: 7, offset: 8192, length: 300, dataBytes: 300, syncedSeq: 5, crc: 3949604324 });
    expect(seg.subarray(1040 + 48).equals(text('write 7, torn', 300, 300).subarray(0, 100))).toBe(true);
    const dir = copyLog('torn');
    const wl = await WriteLog.open(dir, { capacityBytes: 1024 * KiB, volumeId: VOLUME_ID });
    cleanups.push(() => void wl.close());
    expect(wl.newestSeq).toBe(6);
    expect(readFileSync(join(dir, SEGMENT)).equals(encodeSegment(SEGMENT_CREATED_MS.torn, RECORDS))).toBe(true);
    expect(await wl.append(8192, Buffer.alloc(8, 1))).toBe(7); // the next record takes the dropped one's seq
    await wl.close();
  });
});

// ================================================================== chunk cache v2 (slot-file header, index entries)

const CACHE = join(FIXTURES, 'chunk-cache-v2');
const INSTANCE = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

describe('chunk-cache format v2 (golden)', () => {
  it('header: decodes, carries version 2, re-encodes byte for byte', () => {
    const bytes = readFileSync(join(CACHE, 'header.bin'));
    expect(bytes.length).toBe(44);
    expect(headerVersion(bytes)).toBe(2);
    expect(decodeHeader(bytes)).toEqual({ version: 2, blockSize: BS, instanceId: INSTANCE });
    expect(bytes.subarray(0, 24).toString('hex')).toBe('4247434302000000001000000000010000100000' + '01000000'); // "BGCC", v2, 4096, 64 KiB, 4 KiB units, CRC32C
    expect(encodeHeader(BS, INSTANCE).equals(bytes)).toBe(true);
  });

  it('entry records: slot, size, last use, one CRC32C per 4 KiB; re-encoded byte for byte', () => {
    const full = text('cached block', 3000);
    const short = text('cached short block', 4196, 4196);
    const cases = [
      { file: 'entry-full.bin', data: full, slot: 7, lastUse: 42, crcs: [2180599794, ...Array<number>(15).fill(2566472073)] },
      { file: 'entry-short.bin', data: short, slot: 0, lastUse: 1.5, crcs: [27674990, 4224249822] },
    ];
    for (const c of cases) {
      const bytes = readFileSync(join(CACHE, c.file));
      expect(bytes.length).toBe(16 + 4 * c.crcs.length);
      const e = decodeEntry(bytes)!;
      expect({ slot: e.slot, size: e.size, lastUse: e.lastUse, crcs: [...e.crcs] }).toEqual({ slot: c.slot, size: c.data.length, lastUse: c.lastUse, crcs: c.crcs });
      expect([...unitCrcs(c.data)]).toEqual(c.crcs);
      expect(unitsMatch(c.data, e.crcs, 0)).toBe(true);
      expect(encodeEntry({ slot: c.slot, size: c.data.length, lastUse: c.lastUse, crcs: Uint32Array.from(c.crcs) }).equals(bytes)).toBe(true);
    }
  });
});
