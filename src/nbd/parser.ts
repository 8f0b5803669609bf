// Parsers for the bytes a client sends: the handshake (client flags, then
// options) and transmission requests. They never touch a socket: callers
// push() received chunks and pull complete messages with next(), which
// returns null until a whole message is buffered. A magic mismatch throws a
// PROTOCOL error (the connection must then be closed). Oversized payloads are
// skipped without buffering them and reported once fully consumed, so the
// connection can continue.
// States: HandshakeParser flags → header ⇄ (data | skip); RequestParser
// header ⇄ (payload | skip).
import { BlockgateError, ErrorCodes } from '../errors.js';
import { ByteQueue } from './byte-queue.js';
import { CMD_WRITE, IHAVEOPT, MAX_OPTION_PAYLOAD, MAX_PAYLOAD, REQUEST_MAGIC } from './constants.js';

const OPTION_HEADER = 16;
const REQUEST_HEADER = 28;

export type HandshakeMessage =
  | { readonly kind: 'client-flags'; readonly flags: number }
  | { readonly kind: 'option'; readonly option: number; readonly data: Buffer }
  /** The option's payload exceeded MAX_OPTION_PAYLOAD and was discarded. */
  | { readonly kind: 'option-too-big'; readonly option: number; readonly length: number };

export class HandshakeParser {
  private readonly queue = new ByteQueue();
  private state: 'flags' | 'header' | 'data' | 'skip' = 'flags';
  private option = 0;
  private remaining = 0;
  private skippedLength = 0;

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  get buffered(): number {
    return this.queue.length;
  }

  /** Everything received but not yet parsed (for the transmission parser or TLS after a handshake step). */
  takeRemainder(): Buffer {
    return this.queue.drain();
  }

  next(): HandshakeMessage | null {
    for (;;) {
      switch (this.state) {
        case 'flags': {
          if (this.queue.length < 4) return null;
          const flags = this.queue.consume(4).readUInt32BE(0);
          this.state = 'header';
          return { kind: 'client-flags', flags };
        }
        case 'header': {
          if (this.queue.length < OPTION_HEADER) return null;
          const h = this.queue.consume(OPTION_HEADER);
          if (h.readBigUInt64BE(0) !== IHAVEOPT) {
            throw new BlockgateError(ErrorCodes.PROTOCOL, 'bad option magic from client');
          }
          this.option = h.readUInt32BE(8);
          this.remaining = h.readUInt32BE(12);
          if (this.remaining > MAX_OPTION_PAYLOAD) {
            this.skippedLength = this.remaining;
            this.state = 'skip';
          } else {
            this.state = 'data';
          }
          continue;
        }
        case 'data': {
          if (this.queue.length < this.remaining) return null;
          const data = this.queue.consume(this.remaining);
          this.state = 'header';
          return { kind: 'option', option: this.option, data };
        }
        case 'skip': {
          this.remaining -= this.queue.skip(this.remaining);
          if (this.remaining > 0) return null;
          this.state = 'header';
          return { kind: 'option-too-big', option: this.option, length: this.skippedLength };
        }
      }
    }
  }
}

export interface Request {
  readonly type: number;
  readonly flags: number;
  /** The 64-bit cookie (handle), echoed verbatim in replies. */
  readonly cookieHi: number;
  readonly cookieLo: number;
  /** Byte offset; Infinity when the wire value exceeds 2^53 (always out of range). */
  readonly offset: number;
  readonly length: number;
  /** WRITE payload (length bytes); undefined for other commands or when `oversized`. */
  readonly data: Buffer | undefined;
  /** A WRITE whose payload exceeded MAX_PAYLOAD: payload consumed and discarded. */
  readonly oversized: boolean;
}

export class RequestParser {
  private readonly queue = new ByteQueue();

  /**
   * `allocate` provides the buffer for a WRITE payload that spans received
   * chunks (one within a single chunk is returned as a view, without a copy).
   */
  constructor(private readonly allocate: (n: number) => Buffer = Buffer.allocUnsafe) {}

  private state: 'header' | 'payload' | 'skip' = 'header';
  private pending: Omit<Request, 'data' | 'oversized'> | undefined;
  private remaining = 0;

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  get buffered(): number {
    return this.queue.length;
  }

  next(): Request | null {
    for (;;) {
      switch (this.state) {
        case 'header': {
          if (this.queue.length < REQUEST_HEADER) return null;
          const h = this.queue.consume(REQUEST_HEADER);
          if (h.readUInt32BE(0) !== REQUEST_MAGIC) {
            throw new BlockgateError(ErrorCodes.PROTOCOL, 'bad request magic from client');
          }
          const offHi = h.readUInt32BE(16);
          const offLo = h.readUInt32BE(20);
          const req = {
            flags: h.readUInt16BE(4),
            type: h.readUInt16BE(6),
            cookieHi: h.readUInt32BE(8),
            cookieLo: h.readUInt32BE(12),
            offset: offHi >= 0x200000 ? Infinity : offHi * 0x100000000 + offLo,
            length: h.readUInt32BE(24),
          };
          if (req.type !== CMD_WRITE || req.length === 0) {
            return { ...req, data: undefined, oversized: false };
          }
          this.pending = req;
          this.remaining = req.length;
          this.state = req.length > MAX_PAYLOAD ? 'skip' : 'payload';
          continue;
        }
        case 'payload': {
          if (this.queue.length < this.remaining) return null;
          const data = this.queue.consumeWith(this.remaining, this.allocate);
          const req = this.pending!;
          this.pending = undefined;
          this.state = 'header';
          return { ...req, data, oversized: false };
        }
        case 'skip': {
          this.remaining -= this.queue.skip(this.remaining);
          if (this.remaining > 0) return null;
          const req = this.pending!;
          this.pending = undefined;
          this.state = 'header';
          return { ...req, data: undefined, oversized: true };
        }
      }
    }
  }
}
