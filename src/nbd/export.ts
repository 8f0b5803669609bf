// What the NBD layer needs to know about one export.
import type { CheckedDevice } from '../block-device/checked-device.js';
import * as C from './constants.js';

/** off: plaintext only offered (TLS still allowed if the client starts it); on: TLS optional; require: TLS only. */
export type TlsPolicy = 'off' | 'on' | 'require';

export interface NbdExport {
  readonly name: string;
  readonly description: string | undefined;
  readonly device: CheckedDevice;
  readonly tls: TlsPolicy;
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
