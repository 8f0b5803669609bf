// The BlockDevice interface: what every volume (raw, stored, cached) offers to
// the NBD layer. The NBD layer never calls a device directly; it calls the
// CheckedDevice wrapper (checked-device.ts), which validates every request
// once and emulates what a device lacks. So implementations may assume:
//   - 0 <= offset, length >= 1 (0 for flush), offset + length <= size;
//   - writes are never issued to a read-only device;
//   - a method whose capability is 'none' is never called.
// Ownership: a Buffer passed to write() belongs to the device from then on
// (the caller never reuses it) unless the device declares
// `keepsWriteBuffers: false`, promising it holds no reference to `data` once
// write() settles (the NBD layer then recycles the buffer); read() fills
// exactly `target.length` bytes of the caller's buffer and keeps no reference
// to it after resolving.

/** How a device supports an optional operation (as nbdkit's NBDKIT_*_NONE/EMULATE/NATIVE). */
export type Support = 'none' | 'emulate' | 'native';

export interface BlockDeviceCapabilities {
  /** Size in bytes. Fixed while the device is open. */
  readonly size: number;
  readonly readOnly: boolean;
  /** NBD_INFO_BLOCK_SIZE: minimum (1 = any alignment), preferred, maximum payload. */
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly maxBlockSize: number;
  /** flush() does something (a device with no volatile cache may say false). */
  readonly flush: boolean;
  /** native: write/zero/trim honour `fua`; emulate: checker issues flush after. */
  readonly fua: Support;
  /** trim() frees space (advisory in NBD; 'none' makes TRIM a no-op success). */
  readonly trim: boolean;
  /** native: zero() is efficient; emulate: checker writes zero buffers. */
  readonly zero: Support;
  /** zero() with fast=true can succeed (otherwise NOT_SUPPORTED at once). */
  readonly fastZero: boolean;
  /** native: cache() prefetches; emulate: checker reads and discards. */
  readonly cache: Support;
  /** extents() reports holes/zeros truthfully (else everything is data). */
  readonly extents: boolean;
  /** Every connection sees every other connection's flushed writes (NBD_FLAG_CAN_MULTI_CONN). */
  readonly multiConn: boolean;
  readonly rotational: boolean;
  /**
   * false: write() never keeps a reference to its `data` after it settles, so
   * the caller may reuse the buffer. Absent or true: the caller never does.
   */
  readonly keepsWriteBuffers?: boolean;
}

export interface WriteFlags { readonly fua: boolean }
export interface ZeroFlags {
  readonly fua: boolean;
  /** The client allows deallocating (NBD: NO_HOLE not set). */
  readonly mayTrim: boolean;
  /** NBD_CMD_FLAG_FAST_ZERO: fail with NOT_SUPPORTED rather than be slow. */
  readonly fast: boolean;
}

/** One run of bytes with the same allocation state (NBD base:allocation). */
export interface Extent {
  readonly length: number;
  /** NBD_STATE_HOLE: not allocated. */
  readonly hole: boolean;
  /** NBD_STATE_ZERO: reads as zeros. */
  readonly zero: boolean;
}

export interface BlockDevice {
  capabilities(): BlockDeviceCapabilities;
  read(target: Buffer, offset: number): Promise<void>;
  write(data: Buffer, offset: number, flags: WriteFlags): Promise<void>;
  zero?(offset: number, length: number, flags: ZeroFlags): Promise<void>;
  trim?(offset: number, length: number, flags: WriteFlags): Promise<void>;
  /** Makes every write that completed before this call durable. */
  flush?(): Promise<void>;
  cache?(offset: number, length: number): Promise<void>;
  /** Extents covering at least [offset, offset+1), contiguous from offset; may stop early or run past length. */
  extents?(offset: number, length: number): Promise<Extent[]>;
  close(): Promise<void>;
}
