export declare const KILL_VOLUME: string;

export interface KillRecord {
  type: 'write' | 'zero' | 'marker';
  offset: number;
  length: number;
  data?: Buffer;
  payload?: unknown;
}

export declare function recordFor(seq: number): KillRecord;
