// A deliberately dumb NBD client over node:net for protocol-level tests: it
// writes exactly the bytes a test asks for (valid or not) and reads exactly
// what the server sends back, with timeouts on every read. Constants are
// spelled out here (not imported from src/) so the tests check the wire
// values independently.
import { connect, type Socket } from 'node:net';

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 } as const;
export const REP = {
  ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4,
  ERR_UNSUP: 0x80000001, ERR_POLICY: 0x80000002, ERR_INVALID: 0x80000003, ERR_PLATFORM: 0x80000004,
  ERR_TLS_REQD: 0x80000005, ERR_UNKNOWN: 0x80000006, ERR_SHUTDOWN: 0x80000007, ERR_BLOCK_SIZE_REQD: 0x80000008,
  ERR_TOO_BIG: 0x80000009,
} as const;
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const FLAG_FIXED_NEWSTYLE = 1;
export const FLAG_NO_ZEROES = 2;

export interface OptionReply { option: number; type: number; data: Buffer }
export interface SimpleReply { error: number; cookie: bigint }

export class RawClient {
  private buf = Buffer.alloc(0);
  private ended = false;
  private waiter: (() => void) | undefined;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => { this.buf = Buffer.concat([this.buf, c]); this.wake(); });
    this.closedPromise = new Promise((res) => socket.once('close', () => { this.ended = true; this.wake(); res(); }));
    socket.on('end', () => { this.ended = true; this.wake(); });
    socket.on('error', () => { /* surfaced as close */ });
  }

  static connect(target: { port: number; host?: string } | { path: string }, timeoutMs = 10_000): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = 'path' in target ? connect(target.path) : connect(target.port, target.host ?? '127.0.0.1');
      const timer = setTimeout(() => { s.destroy(); reject(new Error('connect timed out')); }, timeoutMs);
      s.once('connect', () => { clearTimeout(timer); resolve(new RawClient(s)); });
      s.once('error', (e) => { clearTimeout(timer); reject(e); });
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  get isClosed(): boolean {
    return this.ended;
  }

  /** Bytes received and not yet read. */
  get pending(): number {
    return this.buf.length;
  }

  /** Reads exactly n bytes; rejects on timeout or when the server closes first. */
  async read(n: number, timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed after ${this.buf.length}/${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiter = () => { clearTimeout(t); res(); };
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }

  write(data: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  /**
   * Resolves true when the server closes the connection within timeoutMs
   * (any unread data is discarded), false when it is still open.
   */
  async closedWithin(timeoutMs = 5000): Promise<boolean> {
    if (this.ended) return true;
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      this.closedPromise.then(() => true),
      new Promise<boolean>((res) => { timer = setTimeout(() => res(false), timeoutMs); }),
    ]);
    clearTimeout(timer);
    return r || this.ended;
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ----------------------------------------------------------- handshake

  /** Reads the 18-byte newstyle greeting; returns the handshake flags. */
  async greeting(): Promise<number> {
    const g = await this.read(18);
    if (g.readBigUInt64BE(0) !== NBDMAGIC) throw new Error('bad NBDMAGIC');
    if (g.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('bad IHAVEOPT in greeting');
    return g.readUInt16BE(16);
  }

  clientFlags(flags = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES): void {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(flags >>> 0);
    this.write(b);
  }

  /** Greeting + client flags in one go. */
  async start(flags = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES): Promise<void> {
    await this.greeting();
    this.clientFlags(flags);
  }

  static option(option: number, data: Buffer = Buffer.alloc(0), magic = IHAVEOPT, declaredLength = data.length): Buffer {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(magic);
    h.writeUInt32BE(option >>> 0, 8);
    h.writeUInt32BE(declaredLength >>> 0, 12);
    return Buffer.concat([h, data]);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0)): void {
    this.write(RawClient.option(option, data));
  }

  async optionReply(timeoutMs = 10_000): Promise<OptionReply> {
    const h = await this.read(20, timeoutMs);
    if (h.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error(`bad option reply magic ${h.readBigUInt64BE(0).toString(16)}`);
    const len = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(len, timeoutMs) };
  }

  /** Reads replies up to and including the final one (ACK or an error). */
  async optionReplies(timeoutMs = 10_000): Promise<OptionReply[]> {
    const out: OptionReply[] = [];
    for (let i = 0; i < 10_000; i++) {
      const r = await this.optionReply(timeoutMs);
      out.push(r);
      if (r.type === REP.ACK || r.type >= 0x80000000) return out;
    }
    throw new Error('too many option replies');
  }

  /** Sends an option and returns all its replies. */
  async ask(option: number, data: Buffer = Buffer.alloc(0)): Promise<OptionReply[]> {
    this.sendOption(option, data);
    return this.optionReplies();
  }

  static goData(name: string, infos: number[] = []): Buffer {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
    b.writeUInt32BE(n.length);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((t, i) => b.writeUInt16BE(t, 6 + n.length + 2 * i));
    return b;
  }

  static metaData(name: string, queries: string[]): Buffer {
    const parts = [Buffer.alloc(4), Buffer.from(name), Buffer.alloc(4)];
    parts[0]!.writeUInt32BE(Buffer.byteLength(name));
    parts[2]!.writeUInt32BE(queries.length);
    for (const q of queries) {
      const l = Buffer.alloc(4);
      l.writeUInt32BE(Buffer.byteLength(q));
      parts.push(l, Buffer.from(q));
    }
    return Buffer.concat(parts);
  }

  /** OPT_GO to `name`; returns the export size and transmission flags (throws on an error reply). */
  async go(name: string): Promise<{ size: bigint; flags: number }> {
    const replies = await this.ask(OPT.GO, RawClient.goData(name));
    const last = replies[replies.length - 1]!;
    if (last.type !== REP.ACK) throw new Error(`GO ${name} refused: 0x${last.type.toString(16)} ${last.data.subarray(0).toString()}`);
    const exp = replies.find((r) => r.type === REP.INFO && r.data.readUInt16BE(0) === 0)!;
    return { size: exp.data.readBigUInt64BE(2), flags: exp.data.readUInt16BE(10) };
  }

  // ----------------------------------------------------------- transmission

  static request(type: number, opts: { flags?: number; cookie?: bigint; offset?: bigint | number; length?: number; magic?: number; data?: Buffer } = {}): Buffer {
    const h = Buffer.alloc(28);
    h.writeUInt32BE((opts.magic ?? REQUEST_MAGIC) >>> 0);
    h.writeUInt16BE(opts.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(opts.cookie ?? 1n, 8);
    h.writeBigUInt64BE(BigInt(opts.offset ?? 0), 16);
    h.writeUInt32BE((opts.length ?? opts.data?.length ?? 0) >>> 0, 24);
    return opts.data ? Buffer.concat([h, opts.data]) : h;
  }

  /** Reads one simple reply header (16 bytes); for a successful READ, the caller reads the payload. */
  async simpleReply(timeoutMs = 10_000): Promise<SimpleReply> {
    const h = await this.read(16, timeoutMs);
    if (h.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error(`expected a simple reply, got magic 0x${h.readUInt32BE(0).toString(16)}`);
    return { error: h.readUInt32BE(4), cookie: h.readBigUInt64BE(8) };
  }
}
