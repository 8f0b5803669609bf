// Gateway agent: activation against the control server, then the command
// channel. States: unactivated (has a key pair, maybe an activation key shown
// on the local endpoint) → pending (an administrator registered it; the agent
// answers a challenge with its private key) → activated (credentials stored
// 0600; long-poll loop). Every network step retries with full-jitter
// exponential backoff, so a restarted control server is picked up again.
// Invariants: the private key never leaves the state dir; a command id is
// applied at most once per agent process (redeliveries get the cached result);
// a result is re-sent until the server has it.
import http from 'node:http';
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { BlockgateError, ErrorCodes, errorMessage, isBlockgateError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { parseHostPort } from '../../util/host-port.js';
import { joinUrl, requestJson, sendError, sendJson, type RequestOptions } from '../http.js';
import {
  COMMAND_TYPES, challengeMessage,
  type CommandResult, type DeliveredCommand, type GatewayConfiguration, type GatewayCredentials, type GatewayState,
} from '../protocol.js';
import { applyCommand, validateCommand, type GatewayCommandHandler } from './handler.js';
import { GatewayStateDir, type GatewayIdentity, type StoredActivation } from './state.js';

export interface GatewayAgentOptions {
  stateDir: string;
  controlUrl: string;
  /** host:port of the local activation endpoint (default 127.0.0.1:8080; port 0 = kernel-chosen). */
  activationListen?: string;
  handler: GatewayCommandHandler;
  logger: Logger;
  /** Extra CA (PEM) trusted for an https control URL. */
  controlCa?: string | Buffer;
  /** How often to ask for the activation status while unactivated/pending (default 2 s). */
  activationPollMs?: number;
  /** Reconnect backoff bounds (default 250 ms … 15 s). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Renew the activation key this long before it expires (default 60 s, capped at half its life). */
  renewBeforeMs?: number;
  capabilities?: string[];
}

export interface GatewayStatus {
  state: GatewayState;
  gatewayId: string | null;
  name: string | null;
  account: string | null;
  controlUrl: string;
  /** true while the last long-poll succeeded */
  connected: boolean;
  commandsApplied: number;
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch { return 'unknown'; }
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> => new Promise((resolve) => {
  if (signal.aborted) { resolve(); return; }
  const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
  const onAbort = (): void => { clearTimeout(t); resolve(); };
  signal.addEventListener('abort', onAbort, { once: true });
});

export class GatewayAgent {
  private readonly state: GatewayStateDir;
  private readonly identity: GatewayIdentity;
  private readonly abort = new AbortController();
  private readonly controlUrl: string;
  private phase: GatewayState = 'unactivated';
  private activation: StoredActivation | undefined;
  private connected = false;
  private applied = 0;
  private readonly completed = new Map<string, CommandResult>();
  private readonly unsentResults = new Map<string, CommandResult>();
  private localServer: http.Server | undefined;
  private loop: Promise<void> = Promise.resolve();
  private activatedWaiters: Array<() => void> = [];
  /** Address of the local activation endpoint (host:port). */
  activationAddress = '';

  private constructor(private readonly options: GatewayAgentOptions) {
    this.state = new GatewayStateDir(options.stateDir);
    this.identity = this.state.identity();
    this.controlUrl = options.controlUrl.replace(/\/+$/, '');
    this.activation = this.state.activation();
    if (this.activation) this.phase = 'activated';
  }

  /** Starts the local endpoint and the activation/command loop; resolves once the endpoint listens. */
  static async start(options: GatewayAgentOptions): Promise<GatewayAgent> {
    const agent = new GatewayAgent(options);
    await agent.listenLocal(options.activationListen ?? '127.0.0.1:8080');
    agent.loop = agent.run().catch((err) => options.logger.error('gateway agent stopped on an unexpected error', { err: errorMessage(err) }));
    return agent;
  }

  status(): GatewayStatus {
    const pending = this.state.pendingActivation();
    return {
      state: this.phase,
      gatewayId: this.activation?.gatewayId ?? pending?.gatewayId ?? null,
      name: this.activation?.configuration.name ?? null,
      account: this.activation?.configuration.account ?? null,
      controlUrl: this.controlUrl,
      connected: this.connected,
      commandsApplied: this.applied,
    };
  }

  /** Credentials and configuration once activated. */
  credentials(): { credentials: GatewayCredentials; configuration: GatewayConfiguration } | undefined {
    return this.activation ? { credentials: this.activation.credentials, configuration: this.activation.configuration } : undefined;
  }

  whenActivated(): Promise<void> {
    if (this.phase === 'activated') return Promise.resolve();
    return new Promise((resolve) => this.activatedWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    if (this.localServer) {
      const s = this.localServer;
      await new Promise<void>((resolve) => { s.close(() => resolve()); s.closeAllConnections(); });
    }
  }

  private get log(): Logger { return this.options.logger; }

  private request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    return requestJson<T>(joinUrl(this.controlUrl, path), {
      signal: this.abort.signal,
      ...(this.options.controlCa ? { ca: this.options.controlCa } : {}),
      ...opts,
    });
  }

  // ---- local endpoint ----

  private async listenLocal(spec: string): Promise<void> {
    const { host, port } = parseHostPort(spec);
    const server = http.createServer((req, res) => {
      try {
        const path = new URL(req.url ?? '/', 'http://x').pathname;
        if (req.method !== 'GET') throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'only GET is served here');
        if (path === '/status') return sendJson(res, 200, this.status());
        if (path === '/activation-key') return sendJson(res, 200, this.currentActivationKey());
        return sendJson(res, 404, { error: { code: ErrorCodes.INVALID_ARGUMENT, message: `no such endpoint: ${path} (try /activation-key or /status)` } });
      } catch (err) {
        sendError(res, err);
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new BlockgateError(ErrorCodes.CONFIG, `activation endpoint ${spec}: ${errorMessage(err)}`)));
      server.listen(port, host, () => resolve());
    });
    const a = server.address() as AddressInfo;
    this.activationAddress = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
    this.localServer = server;
    this.log.info('activation endpoint listening', { address: this.activationAddress, url: `http://${this.activationAddress}/activation-key` });
  }

  private currentActivationKey(): unknown {
    if (this.phase !== 'unactivated') {
      throw new BlockgateError(ErrorCodes.GATEWAY_ALREADY_ACTIVATED, `this gateway is already ${this.phase === 'pending' ? 'registered (activation in progress)' : `activated as '${this.activation?.configuration.name}'`}`);
    }
    const p = this.state.pendingActivation();
    if (!p || p.controlUrl !== this.controlUrl || p.expiresAt <= Date.now()) {
      throw new BlockgateError(ErrorCodes.ACTIVATION_KEY_NOT_READY, 'this gateway has no valid activation key yet (is the control server reachable?); retry shortly');
    }
    return { activationKey: p.activationKey, expiresAt: new Date(p.expiresAt).toISOString(), gatewayId: p.gatewayId, controlUrl: p.controlUrl, state: this.phase };
  }

  // ---- main loop ----

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    const initial = this.options.backoffInitialMs ?? 250;
    const max = this.options.backoffMaxMs ?? 15_000;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (this.phase === 'activated') {
          await this.pollOnce();
        } else {
          await this.activationStep();
          if ((this.phase as GatewayState) !== 'activated') await sleep(this.options.activationPollMs ?? 2000, signal);
        }
        if (failures > 0) this.log.info('control server reachable again', { controlUrl: this.controlUrl, after: failures });
        failures = 0;
      } catch (err) {
        if (signal.aborted) break;
        this.connected = false;
        failures++;
        const delay = Math.round(Math.random() * Math.min(max, initial * 2 ** Math.min(failures - 1, 16)));
        const level = isBlockgateError(err, ErrorCodes.CONTROL_UNAVAILABLE) || isBlockgateError(err, ErrorCodes.SHUTTING_DOWN) ? 'warn' : 'error';
        this.log[level]('control channel error; retrying', { err: errorMessage(err), code: (err as { code?: string }).code, failures, retryInMs: delay });
        await sleep(delay, signal);
      }
    }
    this.connected = false;
  }

  private async activationStep(): Promise<void> {
    let pending = this.state.pendingActivation();
    if (pending && pending.controlUrl !== this.controlUrl) pending = undefined;
    if (pending) {
      const gatewayId = pending.gatewayId;
      let state: GatewayState | undefined;
      try {
        ({ state } = await this.request<{ state: GatewayState }>(`/v1/gateway/${encodeURIComponent(pending.gatewayId)}/status`));
      } catch (err) {
        if (!isBlockgateError(err, ErrorCodes.GATEWAY_NOT_FOUND)) throw err;
        this.log.warn('control server does not know this gateway any more; asking for a new activation key', { gatewayId: pending.gatewayId });
        pending = undefined;
      }
      if (state === 'pending') {
        this.phase = 'pending';
        await this.proveAndActivate(gatewayId);
        return;
      }
      if (state === 'activated') {
        // Activated on the server but credentials lost here: only an operator can reset this.
        throw new BlockgateError(ErrorCodes.GATEWAY_ALREADY_ACTIVATED, `control server says gateway ${gatewayId} is activated, but ${this.options.stateDir}/credentials.json is missing`);
      }
    }
    // Renew shortly before expiry (the old key stays valid on the server until it expires).
    const renewBefore = pending ? Math.min(this.options.renewBeforeMs ?? 60_000, (pending.expiresAt - pending.issuedAt) / 2) : 0;
    if (!pending || pending.expiresAt - Date.now() <= renewBefore) await this.hello();
  }

  private async hello(): Promise<void> {
    const metadata = { hostname: hostname(), version: packageVersion(), capabilities: this.options.capabilities ?? [...COMMAND_TYPES] };
    const r = await this.request<{ gatewayId: string; activationKey: string; expiresAt: string }>('/v1/gateway/hello', {
      body: { publicKey: this.identity.publicKeyPem, metadata },
    });
    this.state.savePendingActivation({ controlUrl: this.controlUrl, gatewayId: r.gatewayId, activationKey: r.activationKey, issuedAt: Date.now(), expiresAt: Date.parse(r.expiresAt) });
    this.phase = 'unactivated';
    this.log.info('activation key issued', { gatewayId: r.gatewayId, expiresAt: r.expiresAt, endpoint: `http://${this.activationAddress}/activation-key` });
  }

  private async proveAndActivate(gatewayId: string): Promise<void> {
    const id = encodeURIComponent(gatewayId);
    const ch = await this.request<{ challengeId: string; nonce: string }>(`/v1/gateway/${id}/challenge`, { method: 'POST', body: {} });
    const signature = this.identity.sign(challengeMessage(gatewayId, ch.challengeId, ch.nonce)).toString('base64');
    const r = await this.request<{ gatewayToken: string; credentials: GatewayCredentials; configuration: GatewayConfiguration }>(
      `/v1/gateway/${id}/activate`, { body: { challengeId: ch.challengeId, signature } });
    const stored: StoredActivation = { controlUrl: this.controlUrl, gatewayId, gatewayToken: r.gatewayToken, credentials: r.credentials, configuration: r.configuration, activatedAt: new Date().toISOString() };
    this.state.saveActivation(stored);
    this.activation = stored;
    this.phase = 'activated';
    this.log.info('gateway activated', { gatewayId, name: r.configuration.name, account: r.configuration.account });
    for (const w of this.activatedWaiters.splice(0)) w();
  }

  private async pollOnce(): Promise<void> {
    const a = this.activation!;
    const auth = { authorization: `Bearer ${a.gatewayToken}` };
    const base = `/v1/gateway/${encodeURIComponent(a.gatewayId)}`;
    // Results that could not be sent before (server down) go first.
    for (const [id, result] of [...this.unsentResults]) {
      await this.request(`${base}/commands/${encodeURIComponent(id)}/result`, { body: result, headers: auth });
      this.unsentResults.delete(id);
    }
    // After (re)connecting, one immediate poll confirms the channel (auth, reachability); then held polls.
    const hold = this.connected ? a.configuration.longPollHoldMs : 0;
    const { commands } = await this.request<{ commands: DeliveredCommand[] }>(`${base}/commands?wait=${hold}`, { headers: auth, timeoutMs: hold + 15_000 });
    if (!this.connected) this.log.info('command channel connected', { controlUrl: this.controlUrl });
    this.connected = true;
    for (const c of commands) {
      let result = this.completed.get(c.id);
      if (!result) {
        result = await this.apply(c);
        this.completed.set(c.id, result);
        if (this.completed.size > 10_000) this.completed.delete(this.completed.keys().next().value!);
      }
      this.unsentResults.set(c.id, result);
      await this.request(`${base}/commands/${encodeURIComponent(c.id)}/result`, { body: result, headers: auth });
      this.unsentResults.delete(c.id);
    }
  }

  private async apply(c: DeliveredCommand): Promise<CommandResult> {
    try {
      const { type, args } = validateCommand(c.type, c.args);
      const value = await applyCommand(this.options.handler, type, args);
      this.applied++;
      this.log.info('command applied', { command: c.id, type: c.type, args: c.args, ok: true });
      return { ok: true, result: value ?? null };
    } catch (err) {
      const code = isBlockgateError(err) ? err.code : ErrorCodes.IO;
      this.log.warn('command failed', { command: c.id, type: c.type, args: c.args, ok: false, code, err: errorMessage(err) });
      return { ok: false, error: { code, message: errorMessage(err) } };
    }
  }
}
