// The control server: HTTP(S) JSON API over a ControlStore (local level store
// when this server owns the registry, RemoteControlStore when a peer does).
// States: starting → listening → closing → closed.
// Long-polls are held in memory by the server a gateway connected to; that
// server records itself as the gateway's `connectedVia` in the registry, and
// whichever server enqueues a command wakes the holder (locally, or with
// POST {connectedVia}/internal/v1/notify). A lost notification costs at most
// one hold period: every poll re-reads the queue from the registry.
// Invariants: only token hashes are stored; an activation key or a challenge
// is accepted once; a command is "delivered" until a result is recorded.
import { createPublicKey, createHash, randomBytes, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { validateCommand } from '../agent/handler.js';
import type { ControlServerConfig } from './config.js';
import { bearer, joinUrl, readJsonBody, requestJson, sendError, sendJson } from '../http.js';
import {
  challengeMessage, commandView, gatewayView, hashToken, randomToken,
  type AccountRecord, type CommandResult, type DeliveredCommand, type GatewayCredentials, type GatewayMetadata, type GatewayRecord,
} from '../protocol.js';
import { dispatchStoreCall, remoteControlStore } from './remote-store.js';
import { LevelControlStore, type ControlStore } from './store.js';

export interface ControlServerHandle {
  /** URL this server advertises to peers (and logs). */
  readonly url: string;
  readonly address: string;
  readonly role: 'owner' | 'peer';
  close(): Promise<void>;
}

type Waiter = () => void;

export class ControlServer implements ControlServerHandle {
  url = '';
  address = '';
  readonly role: 'owner' | 'peer';
  private readonly server: http.Server;
  private readonly waiters = new Map<string, Set<Waiter>>();
  private closing = false;
  private readonly peerSecretHash: string | undefined;

  private constructor(
    private readonly config: ControlServerConfig,
    private readonly store: ControlStore,
    private readonly logger: Logger,
  ) {
    this.role = config.dataDir ? 'owner' : 'peer';
    this.peerSecretHash = config.peerSecret ? hashToken(config.peerSecret) : undefined;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      this.handle(req, res).catch((err) => {
        if (!(err instanceof BlockgateError)) this.logger.error('request failed', { method: req.method, url: req.url, err: errorMessage(err) });
        sendError(res, err);
      });
    };
    this.server = config.tls
      ? https.createServer({ cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) }, handler)
      : http.createServer(handler);
    this.server.requestTimeout = 0; // long-polls are held on purpose
    this.server.keepAliveTimeout = 5000;
  }

  static async start(config: ControlServerConfig, logger: Logger): Promise<ControlServer> {
    const store: ControlStore = config.dataDir
      ? await LevelControlStore.open(config.dataDir)
      : remoteControlStore({
        registryUrl: config.registry!.url,
        peerSecret: config.peerSecret!,
        ...(config.registry!.ca ? { ca: readFileSync(config.registry!.ca) } : {}),
      });
    const s = new ControlServer(config, store, logger);
    try {
      for (const a of config.accounts) await store.ensureAccount(a.name, a.tokenHashes, a.objectStore);
      await new Promise<void>((resolve, reject) => {
        s.server.once('error', reject);
        s.server.listen(config.listen.port, config.listen.host, () => { s.server.off('error', reject); resolve(); });
      });
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err instanceof BlockgateError ? err : new BlockgateError(ErrorCodes.CONFIG, `cannot start control server: ${errorMessage(err)}`, { cause: err });
    }
    const addr = s.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    s.address = `${host}:${addr.port}`;
    const advHost = addr.address === '0.0.0.0' || addr.address === '::' ? '127.0.0.1' : host;
    s.url = config.advertiseUrl ?? `${config.tls ? 'https' : 'http'}://${advHost}:${addr.port}`;
    logger.info('listening', { address: s.address, url: s.url, role: s.role, tls: Boolean(config.tls) });
    return s;
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const set of this.waiters.values()) for (const w of set) w();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      setTimeout(() => this.server.closeAllConnections(), 2000).unref();
    });
    await this.store.close();
  }

  // ---- routing ----

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (this.closing) throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, 'control server is shutting down');
    const url = new URL(req.url ?? '/', 'http://x');
    let parts: string[];
    try { parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent); } catch {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `malformed path ${url.pathname}`);
    }
    const method = req.method ?? 'GET';
    const route = routeOf(method, parts);
    const now = Date.now();

    switch (route) {
      case 'GET /healthz':
        return sendJson(res, 200, { ok: true, role: this.role, url: this.url });

      // --- gateway activation (no token: the gateway proves itself with its key) ---
      case 'POST /v1/gateway/hello': {
        const body = await readJsonBody(req);
        const { pem, fingerprint } = parsePublicKey(body.publicKey);
        const metadata = parseMetadata(body.metadata);
        const r = await this.store.hello(pem, fingerprint, metadata, this.config.activationKeyTtlMs, now);
        this.logger.info('gateway hello', { gatewayId: r.gatewayId, fingerprint, hostname: metadata.hostname });
        return sendJson(res, 200, { gatewayId: r.gatewayId, activationKey: r.activationKey, expiresAt: new Date(r.expiresAt).toISOString() });
      }
      case 'GET /v1/gateway/:/status': {
        const g = await this.store.getGateway(parts[2]!);
        return sendJson(res, 200, { gatewayId: g.id, state: g.state });
      }
      case 'POST /v1/gateway/:/challenge': {
        const c = await this.store.createChallenge(parts[2]!, this.config.challengeTtlMs, now);
        return sendJson(res, 200, { challengeId: c.id, nonce: c.nonce, expiresAt: new Date(c.expiresAt).toISOString() });
      }
      case 'POST /v1/gateway/:/activate':
        return sendJson(res, 200, await this.activate(parts[2]!, await readJsonBody(req), now));

      // --- gateway control channel (gateway token) ---
      case 'GET /v1/gateway/:/commands': {
        const g = await this.authGateway(req, parts[2]!);
        const wait = Math.min(Number(url.searchParams.get('wait') ?? this.config.longPollHoldMs) || 0, this.config.longPollHoldMs);
        const commands = await this.longPoll(g.id, wait, req, res);
        return sendJson(res, 200, { commands });
      }
      case 'POST /v1/gateway/:/commands/:/result': {
        const g = await this.authGateway(req, parts[2]!);
        const body = await readJsonBody(req);
        const result = parseResult(body);
        const c = await this.store.completeCommand(g.id, parts[4]!, result, now);
        this.logger.info('command result', { gatewayId: g.id, command: c.id, type: c.type, state: c.state });
        return sendJson(res, 200, { id: c.id, state: c.state });
      }

      // --- administrators (account API token) ---
      case 'POST /v1/activations': {
        const account = await this.authAccount(req);
        const body = await readJsonBody(req);
        if (typeof body.activationKey !== 'string' || body.activationKey.trim() === '') throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'activationKey is required');
        const name = gatewayName(body.name);
        const g = await this.store.register(account.id, body.activationKey, name, now);
        this.logger.info('gateway registered', { gatewayId: g.id, account: account.name, name });
        return sendJson(res, 200, { gateway: gatewayView(g, account.name) });
      }
      case 'GET /v1/gateways': {
        const account = await this.authAccount(req);
        const list = await this.store.listGateways(account.id);
        return sendJson(res, 200, { gateways: list.map((g) => gatewayView(g, account.name)) });
      }
      case 'GET /v1/gateways/by-name/:': {
        const account = await this.authAccount(req);
        return sendJson(res, 200, { gateway: gatewayView(await this.store.gatewayByName(account.id, parts[3]!), account.name) });
      }
      case 'POST /v1/gateways/by-name/:/commands': {
        const account = await this.authAccount(req);
        const g = await this.store.gatewayByName(account.id, parts[3]!);
        const body = await readJsonBody(req);
        const { type, args } = validateCommand(String(body.type ?? ''), body.args ?? {});
        const c = await this.store.enqueueCommand(g.id, type, args, now);
        this.logger.info('command queued', { gatewayId: g.id, name: g.name, command: c.id, type });
        await this.wake(g);
        return sendJson(res, 200, { command: commandView(c, g.name!) });
      }
      case 'GET /v1/gateways/by-name/:/commands': {
        const account = await this.authAccount(req);
        const g = await this.store.gatewayByName(account.id, parts[3]!);
        return sendJson(res, 200, { commands: (await this.store.listCommands(g.id)).map((c) => commandView(c, g.name!)) });
      }
      case 'GET /v1/gateways/by-name/:/commands/:': {
        const account = await this.authAccount(req);
        const g = await this.store.gatewayByName(account.id, parts[3]!);
        return sendJson(res, 200, { command: commandView(await this.store.getCommand(g.id, parts[5]!), g.name!) });
      }

      // --- peers (shared peer secret) ---
      case 'POST /internal/v1/store/:': {
        this.authPeer(req);
        if (this.role !== 'owner') throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'this control server does not own the registry (no dataDir)');
        const body = await readJsonBody(req);
        return sendJson(res, 200, { value: await dispatchStoreCall(this.store, parts[3]!, body.args) });
      }
      case 'POST /internal/v1/notify': {
        this.authPeer(req);
        const body = await readJsonBody(req);
        const woke = this.wakeLocal(String(body.gatewayId ?? ''));
        return sendJson(res, 200, { woke });
      }
      default:
        return sendJson(res, 404, { error: { code: ErrorCodes.INVALID_ARGUMENT, message: `no such endpoint: ${method} ${url.pathname}` } });
    }
  }

  // ---- authentication ----

  private async authAccount(req: http.IncomingMessage): Promise<AccountRecord> {
    const token = bearer(req);
    if (!token) throw new BlockgateError(ErrorCodes.CONTROL_UNAUTHORIZED, 'missing API token (Authorization: Bearer TOKEN)');
    return this.store.authenticate(hashToken(token));
  }

  private async authGateway(req: http.IncomingMessage, gatewayId: string): Promise<GatewayRecord> {
    const token = bearer(req);
    if (!token) throw new BlockgateError(ErrorCodes.CONTROL_UNAUTHORIZED, 'missing gateway token');
    return this.store.authenticateGateway(gatewayId, hashToken(token));
  }

  private authPeer(req: http.IncomingMessage): void {
    const secret = bearer(req, 'Peer');
    if (!this.peerSecretHash || !secret || hashToken(secret) !== this.peerSecretHash) {
      throw new BlockgateError(ErrorCodes.CONTROL_UNAUTHORIZED, 'peer endpoints need the shared peerSecret');
    }
  }

  // ---- activation ----

  private async activate(gatewayId: string, body: Record<string, unknown>, now: number): Promise<unknown> {
    if (typeof body.challengeId !== 'string' || typeof body.signature !== 'string') {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'challengeId and signature (base64) are required');
    }
    // Consumed before verification: one challenge, one attempt (no signature guessing, no replay).
    const { challenge, gateway } = await this.store.consumeChallenge(gatewayId, body.challengeId, now);
    let key: KeyObject;
    try { key = createPublicKey(gateway.publicKey); } catch (err) {
      throw new BlockgateError(ErrorCodes.IO, `stored public key of ${gatewayId} is unreadable: ${errorMessage(err)}`);
    }
    const sig = Buffer.from(body.signature, 'base64');
    const ok = sig.length === 64 && verify(null, challengeMessage(gatewayId, challenge.id, challenge.nonce), key, sig);
    if (!ok) {
      this.logger.warn('activation signature refused', { gatewayId, challenge: challenge.id });
      throw new BlockgateError(ErrorCodes.BAD_SIGNATURE, `signature does not verify against the public key registered for gateway ${gatewayId}`);
    }
    const account = await this.store.getAccount(gateway.accountId!);
    const gatewayToken = randomToken('bgw_');
    const credentials = this.credentialsFor(account, gateway);
    const activated = await this.store.completeActivation(gatewayId, hashToken(gatewayToken), credentials, now);
    this.logger.info('gateway activated', { gatewayId, account: account.name, name: activated.name });
    return {
      gatewayToken,
      credentials,
      configuration: { gatewayId, name: activated.name!, account: account.name, longPollHoldMs: this.config.longPollHoldMs },
    };
  }

  private credentialsFor(account: AccountRecord, gateway: GatewayRecord): GatewayCredentials {
    const base = account.objectStore ?? this.config.objectStore ?? {};
    const { accessKeyId, secretAccessKey, ...location } = base as AccountRecord['objectStore'] & object;
    const objectStore = { ...location, prefix: `${location.prefix ?? ''}gateways/${gateway.id}/` };
    if (accessKeyId && secretAccessKey) return { objectStore, accessKeyId, secretAccessKey };
    // Generated per gateway; the provider provisions them in its object store out of band.
    return {
      objectStore,
      accessKeyId: `BGAK${randomBytes(12).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64url'),
    };
  }

  // ---- long-poll ----

  private async longPoll(gatewayId: string, holdMs: number, req: http.IncomingMessage, res: http.ServerResponse): Promise<DeliveredCommand[]> {
    this.logger.debug('long poll', { gatewayId, holdMs });
    await this.store.markConnected(gatewayId, this.url, Date.now());
    const deadline = Date.now() + holdMs;
    let gone = false;
    res.once('close', () => { gone = true; this.wakeLocal(gatewayId); });
    for (;;) {
      // Register before reading the queue: a command enqueued in between still wakes us.
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => { wake = resolve; });
      const set = this.waiters.get(gatewayId) ?? new Set<Waiter>();
      this.waiters.set(gatewayId, set);
      set.add(wake);
      const timer = setTimeout(wake, Math.max(0, deadline - Date.now()));
      try {
        const cmds = await this.store.takeCommands(gatewayId, Date.now());
        if (cmds.length > 0) {
          this.logger.debug('commands delivered', { gatewayId, commands: cmds.map((c) => c.id) });
          return cmds.map((c) => ({ id: c.id, type: c.type, args: c.args }));
        }
        await woken;
      } finally {
        clearTimeout(timer);
        set.delete(wake);
        if (set.size === 0) this.waiters.delete(gatewayId);
      }
      if (gone || this.closing || Date.now() >= deadline) return [];
      void req;
    }
  }

  private wakeLocal(gatewayId: string): number {
    const set = this.waiters.get(gatewayId);
    if (!set) return 0;
    for (const w of [...set]) w();
    return set.size;
  }

  /** Wakes the long-poll of `g` wherever it is held. */
  private async wake(g: GatewayRecord): Promise<void> {
    this.wakeLocal(g.id);
    const via = g.connectedVia;
    if (!via || via === this.url || !this.config.peerSecret) return;
    try {
      await requestJson(joinUrl(via, '/internal/v1/notify'), {
        body: { gatewayId: g.id },
        headers: { authorization: `Peer ${this.config.peerSecret}` },
        timeoutMs: 3000,
        ...(this.config.registry?.ca ? { ca: readFileSync(this.config.registry.ca) } : {}),
      });
      this.logger.debug('forwarded command notification', { gatewayId: g.id, to: via });
    } catch (err) {
      // The holder will still see the command on its next poll (≤ one hold period).
      this.logger.warn('could not notify the control server holding the gateway', { gatewayId: g.id, to: via, err: errorMessage(err) });
    }
  }
}

const ROUTES = [
  'GET /healthz',
  'POST /v1/gateway/hello', 'GET /v1/gateway/:/status', 'POST /v1/gateway/:/challenge', 'POST /v1/gateway/:/activate',
  'GET /v1/gateway/:/commands', 'POST /v1/gateway/:/commands/:/result',
  'POST /v1/activations', 'GET /v1/gateways', 'GET /v1/gateways/by-name/:',
  'POST /v1/gateways/by-name/:/commands', 'GET /v1/gateways/by-name/:/commands', 'GET /v1/gateways/by-name/:/commands/:',
  'POST /internal/v1/store/:', 'POST /internal/v1/notify',
].map((r) => { const [m, path] = r.split(' ') as [string, string]; return { r, m, segs: path.split('/').filter(Boolean) }; });

/** The route pattern ("POST /v1/gateway/:/activate") the request matches, or ''. Literal segments win over ':'. */
function routeOf(method: string, parts: string[]): string {
  for (const { r, m, segs } of ROUTES) {
    if (m === method && segs.length === parts.length && segs.every((s, i) => s === ':' || s === parts[i])) return r;
  }
  return '';
}

function parsePublicKey(v: unknown): { pem: string; fingerprint: string } {
  if (typeof v !== 'string') throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'publicKey (SPKI PEM) is required');
  let key: KeyObject;
  try { key = createPublicKey(v); } catch { throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'publicKey is not a PEM public key'); }
  if (key.asymmetricKeyType !== 'ed25519') throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `publicKey must be Ed25519 (got ${key.asymmetricKeyType})`);
  const der = key.export({ type: 'spki', format: 'der' });
  return { pem: key.export({ type: 'spki', format: 'pem' }).toString(), fingerprint: fingerprintOf(der) };
}

export function fingerprintOf(spkiDer: Buffer): string {
  return `SHA256:${createHash('sha256').update(spkiDer).digest('base64url')}`;
}

function parseMetadata(v: unknown): GatewayMetadata {
  const m = (v ?? {}) as Record<string, unknown>;
  const s = (x: unknown, k: string): string => {
    if (typeof x !== 'string' || x.length === 0 || x.length > 256) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `metadata.${k} must be a string of 1-256 characters`);
    return x;
  };
  const caps = m.capabilities ?? [];
  if (!Array.isArray(caps) || caps.length > 64 || caps.some((c) => typeof c !== 'string')) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'metadata.capabilities must be a list of strings');
  }
  return { hostname: s(m.hostname, 'hostname'), version: s(m.version, 'version'), capabilities: caps as string[] };
}

function gatewayName(v: unknown): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(v)) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `gateway name must be 1-64 letters, digits, '.', '_' or '-' (got ${JSON.stringify(v)})`);
  }
  return v;
}

function parseResult(body: Record<string, unknown>): CommandResult {
  if (typeof body.ok !== 'boolean') throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'ok (boolean) is required');
  if (body.ok) return { ok: true, result: body.result ?? null };
  const e = (body.error ?? {}) as Record<string, unknown>;
  return { ok: false, error: { code: String(e.code ?? ErrorCodes.IO), message: String(e.message ?? 'failed').slice(0, 2000) } };
}
