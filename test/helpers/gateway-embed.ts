// Small helpers for tests that embed the gateway through grpctunnel-gateway.
import { type Gateway, type GatewayOptions, type Logger, startGateway } from 'grpctunnel-gateway';

/** A logger that keeps what it was told (`level message` lines), for assertions. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => void lines.push(`${level} ${message}`);
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A promise with its resolve function outside (Promise.withResolvers is Node 22+). */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve = (_value: T) => {};
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** What a test started, stopped in reverse order by {@link runCleanups} (each file's afterEach). */
export const cleanups: Array<() => Promise<unknown> | unknown> = [];

/** Stops everything `cleanups` holds, newest first. */
export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) await cleanups.pop()?.();
}

/** A gateway on loopback ports, quiet and without keepalive, closed after the test. */
export async function gatewayWith(options: Partial<GatewayOptions>): Promise<Gateway> {
  const gw = await startGateway({
    listen: '127.0.0.1:0',
    agents: '127.0.0.1:0',
    access: {},
    logger: recordingLogger(),
    keepalive: false,
    ...options,
  });
  cleanups.push(() => gw.close(0));
  return gw;
}
