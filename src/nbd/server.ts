// NbdServer: listeners (TCP host:port and unix sockets), the export table,
// and the set of live connections. Each connection runs a Negotiation, then
// a Transmission. States: new → listening → closing → closed.
// Invariants: close() stops accepting first, lets every in-flight request
// finish (bounded by a grace period; after it the owner fails waits that
// may never end, and what is still busy a moment later is cut), flushes
// every device, and only then resolves; exports are owned by the caller
// (the daemon), not closed here.
import { createServer, type Server, type Socket } from 'node:net';
import { chmodSync, unlinkSync } from 'node:fs';
import { parseHostPort } from '../util/host-port.js';
import { claimUnixSocketPath } from '../util/unix-socket.js';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { NbdExport } from './export.js';
import { Negotiation } from './handshake.js';
import type { TlsServerConfig } from './tls.js';
import { Transmission } from './transmission.js';

export type ListenSpec = { readonly tcp: string } | { readonly unix: string; readonly mode?: number };

export interface NbdServerOptions {
  readonly exports: readonly NbdExport[];
  readonly tls?: TlsServerConfig;
  readonly logger: Logger;
  /** Idle handshake limit: a client that has not finished negotiating by then is dropped (ms). */
  readonly handshakeTimeoutMs?: number;
}

export interface ConnectionInfo {
  readonly id: number;
  readonly remote: string;
  readonly export: string | undefined;
  readonly tls: boolean;
  readonly phase: 'handshake' | 'transmission';
  readonly requests: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly inFlight: number;
}

interface Conn {
  readonly id: number;
  readonly remote: string;
  socket: Socket;
  transmission: Transmission | undefined;
  exportName: string | undefined;
  tls: boolean;
}

export class NbdServer {
  private readonly exports = new Map<string, NbdExport>();
  private readonly servers: Server[] = [];
  private readonly unixPaths: string[] = [];
  private readonly conns = new Map<number, Conn>();
  private nextId = 1;
  private shuttingDown = false;
  private readonly logger: Logger;
  private defaultExport: string | undefined;

  constructor(private readonly options: NbdServerOptions) {
    this.logger = options.logger.child({ component: 'nbd' });
    for (const e of options.exports) this.addExport(e);
  }

  /** Serves one more export (at start, or a volume created at run time). Names are unique. */
  addExport(e: NbdExport): void {
    if (this.exports.has(e.name)) throw new BlockgateError(ErrorCodes.CONFIG, `duplicate export name '${e.name}'`);
    if (e.tls === 'require' && !this.options.tls) {
      throw new BlockgateError(ErrorCodes.CONFIG, `export '${e.name}' requires TLS but no tls section is configured`);
    }
    this.exports.set(e.name, e);
    this.defaultExport ??= e.name;
  }

  hasExport(name: string): boolean {
    return this.exports.has(name);
  }

