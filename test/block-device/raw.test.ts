// Runs the BlockDevice compliance suite on RawVolume over sparse files in a
// temporary directory.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { BlockDevice } from '../../src/block-device/block-device.js';
import { RawVolume } from '../../src/volumes/raw.js';
import { blockDeviceCompliance, type DeviceFactory } from './compliance.js';

function rawFactory(openOptions: { fuaMode?: 'dsync-fd' | 'fdatasync'; unsupported?: Array<'punchHole' | 'zeroRange' | 'allocate' | 'seek'> } = {}): DeviceFactory {
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
blockDeviceCompliance('RawVolume (sparse file, FUA by fdatasync)', rawFactory({ fuaMode: 'fdatasync' }));
// The fallback paths a file system without fallocate modes / SEEK_DATA takes.
blockDeviceCompliance('RawVolume (no fallocate, no SEEK_DATA)', rawFactory({ unsupported: ['punchHole', 'zeroRange', 'allocate', 'seek'] }));
blockDeviceCompliance('RawVolume (punch hole but no ZERO_RANGE)', rawFactory({ unsupported: ['zeroRange'] }));
