// Every failure blockgate reports carries a stable `code` (API: never renamed)
// and says whether retrying the same operation can succeed. Layers throw these;
// the NBD layer maps them to NBD errno values in one place (nbd/errno.ts).

export const ErrorCodes = {
  /** Bad argument from a caller (range, alignment, flags, sizes). */
  INVALID_ARGUMENT: 'ERR_INVALID_ARGUMENT',
  /** I/O outside the device. */
  OUT_OF_RANGE: 'ERR_OUT_OF_RANGE',
  /** Request larger than this server accepts. */
  TOO_LARGE: 'ERR_TOO_LARGE',
  /** Operation not supported by this device/store (e.g. FAST_ZERO impossible). */
  NOT_SUPPORTED: 'ERR_NOT_SUPPORTED',
  READ_ONLY: 'ERR_READ_ONLY',
  NO_SPACE: 'ERR_NO_SPACE',
  IO: 'ERR_IO',
  /** Configuration file or value is invalid; message names the key. */
  CONFIG: 'ERR_CONFIG',
  /** Wire protocol violated by the peer. */
  PROTOCOL: 'ERR_PROTOCOL',
  SHUTTING_DOWN: 'ERR_SHUTTING_DOWN',
  /** The daemon's admin API cannot be reached (not running, wrong socket, no permission). */
  DAEMON_UNAVAILABLE: 'ERR_DAEMON_UNAVAILABLE',
  // Object store
  OBJECT_NOT_FOUND: 'ERR_OBJECT_NOT_FOUND',
  PRECONDITION_FAILED: 'ERR_PRECONDITION_FAILED',
  STORE_UNAVAILABLE: 'ERR_STORE_UNAVAILABLE',
  STORE_TIMEOUT: 'ERR_STORE_TIMEOUT',
  STORE_THROTTLED: 'ERR_STORE_THROTTLED',
  STORE_ACCESS_DENIED: 'ERR_STORE_ACCESS_DENIED',
  STORE_BAD_REQUEST: 'ERR_STORE_BAD_REQUEST',
  /** Data read back does not match its checksum. */
  CHECKSUM_MISMATCH: 'ERR_CHECKSUM_MISMATCH',
  // Snapshots
  SNAPSHOT_NOT_FOUND: 'ERR_SNAPSHOT_NOT_FOUND',
  SNAPSHOT_CORRUPT: 'ERR_SNAPSHOT_CORRUPT',
  SNAPSHOT_STATE: 'ERR_SNAPSHOT_STATE',
  // Single-writer fencing (src/fencing)
  /** The volume is open for writing on another gateway (its lease is held and not expired). */
  LEASE_HELD: 'ERR_LEASE_HELD',
  /** This gateway's lease on the volume was taken over (epoch superseded): writes are refused. */
  FENCED: 'ERR_FENCED',
  // --- Control plane and gateway activation (src/control-plane) ---
  /** Missing, unknown or wrong API/gateway/peer token (also: unknown account). */
  CONTROL_UNAUTHORIZED: 'ERR_CONTROL_UNAUTHORIZED',
  /** The control server (or the gateway's local endpoint) cannot be reached. */
  CONTROL_UNAVAILABLE: 'ERR_CONTROL_UNAVAILABLE',
  ACTIVATION_KEY_UNKNOWN: 'ERR_ACTIVATION_KEY_UNKNOWN',
  ACTIVATION_KEY_EXPIRED: 'ERR_ACTIVATION_KEY_EXPIRED',
  /** Activation keys are single use. */
  ACTIVATION_KEY_USED: 'ERR_ACTIVATION_KEY_USED',
  /** The gateway has no activation key yet (its local endpoint is not ready). */
  ACTIVATION_KEY_NOT_READY: 'ERR_ACTIVATION_KEY_NOT_READY',
  GATEWAY_NOT_FOUND: 'ERR_GATEWAY_NOT_FOUND',
  /** The gateway is already registered (pending) or activated. */
  GATEWAY_ALREADY_ACTIVATED: 'ERR_GATEWAY_ALREADY_ACTIVATED',
  /** The gateway is not registered to an account yet (or not activated yet). */
  GATEWAY_NOT_ACTIVATED: 'ERR_GATEWAY_NOT_ACTIVATED',
  GATEWAY_NAME_TAKEN: 'ERR_GATEWAY_NAME_TAKEN',
  /** Challenge unknown or already answered (a replayed signature lands here). */
  CHALLENGE_INVALID: 'ERR_CHALLENGE_INVALID',
  CHALLENGE_EXPIRED: 'ERR_CHALLENGE_EXPIRED',
  /** Signature does not verify against the gateway's registered public key. */
  BAD_SIGNATURE: 'ERR_BAD_SIGNATURE',
  COMMAND_NOT_FOUND: 'ERR_COMMAND_NOT_FOUND',
  /** A gateway command finished in state failed (CLI --wait). */
  COMMAND_FAILED: 'ERR_COMMAND_FAILED',
  /** A gateway command did not finish within the CLI's --timeout. */
  COMMAND_TIMEOUT: 'ERR_COMMAND_TIMEOUT',
  // --- end control plane ---
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface BlockgateErrorOptions {
  retryable?: boolean;
  cause?: unknown;
  /** Extra structured context for logs (key, offset, snapshot id, ...). */
  details?: Record<string, unknown>;
}

export class BlockgateError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: BlockgateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BlockgateError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.details = options.details;
  }
}

export function isBlockgateError(err: unknown, code?: ErrorCode): err is BlockgateError {
  return err instanceof BlockgateError && (code === undefined || err.code === code);
}

/** Message of any thrown value, for logs and CLI output. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
