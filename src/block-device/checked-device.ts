// CheckedDevice: the single place where every request to a BlockDevice is
// validated (range, length, read-only) and where missing capabilities are
// emulated, as nbdkit's server/backend.c does. Capabilities are read once at
// construction and never change while the device is open.
// Emulations: FUA → operation + flush; zero → writes of a shared all-zero
// buffer (which nobody ever writes into); cache → reads that are discarded;
// trim without support → accepted as a no-op (TRIM is advisory);
// extents without support → one data extent.
import { BlockgateError, ErrorCodes } from '../errors.js';
import type { BlockDevice, BlockDeviceCapabilities, Extent, ZeroFlags } from './block-device.js';

const EMULATION_CHUNK = 1024 * 1024;
let zeroChunk: Buffer | undefined;
function zeros(length: number): Buffer {
  zeroChunk ??= Buffer.alloc(EMULATION_CHUNK);
  return zeroChunk.subarray(0, length);
}

export class CheckedDevice {
  readonly caps: BlockDeviceCapabilities;

  constructor(readonly inner: BlockDevice, readonly name: string) {
    this.caps = inner.capabilities();
    const c = this.caps;
    if (!Number.isSafeInteger(c.size) || c.size < 0) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `device ${name}: invalid size ${c.size}`);
    }
  }

  get size(): number {
    return this.caps.size;
  }

  /** FUA can be offered to clients (natively or by flushing). */
  get canFua(): boolean {
    return this.caps.fua === 'native' || (this.caps.fua === 'emulate' && this.caps.flush && this.inner.flush !== undefined);
  }

  get canFastZero(): boolean {
    return this.caps.zero === 'native' && this.caps.fastZero && this.inner.zero !== undefined;
  }

  async read(target: Buffer, offset: number): Promise<void> {
    this.checkRange(offset, target.length);
    await this.inner.read(target, offset);
  }

  async write(data: Buffer, offset: number, fua: boolean): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, data.length);
    const native = fua && this.caps.fua === 'native';
    await this.inner.write(data, offset, { fua: native });
    if (fua && !native) await this.flush();
  }

  async zero(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    const nativeFua = flags.fua && this.caps.fua === 'native';
    if (this.caps.zero === 'native' && this.inner.zero) {
      if (flags.fast && !this.caps.fastZero) throw notFast(this.name);
      await this.inner.zero(offset, length, { ...flags, fua: nativeFua });
    } else {
      if (flags.fast) throw notFast(this.name);
      for (let done = 0; done < length; done += EMULATION_CHUNK) {
        const n = Math.min(EMULATION_CHUNK, length - done);
        await this.inner.write(zeros(n), offset + done, { fua: false });
      }
    }
    if (flags.fua && !nativeFua) await this.flush();
  }

  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (!this.caps.trim || !this.inner.trim) return;
    const native = fua && this.caps.fua === 'native';
    await this.inner.trim(offset, length, { fua: native });
    if (fua && !native) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.caps.flush && this.inner.flush) await this.inner.flush();
  }

  async cache(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length);
    if (this.caps.cache === 'native' && this.inner.cache) {
      await this.inner.cache(offset, length);
    } else if (this.caps.cache === 'emulate') {
      const scratch = Buffer.allocUnsafe(Math.min(EMULATION_CHUNK, length));
      for (let done = 0; done < length; done += scratch.length) {
        const n = Math.min(scratch.length, length - done);
        await this.inner.read(scratch.subarray(0, n), offset + done);
      }
    }
  }

  /**
   * Extents covering [offset, offset+length): contiguous, non-empty, clamped
   * to the range; at least the first byte is always described.
   */
  async extents(offset: number, length: number): Promise<Extent[]> {
    this.checkRange(offset, length);
    if (!this.caps.extents || !this.inner.extents) return [{ length, hole: false, zero: false }];
    const raw = await this.inner.extents(offset, length);
    const out: Extent[] = [];
    let covered = 0;
    for (const e of raw) {
      if (covered >= length) break;
      if (!(e.length > 0)) break;
      const n = Math.min(e.length, length - covered);
      const last = out[out.length - 1];
      if (last && last.hole === e.hole && last.zero === e.zero) {
        out[out.length - 1] = { ...last, length: last.length + n };
      } else {
        out.push({ length: n, hole: e.hole, zero: e.zero });
      }
      covered += n;
    }
    if (out.length === 0) {
      throw new BlockgateError(ErrorCodes.IO, `device ${this.name}: extents() described nothing at offset ${offset}`);
    }
    return out;
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private checkWritable(): void {
    if (this.caps.readOnly) throw new BlockgateError(ErrorCodes.READ_ONLY, `export ${this.name} is read-only`);
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isInteger(length) || length <= 0) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `invalid length ${length}`);
    }
    if (!(offset >= 0) || offset > this.caps.size || length > this.caps.size - offset) {
      throw new BlockgateError(
        ErrorCodes.OUT_OF_RANGE,
        `request [${offset}, +${length}) is beyond the end of ${this.name} (size ${this.caps.size})`,
      );
    }
  }
}

function notFast(name: string): BlockgateError {
  return new BlockgateError(ErrorCodes.NOT_SUPPORTED, `${name}: fast zero is not possible here`);
}