  /** Binds one listener; resolves the bound address ("host:port" or the socket path). */
  async listen(spec: ListenSpec): Promise<string> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    server.on('error', (err) => this.logger.error('listener error', { err: errorMessage(err) }));
    if ('tcp' in spec) {
      const { host, port } = parseHostPort(spec.tcp);
      await new Promise<void>((res, rej) => {
        server.once('error', rej);
        server.listen({ host, port }, () => { server.off('error', rej); res(); });
      });
      const addr = server.address();
      const bound = typeof addr === 'object' && addr ? `${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` : spec.tcp;
      this.servers.push(server);
      this.logger.info('listening', { address: bound });
      return bound;
    }
    const path = spec.unix;
    await claimUnixSocketPath(path, 'listen.unix');
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen({ path }, () => { server.off('error', rej); res(); });
    });
    chmodSync(path, spec.mode ?? 0o660);
    this.servers.push(server);
    this.unixPaths.push(path);
    this.logger.info('listening', { unix: path });
    return path;
  }

  connections(): ConnectionInfo[] {
    return [...this.conns.values()].map((c) => ({
      id: c.id,
      remote: c.remote,
      export: c.exportName,
      tls: c.tls,
      phase: c.transmission ? 'transmission' : 'handshake',
      requests: c.transmission?.stats.requests ?? 0,
      bytesRead: c.transmission?.stats.bytesRead ?? 0,
      bytesWritten: c.transmission?.stats.bytesWritten ?? 0,
      inFlight: c.transmission?.inFlight ?? 0,
    }));
  }

  private accept(socket: Socket): void {
    const id = this.nextId++;
    const remote = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix';
    const log = this.logger.child({ conn: id });
    if (this.shuttingDown) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.on('error', (err) => log.debug('socket error', { err: errorMessage(err) }));
    const conn: Conn = { id, remote, socket, transmission: undefined, exportName: undefined, tls: false };
    this.conns.set(id, conn);
    log.info('connection opened', { remote });
    socket.once('close', () => {
      if (!conn.transmission) this.conns.delete(id);
    });
    const timeout = setTimeout(() => {
      log.warn('handshake timed out; closing', { remote });
      socket.destroy();
    }, this.options.handshakeTimeoutMs ?? 120_000);
    const negotiation = new Negotiation(socket, {
      exports: this.exports,
      defaultExport: this.defaultExport,
      tls: this.options.tls,
      logger: log,
      isShuttingDown: () => this.shuttingDown,
    });
    negotiation.run().then(async (session) => {
      clearTimeout(timeout);
      if (!session) {
        this.conns.delete(id);
        log.debug('closed during handshake');
        return;
      }
      conn.socket = session.socket;
      conn.exportName = session.export.name;
      conn.tls = session.tls;
      const t = new Transmission(session, log);
      conn.transmission = t;
      log.info('transmission started', {
        export: session.export.name, tls: session.tls, structuredReplies: session.structuredReplies,
        blockStatus: session.allocationContextId !== undefined,
      });
      if (this.shuttingDown) t.drain();
      await t.run();
      this.conns.delete(id);
      log.info('connection closed', { export: session.export.name, ...t.stats });
    }).catch((err) => {
      clearTimeout(timeout);
      this.conns.delete(id);
      socket.destroy();
      log.error('connection failed', { err: errorMessage(err) });
    });
  }

  /**
   * Graceful stop: no new connections, handshakes dropped, in-flight requests
   * completed, devices flushed. When requests are still in flight after
   * `graceMs`, `onGraceOver` runs (the owner fails what waits for a resource
   * that may never come: write-log space, an unreachable store), so they are
   * answered (ESHUTDOWN) rather than cut; connections still busy
   * SETTLE_MS after that are closed.
   */
  async close(graceMs = 30_000, onGraceOver?: () => void): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    // Stop accepting. Not awaited: a listener's close callback only fires once
    // every connection it accepted has ended, which is what we are about to do.
    for (const s of this.servers) s.close();
    for (const p of this.unixPaths) {
      try { unlinkSync(p); } catch { /* already gone */ }
    }
    const waits: Promise<void>[] = [];
    for (const c of this.conns.values()) {
      if (!c.transmission) {
        c.socket.destroy();
        continue;
      }
      const t = c.transmission;
      waits.push(new Promise<void>((res) => {
        const check = (): void => { if (!this.conns.has(c.id)) res(); else setTimeout(check, 20); };
        t.drain();
        check();
      }));
    }
    const all = Promise.all(waits);
    if (!(await settledWithin(all, graceMs))) {
      this.logger.warn('requests still in flight after the grace period; failing what waits', { count: this.conns.size });
      onGraceOver?.();
      if (!(await settledWithin(all, Math.min(graceMs, SETTLE_MS)))) {
        this.logger.warn('connections still busy; closing them', { count: this.conns.size });
        for (const c of this.conns.values()) c.transmission?.destroy() ?? c.socket.destroy();
      }
    }
    for (const e of this.exports.values()) {
      try {
        await e.device.flush();
      } catch (err) {
        this.logger.error('flush at shutdown failed', { export: e.name, err: errorMessage(err) });
      }
    }
  }
}

/** How long requests get to be answered once the grace period is over and their waits have been failed (ms). */
const SETTLE_MS = 1000;

/** True when `p` settles within `ms`; the timer never outlives the wait. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<false>((res) => { timer = setTimeout(() => res(false), ms); });
  try {
    return await Promise.race([p.then(() => true as const), expired]);
  } finally {
    clearTimeout(timer);
  }
}
