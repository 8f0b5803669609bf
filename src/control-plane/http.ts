// Minimal JSON-over-HTTP(S) plumbing for the control plane (node:http/https,
// no extra packages). Client: one request, a deadline, an optional abort
// signal and CA; an {"error":{code,message}} body becomes a BlockgateError
// with that code; a connection failure is CONTROL_UNAVAILABLE (retryable).
// Server: bounded JSON body reader and a JSON responder.
import http from 'node:http';
import https from 'node:https';
import { BlockgateError, ErrorCodes, errorMessage, type ErrorCode } from '../errors.js';
import { httpStatusFor } from './protocol.js';

export interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Whole-request deadline (ms). Default 15 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Extra trusted CA (PEM) for https URLs. */
  ca?: string | Buffer;
}

export async function requestJson<T>(url: string, options: RequestOptions = {}): Promise<T> {
  const u = new URL(url);
  const lib = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : undefined;
  if (!lib) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `unsupported URL scheme in ${url} (use http: or https:)`);
  const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const finish = (err: unknown, value?: T): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err); else resolve(value as T);
    };
    const req = lib.request(u, {
      method: options.method ?? (body ? 'POST' : 'GET'),
      headers: {
        accept: 'application/json',
        ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}),
        ...options.headers,
      },
      ...(options.ca ? { ca: options.ca } : {}),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => finish(unavailable(url, err)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try { parsed = text === '' ? {} : JSON.parse(text); } catch {
          finish(new BlockgateError(ErrorCodes.PROTOCOL, `${url}: HTTP ${res.statusCode}: response is not JSON: ${text.slice(0, 200)}`));
          return;
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) { finish(undefined, parsed as T); return; }
        const e = (parsed as { error?: { code?: unknown; message?: unknown } }).error;
        if (e && typeof e.code === 'string' && typeof e.message === 'string') {
          finish(new BlockgateError(e.code as ErrorCode, e.message, { retryable: status >= 500, details: { status, url } }));
        } else {
          finish(new BlockgateError(status >= 500 ? ErrorCodes.CONTROL_UNAVAILABLE : ErrorCodes.PROTOCOL,
            `${url}: HTTP ${status}`, { retryable: status >= 500 }));
        }
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish(new BlockgateError(ErrorCodes.CONTROL_UNAVAILABLE, `${u.origin}: no response within ${timeoutMs} ms`, { retryable: true }));
    }, timeoutMs);
    const onAbort = (): void => {
      req.destroy();
      finish(new BlockgateError(ErrorCodes.SHUTTING_DOWN, 'request aborted'));
    };
    if (options.signal?.aborted) { onAbort(); return; }
    options.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => finish(unavailable(url, err)));
    req.end(body);
  });
}

function unavailable(url: string, err: unknown): BlockgateError {
  const origin = (() => { try { return new URL(url).origin; } catch { return url; } })();
  return new BlockgateError(ErrorCodes.CONTROL_UNAVAILABLE, `cannot reach ${origin}: ${errorMessage(err)}`, { retryable: true, cause: err });
}

const MAX_BODY = 1 << 20;

export async function readJsonBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new BlockgateError(ErrorCodes.TOO_LARGE, `request body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  let v: unknown;
  try { v = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'request body is not valid JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'request body must be a JSON object');
  return v as Record<string, unknown>;
}

export function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(body.length), 'cache-control': 'no-store' });
  res.end(body);
}

export function sendError(res: http.ServerResponse, err: unknown): void {
  if (err instanceof BlockgateError) {
    sendJson(res, httpStatusFor(err.code), { error: { code: err.code, message: err.message } });
  } else {
    sendJson(res, 500, { error: { code: ErrorCodes.IO, message: `internal error: ${errorMessage(err)}` } });
  }
}

/** Value of "Authorization: <scheme> <credential>", or undefined. */
export function bearer(req: http.IncomingMessage, scheme = 'Bearer'): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const sp = h.indexOf(' ');
  if (sp < 0 || h.slice(0, sp).toLowerCase() !== scheme.toLowerCase()) return undefined;
  return h.slice(sp + 1).trim() || undefined;
}

export function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + path;
}
