// Fixed-newstyle option negotiation for one connection.
// States: await-client-flags → options* → (transmission | closed).
// STARTTLS swaps the socket for a TLS socket mid-negotiation; nothing typed
// before the upgrade may leak into it (leftover bytes are a protocol error).
// Invariants: every option except EXPORT_NAME gets exactly one final reply;
// with TLS required (all exports 'require' → FORCEDTLS mode) no option other
// than STARTTLS/ABORT is served before TLS; an export with tls 'require' is
// never entered without TLS.
import type { Socket } from 'node:net';
import { TLSSocket, type SecureContextOptions } from 'node:tls';
import { errorMessage, isBlockgateError } from '../errors.js';
import type { Logger } from '../log.js';
import * as C from './constants.js';
import { transmissionFlags, type NbdExport } from './export.js';
import { HandshakeParser } from './parser.js';
import * as S from './serializer.js';
import type { TlsServerConfig } from './tls.js';

export interface NegotiationContext {
  readonly exports: ReadonlyMap<string, NbdExport>;
  /** Export used for the empty name. */
  readonly defaultExport: string | undefined;
  readonly tls: TlsServerConfig | undefined;
  readonly logger: Logger;
  readonly isShuttingDown: () => boolean;
}

export interface NegotiatedSession {
  readonly socket: Socket;
  readonly export: NbdExport;
  readonly structuredReplies: boolean;
  /** Context id for base:allocation when selected, else undefined. */
  readonly allocationContextId: number | undefined;
  readonly tls: boolean;
  /** Bytes received after the final option (requests pipelined by an eager client). */
  readonly remainder: Buffer;
}

const ALLOCATION_CONTEXT_ID = 1;

export class Negotiation {
  private socket: Socket;
  private parser = new HandshakeParser();
  private noZeroes = false;
  private structured = false;
  private tlsActive = false;
  private metaExport: string | undefined;
  private metaSelected = false;
  private busy = false;
  private finished = false;
  private resolve!: (s: NegotiatedSession | null) => void;
  private reject!: (e: unknown) => void;
  private readonly forcedTls: boolean;

  constructor(socket: Socket, private readonly ctx: NegotiationContext) {
    this.socket = socket;
    const all = [...ctx.exports.values()];
    this.forcedTls = ctx.tls !== undefined && all.length > 0 && all.every((e) => e.tls === 'require');
  }

