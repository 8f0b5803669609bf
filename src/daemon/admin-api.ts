// The admin API: JSON over HTTP on a unix socket that only its owner (root,
// for the systemd unit) may connect to: the socket is created with mode 0600
// under umask 0177, so no other user ever sees it accessible. Routes are a
// small table; every error is {error: {code, message}} with an HTTP status
// derived from the stable error code.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmodSync, unlinkSync } from 'node:fs';
import { BlockgateError, ErrorCodes, errorMessage, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { claimUnixSocketPath } from '../util/unix-socket.js';

export interface AdminRequest {
  readonly params: Record<string, string>;
  readonly query: URLSearchParams;
  readonly body: unknown;
}

export interface AdminRoute {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Path with :name placeholders, e.g. /v1/volumes/:name */
  readonly path: string;
  readonly handler: (req: AdminRequest) => Promise<unknown> | unknown;
}

const MAX_BODY = 1024 * 1024;

const STATUS_BY_CODE: Partial<Record<string, number>> = {
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.CONFIG]: 400,
  [ErrorCodes.OUT_OF_RANGE]: 400,
  [ErrorCodes.OBJECT_NOT_FOUND]: 404,
  [ErrorCodes.SNAPSHOT_NOT_FOUND]: 404,
  [ErrorCodes.PRECONDITION_FAILED]: 409,
  [ErrorCodes.SNAPSHOT_STATE]: 409,
  [ErrorCodes.SHUTTING_DOWN]: 503,
  [ErrorCodes.STORE_UNAVAILABLE]: 503,
};

interface CompiledRoute extends AdminRoute {
  readonly pattern: RegExp;
  readonly names: string[];
}

function compile(route: AdminRoute): CompiledRoute {
  const names: string[] = [];
  const source = route.path.replace(/:([A-Za-z]+)/g, (_m, n: string) => { names.push(n); return '([^/]+)'; });
  return { ...route, pattern: new RegExp(`^${source}$`), names };
}

export class AdminServer {
  private constructor(private readonly server: Server, readonly socketPath: string) {}

  static async start(socketPath: string, routes: readonly AdminRoute[], logger: Logger): Promise<AdminServer> {
    const compiled = routes.map(compile);
    const log = logger.child({ component: 'admin' });
    const server = createServer((req, res) => void handle(req, res, compiled, log));
    await claimUnixSocketPath(socketPath, 'admin.socket');
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ path: socketPath }, () => { server.off('error', reject); resolve(); });
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(socketPath, 0o600);
    log.info('admin API listening', { unix: socketPath });
    return new AdminServer(server, socketPath);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    try { unlinkSync(this.socketPath); } catch { /* gone */ }
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, routes: readonly CompiledRoute[], log: Logger): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const send = (status: number, payload: unknown): void => {
    const body = JSON.stringify(payload, null, 2) + '\n';
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  try {
    let pathMatched = false;
    for (const r of routes) {
      const m = r.pattern.exec(url.pathname);
      if (!m) continue;
      pathMatched = true;
      if (r.method !== req.method) continue;
      const params = Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)]));
      const body = await readJsonBody(req);
      const result = await r.handler({ params, query: url.searchParams, body });
      send(200, result ?? { ok: true });
      return;
    }
    if (pathMatched) send(405, { error: { code: ErrorCodes.INVALID_ARGUMENT, message: `${req.method} is not allowed on ${url.pathname}` } });
    else send(404, { error: { code: ErrorCodes.INVALID_ARGUMENT, message: `no such endpoint: ${url.pathname}` } });
  } catch (err) {
    const code = err instanceof BlockgateError ? err.code : ErrorCodes.IO;
    const status = STATUS_BY_CODE[code] ?? 500;
    if (status >= 500) log.error('admin request failed', { path: url.pathname, err: errorMessage(err) });
    send(status, { error: { code, message: errorMessage(err) } });
  }
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'request body too large');
    chunks.push(chunk);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'request body is not valid JSON');
  }
}

/** Client side: one JSON request to the admin socket. */
export async function adminRequest(socketPath: string, method: string, path: string, body?: unknown): Promise<unknown> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ socketPath, method, path, headers: payload ? { 'content-type': 'application/json' } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          reject(new BlockgateError(ErrorCodes.PROTOCOL, `admin API answered ${res.statusCode} with a non-JSON body`));
          return;
        }
        const e = (parsed as { error?: { code: string; message: string } }).error;
        if ((res.statusCode ?? 500) >= 400 && e) {
          reject(new BlockgateError(e.code as ErrorCode, e.message));
        } else {
          resolve(parsed);
        }
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'EACCES' ? ' (permission denied: the admin socket is root-only; run as root)'
        : err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? ' (is the daemon running? see --admin-socket / --config)' : '';
      reject(new BlockgateError(ErrorCodes.DAEMON_UNAVAILABLE, `cannot reach the admin API at ${socketPath}: ${err.message}${hint}`));
    });
    req.end(payload);
  });
}
