// Pure functions that build what the server sends. Each returns a Buffer (or
// fills one the caller allocated, for zero-copy READ replies).
import * as C from './constants.js';

export function greeting(): Buffer {
  const b = Buffer.allocUnsafe(18);
  b.writeBigUInt64BE(C.NBDMAGIC, 0);
  b.writeBigUInt64BE(C.IHAVEOPT, 8);
  b.writeUInt16BE(C.FLAG_FIXED_NEWSTYLE | C.FLAG_NO_ZEROES, 16);
  return b;
}

export function optionReply(option: number, type: number, data?: Buffer): Buffer {
  const len = data?.length ?? 0;
  const b = Buffer.allocUnsafe(20 + len);
  b.writeBigUInt64BE(C.OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(len, 16);
  if (data) data.copy(b, 20);
  return b;
}

export function optionError(option: number, type: number, message: string): Buffer {
  return optionReply(option, type, Buffer.from(message.slice(0, C.MAX_STRING), 'utf8'));
}

/** Reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zero bytes unless NO_ZEROES. */
export function exportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : 124));
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

export function serverEntry(name: string, description?: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description ?? '', 'utf8');
  const b = Buffer.allocUnsafe(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

export function infoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt16BE(C.INFO_EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

export function infoString(type: typeof C.INFO_NAME | typeof C.INFO_DESCRIPTION, text: string): Buffer {
  const s = Buffer.from(text, 'utf8');
  const b = Buffer.allocUnsafe(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}

export function infoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.allocUnsafe(14);
  b.writeUInt16BE(C.INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

export function metaContextEntry(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

export const SIMPLE_HEADER = 16;
export const STRUCTURED_HEADER = 20;
/** Bytes before the data in a structured OFFSET_DATA read reply. */
export const STRUCTURED_READ_PREFIX = STRUCTURED_HEADER + 8;

export function writeSimpleHeader(b: Buffer, cookieHi: number, cookieLo: number, error: number): void {
  b.writeUInt32BE(C.SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeUInt32BE(cookieHi, 8);
  b.writeUInt32BE(cookieLo, 12);
}

export function simpleReply(cookieHi: number, cookieLo: number, error: number): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_HEADER);
  writeSimpleHeader(b, cookieHi, cookieLo, error);
  return b;
}

export function writeStructuredHeader(
  b: Buffer, at: number, flags: number, type: number, cookieHi: number, cookieLo: number, length: number,
): void {
  b.writeUInt32BE(C.STRUCTURED_REPLY_MAGIC, at);
  b.writeUInt16BE(flags, at + 4);
  b.writeUInt16BE(type, at + 6);
  b.writeUInt32BE(cookieHi, at + 8);
  b.writeUInt32BE(cookieLo, at + 12);
  b.writeUInt32BE(length, at + 16);
}

/** Header + offset of a one-chunk OFFSET_DATA read reply; the data goes at STRUCTURED_READ_PREFIX. */
export function writeStructuredReadPrefix(b: Buffer, cookieHi: number, cookieLo: number, offset: number, dataLength: number): void {
  writeStructuredHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_OFFSET_DATA, cookieHi, cookieLo, 8 + dataLength);
  b.writeUIntBE(Math.floor(offset / 0x100000000), STRUCTURED_HEADER, 4);
  b.writeUInt32BE(offset % 0x100000000, STRUCTURED_HEADER + 4);
}

export function structuredNone(cookieHi: number, cookieLo: number): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER);
  writeStructuredHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_NONE, cookieHi, cookieLo, 0);
  return b;
}

export function structuredError(cookieHi: number, cookieLo: number, error: number, message: string): Buffer {
  const m = Buffer.from(message.slice(0, 1024), 'utf8');
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER + 6 + m.length);
  writeStructuredHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_ERROR, cookieHi, cookieLo, 6 + m.length);
  b.writeUInt32BE(error, STRUCTURED_HEADER);
  b.writeUInt16BE(m.length, STRUCTURED_HEADER + 4);
  m.copy(b, STRUCTURED_HEADER + 6);
  return b;
}

export interface StatusDescriptor {
  readonly length: number;
  readonly flags: number;
}

export function blockStatusChunk(
  cookieHi: number, cookieLo: number, contextId: number, descriptors: readonly StatusDescriptor[], done: boolean,
): Buffer {
  const payload = 4 + 8 * descriptors.length;
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER + payload);
  writeStructuredHeader(b, 0, done ? C.REPLY_FLAG_DONE : 0, C.REPLY_TYPE_BLOCK_STATUS, cookieHi, cookieLo, payload);
  b.writeUInt32BE(contextId, STRUCTURED_HEADER);
  let at = STRUCTURED_HEADER + 4;
  for (const d of descriptors) {
    b.writeUInt32BE(d.length, at);
    b.writeUInt32BE(d.flags, at + 4);
    at += 8;
  }
  return b;
}