  /** Resolves with the session entering transmission, or null when the client aborted / went away. */
  run(): Promise<NegotiatedSession | null> {
    const done = new Promise<NegotiatedSession | null>((res, rej) => { this.resolve = res; this.reject = rej; });
    this.attach(this.socket);
    this.socket.write(S.greeting());
    return done;
  }

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.once('end', this.onEnd);
    socket.once('close', this.onClose);
  }

  private detach(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('close', this.onClose);
  }

  private readonly onClose = (): void => this.finish(null);
  /** The client half-closed mid-negotiation (listeners allow half-open sockets): nothing more can come. */
  private readonly onEnd = (): void => { this.socket.destroy(); };

  private readonly onData = (chunk: Buffer): void => {
    this.parser.push(chunk);
    void this.pump();
  };

  private finish(session: NegotiatedSession | null, err?: unknown): void {
    if (this.finished) return;
    this.finished = true;
    this.detach(this.socket);
    if (err !== undefined) this.reject(err);
    else this.resolve(session);
  }

  /** Processes buffered options one at a time (an option may await async work, e.g. TLS). */
  private async pump(): Promise<void> {
    if (this.busy || this.finished) return;
    this.busy = true;
    try {
      for (;;) {
        if (this.finished) return;
        const msg = this.parser.next();
        if (!msg) return;
        if (msg.kind === 'client-flags') {
          const known = C.FLAG_C_FIXED_NEWSTYLE | C.FLAG_C_NO_ZEROES;
          if ((msg.flags & ~known) !== 0) {
            this.ctx.logger.warn('client sent unknown handshake flags; closing', { flags: msg.flags });
            this.hardClose();
            return;
          }
          this.noZeroes = (msg.flags & C.FLAG_C_NO_ZEROES) !== 0;
          continue;
        }
        if (msg.kind === 'option-too-big') {
          this.reply(msg.option, C.REP_ERR_TOO_BIG, `option data of ${msg.length} bytes is too large`);
          continue;
        }
        await this.handleOption(msg.option, msg.data);
      }
    } catch (err) {
      if (isBlockgateError(err)) {
        this.ctx.logger.warn('handshake protocol error; closing', { err: errorMessage(err) });
        this.hardClose();
      } else {
        this.finish(null, err);
      }
    } finally {
      this.busy = false;
    }
  }

  private reply(option: number, type: number, message?: string, data?: Buffer): void {
    this.socket.write(message !== undefined ? S.optionError(option, type, message) : S.optionReply(option, type, data));
  }

  private hardClose(): void {
    this.socket.destroy();
    this.finish(null);
  }

  private async handleOption(option: number, data: Buffer): Promise<void> {
    const log = this.ctx.logger;
    log.debug('option', { option, length: data.length });
    if (option === C.OPT_ABORT) {
      this.reply(option, C.REP_ACK);
      this.socket.end();
      this.finish(null);
      return;
    }
    if (this.ctx.isShuttingDown()) {
      if (option === C.OPT_EXPORT_NAME) return this.hardClose();
      return this.reply(option, C.REP_ERR_SHUTDOWN, 'server is shutting down');
    }
    if (option === C.OPT_STARTTLS) return this.startTls(data);
    if (this.forcedTls && !this.tlsActive) {
      if (option === C.OPT_EXPORT_NAME) {
        log.warn('EXPORT_NAME without TLS on a TLS-only server; closing');
        return this.hardClose();
      }
      return this.reply(option, C.REP_ERR_TLS_REQD, 'TLS is required: send NBD_OPT_STARTTLS first');
    }
    switch (option) {
      case C.OPT_EXPORT_NAME: return this.exportName(data);
      case C.OPT_LIST: return this.list(data);
      case C.OPT_INFO: case C.OPT_GO: return this.infoGo(option, data);
      case C.OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.reply(option, C.REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        if (this.structured) return this.reply(option, C.REP_ERR_INVALID, 'structured replies already negotiated');
        this.structured = true;
        return this.reply(option, C.REP_ACK);
      case C.OPT_LIST_META_CONTEXT: case C.OPT_SET_META_CONTEXT: return this.metaContext(option, data);
      default:
        return this.reply(option, C.REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  private lookup(name: string): NbdExport | undefined {
    const key = name === '' ? this.ctx.defaultExport : name;
    return key === undefined ? undefined : this.ctx.exports.get(key);
  }

  private tlsBlocks(exp: NbdExport): boolean {
    return exp.tls === 'require' && !this.tlsActive;
  }

  private exportName(data: Buffer): void {
    const name = data.toString('utf8');
    const exp = this.lookup(name);
    if (!exp || this.tlsBlocks(exp)) {
      this.ctx.logger.warn('EXPORT_NAME refused; closing', { export: name, reason: exp ? 'tls required' : 'unknown export' });
      return this.hardClose();
    }
    this.socket.write(S.exportNameReply(exp.device.size, transmissionFlags(exp, this.structured), this.noZeroes));
    this.enter(exp);
  }

  private list(data: Buffer): void {
    if (data.length !== 0) return this.reply(C.OPT_LIST, C.REP_ERR_INVALID, 'LIST takes no data');
    for (const exp of this.ctx.exports.values()) {
      if (this.tlsBlocks(exp)) continue; // SELECTIVETLS: omit TLS-only exports before TLS
      this.reply(C.OPT_LIST, C.REP_SERVER, undefined, S.serverEntry(exp.name, exp.description));
    }
    this.reply(C.OPT_LIST, C.REP_ACK);
  }

  private infoGo(option: number, data: Buffer): void {
    if (data.length < 6) return this.reply(option, C.REP_ERR_INVALID, 'INFO/GO data too short');
    const nameLen = data.readUInt32BE(0);
    if (nameLen > C.MAX_STRING || 4 + nameLen + 2 > data.length) {
      return this.reply(option, C.REP_ERR_INVALID, 'INFO/GO export name length is invalid');
    }
    const name = data.toString('utf8', 4, 4 + nameLen);
    const count = data.readUInt16BE(4 + nameLen);
    if (data.length !== 4 + nameLen + 2 + 2 * count) {
      return this.reply(option, C.REP_ERR_INVALID, 'INFO/GO information request count does not match the data length');
    }
    const requested = new Set<number>();
    for (let i = 0; i < count; i++) requested.add(data.readUInt16BE(4 + nameLen + 2 + 2 * i));
    const exp = this.lookup(name);
    if (!exp) return this.reply(option, C.REP_ERR_UNKNOWN, `no export named '${name}'`);
    if (this.tlsBlocks(exp)) return this.reply(option, C.REP_ERR_TLS_REQD, `export '${exp.name}' requires TLS`);
    const flags = transmissionFlags(exp, this.structured);
    this.reply(option, C.REP_INFO, undefined, S.infoExport(exp.device.size, flags));
    if (requested.has(C.INFO_NAME)) this.reply(option, C.REP_INFO, undefined, S.infoString(C.INFO_NAME, exp.name));
    if (requested.has(C.INFO_DESCRIPTION) && exp.description) {
      this.reply(option, C.REP_INFO, undefined, S.infoString(C.INFO_DESCRIPTION, exp.description));
    }
    const c = exp.device.caps;
    this.reply(option, C.REP_INFO, undefined, S.infoBlockSize(c.minBlockSize, c.preferredBlockSize, Math.min(c.maxBlockSize, C.MAX_PAYLOAD)));
    this.reply(option, C.REP_ACK);
    if (option === C.OPT_GO) {
      // Meta contexts negotiated for another export do not carry over.
      if (this.metaExport !== undefined && this.lookup(this.metaExport) !== exp) this.metaSelected = false;
      this.enter(exp);
    }
  }

  /** Parses `u32 name len, name, u32 count, (u32 len, query)*`; returns undefined when malformed. */
  private parseMetaRequest(data: Buffer): { name: string; queries: string[] } | undefined {
    if (data.length < 8) return undefined;
    const nameLen = data.readUInt32BE(0);
    if (nameLen > C.MAX_STRING || 4 + nameLen + 4 > data.length) return undefined;
    const name = data.toString('utf8', 4, 4 + nameLen);
    let at = 4 + nameLen;
    const count = data.readUInt32BE(at);
    at += 4;
    const queries: string[] = [];
    for (let i = 0; i < count; i++) {
      if (at + 4 > data.length) return undefined;
      const len = data.readUInt32BE(at);
      at += 4;
      if (len > C.MAX_STRING || at + len > data.length) return undefined;
      queries.push(data.toString('utf8', at, at + len));
      at += len;
    }
    if (at !== data.length) return undefined;
    return { name, queries };
  }

  private metaContext(option: number, data: Buffer): void {
    if (!this.structured) {
      return this.reply(option, C.REP_ERR_INVALID, 'structured replies must be negotiated before meta contexts');
    }
    const req = this.parseMetaRequest(data);
    if (!req) return this.reply(option, C.REP_ERR_INVALID, 'malformed meta context request');
    const exp = this.lookup(req.name);
    if (!exp) return this.reply(option, C.REP_ERR_UNKNOWN, `no export named '${req.name}'`);
    if (this.tlsBlocks(exp)) return this.reply(option, C.REP_ERR_TLS_REQD, `export '${exp.name}' requires TLS`);
    const list = option === C.OPT_LIST_META_CONTEXT;
    const matches = (list && req.queries.length === 0) ||
      req.queries.some((q) => q === C.BASE_ALLOCATION || q === 'base:');
    if (!list) {
      this.metaExport = req.name;
      this.metaSelected = matches;
    }
    if (matches) {
      this.reply(option, C.REP_META_CONTEXT, undefined, S.metaContextEntry(list ? 0 : ALLOCATION_CONTEXT_ID, C.BASE_ALLOCATION));
    }
    this.reply(option, C.REP_ACK);
  }

  private async startTls(data: Buffer): Promise<void> {
    const option = C.OPT_STARTTLS;
    if (data.length !== 0) return this.reply(option, C.REP_ERR_INVALID, 'STARTTLS takes no data');
    if (!this.ctx.tls) return this.reply(option, C.REP_ERR_POLICY, 'TLS is not configured on this server');
    if (this.tlsActive) return this.reply(option, C.REP_ERR_INVALID, 'TLS is already active');
    this.reply(option, C.REP_ACK);
    if (this.parser.buffered > 0) {
      this.ctx.logger.warn('client sent data before the TLS handshake; closing');
      return this.hardClose();
    }
    const raw = this.socket;
    this.detach(raw);
    const tlsSocket = new TLSSocket(raw, {
      isServer: true,
      secureContext: this.ctx.tls.secureContext,
      requestCert: this.ctx.tls.requestClientCert,
      rejectUnauthorized: this.ctx.tls.requestClientCert,
      ...(this.ctx.tls.pskCallback ? { pskCallback: this.ctx.tls.pskCallback } : {}),
    } as ConstructorParameters<typeof TLSSocket>[1] & SecureContextOptions);
    this.socket = tlsSocket;
    try {
      await new Promise<void>((res, rej) => {
        const timer = setTimeout(() => rej(new Error('TLS handshake timed out')), 30_000);
        tlsSocket.once('secure', () => { clearTimeout(timer); res(); });
        tlsSocket.once('error', (e) => { clearTimeout(timer); rej(e); });
        tlsSocket.once('close', () => { clearTimeout(timer); rej(new Error('connection closed during TLS handshake')); });
      });
    } catch (err) {
      this.ctx.logger.warn('TLS handshake failed', { err: errorMessage(err) });
      tlsSocket.destroy();
      raw.destroy();
      this.finish(null);
      return;
    }
    this.tlsActive = true;
    this.ctx.logger.debug('TLS established', { protocol: tlsSocket.getProtocol(), cipher: tlsSocket.getCipher()?.name });
    tlsSocket.on('error', () => { /* reported through 'close' */ });
    this.attach(tlsSocket);
  }

  private enter(exp: NbdExport): void {
    const session: NegotiatedSession = {
      socket: this.socket,
      export: exp,
      structuredReplies: this.structured,
      allocationContextId: this.structured && this.metaSelected ? ALLOCATION_CONTEXT_ID : undefined,
      tls: this.tlsActive,
      remainder: this.parser.takeRemainder(),
    };
    this.finish(session);
  }
}
