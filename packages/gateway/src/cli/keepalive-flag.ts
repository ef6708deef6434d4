import type { KeepaliveOptions } from 'grpctunnel';

// --keepalive INTERVAL[,TIMEOUT] or --keepalive off, with durations written
// as Go writes them (500ms, 15s, 1m30s), as the reference programs' flags do.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go-style duration ("1m30s", "500ms", "2.5s") into ms; throws on anything else. */
export function parseDuration(text: string): number {
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) throw new Error(`invalid duration ${JSON.stringify(text)}`);
  let ms = 0;
  for (const [, value, , unit] of text.matchAll(/(\d+(\.\d+)?)(ms|s|m|h)/g)) {
    ms += Number(value) * (UNIT_MS[unit as string] as number);
  }
  return Math.round(ms);
}

/**
 * The value of `--keepalive`: "off", or the ping interval optionally
 * followed by a comma and the time allowed for an answer ("15s,10s", "2s").
 * Throws an Error saying what is wrong.
 */
export function parseKeepaliveFlag(value: string): KeepaliveOptions | false {
  if (value === 'off') return false;
  const parts = value.split(',');
  if (parts.length > 2) throw new Error(`--keepalive must be INTERVAL[,TIMEOUT] or off, got ${JSON.stringify(value)}`);
  const [interval, timeout] = parts.map((part) => parseDuration(part.trim()));
  return { timeMs: interval as number, ...(timeout !== undefined && { timeoutMs: timeout }) };
}
