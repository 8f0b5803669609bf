// TLS material for STARTTLS: an x509 certificate/key (optionally verifying
// client certificates against a CA) and/or pre-shared keys in psktool's
// "identity:hexkey" file format. Loaded once at start; a bad file is a CONFIG
// error naming the key.
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';

const TLS13_SHA256_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';

export interface TlsFiles {
  readonly cert?: string;
  readonly key?: string;
  /** CA bundle to verify client certificates; setting it makes client certificates mandatory. */
  readonly ca?: string;
  /** psktool-format key file. */
  readonly psk?: string;
}

export interface TlsServerConfig {
  readonly secureContext: SecureContext;
  readonly requestClientCert: boolean;
  readonly pskCallback: ((socket: TLSSocket, identity: string) => Buffer | null) | undefined;
}

function readConfigFile(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new BlockgateError(ErrorCodes.CONFIG, `tls.${key}: cannot read ${path}: ${errorMessage(err)}`);
  }
}

export function parsePskFile(text: string, path = 'psk file'): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  text.split(/\r?\n/).forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const colon = line.lastIndexOf(':');
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1).trim();
    if (colon <= 0 || !/^([0-9a-fA-F]{2})+$/.test(hex)) {
      throw new BlockgateError(ErrorCodes.CONFIG, `tls.psk: ${path} line ${i + 1} is not "identity:hexkey"`);
    }
    keys.set(identity, Buffer.from(hex, 'hex'));
  });
  if (keys.size === 0) throw new BlockgateError(ErrorCodes.CONFIG, `tls.psk: ${path} holds no keys`);
  return keys;
}

export function loadTlsConfig(files: TlsFiles): TlsServerConfig {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new BlockgateError(ErrorCodes.CONFIG, 'tls.cert and tls.key must be given together');
  }
  if (files.cert === undefined && files.psk === undefined) {
    throw new BlockgateError(ErrorCodes.CONFIG, 'tls needs cert+key, psk, or both');
  }
  const psk = files.psk !== undefined ? parsePskFile(readConfigFile(files.psk, 'psk').toString('utf8'), files.psk) : undefined;
  let secureContext: SecureContext;
  try {
    secureContext = createSecureContext({
      minVersion: 'TLSv1.2',
      // tls.createServer sets this itself; a standalone TLSSocket must. Without
      // it OpenSSL refuses TLS 1.3 PSK (a session lookup) whenever peer
      // verification is on ("session id context uninitialized").
      sessionIdContext: 'blockgate-nbd',
      ...(files.cert !== undefined ? { cert: readConfigFile(files.cert, 'cert'), key: readConfigFile(files.key!, 'key') } : {}),
      ...(files.ca !== undefined ? { ca: readConfigFile(files.ca, 'ca') } : {}),
      // PSK suites are off by default in OpenSSL's list; add them when PSK is
      // configured. OpenSSL's PSK callback only works with SHA-256 TLS 1.3
      // suites: offering a SHA-384 one makes it fall back to certificate
      // authentication, which PSK-only clients (libnbd) refuse.
      ...(psk ? { ciphers: `${TLS13_SHA256_SUITES}:DEFAULT:PSK:ECDHE-PSK:DHE-PSK` } : {}),
    });
  } catch (err) {
    if (err instanceof BlockgateError) throw err;
    throw new BlockgateError(ErrorCodes.CONFIG, `tls: cannot use the configured certificate/key: ${errorMessage(err)}`);
  }
  return {
    secureContext,
    requestClientCert: files.ca !== undefined,
    pskCallback: psk ? (_socket, identity) => psk.get(identity) ?? null : undefined,
  };
}
