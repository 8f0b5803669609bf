// Wire types of the control plane, shared by the control server, the gateway
// agent and the CLI. Everything on the wire is JSON; errors are
// {"error": {"code": "ERR_...", "message": "..."}} with an HTTP status derived
// from the code (httpStatusFor). Gateway states: unactivated → pending →
// activated (one way). Command states: queued → delivered → succeeded|failed
// (a delivered command whose result never arrived is delivered again).
import { createHash, randomBytes } from 'node:crypto';
import { ErrorCodes, type ErrorCode } from '../errors.js';

export type GatewayState = 'unactivated' | 'pending' | 'activated';
export type CommandState = 'queued' | 'delivered' | 'succeeded' | 'failed';

export interface GatewayMetadata {
  hostname: string;
  version: string;
  capabilities: string[];
}

export interface ObjectStoreLocation {
  endpoint?: string;
  bucket?: string;
  region?: string;
  prefix?: string;
}

/** What an activated gateway receives and stores (0600) in its state dir. */
export interface GatewayCredentials {
  objectStore: ObjectStoreLocation;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface GatewayConfiguration {
  gatewayId: string;
  name: string;
  account: string;
  /** Long-poll hold the server uses; the client waits a little longer. */
  longPollHoldMs: number;
}

export interface GatewayRecord {
  id: string;
  /** SPKI PEM of the gateway's Ed25519 public key. */
  publicKey: string;
  fingerprint: string;
  metadata: GatewayMetadata;
  state: GatewayState;
  accountId?: string;
  name?: string;
  createdAt: number;
  registeredAt?: number;
  activatedAt?: number;
  /** sha256 of the control-channel token issued at activation. */
  tokenHash?: string;
  credentials?: GatewayCredentials;
  /** advertise URL of the control server holding the gateway's long-poll. */
  connectedVia?: string;
  lastSeenAt?: number;
}

/** Public view of a gateway (no token hash, no secret). */
export interface GatewayView {
  id: string;
  name: string | null;
  account: string | null;
  state: GatewayState;
  fingerprint: string;
  metadata: GatewayMetadata;
  createdAt: string;
  activatedAt: string | null;
  connectedVia: string | null;
  lastSeenAt: string | null;
}

export interface AccountRecord {
  id: string;
  name: string;
  objectStore?: ObjectStoreLocation & { accessKeyId?: string; secretAccessKey?: string };
}

export interface ActivationKeyRecord {
  key: string;
  gatewayId: string;
  createdAt: number;
  expiresAt: number;
  usedAt?: number;
}

export interface ChallengeRecord {
  id: string;
  gatewayId: string;
  nonce: string;
  expiresAt: number;
  usedAt?: number;
}

export type CommandType = 'create-volume' | 'snapshot' | 'set-bandwidth' | 'set-snapshot-schedule';
export const COMMAND_TYPES: readonly CommandType[] = ['create-volume', 'snapshot', 'set-bandwidth', 'set-snapshot-schedule'];

export interface CommandRecord {
  id: string;
  gatewayId: string;
  seq: number;
  type: CommandType;
  args: Record<string, unknown>;
  state: CommandState;
  createdAt: number;
  deliveredAt?: number;
  deliveries: number;
  completedAt?: number;
  result?: unknown;
  error?: { code: string; message: string };
}

/** What a gateway receives over the long-poll. */
export interface DeliveredCommand {
  id: string;
  type: CommandType;
  args: Record<string, unknown>;
}

export interface CommandResult {
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

/** The exact bytes a gateway signs to answer a challenge. Binds purpose, gateway, challenge and nonce. */
export function challengeMessage(gatewayId: string, challengeId: string, nonce: string): Buffer {
  return Buffer.from(`blockgate-activation-v1\n${gatewayId}\n${challengeId}\n${nonce}\n`, 'utf8');
}

/** Tokens are 256-bit random values, so a plain SHA-256 is a sufficient one-way hash. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function randomToken(prefix: string, bytes = 32): string {
  return `${prefix}${randomBytes(bytes).toString('base64url')}`;
}

const KEY_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'; // no 0/O/1/I

/** Human-typable activation key: 5 groups of 5 from a 32-symbol alphabet (125 bits). */
export function newActivationKey(): string {
  const bytes = randomBytes(25);
  let s = '';
  for (let i = 0; i < 25; i++) {
    if (i > 0 && i % 5 === 0) s += '-';
    s += KEY_ALPHABET[bytes[i]! & 31];
  }
  return s;
}

export function normalizeActivationKey(key: string): string {
  return key.trim().toUpperCase();
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.CONFIG]: 400,
  [ErrorCodes.PROTOCOL]: 400,
  [ErrorCodes.CONTROL_UNAUTHORIZED]: 401,
  [ErrorCodes.BAD_SIGNATURE]: 403,
  [ErrorCodes.GATEWAY_NOT_FOUND]: 404,
  [ErrorCodes.ACTIVATION_KEY_UNKNOWN]: 404,
  [ErrorCodes.COMMAND_NOT_FOUND]: 404,
  [ErrorCodes.ACTIVATION_KEY_USED]: 409,
  [ErrorCodes.GATEWAY_ALREADY_ACTIVATED]: 409,
  [ErrorCodes.GATEWAY_NOT_ACTIVATED]: 409,
  [ErrorCodes.GATEWAY_NAME_TAKEN]: 409,
  [ErrorCodes.CHALLENGE_INVALID]: 409,
  [ErrorCodes.ACTIVATION_KEY_EXPIRED]: 410,
  [ErrorCodes.CHALLENGE_EXPIRED]: 410,
  [ErrorCodes.CONTROL_UNAVAILABLE]: 503,
  [ErrorCodes.SHUTTING_DOWN]: 503,
  [ErrorCodes.ACTIVATION_KEY_NOT_READY]: 503,
};

export function httpStatusFor(code: string): number {
  return STATUS[code as ErrorCode] ?? 500;
}

export function gatewayView(g: GatewayRecord, accountName: string | undefined): GatewayView {
  const iso = (t: number | undefined): string | null => (t === undefined ? null : new Date(t).toISOString());
  return {
    id: g.id,
    name: g.name ?? null,
    account: accountName ?? null,
    state: g.state,
    fingerprint: g.fingerprint,
    metadata: g.metadata,
    createdAt: new Date(g.createdAt).toISOString(),
    activatedAt: iso(g.activatedAt),
    connectedVia: g.connectedVia ?? null,
    lastSeenAt: iso(g.lastSeenAt),
  };
}

export interface CommandView {
  id: string;
  gateway: string;
  type: CommandType;
  args: Record<string, unknown>;
  state: CommandState;
  createdAt: string;
  deliveredAt: string | null;
  deliveries: number;
  completedAt: string | null;
  result: unknown;
  error: { code: string; message: string } | null;
}

export function commandView(c: CommandRecord, gatewayName: string): CommandView {
  const iso = (t: number | undefined): string | null => (t === undefined ? null : new Date(t).toISOString());
  return {
    id: c.id,
    gateway: gatewayName,
    type: c.type,
    args: c.args,
    state: c.state,
    createdAt: new Date(c.createdAt).toISOString(),
    deliveredAt: iso(c.deliveredAt),
    deliveries: c.deliveries,
    completedAt: iso(c.completedAt),
    result: c.result ?? null,
    error: c.error ?? null,
  };
}
