// Format v1 encode/decode: record and segment headers, checkpoint, CRC32C.
import { describe, expect, it } from 'vitest';
import { crc32c, crc32cTable } from '../../src/util/crc32c.js';
import {
  CHECKPOINT_BYTES, RECORD_HEADER_BYTES, RecordType, SEGMENT_HEADER_BYTES, align8, dataCrc, decodeCheckpoint,
  decodeRecordHeader, decodeSegmentHeader, encodeCheckpoint, encodeRecordHeader, encodeSegmentHeader,
  parseSegmentFileName, recordBytes, recordCrcOk, segmentFileName, volumeTag,
} from '../../src/write-log/format.js';
import { pattern } from './helpers.js';

describe('crc32c', () => {
  it('matches the standard check value and chains', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32cTable(Buffer.from('123456789'))).toBe(0xe3069283);
    // RFC 3720 B.4: 32 bytes of zeros / ones
    expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa);
    expect(crc32c(Buffer.alloc(32, 0xff))).toBe(0x62a8ab43);
  });
  it('native and table agree at every length up to 1 KiB and when chained', () => {
    const buf = pattern(1, 1, 1024);
    for (let n = 0; n <= 1024; n += 7) {
      expect(crc32c(buf.subarray(0, n))).toBe(crc32cTable(buf.subarray(0, n)));
      expect(crc32c(buf.subarray(n), crc32c(buf.subarray(0, n)))).toBe(crc32cTable(buf));
    }
  });
});

describe('record header', () => {
  const fields = { type: RecordType.Write, flags: 0, seq: 2 ** 40 + 5, offset: 2 ** 45 + 4096, length: 4096, syncedSeq: 2 ** 40 } as const;
  const data = pattern(2, 3, 4096);

  it('round-trips, u64 fields above 2^32 included', () => {
    const h = encodeRecordHeader(fields, data.length, dataCrc(data));
    expect(h.length).toBe(RECORD_HEADER_BYTES);
    const d = decodeRecordHeader(h);
    expect(d).toMatchObject({ ...fields, dataBytes: 4096 });
    expect(recordCrcOk(h, data)).toBe(true);
  });

  it('CRC catches any single flipped bit in header or data', () => {
    const h = encodeRecordHeader(fields, data.length, dataCrc(data));
    for (let bit = 0; bit < RECORD_HEADER_BYTES * 8; bit += 3) {
      const bad = Buffer.from(h);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const d = decodeRecordHeader(bad);
      expect(typeof d === 'string' || !recordCrcOk(bad, data)).toBe(true);
    }
    for (let i = 0; i < data.length; i += 97) {
      const bad = Buffer.from(data);
      bad[i]! ^= 0x10;
      expect(recordCrcOk(h, bad)).toBe(false);
    }
  });

  it('rejects nonsense', () => {
    const h = encodeRecordHeader(fields, data.length, dataCrc(data));
    expect(decodeRecordHeader(Buffer.alloc(48))).toBe('bad record magic');
    expect(decodeRecordHeader(h.subarray(0, 40))).toBe('short record header');
    const t = Buffer.from(h); t[4] = 9;
    expect(decodeRecordHeader(t)).toMatch(/unknown record type/);
    const z = encodeRecordHeader({ ...fields, type: RecordType.Zero }, 16, 0);
    expect(decodeRecordHeader(z)).toMatch(/ZERO/);
    const s = encodeRecordHeader({ ...fields, syncedSeq: fields.seq }, 4096, 0);
    expect(decodeRecordHeader(s)).toMatch(/out of range/);
    expect(() => encodeRecordHeader({ ...fields, seq: 2 ** 53 }, 0, 0)).toThrow(RangeError);
  });

  it('sizes are 8-aligned', () => {
    expect(recordBytes(0)).toBe(48);
    expect(recordBytes(1)).toBe(56);
    expect(recordBytes(4096)).toBe(4144);
    expect(align8(4149)).toBe(4152);
  });
});

describe('segment header and checkpoint', () => {
  it('round-trips and detects damage', () => {
    const tag = volumeTag('0f8fad5b-d9cb-469f-a165-70867728950e');
    expect(tag.toString('hex')).toBe('0f8fad5bd9cb469fa16570867728950e');
    expect(volumeTag('demo')).toHaveLength(16);
    const h = encodeSegmentHeader({ volumeTag: tag, segmentSeq: 7, firstSeq: 1234, createdMs: 1_700_000_000_000 });
    expect(h.length).toBe(SEGMENT_HEADER_BYTES);
    expect(decodeSegmentHeader(h)).toMatchObject({ version: 1, segmentSeq: 7, firstSeq: 1234 });
    for (let i = 0; i < SEGMENT_HEADER_BYTES; i++) {
      const bad = Buffer.from(h);
      bad[i]! ^= 0x01;
      expect(typeof decodeSegmentHeader(bad)).toBe('string');
    }
    expect(decodeSegmentHeader(h.subarray(0, 10))).toMatch(/short/);
    const cp = encodeCheckpoint({ volumeTag: tag, releasedSeq: 99, nextSegmentSeq: 8 });
    expect(cp.length).toBe(CHECKPOINT_BYTES);
    expect(decodeCheckpoint(cp)).toMatchObject({ releasedSeq: 99, nextSegmentSeq: 8 });
    const bad = Buffer.from(cp); bad[33]! ^= 4;
    expect(decodeCheckpoint(bad)).toMatch(/checksum/);
  });

  it('file names sort by segment number', () => {
    expect(segmentFileName(255)).toBe('seg-00000000000000ff.wlog');
    expect(parseSegmentFileName(segmentFileName(2 ** 40))).toBe(2 ** 40);
    expect(parseSegmentFileName('seg-1.wlog')).toBeUndefined();
    expect(parseSegmentFileName('checkpoint')).toBeUndefined();
  });
});
