// The transmission phase of one connection: requests are parsed from the
// socket, dispatched to the export's CheckedDevice concurrently, and replied
// to in completion order (out of order, as the spec allows).
// States: running → draining (DISC, shutdown, or peer closed: no new
// requests; in-flight ones finish) → closed.
// Invariants: at most MAX_INFLIGHT requests / MAX_INFLIGHT_BYTES of payload
// are in flight; the socket is paused while either limit or the socket's own
// write buffer is full (backpressure both ways); every request gets exactly
// one reply unless the connection is gone; a READ's data is written in the
// same Buffer as its reply header (one allocation, no copy).
import type { Socket } from 'node:net';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import * as C from './constants.js';
import { toNbdErrno } from './errno.js';
import { opName } from './export.js';
import type { NegotiatedSession } from './handshake.js';
import { BufferPool } from '../util/buffer-pool.js';
import { RequestParser, type Request } from './parser.js';
import * as S from './serializer.js';
import type { StatusDescriptor } from './serializer.js';

const MAX_INFLIGHT = 64;
const MAX_INFLIGHT_BYTES = 128 * 1024 * 1024;
const MAX_STATUS_DESCRIPTORS = 2048;

const VALID_FLAGS: Record<number, number> = {
  [C.CMD_READ]: C.CMD_FLAG_FUA | C.CMD_FLAG_DF,
  [C.CMD_WRITE]: C.CMD_FLAG_FUA,
  [C.CMD_DISC]: C.CMD_FLAG_FUA,
  [C.CMD_FLUSH]: C.CMD_FLAG_FUA,
  [C.CMD_TRIM]: C.CMD_FLAG_FUA,
  [C.CMD_CACHE]: C.CMD_FLAG_FUA,
  [C.CMD_WRITE_ZEROES]: C.CMD_FLAG_FUA | C.CMD_FLAG_NO_HOLE | C.CMD_FLAG_FAST_ZERO,
  [C.CMD_BLOCK_STATUS]: C.CMD_FLAG_FUA | C.CMD_FLAG_REQ_ONE,
};

const WRITING = new Set([C.CMD_WRITE, C.CMD_WRITE_ZEROES, C.CMD_TRIM]);

/** READ replies and WRITE payloads of every connection (see util/buffer-pool.ts for why). */
const ioBuffers = new BufferPool({ maxSize: C.MAX_PAYLOAD + S.STRUCTURED_READ_PREFIX, maxPooledBytes: 256 * 1024 * 1024 });

export interface TransmissionStats {
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
}

export class Transmission {
  private readonly parser = new RequestParser((n) => ioBuffers.acquire(n));
  private readonly socket: Socket;
  /** The device promises not to keep WRITE payloads, so they go back to the pool. */
  private readonly recycleWrites: boolean;
  private inflight = 0;
  private inflightBytes = 0;
  private draining = false;
  private closed = false;
  private pausedForDrain = false;
  private ending = false;
  /** Replies of one tick are corked and leave in one writev (see send()). */
  private corked = false;
  private readonly doneWaiters: Array<() => void> = [];
  readonly stats: TransmissionStats = { requests: 0, bytesRead: 0, bytesWritten: 0, errors: 0 };

  constructor(private readonly session: NegotiatedSession, private readonly logger: Logger) {
    this.socket = session.socket;
    this.recycleWrites = session.export.device.caps.keepsWriteBuffers === false;
  }

  /** Starts serving; resolves once the connection is closed. */
  run(): Promise<void> {
    const finished = new Promise<void>((res) => this.doneWaiters.push(res));
    this.socket.on('data', (chunk: Buffer) => {
      this.parser.push(chunk);
      this.pump();
    });
    this.socket.on('drain', () => {
      this.pausedForDrain = false;
      this.pump();
    });
    this.socket.on('error', (err) => this.logger.debug('socket error', { err: errorMessage(err) }));
    this.socket.on('close', () => {
      this.closed = true;
      this.draining = true;
      this.maybeFinish();
    });
    this.socket.on('end', () => {
      // Peer half-closed without DISC: finish what is in flight, then close.
      this.draining = true;
      this.maybeFinish();
    });
    if (this.session.remainder.length > 0) this.parser.push(this.session.remainder);
    this.pump();
    return finished;
  }

