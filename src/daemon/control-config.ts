// The daemon's `control:` section: where the gateway agent activates and
// keeps its control channel. One schema (zod), used by config.ts's schema.
import { resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import { hostPort, section, text } from '../config/fields.js';

export interface ControlConfig {
  /** Control endpoint, http(s)://host:port */
  readonly url: string;
  /** Local activation endpoint (host:port) where `blockgate activate` fetches the key. */
  readonly activationListen: string;
  /** Extra CA (PEM file) trusted for an https control URL. */
  readonly ca: string | undefined;
  /** Gateway identity and credentials (0700 dir; key and credentials 0600). */
  readonly stateDir: string;
}

/** The section as written; stateDir defaults to dataDir/gateway once dataDir is known (controlConfig). */
export function controlSectionSchema(resolve: (p: string) => string) {
  return section({
    url: z.string({ error: 'is required: http(s)://host:port of the control server' })
      .refine((u) => /^https?:\/\/[^/]+/.test(u), { error: 'is required: http(s)://host:port of the control server' }),
    activationListen: hostPort.default('127.0.0.1:8080'),
    ca: text.transform((p) => resolve(p)).optional(),
    stateDir: text.transform((p) => resolve(p)).optional(),
  });
}

export function controlConfig(c: z.output<ReturnType<typeof controlSectionSchema>>, dataDir: string): ControlConfig {
  return { url: c.url, activationListen: c.activationListen, ca: c.ca, stateDir: c.stateDir ?? resolvePath(dataDir, 'gateway') };
}
