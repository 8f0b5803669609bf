// The one place where failures become NBD error values (as nbdkit's
// nbd_errno). Device and store errors never reach the wire any other way.
import { BlockgateError, ErrorCodes } from '../errors.js';
import * as C from './constants.js';

/** `writing`: the failed command writes (out-of-range writes are ENOSPC per the spec, others EINVAL). */
export function toNbdErrno(err: unknown, writing: boolean): number {
  if (err instanceof BlockgateError) {
    switch (err.code) {
      case ErrorCodes.INVALID_ARGUMENT: return C.NBD_EINVAL;
      case ErrorCodes.OUT_OF_RANGE: return writing ? C.NBD_ENOSPC : C.NBD_EINVAL;
      case ErrorCodes.TOO_LARGE: return C.NBD_EOVERFLOW;
      case ErrorCodes.NOT_SUPPORTED: return C.NBD_ENOTSUP;
      case ErrorCodes.READ_ONLY: return C.NBD_EPERM;
      case ErrorCodes.NO_SPACE: return C.NBD_ENOSPC;
      case ErrorCodes.SHUTTING_DOWN: return C.NBD_ESHUTDOWN;
      default: return C.NBD_EIO;
    }
  }
  switch ((err as NodeJS.ErrnoException | undefined)?.code) {
    case 'ENOSPC': case 'EDQUOT': case 'EFBIG': return C.NBD_ENOSPC;
    case 'EROFS': case 'EPERM': case 'EACCES': return C.NBD_EPERM;
    case 'ENOMEM': return C.NBD_ENOMEM;
    case 'EINVAL': return C.NBD_EINVAL;
    case 'EOPNOTSUPP': case 'ENOTSUP': return C.NBD_ENOTSUP;
    default: return C.NBD_EIO;
  }
}
