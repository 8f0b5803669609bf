// Runs the BlockDevice compliance suite on RawVolume over sparse files in a
// temporary directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { BlockDevice } from '../../src/block-device/block-device.js';
import { RawVolume, type RawVolumeOptions } from '../../src/volumes/raw.js';
import { blockDeviceCompliance, type DeviceFactory } from './compliance.js';

function rawFactory(openOptions: Omit<RawVolumeOptions, 'path' | 'size' | 'readOnly'> = {}): DeviceFactory {
  let dir: string | undefined;
  let n = 0;
  const paths = new WeakMap<BlockDevice, string>();
  return {
    async create(size) {
      dir ??= await mkdtemp(join(tmpdir(), 'blockgate-raw-compliance-'));
      const path = join(dir, `vol-${n++}.img`);
      const dev = await RawVolume.open({ path, size, ...openOptions });
      paths.set(dev, path);
      return dev;
    },
    async reopen(device, { readOnly }) {
      const path = paths.get(device)!;
      const dev = await RawVolume.open({ path, readOnly, ...openOptions });
      paths.set(dev, path);
      return dev;
    },
    async dispose() {
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

blockDeviceCompliance('RawVolume (sparse file)', rawFactory());
blockDeviceCompliance('RawVolume (sparse file, FUA by fdatasync, no RWF_NOWAIT fast path)', rawFactory({ fuaMode: 'fdatasync', nowaitMax: 0 }));
// The fallback paths a file system without fallocate modes / SEEK_DATA takes.
blockDeviceCompliance('RawVolume (no fallocate, no SEEK_DATA)', rawFactory({ unsupported: ['punchHole', 'zeroRange', 'allocate', 'seek'] }));
blockDeviceCompliance('RawVolume (punch hole but no ZERO_RANGE)', rawFactory({ unsupported: ['zeroRange'] }));