  /** Stops taking requests (server shutdown); in-flight ones finish, then the connection closes. */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    this.socket.pause();
    this.maybeFinish();
  }

  /** Forcibly ends the connection. */
  destroy(): void {
    this.socket.destroy();
  }

  get inFlight(): number {
    return this.inflight;
  }

  private pump(): void {
    while (!this.draining && !this.pausedForDrain && this.inflight < MAX_INFLIGHT && this.inflightBytes < MAX_INFLIGHT_BYTES) {
      let req: Request | null;
      try {
        req = this.parser.next();
      } catch (err) {
        this.logger.warn('protocol error; closing connection', { err: errorMessage(err) });
        this.socket.destroy();
        return;
      }
      if (!req) break;
      if (req.type === C.CMD_DISC) {
        this.logger.debug('client sent DISC');
        this.draining = true;
        this.maybeFinish();
        break;
      }
      this.dispatch(req);
    }
    const blocked = this.draining || this.pausedForDrain || this.inflight >= MAX_INFLIGHT || this.inflightBytes >= MAX_INFLIGHT_BYTES;
    if (blocked) this.socket.pause();
    else this.socket.resume();
  }

  private dispatch(req: Request): void {
    const bytes = req.type === C.CMD_READ || req.type === C.CMD_WRITE ? Math.min(req.length, C.MAX_PAYLOAD) : 0;
    this.inflight++;
    this.inflightBytes += bytes;
    this.stats.requests++;
    this.session.export.counters.requests[opName(req.type)]++;
    // One clock read here and one at completion, only when someone observes (metrics).
    const observer = this.session.export.observer;
    const started = observer ? performance.now() : 0;
    this.execute(req).then(
      (reply) => this.send(reply),
      (err) => this.send(this.errorReply(req, err)),
    ).finally(() => {
      if (observer) observer.requestDone(req.type, performance.now() - started);
      if (req.data && this.recycleWrites) ioBuffers.release(req.data);
      this.inflight--;
      this.inflightBytes -= bytes;
      if (this.draining) this.maybeFinish();
      else this.pump();
    });
  }

  /** Writes one reply; a pooled one (READ data) goes back to the pool once the socket has flushed it. */
  private send(buf: Buffer): void {
    const pooled = ioBuffers.owns(buf);
    if (this.closed || this.socket.destroyed) {
      if (pooled) ioBuffers.release(buf);
      return;
    }
    const flushed = pooled ? (): void => ioBuffers.release(buf) : undefined;
    // Requests that complete in the same tick (a batch of log appends, the
    // page-cache hits of one socket read) reply with one writev instead of
    // one syscall each: cork on the first reply, uncork once the tick's
    // microtasks have run.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    if (!this.socket.write(buf, flushed)) this.pausedForDrain = true;
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  private errorReply(req: Request, err: unknown): Buffer {
    const errno = toNbdErrno(err, WRITING.has(req.type));
    this.stats.errors++;
    this.session.export.counters.errors++;
    const level = errno === C.NBD_EIO ? 'warn' : 'debug';
    this.logger[level]('request failed', { cmd: req.type, offset: req.offset, length: req.length, errno, err: errorMessage(err) });
    if (this.session.structuredReplies) return S.structuredError(req.cookieHi, req.cookieLo, errno, errorMessage(err));
    return S.simpleReply(req.cookieHi, req.cookieLo, errno);
  }

  private ok(req: Request): Buffer {
    return this.session.structuredReplies ? S.structuredNone(req.cookieHi, req.cookieLo) : S.simpleReply(req.cookieHi, req.cookieLo, 0);
  }

  /** Runs one request; resolves its complete reply. Throws for error replies. */
  private async execute(req: Request): Promise<Buffer> {
    const valid = VALID_FLAGS[req.type];
    if (valid === undefined) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `unknown command ${req.type}`);
    if ((req.flags & ~valid) !== 0) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `invalid flags 0x${req.flags.toString(16)} for command ${req.type}`);
    }
    if ((req.flags & C.CMD_FLAG_DF) !== 0 && !this.session.structuredReplies) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'DF flag without structured replies');
    }
    const device = this.session.export.device;
    const fua = (req.flags & C.CMD_FLAG_FUA) !== 0;
    switch (req.type) {
      case C.CMD_READ: {
        if (req.length > C.MAX_PAYLOAD) {
          throw new BlockgateError(ErrorCodes.TOO_LARGE, `read of ${req.length} bytes exceeds the ${C.MAX_PAYLOAD}-byte maximum`);
        }
        const prefix = this.session.structuredReplies ? S.STRUCTURED_READ_PREFIX : S.SIMPLE_HEADER;
        const buf = ioBuffers.acquire(prefix + req.length);
        try {
          await device.read(buf.subarray(prefix), req.offset);
        } catch (err) {
          ioBuffers.release(buf);
          throw err;
        }
        if (this.session.structuredReplies) S.writeStructuredReadPrefix(buf, req.cookieHi, req.cookieLo, req.offset, req.length);
        else S.writeSimpleHeader(buf, req.cookieHi, req.cookieLo, 0);
        this.stats.bytesRead += req.length;
        this.session.export.counters.bytesRead += req.length;
        return buf;
      }
      case C.CMD_WRITE: {
        if (req.oversized) {
          throw new BlockgateError(ErrorCodes.TOO_LARGE, `write of ${req.length} bytes exceeds the ${C.MAX_PAYLOAD}-byte maximum`);
        }
        if (req.length === 0) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'zero-length write');
        await device.write(req.data!, req.offset, fua);
        this.stats.bytesWritten += req.length;
        this.session.export.counters.bytesWritten += req.length;
        return this.ok(req);
      }
      case C.CMD_FLUSH:
        await device.flush();
        return this.ok(req);
      case C.CMD_TRIM:
        await device.trim(req.offset, req.length, fua);
        return this.ok(req);
      case C.CMD_WRITE_ZEROES:
        await device.zero(req.offset, req.length, {
          fua,
          mayTrim: (req.flags & C.CMD_FLAG_NO_HOLE) === 0,
          fast: (req.flags & C.CMD_FLAG_FAST_ZERO) !== 0,
        });
        return this.ok(req);
      case C.CMD_CACHE:
        await device.cache(req.offset, req.length);
        return this.ok(req);
      case C.CMD_BLOCK_STATUS:
        return this.blockStatus(req);
      default:
        throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `unknown command ${req.type}`);
    }
  }

  private async blockStatus(req: Request): Promise<Buffer> {
    const contextId = this.session.allocationContextId;
    if (contextId === undefined) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'BLOCK_STATUS without a negotiated meta context');
    }
    const extents = await this.session.export.device.extents(req.offset, req.length);
    const limit = (req.flags & C.CMD_FLAG_REQ_ONE) !== 0 ? 1 : MAX_STATUS_DESCRIPTORS;
    const descriptors: StatusDescriptor[] = [];
    for (const e of extents) {
      if (descriptors.length >= limit) break;
      descriptors.push({ length: e.length, flags: (e.hole ? C.STATE_HOLE : 0) | (e.zero ? C.STATE_ZERO : 0) });
    }
    return S.blockStatusChunk(req.cookieHi, req.cookieLo, contextId, descriptors, true);
  }

  private maybeFinish(): void {
    if (!this.draining || this.inflight > 0) return;
    if (this.closed || this.socket.destroyed) {
      this.finishNow();
      return;
    }
    if (this.ending) return;
    // Everything in flight has been replied to: close cleanly (TLS close_notify via end());
    // the 'close' handler then finishes.
    this.ending = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 5000).unref();
  }

  private finishNow(): void {
    for (const w of this.doneWaiters.splice(0)) w();
  }
}
