// Administrator-side client of the control server API (used by the CLI and
// usable from code). One method per endpoint; errors are BlockgateErrors with
// the server's stable codes.
import { BlockgateError, ErrorCodes } from '../errors.js';
import { joinUrl, requestJson, type RequestOptions } from './http.js';
import type { CommandType, CommandView, GatewayView } from './protocol.js';

export interface ControlClientOptions {
  url: string;
  token: string;
  ca?: string | Buffer;
  timeoutMs?: number;
}

export class ControlClient {
  constructor(private readonly options: ControlClientOptions) {
    if (!/^https?:\/\//.test(options.url)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `control URL '${options.url}' must start with http:// or https://`);
  }

  private req<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    return requestJson<T>(joinUrl(this.options.url, path), {
      headers: { authorization: `Bearer ${this.options.token}` },
      timeoutMs: this.options.timeoutMs ?? 15_000,
      ...(this.options.ca ? { ca: this.options.ca } : {}),
      ...opts,
    });
  }

  private static gw(name: string): string { return `/v1/gateways/by-name/${encodeURIComponent(name)}`; }

  async activate(activationKey: string, name: string): Promise<GatewayView> {
    return (await this.req<{ gateway: GatewayView }>('/v1/activations', { body: { activationKey, name } })).gateway;
  }

  async gateways(): Promise<GatewayView[]> {
    return (await this.req<{ gateways: GatewayView[] }>('/v1/gateways')).gateways;
  }

  async gateway(name: string): Promise<GatewayView> {
    return (await this.req<{ gateway: GatewayView }>(ControlClient.gw(name))).gateway;
  }

  async enqueue(gateway: string, type: CommandType, args: Record<string, unknown>): Promise<CommandView> {
    return (await this.req<{ command: CommandView }>(`${ControlClient.gw(gateway)}/commands`, { body: { type, args } })).command;
  }

  async commands(gateway: string): Promise<CommandView[]> {
    return (await this.req<{ commands: CommandView[] }>(`${ControlClient.gw(gateway)}/commands`)).commands;
  }

  async command(gateway: string, id: string): Promise<CommandView> {
    return (await this.req<{ command: CommandView }>(`${ControlClient.gw(gateway)}/commands/${encodeURIComponent(id)}`)).command;
  }
}

/** Reads the activation key a gateway shows on its local endpoint (http://HOST[:8080]/activation-key). */
export async function fetchActivationKey(gateway: string, timeoutMs = 10_000): Promise<{ activationKey: string; expiresAt: string; gatewayId: string; controlUrl?: string }> {
  const base = /^https?:\/\//.test(gateway) ? gateway : `http://${/:\d+$/.test(gateway) || /^\[.*\]:\d+$/.test(gateway) ? gateway : `${gateway}:8080`}`;
  try {
    return await requestJson(joinUrl(base, '/activation-key'), { timeoutMs });
  } catch (err) {
    if (err instanceof BlockgateError && err.code === ErrorCodes.CONTROL_UNAVAILABLE) {
      throw new BlockgateError(ErrorCodes.CONTROL_UNAVAILABLE, `cannot reach the gateway's activation endpoint ${base}: ${err.message}`, { retryable: true });
    }
    throw err;
  }
}
