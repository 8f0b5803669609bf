// The gateway's control-plane state directory (created 0700; every file 0600,
// written atomically by write-to-temp + rename):
//   gateway-key.pem   Ed25519 private key (PKCS#8 PEM), generated once
//   activation.json   {controlUrl, gatewayId, activationKey, issuedAt, expiresAt} while not activated
//   credentials.json  {controlUrl, gatewayId, gatewayToken, credentials, configuration} once activated
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';
import type { GatewayConfiguration, GatewayCredentials } from '../protocol.js';

export interface GatewayIdentity {
  privateKey: KeyObject;
  publicKeyPem: string;
  sign(message: Buffer): Buffer;
}

export interface PendingActivation {
  controlUrl: string;
  gatewayId: string;
  activationKey: string;
  /** ms since epoch (local clock) */
  issuedAt: number;
  /** ms since epoch (server clock) */
  expiresAt: number;
}

export interface StoredActivation {
  controlUrl: string;
  gatewayId: string;
  gatewayToken: string;
  credentials: GatewayCredentials;
  configuration: GatewayConfiguration;
  activatedAt: string;
}

export class GatewayStateDir {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private path(name: string): string { return join(this.dir, name); }

  writePrivate(name: string, content: string): void {
    writeFileAtomic(this.path(name), content, 0o600);
  }

  private readJson<T>(name: string): T | undefined {
    const p = this.path(name);
    if (!existsSync(p)) return undefined;
    try { return JSON.parse(readFileSync(p, 'utf8')) as T; } catch (err) {
      throw new BlockgateError(ErrorCodes.CONFIG, `${p} is unreadable: ${errorMessage(err)}`);
    }
  }

  /** Loads the key pair, generating and persisting it (0600) on first use. */
  identity(): GatewayIdentity {
    const p = this.path('gateway-key.pem');
    let privateKey: KeyObject;
    if (existsSync(p)) {
      try { privateKey = createPrivateKey(readFileSync(p)); } catch (err) {
        throw new BlockgateError(ErrorCodes.CONFIG, `${p}: not a private key: ${errorMessage(err)}`);
      }
      if (privateKey.asymmetricKeyType !== 'ed25519') throw new BlockgateError(ErrorCodes.CONFIG, `${p}: not an Ed25519 key`);
    } else {
      privateKey = generateKeyPairSync('ed25519').privateKey;
      this.writePrivate('gateway-key.pem', privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    }
    const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
    return { privateKey, publicKeyPem, sign: (m) => sign(null, m, privateKey) };
  }

  pendingActivation(): PendingActivation | undefined { return this.readJson<PendingActivation>('activation.json'); }
  savePendingActivation(a: PendingActivation): void { this.writePrivate('activation.json', JSON.stringify(a, null, 2) + '\n'); }

  activation(): StoredActivation | undefined { return this.readJson<StoredActivation>('credentials.json'); }
  saveActivation(a: StoredActivation): void {
    this.writePrivate('credentials.json', JSON.stringify(a, null, 2) + '\n');
    rmSync(this.path('activation.json'), { force: true });
  }
}
