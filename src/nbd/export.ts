// What the NBD layer needs to know about one export.
import type { CheckedDevice } from '../block-device/checked-device.js';
import * as C from './constants.js';

/** off: plaintext only offered (TLS still allowed if the client starts it); on: TLS optional; require: TLS only. */
export type TlsPolicy = 'off' | 'on' | 'require';

/** Per-export request counters, bumped by every connection (read by status and metrics). */
export interface ExportCounters {
  requests: Record<'read' | 'write' | 'flush' | 'trim' | 'zero' | 'cache' | 'block_status' | 'other', number>;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
}

export function newExportCounters(): ExportCounters {
  return {
    requests: { read: 0, write: 0, flush: 0, trim: 0, zero: 0, cache: 0, block_status: 0, other: 0 },
    bytesRead: 0,
    bytesWritten: 0,
    errors: 0,
  };
}

/** Told when each request of an export completes (metrics); must be cheap: it runs once per request. */
export interface RequestObserver {
  /** `type` is the NBD command (C.CMD_*), `ms` the time from dispatch until its reply was handed to the socket. */
  requestDone(type: number, ms: number): void;
}

export interface NbdExport {
  readonly name: string;
  readonly description: string | undefined;
  readonly device: CheckedDevice;
  readonly tls: TlsPolicy;
  readonly counters: ExportCounters;
  readonly observer?: RequestObserver;
}

const OP_NAMES: Record<number, keyof ExportCounters['requests']> = {
  [C.CMD_READ]: 'read', [C.CMD_WRITE]: 'write', [C.CMD_FLUSH]: 'flush', [C.CMD_TRIM]: 'trim',
  [C.CMD_WRITE_ZEROES]: 'zero', [C.CMD_CACHE]: 'cache', [C.CMD_BLOCK_STATUS]: 'block_status',
};

export function opName(type: number): keyof ExportCounters['requests'] {
  return OP_NAMES[type] ?? 'other';
}

/** Transmission flags for an export, given what the connection negotiated. */
export function transmissionFlags(exp: NbdExport, structuredReplies: boolean): number {
  const d = exp.device;
  const c = d.caps;
  let f = C.TFLAG_HAS_FLAGS | C.TFLAG_SEND_CACHE;
  if (c.readOnly) f |= C.TFLAG_READ_ONLY;
  if (c.flush) f |= C.TFLAG_SEND_FLUSH;
  if (c.rotational) f |= C.TFLAG_ROTATIONAL;
  if (c.multiConn || c.readOnly) f |= C.TFLAG_CAN_MULTI_CONN;
  if (structuredReplies) f |= C.TFLAG_SEND_DF;
  if (!c.readOnly) {
    f |= C.TFLAG_SEND_WRITE_ZEROES | C.TFLAG_SEND_FAST_ZERO;
    if (d.canFua) f |= C.TFLAG_SEND_FUA;
    if (c.trim) f |= C.TFLAG_SEND_TRIM;
  }
  return f;
}
